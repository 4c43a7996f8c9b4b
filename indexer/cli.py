"""The `indexer` command: thin Typer commands over the library, each with --json.

Heavy modules (pySigma, GitPython, Rich tables) are imported inside the commands that need
them, so `indexer search` starts quickly.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, List, Optional

import typer

from . import __version__
from .errors import ExitCode, IndexerError, NotFound, SourceFailure, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Index the executables named by Sigma rules and LOLBAS entries, and search them.\n\n"
                       "Example: indexer refresh && indexer search certutil.exe")

DATA_DIR_HELP = "Data directory: clones, index, manifests (env INDEXER_DATA_DIR)."


def _data_dir(value: Optional[Path]) -> Path:
    return value or Path(os.environ.get("INDEXER_DATA_DIR") or "rules_cache")


DataDir = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, show_default="rules_cache")
JsonFlag = typer.Option(False, "--json", help="Print JSON for machines instead of tables.")


def _os_error(exc: OSError, path: object) -> UsageError:
    """An output or data directory that cannot be written or read: the file and the system's reason."""
    return UsageError(exc.strerror or str(exc), str(exc.filename or path))


def _error_line(message: str) -> None:
    from .text import printable, redact_text
    sys.stderr.write(f"indexer: error: {printable(redact_text(message))}\n")
    sys.stderr.flush()


def _echo(line: str) -> None:
    """One line of output that may hold text from rules: never a terminal control sequence."""
    from .text import printable
    sys.stdout.write(printable(line) + "\n")


def _choice(option: str, value: str | None, allowed: Iterable[str]) -> None:
    """A usage error (exit 4) listing the valid values unless `value` is one of them."""
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(allowed)}", param_hint=option)


def _finite(option: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value) or not low < value <= high:
        raise typer.BadParameter(f"{value} is not a number above {low:g} and at most {high:g}", param_hint=option)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


def _console() -> Any:
    from rich.console import Console
    from rich.segment import Segment

    from .text import printable

    class SafeConsole(Console):
        """Rich's console with every piece of text made printable just before it is written
        (Rich keeps ESC and other control characters a rule's title or path may hold)."""

        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            return super()._render_buffer(
                segment if segment.control else Segment(_keep_newlines(segment.text, printable), segment.style)
                for segment in buffer)

    return SafeConsole(highlight=False, soft_wrap=False, markup=False)


def _keep_newlines(text: str, clean: Any) -> str:
    """`clean` applied to each line of a rendered segment (Rich's own line breaks stay)."""
    return "\n".join(clean(part) for part in text.split("\n")) if "\n" in text else clean(text)


def _open_reader(data_dir: Path) -> Any:
    from .index import IndexReader
    return IndexReader(data_dir)  # IndexMissing (an IndexerError): exit 4


@app.command()
def refresh(
    data_dir: Optional[Path] = DataDir,
    sigma_url: Optional[str] = typer.Option(None, help="Sigma repository: URL, local repo or git bundle (env INDEXER_SIGMA_URL)."),
    lolbas_url: Optional[str] = typer.Option(None, help="LOLBAS repository: URL, local repo or git bundle (env INDEXER_LOLBAS_URL)."),
    sigma_branch: str = typer.Option("master", help="Sigma branch."),
    lolbas_branch: str = typer.Option("master", help="LOLBAS branch."),
    source: List[str] = typer.Option([], "--source", help="Refresh only these sources (sigma, lolbas)."),
    full: bool = typer.Option(False, "--full", help="Rebuild everything instead of the changed files."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for another refresh to finish."),
    jobs: int = typer.Option(0, "--jobs", min=0, max=256, help="Parser processes (0: one per core)."),
    max_file_mb: float = typer.Option(4.0, "--max-file-mb", help="Skip rule files larger than this (MB, above 0, at most 1024)."),
    allow_shrink: bool = typer.Option(False, "--allow-shrink", help="Publish even if a source lost most of its rule files."),
    as_json: bool = JsonFlag,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Every step as a log line."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Also append log lines to this file."),
) -> None:
    """Fetch the sources, reindex what changed, print what changed.

    Exit codes: 0 ok, 1 done but some files failed, 2 a source or a parser process failed
    (the previous index kept), 3 locked by another refresh, 4 usage error.

    Example: indexer refresh --sigma-url ../shared/corpora/sigma.bundle --lolbas-url ../shared/corpora/lolbas.bundle
    """
    from .parsers import ParserFailed
    from .progress import make_progress
    from .refresh import RefreshOptions, refresh as run_refresh
    from .sources import SourceError, SourceSpec, clone_path

    names = source or ["sigma", "lolbas"]
    for name in names:
        _choice("--source", name, ("sigma", "lolbas"))
    _finite("--max-file-mb", max_file_mb, 0, 1024)
    if not math.isfinite(wait) or wait < 0:
        raise typer.BadParameter(f"{wait} is not a number of seconds (0 or more)", param_hint="--wait")
    folder = _data_dir(data_dir)
    try:
        specs = [SourceSpec.default(n, sigma_url if n == "sigma" else lolbas_url,
                                    sigma_branch if n == "sigma" else lolbas_branch,
                                    clone_path(folder, n)) for n in names]
    except SourceError as exc:  # a refused URL or branch, given here: a usage error
        raise UsageError(str(exc)) from None
    options = RefreshOptions(folder, specs, full=full, wait=wait, jobs=jobs,
                             max_file_bytes=int(max_file_mb * 1024 * 1024), allow_shrink=allow_shrink)
    progress = make_progress(quiet=quiet or as_json, verbose=verbose, log_file=log_file)
    try:
        with progress:
            manifest = run_refresh(options, progress)
    except (ParserFailed, SourceError) as exc:  # a parser process died; a clone lost an object
        raise SourceFailure(f"{exc}: refresh abandoned, the previous index is kept") from exc
    except OSError as exc:
        raise _os_error(exc, options.data_dir) from None
    if as_json:
        _print_json(manifest.to_dict())
    elif not quiet:
        from .report import manifest_lines
        for line in manifest_lines(manifest.to_dict()):
            _echo(line)
    raise typer.Exit(ExitCode(manifest.exit_code))


@app.command()
def search(
    queries: List[str] = typer.Argument(None, help="Names: psr.exe, PSR.EXE, psr, C:\\Windows\\System32\\psr.exe, cert*.exe"),
    data_dir: Optional[Path] = DataDir,
    source: Optional[str] = typer.Option(None, "--source", help="Only sigma or lolbas."),
    field: Optional[str] = typer.Option(None, "--field", help="Only this detection field (Image, CommandLine, ...)."),
    role: List[str] = typer.Option([], "--role", help="Only these roles (process, parent, command_line, ...)."),
    context: Optional[str] = typer.Option(None, "--context", help="selection or filter."),
    no_inferred: bool = typer.Option(False, "--no-inferred", help="Leave out bare names recognised without extension."),
    detects: bool = typer.Option(False, "--detects", help="Only rules that detect the binary (verdict runs, parent, target, loads or invoked)."),
    verdict: List[str] = typer.Option([], "--verdict", help="Only rules with this verdict (repeatable or a comma list): "
                                      "runs, parent, target, loads, invoked, artifact, excluded, mentioned, documented."),
    no_comments: bool = typer.Option(False, "--no-comments", help="Leave out names in YAML comments (role comment)."),
    stdin: bool = typer.Option(False, "--stdin", help="Read more names from standard input, one a line."),
    as_json: bool = JsonFlag,
) -> None:
    """Every rule line that names an executable, and what each rule does with it (its verdict).

    On a terminal, a table grouped by rule; into a pipe, one line a mention
    (source:path:line, binary, role, snippet, tab-separated). Exit code 0 when something was
    found, 1 when nothing was, 4 for a usage error.

    Example: indexer search certutil.exe --detects --json
    """
    from .model import ROLES, SOURCES
    from .query import search as run_search
    from .verdicts import parse_verdicts

    _choice("--source", source, SOURCES)
    for value in role:
        _choice("--role", value, ROLES)
    _choice("--context", context, ("selection", "filter"))
    try:
        verdicts = parse_verdicts(verdict)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    names = list(queries or [])
    if stdin:
        names += [line.strip() for line in sys.stdin if line.strip()]
    if not names:
        raise UsageError("give a name to search for (or --stdin)")
    results = []
    with _open_reader(_data_dir(data_dir)) as reader:
        for name in names:
            try:
                results.append(run_search(reader, name, source=source, roles=role, field=field,
                                          context=context, include_inferred=not no_inferred,
                                          detects=detects, verdicts=verdicts,
                                          include_comments=not no_comments))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    if as_json:
        _print_json(results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results])
    elif not sys.stdout.isatty():  # a pipe or a file: one grep-like line a mention, no table
        from .text import printable
        for result in results:
            for m in result.mentions:
                alias = f" (alias of {printable(result.aliases[m.binary])})" if m.binary in result.aliases else ""
                sys.stdout.write(f"{m.source}:{printable(m.path)}:{m.line}\t{printable(m.binary)}{alias}\t{m.role}"
                                 f"{'/filter' if m.context == 'filter' else ''}\t{printable(m.snippet)}\n")
            if not result.mentions and result.binaries:
                sys.stderr.write(printable(f"{', '.join(result.binaries)}: indexed, but no rule passes the filters") + "\n")
            elif not result.mentions:
                hint = f" (did you mean: {', '.join(result.suggestions)}?)" if result.suggestions else ""
                sys.stderr.write(printable(f"no rule mentions {result.query!r}{hint}") + "\n")
    else:
        from .report import print_search
        console = _console()
        for result in results:
            print_search(console, result)
    raise typer.Exit(ExitCode.OK if any(r.mentions for r in results) else ExitCode.NOT_FOUND)


@app.command()
def show(
    target: str = typer.Argument(..., help="A rule id, a rule path (rules/.../x.yml, yml/.../X.yml) or a binary name."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Look for a rule or a binary only (rule, binary)."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonFlag,
) -> None:
    """Everything known about one rule or one binary; says which it found and what else the
    name matches (another rule with the same id, a binary named like a rule id).

    Example: indexer show 2158f96f-43c2-43cb-952a-ab4580f32382
    """
    from .query import find_target

    _choice("--kind", kind, ("rule", "binary"))
    with _open_reader(_data_dir(data_dir)) as reader:
        result = find_target(reader, target, kind)
    if result is None:
        raise NotFound(f"no {kind or 'rule or binary'} {target!r} in the index")
    if as_json:
        _print_json(result)
    else:
        from .report import print_show
        print_show(_console(), result)


@app.command()
def export(
    fmt: str = typer.Option(..., "--format", "-f", help="markdown, csv, json, jsonl, lookup (a SIEM lookup: one row "
                            "per executable), navigator (an ATT&CK Navigator layer) or html (a static site: --output DIR)."),
    output: str = typer.Option("-", "--output", "-o", help="File, directory (markdown: one page per binary) or - for stdout."),
    binary: List[str] = typer.Option([], "--binary", "-b", help="Only these executables (names as in search); "
                                     "navigator: the layer of these, else the LOLBAS coverage layer."),
    formula_guard: bool = typer.Option(True, "--formula-guard/--no-formula-guard",
                                       help="csv, lookup: prefix cells a spreadsheet would run as formulas with ' "
                                       "(turn off for SIEM ingestion)."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonFlag,
) -> None:
    """Misuse tables, SIEM lookups and ATT&CK Navigator layers for other tools.

    Example: indexer export --format lookup --no-formula-guard --output lolbins.csv
    """
    from .export import FORMATS, export_index

    if fmt == "html":
        if output == "-" or binary:
            raise UsageError("--format html writes a site into a directory: give --output DIR (and no --binary)")
        from .web.site import write_site
        with _open_reader(_data_dir(data_dir)) as reader:
            try:
                site = write_site(reader, Path(output))
            except FileExistsError as exc:  # a directory write_site did not make
                raise UsageError(str(exc)) from None
            except OSError as exc:
                raise _os_error(exc, output) from None
        if as_json:
            _print_json(site)
        else:
            typer.echo(f"wrote {site['pages']} pages ({site['binaries']} executables, "
                       f"{site['rules']} rule files) to {site['output']}", err=True)
        return

    if fmt not in FORMATS + ("navigator",):
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS + ('navigator', 'html'))})")
    with _open_reader(_data_dir(data_dir)) as reader:
        try:
            if fmt == "navigator":
                from .navigator import write_layer
                summary = write_layer(reader, output, binary)
            else:
                summary = export_index(reader, fmt, output, binary, guard=formula_guard)
        except ValueError as exc:  # no such binary
            raise NotFound(str(exc)) from None
        except OSError as exc:
            raise _os_error(exc, output) from None
    if as_json:
        _print_json(summary)
    elif output != "-" and fmt == "navigator":
        typer.echo(f"wrote a layer of {summary['techniques']} techniques to {output}", err=True)
    elif output != "-":
        typer.echo(f"wrote {summary['mentions']} mentions of {summary['binaries']} binaries to {output}", err=True)


@app.command()
def stats(data_dir: Optional[Path] = DataDir, as_json: bool = JsonFlag,
          errors: bool = typer.Option(False, "--errors", help="List every file not indexed, with its reason.")) -> None:
    """Files seen, rules parsed, files that failed and why, mentions, binaries, commits.

    Example: indexer stats --json
    """
    from .query import index_stats
    from .report import print_stats

    with _open_reader(_data_dir(data_dir)) as reader:
        data = index_stats(reader)
    if as_json:
        _print_json(data)
    else:
        print_stats(_console(), data, show_all=errors)


@app.command()
def changes(
    data_dir: Optional[Path] = DataDir,
    last: int = typer.Option(5, "--last", min=1, help="How many refreshes to show."),
    since: Optional[str] = typer.Option(None, "--since", help="Only refreshes since this date (YYYY-MM-DD, UTC)."),
    show_all: bool = typer.Option(False, "--all", help="Every binary and every rule changed (not the first 15), "
                                  "and the refreshes that found nothing new too."),
    as_json: bool = JsonFlag,
) -> None:
    """What the last refreshes changed: binaries that gained or lost a detecting rule (verdict
    runs, parent, target, loads or invoked), rules added and removed with title and path.

    Example: indexer changes --last 3 --all
    """
    from .refresh import recent_manifests
    from .report import manifest_lines

    if since is not None:
        import datetime
        try:
            since = datetime.date.fromisoformat(since).isoformat() if len(since) == 10 else None
        except ValueError:
            since = None
        if since is None:
            raise typer.BadParameter("not a date written YYYY-MM-DD (e.g. 2026-01-31)", param_hint="--since")
    items = recent_manifests(_data_dir(data_dir), last, since, include_unchanged=show_all)
    if as_json:
        _print_json(items)
        return
    if not items:
        typer.echo(f"no refresh recorded since {since}" if since else "no refresh recorded yet")
    for item in items:
        for line in manifest_lines(item, every=show_all):
            _echo(line)
        typer.echo("")


@app.command()
def links(
    data_dir: Optional[Path] = DataDir,
    status: List[str] = typer.Option([], "--status", help="Only these statuses: ok, moved, deprecated, deleted, unresolvable."),
    as_json: bool = JsonFlag,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
) -> None:
    """LOLBAS -> Sigma links, each resolved through Sigma's history.

    Example: indexer links --status moved --status deleted
    """
    from . import xref
    from .export import links_csv

    unknown = [s for s in status if s not in xref.LINK_STATUSES]
    if unknown:
        raise UsageError(f"unknown status {unknown[0]!r} (choose from {', '.join(xref.LINK_STATUSES)})")
    with _open_reader(_data_dir(data_dir)) as reader:
        items = xref.links(reader, status)
    if as_json:
        _print_json(items)
    elif as_csv:
        sys.stdout.write(links_csv(items))
    else:
        from .report import print_links
        print_links(_console(), items)


@app.command()
def coverage(
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonFlag,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV, one row per LOLBAS entry."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown report."),
    include_deprecated: bool = typer.Option(False, "--include-deprecated",
                                            help="Count deprecated and unsupported rules too."),
) -> None:
    """For each LOLBAS entry, its tier: running (a Sigma rule detects it running), other
    (as parent, target, loaded module or in a command line), mentioned, none; the rules
    behind it and the rules LOLBAS links; counts per tier, category and ATT&CK technique.

    Example: indexer coverage --json | jq '.summary.tiers'
    """
    from . import xref
    from .export import coverage_csv, coverage_markdown

    with _open_reader(_data_dir(data_dir)) as reader:
        data = xref.coverage(reader, include_retired=include_deprecated)
    if as_json:
        _print_json(data)
    elif as_csv:
        sys.stdout.write(coverage_csv(data))
    elif as_markdown:
        sys.stdout.write(coverage_markdown(data))
    else:
        from .report import print_coverage
        print_coverage(_console(), data)


@app.command()
def serve(
    data_dir: Optional[Path] = DataDir,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default; 0.0.0.0 shows the index to the network)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="uvicorn worker processes, each reading the published index."),
    cors_origin: List[str] = typer.Option([], "--cors-origin", help="Let pages of this origin read the API (repeatable; none by default)."),
) -> None:
    """Serve the index: pages for people, a JSON API for scripts (/api/openapi.json), and the
    MCP server of 'indexer mcp' at /mcp (streamable HTTP) for AI assistants.

    A refresh may run meanwhile: each request reads the index current when it starts.

    Example: indexer serve --port 8080   (then open http://127.0.0.1:8080/)
    """
    from .index import IndexMissing, current_generation

    folder = _data_dir(data_dir)
    if current_generation(folder, strict=True) is None:
        raise IndexMissing(f"no index in {folder}: run 'indexer refresh' first")
    for origin in cors_origin:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
            raise UsageError(f"--cors-origin {origin[:80]!r} is no origin (scheme://host[:port], e.g. https://intranet.example)")
    from .web.app import serve as run_serve

    try:
        run_serve(folder, host, port, workers, tuple(cors_origin))
    except OSError as exc:  # address in use, permission denied, unknown host
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@app.command()
def mcp(data_dir: Optional[Path] = DataDir) -> None:
    """Serve the index to AI assistants over the Model Context Protocol (stdio).

    An assistant starts this command itself and speaks JSON-RPC on its standard input and
    output: nothing else is printed there. Tools: search_binary, show_rule, coverage, links,
    changes, navigator_layer. Without an index the server still starts, and each tool answers
    with the error until 'indexer refresh' has built one.

    Example: indexer mcp --data-dir /opt/indexer/rules_cache
    (in an assistant's configuration: {"command": "/opt/indexer/.venv/bin/indexer",
    "args": ["mcp", "--data-dir", "/opt/indexer/rules_cache"]})
    """
    from .index import current_generation
    from .mcp_server import run_stdio

    folder = _data_dir(data_dir)
    if folder.exists() and not folder.is_dir():
        raise UsageError("not a directory", str(folder))
    if current_generation(folder) is None:
        typer.echo(f"indexer: warning: no index in {folder} yet: run 'indexer refresh' (tools answer with this error until then)",
                   err=True)
    run_stdio(folder)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                      help="Print the version.")) -> None:
    """Index the executables named by Sigma rules and LOLBAS entries, and search them."""


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; its exit code. The one place where errors become exit codes:

    an IndexerError its own (errors.py: no index or a damaged one 4, a source 2, the lock 3...);
    Click's usage errors 4; a reader that closed the pipe 141; Ctrl-C 130; anything unexpected 5,
    with one line naming a log file that holds the traceback. No traceback is ever printed, and
    none exits 0 or 1.
    """
    from typer import exceptions as typer_exc
    from typer._click import exceptions as click

    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        try:
            with command.make_context("indexer", args) as ctx:
                command.invoke(ctx)
            return ExitCode.OK
        finally:
            sys.stdout.flush()
    except typer_exc.Exit as exc:
        return exc.exit_code
    except click.NoArgsIsHelpError as exc:
        sys.stderr.write((exc.ctx.get_help() if exc.ctx else "usage: indexer COMMAND --help") + "\n")
        return ExitCode.USAGE
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _error_line(f"{exc.format_message()}{where}")
        return ExitCode.USAGE
    except click.ClickException as exc:
        _error_line(exc.format_message())
        return ExitCode.USAGE
    except IndexerError as exc:
        _error_line(str(exc))
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (`| head`): nothing more to say, and nothing left to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.BROKEN_PIPE
    except (KeyboardInterrupt, typer_exc.Abort):
        sys.stderr.write("indexer: interrupted\n")
        return ExitCode.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one handler for what nobody expected
        return _internal_error(exc, args)


def _internal_error(exc: BaseException, args: List[str]) -> int:
    """Write the traceback to a log file; one line on stderr naming it; exit code 5."""
    import tempfile
    import time
    import traceback

    from .text import redact_text

    text = (f"indexer {__version__}, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
            f"arguments: {redact_text(repr(args))}\n\n"
            + redact_text("".join(traceback.format_exception(exc))))
    try:
        fd, log = tempfile.mkstemp(prefix="indexer-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
            handle.write(text)
    except OSError:
        log = "(no log: the temporary directory cannot be written)"
    _error_line(f"internal error ({type(exc).__name__}: {str(exc)[:200]}); "
                f"the traceback is in {log} - please report it")
    return ExitCode.INTERNAL


def run() -> None:
    """Console entry point."""
    sys.exit(main())
