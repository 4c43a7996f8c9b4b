"""The `indexer` command: thin Typer commands over the library.

Conventions every command follows (README, "Conventions"): `--help` with an example; `--json`
(one shape whatever the count) and, where rows make sense, `--csv`, chosen by the shared flags
below and printed by one helper (`_show`); options with a fixed vocabulary validated with the
valid values listed; repeatable options also take comma lists; `-` as a name reads names from
standard input; errors are IndexerErrors, turned into an exit code and one line by `main` alone.

Heavy modules (pySigma, GitPython, Rich tables) are imported inside the commands that need
them, so `indexer search` starts quickly.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, TextIO

import typer

from . import __version__
from .errors import ExitCode, IndexerError, NotFound, SourceFailure, UsageError

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Index the executables named by Sigma rules and LOLBAS entries, and search them.\n\n"
    "Example: indexer refresh && indexer search certutil.exe\n\n"
    "Shell completion: indexer --install-completion (bash, zsh, fish).",
)

DATA_DIR_HELP = "Data directory: clones, index, manifests (env INDEXER_DATA_DIR)."


def _data_dir(value: Optional[Path]) -> Path:
    return value or Path(os.environ.get("INDEXER_DATA_DIR") or "rules_cache")


# --- shared options -------------------------------------------------------------------------------


class Kind(enum.StrEnum):
    """What `show` looks for."""

    rule = "rule"
    binary = "binary"


class Context(enum.StrEnum):
    """Detection items that select a binary, or that exclude it."""

    selection = "selection"
    filter = "filter"


def _split(option: str, values: Iterable[str], allowed: Sequence[str] | None) -> list[str]:
    """A repeatable option's values, each also a comma list (`--role a,b --role c`), in order and
    once each; with `allowed`, a usage error (exit 4) listing the valid values for any other."""
    items = list(dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip()))
    for item in items if allowed is not None else ():
        if item not in allowed:
            raise typer.BadParameter(f"{item!r} is not one of: {', '.join(allowed)}", param_hint=option)
    return items


def ListOption(
    option: str,
    help: str,
    allowed: Callable[[], Sequence[str]] | None = None,
    *aliases: str,
    parse: Callable[[List[str]], List[str]] | None = None,
) -> Any:
    """A repeatable option that also takes comma lists. `allowed` (called only when the option is
    used or completed: the vocabularies live in modules `search` need not import) validates the
    values and completes them in the shell, after the last comma too; `parse`, a vocabulary's own
    parser raising ValueError, replaces the check."""

    def check(values: List[str]) -> List[str]:
        if values and not any(v.strip() for value in values for v in value.split(",")):
            raise typer.BadParameter("no value given (an empty list is not every value)", param_hint=option)
        if parse is None:
            return _split(option, values or (), allowed() if allowed else None)
        try:
            return parse(values or [])
        except ValueError as exc:  # its message names the option's values already
            raise UsageError(str(exc)) from None

    def complete(incomplete: str) -> List[str]:
        done, comma, last = incomplete.rpartition(",")
        return [f"{done}{comma}{v}" for v in (allowed() if allowed else ()) if v.startswith(last)]

    return typer.Option(
        [],
        option,
        *aliases,
        help=f"{help} Repeatable, or a comma list.",
        callback=check,
        autocompletion=complete if allowed else None,
    )


def ChoiceOption(
    option: str, help: str, allowed: Callable[[], Sequence[str]], *aliases: str, default: Any = None
) -> Any:
    """An option taking one value of a vocabulary known only when used (`allowed`, as in
    ListOption): a usage error listing the valid values for any other; completed in the shell."""

    def check(value: Optional[str]) -> Optional[str]:
        if value is not None and value not in allowed():
            raise typer.BadParameter(f"{value!r} is not one of: {', '.join(allowed())}", param_hint=option)
        return value

    def complete(incomplete: str) -> List[str]:
        return [v for v in allowed() if v.startswith(incomplete)]

    return typer.Option(default, option, *aliases, help=help, callback=check, autocompletion=complete)


def _roles() -> Sequence[str]:
    from .model import ROLES

    return ROLES


def _sources() -> Sequence[str]:
    from .sources import SOURCES  # the registry: loads YAML and the extractors (no git), only when asked

    return tuple(SOURCES)


def _platforms() -> Sequence[str]:
    from .model import PLATFORMS

    return PLATFORMS


def _verdicts() -> Sequence[str]:
    from .verdicts import VERDICTS

    return VERDICTS


def _parse_verdicts(values: List[str]) -> List[str]:
    from .verdicts import parse_verdicts

    return parse_verdicts(values)


def _rule_sets() -> Sequence[str]:
    return ("sigma", "elastic", "splunk")  # LOLBAS's Detection keys (xref: no registry on this path)


def _link_statuses() -> Sequence[str]:
    from .xref import LINK_STATUSES

    return LINK_STATUSES


DataDir = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, show_default="rules_cache")
JsonFlag = typer.Option(False, "--json", help="Print JSON for machines instead of tables.")
CsvFlag = typer.Option(False, "--csv", help="Print CSV: a header, then one row per item.")
AtOption = typer.Option(
    None,
    "--at",
    metavar="DATE",
    help="As of DATE (YYYY-MM-DD or ISO date and time, UTC): each source at its last first-parent "
    "commit then, read from the history (refresh --history-since).",
)


# --- one output helper ----------------------------------------------------------------------------


class Format(enum.StrEnum):
    """The forms a command's answer takes; the shared flags (--json, --csv, --markdown) choose one."""

    table = "table"  # for a person: Rich tables on a terminal (plain lines where a command says so)
    json = "json"
    csv = "csv"
    markdown = "markdown"
    navigator = "navigator"  # an ATT&CK Navigator layer (JSON)


def _format(**flags: bool) -> Format:
    """The format the flags chose (`table` if none); a usage error if more than one was given."""
    chosen = [name for name, given in flags.items() if given]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join('--' + c for c in chosen)} cannot be used together: choose one output format")
    return Format(chosen[0]) if chosen else Format.table


@dataclass(frozen=True)
class View:
    """One command's answer in each of its forms; `_show` prints the one chosen."""

    data: Any  # the JSON answer (one shape whatever the count)
    table: Callable[[], None]  # for a person
    csv: Callable[[TextIO], None] | None = None  # where rows make sense
    markdown: Callable[[], str] | None = None
    navigator: Callable[[], Any] | None = None  # an ATT&CK Navigator layer, where techniques make sense


def _show(view: View, fmt: Format) -> None:
    if fmt is Format.json or (fmt is Format.navigator and view.navigator is not None):
        _print_json(view.data if fmt is Format.json else view.navigator())
    elif fmt is Format.csv and view.csv is not None:
        view.csv(sys.stdout)
    elif fmt is Format.markdown and view.markdown is not None:
        sys.stdout.write(view.markdown())
    else:
        view.table()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


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


def _per_source(option: str, pairs: list[str], named: dict[str, str | None], chosen: list[str]) -> dict[str, str]:
    """NAME=VALUE options (and the --sigma-url style ones in `named`) as {name: value}; a usage
    error for a source not refreshed, or given twice."""
    from .sources import SOURCES

    found: dict[str, str] = {}
    given = [(p.partition("=")[0].strip(), p.partition("=")[2], p) for p in pairs]
    given += [(name, value, value) for name, value in named.items() if value is not None]
    for name, value, raw in given:
        if not name or not value:
            raise typer.BadParameter(
                f"{raw!r} is not NAME=URL" if option == "--url" else f"{raw!r} is not NAME=BRANCH", param_hint=option
            )
        if name not in SOURCES:
            raise typer.BadParameter(f"unknown source {name!r} (choose from {', '.join(SOURCES)})", param_hint=option)
        if name not in chosen:
            raise typer.BadParameter(f"{name} is not refreshed (--sources {','.join(chosen)})", param_hint=option)
        if name in found:
            raise typer.BadParameter(
                f"{name}: two {'URLs' if option == '--url' else 'branches'} given", param_hint=option
            )
        found[name] = value
    return found


def _finite(option: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value) or not low < value <= high:
        raise typer.BadParameter(f"{value} is not a number above {low:g} and at most {high:g}", param_hint=option)


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
                for segment in buffer
            )

    return SafeConsole(highlight=False, soft_wrap=False, markup=False)


def _keep_newlines(text: str, clean: Any) -> str:
    """`clean` applied to each line of a rendered segment (Rich's own line breaks stay)."""
    return "\n".join(clean(part) for part in text.split("\n")) if "\n" in text else clean(text)


def _open_reader(data_dir: Path, at: str | None = None) -> Any:
    """The index; with `at`, the index as of that date, read from the history store."""
    if at is not None:
        from .chronicle import open_at

        return open_at(data_dir, at)  # HistoryError (an IndexerError): exit 4
    from .index import IndexReader

    return IndexReader(data_dir)  # IndexMissing (an IndexerError): exit 4


def _names(queries: Iterable[str], stdin: bool) -> list[str]:
    """The names to search for: the arguments, with `-` (or --stdin, after them) replaced by the
    lines of standard input, one name a line; blank lines and `#` comment lines skipped, and a
    byte order mark (a list saved by Notepad)."""
    queries = list(queries)
    lines: list[str] = []
    if stdin or "-" in queries:
        lines = [line.strip().lstrip("\ufeff") for line in sys.stdin]
        lines = [line for line in lines if line and not line.startswith("#")]
    names = [name for query in queries for name in (lines if query == "-" else [query])]
    return names + lines if stdin and "-" not in queries else names


def _default_sources(data_dir: Optional[Path], given: set[str]) -> list[str]:
    """The sources a refresh reads when `--sources` names none: in a new data directory every
    registered one; else the ones it has (their clones) and the ones given a URL (`--url`,
    `--sigma-url`, $INDEXER_<NAME>_URL). A refresh of a data directory filled from mirrors never
    fetches a source it does not have from upstream; `--url NAME=URL` or `--sources` adds one."""
    from .repository import clone_path, env_var
    from .sources import SOURCES

    folder = _data_dir(data_dir)
    wanted = {n for n in SOURCES if n in given or os.environ.get(env_var(n)) or clone_path(folder, n).exists()}
    return [n for n in SOURCES if n in wanted] if wanted else list(SOURCES)


@app.command()
def refresh(
    data_dir: Optional[Path] = DataDir,
    url: List[str] = typer.Option(
        [],
        "--url",
        metavar="NAME=URL",
        help="Where source NAME comes from: https://, ssh://, a local repository or a git "
        "bundle (repeatable; env INDEXER_<NAME>_URL; default: the URL of the last "
        "refresh, else upstream).",
    ),
    branch: List[str] = typer.Option(
        [], "--branch", metavar="NAME=BRANCH", help="Source NAME's branch (repeatable; default: the source's own)."
    ),
    sigma_url: Optional[str] = typer.Option(None, help="Same as --url sigma=URL."),
    lolbas_url: Optional[str] = typer.Option(None, help="Same as --url lolbas=URL."),
    sigma_branch: Optional[str] = typer.Option(None, help="Same as --branch sigma=BRANCH."),
    lolbas_branch: Optional[str] = typer.Option(None, help="Same as --branch lolbas=BRANCH."),
    source: List[str] = ListOption(
        "--sources",
        "Refresh only these sources (default: those the data dir has and those given a URL; all in a new one).",
        _sources,
        "--source",
    ),
    full: bool = typer.Option(False, "--full", help="Rebuild everything instead of the changed files."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for another refresh to finish."),
    jobs: int = typer.Option(0, "--jobs", min=0, max=256, help="Parser processes (0: one per core)."),
    max_file_mb: float = typer.Option(
        4.0, "--max-file-mb", help="Skip rule files larger than this (MB, above 0, at most 1024)."
    ),
    allow_shrink: bool = typer.Option(
        False, "--allow-shrink", help="Publish even if a source lost most of its rule files."
    ),
    as_json: bool = JsonFlag,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Every step as a log line."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Also append log lines to this file."),
    history_since: Optional[str] = typer.Option(
        None,
        "--history-since",
        metavar="DATE",
        help="Keep the history of every source from DATE (YYYY-MM-DD, or 'all') for --at, timeline and "
        "changes --until; later refreshes extend it (default: as the data dir keeps it, none at first).",
    ),
) -> None:
    """Fetch the sources, reindex what changed, print what changed.

    Exit codes: 0 ok, 1 done but some files failed, 2 a source or a parser process failed
    (the previous index kept), 3 locked by another refresh, 4 usage error.

    \b
    Example: indexer refresh --url sigma=../shared/corpora/sigma.bundle --url lolbas=../shared/corpora/lolbas.bundle
    Example: indexer refresh --history-since 2019-01-01
    """
    from .parsers import ParserFailed
    from .progress import make_progress
    from .refresh import RefreshOptions, refresh as run_refresh
    from .repository import SourceError, clone_path
    from .sources import SOURCES

    given = {p.partition("=")[0].strip() for p in url} | {
        n for n, v in (("sigma", sigma_url), ("lolbas", lolbas_url)) if v
    }
    names = source or _default_sources(data_dir, given)
    urls = _per_source("--url", url, {"sigma": sigma_url, "lolbas": lolbas_url}, names)
    branches = _per_source("--branch", branch, {"sigma": sigma_branch, "lolbas": lolbas_branch}, names)
    _finite("--max-file-mb", max_file_mb, 0, 1024)
    if not math.isfinite(wait) or wait < 0:
        raise typer.BadParameter(f"{wait} is not a number of seconds (0 or more)", param_hint="--wait")
    if history_since is not None and history_since != "all":
        from .chronicle import parse_date

        parse_date(history_since, "--history-since")  # HistoryError (exit 4) if not a date
    folder = _data_dir(data_dir)
    try:
        specs = [SOURCES[n].spec(urls.get(n), branches.get(n), clone_path(folder, n)) for n in names]
    except SourceError as exc:  # a refused URL or branch, given here: a usage error
        raise UsageError(str(exc)) from None
    options = RefreshOptions(
        folder,
        specs,
        full=full,
        wait=wait,
        jobs=jobs,
        max_file_bytes=int(max_file_mb * 1024 * 1024),
        allow_shrink=allow_shrink,
        history_since="" if history_since == "all" else history_since,
    )
    progress = make_progress(quiet=quiet or as_json, verbose=verbose, log_file=log_file)
    try:
        with progress:
            manifest = run_refresh(options, progress)
    except (ParserFailed, SourceError) as exc:  # a parser process died; a clone lost an object
        raise SourceFailure(f"{exc}: refresh abandoned, the previous index is kept") from exc
    except OSError as exc:
        raise _os_error(exc, options.data_dir) from None

    def table() -> None:
        from .report import manifest_lines

        for line in manifest_lines(manifest.to_dict()) if not quiet else ():
            _echo(line)

    _show(View(manifest.to_dict(), table), _format(json=as_json))
    raise typer.Exit(ExitCode(manifest.exit_code))


@app.command()
def search(
    queries: List[str] = typer.Argument(
        None,
        help="Names: psr.exe, PSR.EXE, psr, C:\\Windows\\System32\\psr.exe, "
        "cert*.exe; - reads them from standard input.",
    ),
    data_dir: Optional[Path] = DataDir,
    source: Optional[str] = typer.Option(
        None,
        "--source",
        help="Only this source (sigma, lolbas, ...: one the index holds).",
        autocompletion=lambda incomplete: [v for v in _sources() if v.startswith(incomplete)],
    ),
    field: Optional[str] = typer.Option(None, "--field", help="Only this detection field (Image, CommandLine, ...)."),
    role: List[str] = ListOption("--role", "Only these roles (process, parent, command_line, ...).", _roles),
    context: Optional[Context] = typer.Option(
        None, "--context", help="Only detection items that select the binary, or only those that exclude it."
    ),
    platform: Optional[str] = ChoiceOption(
        "--platform", "Only rules for this platform (windows, linux, macos).", _platforms
    ),
    no_inferred: bool = typer.Option(False, "--no-inferred", help="Leave out bare names recognised without extension."),
    detects: bool = typer.Option(
        False, "--detects", help="Only rules that detect the binary (verdict runs, parent, target, loads or invoked)."
    ),
    verdict: List[str] = ListOption(
        "--verdict",
        "Only rules with these verdicts: runs, parent, target, loads, invoked, "
        "artifact, masquerade, excluded, mentioned, documented.",
        _verdicts,
        parse=_parse_verdicts,
    ),
    no_comments: bool = typer.Option(False, "--no-comments", help="Leave out names in YAML comments (role comment)."),
    stdin: bool = typer.Option(
        False,
        "--stdin",
        help="Read more names from standard input, one a line (blank lines and # comment lines skipped).",
    ),
    at: Optional[str] = AtOption,
    as_json: bool = JsonFlag,
    as_csv: bool = CsvFlag,
) -> None:
    """Rule lines naming an executable, and each rule's verdict.

    On a terminal, a table grouped by rule, with each rule's verdict; into a pipe, one line a
    mention (source:path:line, binary, role, snippet, tab-separated). --json prints a list with
    one object per name searched for, in order (one name: a list of one); --csv one row per
    mention, the columns of 'export --format csv'. Exit code 0 when something was found, 1 when
    nothing was, 4 for a usage error.

    \b
    Example: indexer search certutil.exe --detects --json
    Example: indexer search mshta.exe --at 2021-06-01
    """
    from .query import search as run_search

    fmt = _format(json=as_json, csv=as_csv)
    names = _names(queries or [], stdin)
    if not names:
        raise UsageError("give a name to search for (or - or --stdin to read names from standard input)")
    results = []
    with _open_reader(_data_dir(data_dir), at) as reader:
        if source is not None and source not in reader.sources:  # the sources indexed: no registry loaded here
            raise typer.BadParameter(f"{source!r} is not one of: {', '.join(reader.sources)}", param_hint="--source")
        for name in names:
            try:
                results.append(
                    run_search(
                        reader,
                        name,
                        source=source,
                        roles=role,
                        field=field,
                        context=context,
                        platform=platform,
                        include_inferred=not no_inferred,
                        detects=detects,
                        verdicts=verdict,
                        include_comments=not no_comments,
                    )
                )
            except ValueError as exc:
                raise UsageError(str(exc)) from None

    def table() -> None:
        if sys.stdout.isatty():
            from .report import print_search

            console = _console()
            for result in results:
                print_search(console, result)
        else:  # a pipe or a file: one grep-like line a mention, no table
            _search_lines(results)

    def csv(stream: TextIO) -> None:
        from .export import write_csv

        write_csv([m for result in results for m in result.mentions], stream)

    _show(View([r.to_dict() for r in results], table, csv=csv), fmt)
    raise typer.Exit(ExitCode.OK if any(r.mentions for r in results) else ExitCode.NOT_FOUND)


def _search_lines(results: Iterable[Any]) -> None:
    """Search results as one tab-separated line a mention; what found nothing said on stderr."""
    from .text import printable

    for result in results:
        for m in result.mentions:
            alias = f" (alias of {printable(result.aliases[m.binary])})" if m.binary in result.aliases else ""
            sys.stdout.write(
                f"{m.source}:{printable(m.path)}:{m.line}\t{printable(m.binary)}{alias}\t{m.role}"
                f"{'/filter' if m.context == 'filter' else ''}\t{printable(m.snippet)}\n"
            )
        if not result.mentions and result.binaries:
            sys.stderr.write(printable(f"{', '.join(result.binaries)}: indexed, but no rule passes the filters") + "\n")
        elif not result.mentions:
            hint = f" (did you mean: {', '.join(result.suggestions)}?)" if result.suggestions else ""
            sys.stderr.write(printable(f"no rule mentions {result.query!r}{hint}") + "\n")


@app.command()
def show(
    target: str = typer.Argument(..., help="A rule id, a rule path (rules/.../x.yml, yml/.../X.yml) or a binary name."),
    kind: Optional[Kind] = typer.Option(None, "--kind", help="Look for a rule or a binary only."),
    data_dir: Optional[Path] = DataDir,
    at: Optional[str] = AtOption,
    as_json: bool = JsonFlag,
) -> None:
    """Everything known about one rule or one binary.

    Says which it found and what else the name matches (another rule with the same id, a
    binary named like a rule id). Exit code 1 when nothing matches. --at DATE: the rule or
    binary as of that date (a rule by the path or id it had then), with each source's commit.

    \b
    Example: indexer show 2158f96f-43c2-43cb-952a-ab4580f32382
    Example: indexer show psr.exe --at 2020-01-01
    Example: indexer show 2158f96f-43c2-43cb-952a-ab4580f32382 --at 2021-01-01 --json
    """
    from .query import find_target

    with _open_reader(_data_dir(data_dir), at) as reader:
        result = find_target(reader, target, kind)
        if result is not None and at is not None:
            result = {**result, "as_of": reader.as_of()}
    if result is None:
        raise NotFound(f"no {kind or 'rule or binary'} {target!r} in the index" + (f" as of {at}" if at else ""))

    def table() -> None:
        from .report import print_show

        print_show(_console(), result)

    _show(View(result, table), _format(json=as_json))


def _export_formats() -> Sequence[str]:
    from .export import FORMATS

    return (*FORMATS, "navigator", "html")


@app.command()
def export(
    fmt: str = ChoiceOption(
        "--format",
        "markdown, csv, json, jsonl, lookup (a SIEM lookup: one row per executable), "
        "navigator (an ATT&CK Navigator layer) or html (a static site: --output DIR).",
        _export_formats,
        "-f",
        default=...,
    ),
    output: str = typer.Option(
        "-", "--output", "-o", help="File, directory (markdown: one page per binary) or - for stdout."
    ),
    binary: List[str] = ListOption(
        "--binary",
        "Only these executables (names as in search); navigator: the layer of these, else the LOLBAS coverage layer.",
        None,
        "-b",
    ),
    formula_guard: bool = typer.Option(
        True,
        "--formula-guard/--no-formula-guard",
        help="csv, lookup: prefix cells a spreadsheet would run as formulas with ' (turn off for SIEM ingestion).",
    ),
    data_dir: Optional[Path] = DataDir,
    at: Optional[str] = AtOption,
    as_json: bool = JsonFlag,
) -> None:
    """Tables, SIEM lookups and ATT&CK layers for other tools.

    Misuse tables (Markdown, CSV, JSON, JSON lines), a SIEM lookup, an ATT&CK Navigator layer,
    or a static site. --json prints a summary of what was written (on stdout; the export itself
    goes to --output).

    \b
    Example: indexer export --format lookup --no-formula-guard --output lolbins.csv
    Example: indexer export --format csv --at 2022-01-01 --output mentions-2022.csv
    Example: indexer export --format navigator --at 2021-06-01 --output coverage-2021.json
    Example: indexer export --format html --at 2022-06-15 --output site-2022
    """
    from .export import export_index

    if fmt == "html":
        if output == "-" or binary:
            raise UsageError("--format html writes a site into a directory: give --output DIR (and no --binary)")
        from .web.site import write_site

        with _open_reader(_data_dir(data_dir), at) as reader:
            try:
                site = write_site(reader, Path(output))
            except FileExistsError as exc:  # a directory write_site did not make
                raise UsageError(str(exc)) from None
            except OSError as exc:
                raise _os_error(exc, output) from None
        _show(
            View(
                site,
                lambda: typer.echo(
                    f"wrote {site['pages']} pages ({site['binaries']} executables, "
                    f"{site['rules']} rule files) to {site['output']}",
                    err=True,
                ),
            ),
            _format(json=as_json),
        )
        return

    if as_json and output == "-":
        raise UsageError("--json with --output -: the summary and the export would share stdout (give --output FILE)")
    with _open_reader(_data_dir(data_dir), at) as reader:
        try:
            if fmt == "navigator":
                from .navigator import write_layer

                summary = write_layer(reader, output, binary)
            else:
                summary = export_index(reader, fmt, output, binary, guard=formula_guard)
        except ValueError as exc:  # no such binary
            raise NotFound(str(exc)) from None
        except BrokenPipeError:  # the reader of --output - went away: main's 141
            raise
        except OSError as exc:
            raise _os_error(exc, output) from None

    def table() -> None:
        if output != "-" and fmt == "navigator":
            typer.echo(f"wrote a layer of {summary['techniques']} techniques to {output}", err=True)
        elif output != "-":
            typer.echo(f"wrote {summary['mentions']} mentions of {summary['binaries']} binaries to {output}", err=True)

    _show(View(summary, table), _format(json=as_json))


STATS_CSV_COLUMNS = ("source", "path", "status", "reason")


@app.command()
def stats(
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonFlag,
    as_csv: bool = typer.Option(
        False, "--csv", help="Print CSV, one row per file not indexed or with warnings: source, path, status, reason."
    ),
    errors: bool = typer.Option(False, "--errors", help="List every file not indexed, with its reason."),
) -> None:
    """Files seen, rules parsed, files that failed and why, commits.

    Also mentions and binaries per source, and the index's generation.

    \b
    Example: indexer stats --json
    """
    from .query import index_stats

    with _open_reader(_data_dir(data_dir)) as reader:
        data = index_stats(reader)

    def table() -> None:
        from .report import print_stats

        print_stats(_console(), data, show_all=errors)

    def csv(stream: TextIO) -> None:
        from .export import csv_cell, csv_writer

        writer = csv_writer(stream)
        writer.writerow(STATS_CSV_COLUMNS)
        for problem in data["problems"]:
            writer.writerow([csv_cell(problem[c]) for c in STATS_CSV_COLUMNS])

    _show(View(data, table, csv=csv), _format(json=as_json, csv=as_csv))


@app.command()
def changes(
    data_dir: Optional[Path] = DataDir,
    last: int = typer.Option(5, "--last", min=1, help="How many refreshes to show."),
    since: Optional[str] = typer.Option(None, "--since", help="Only refreshes since this date (YYYY-MM-DD, UTC)."),
    until: Optional[str] = typer.Option(
        None,
        "--until",
        metavar="DATE",
        help="With --since: what changed between the two dates, read from the history (refresh "
        "--history-since), whatever refreshes ran meanwhile (YYYY-MM-DD or ISO, UTC).",
    ),
    show_all: bool = typer.Option(
        False,
        "--all",
        help="Every binary and every rule changed (not the first 15), and the refreshes that found nothing new too.",
    ),
    as_json: bool = JsonFlag,
) -> None:
    """What the last refreshes changed.

    Binaries that gained or lost a detecting rule (verdict runs, parent, target, loads or
    invoked), rules added and removed with title and path. --json prints a list of manifests,
    newest first. With --since where the history is kept (refresh --history-since): what changed
    from that date to the commits indexed (or --until), read from the history (--json: one
    object); exit 4 if the history does not reach back to the date. Without history: the
    refreshes recorded since the date, and a note on stderr saying so.

    \b
    Example: indexer changes --last 3 --all
    Example: indexer changes --since 2024-01-01 --until 2024-07-01
    """
    from .chronicle import history_since, iso

    if until is not None or (since is not None and history_since(_data_dir(data_dir)) is not None):
        from .timeline import changes_between, changes_lines

        if since is None:
            raise UsageError("--until needs --since: the history between two dates")
        result = changes_between(_data_dir(data_dir), since, until or iso(int(time.time())))

        def history_table() -> None:
            for line in changes_lines(result, None if show_all else 15):
                _echo(line)

        _show(View(result.to_dict(), history_table), _format(json=as_json))
        return
    from .manifest import recent_manifests

    if since is not None:
        import datetime

        try:
            since = datetime.date.fromisoformat(since).isoformat() if len(since) == 10 else None
        except ValueError:
            since = None
        if since is None:
            raise typer.BadParameter("not a date written YYYY-MM-DD (e.g. 2026-01-31)", param_hint="--since")
        typer.echo(
            f"indexer: note: no history kept here: these are the refreshes recorded since {since} "
            "('indexer refresh --history-since DATE' keeps the history)",
            err=True,
        )
    items = recent_manifests(_data_dir(data_dir), last, since, include_unchanged=show_all)

    def table() -> None:
        from .report import manifest_lines

        if not items:
            typer.echo(f"no refresh recorded since {since}" if since else "no refresh recorded yet")
        for item in items:
            for line in manifest_lines(item, every=show_all):
                _echo(line)
            typer.echo("")

    _show(View(items, table), _format(json=as_json))


@app.command()
def timeline(
    name: str = typer.Argument(..., help="A binary: psr.exe, PSR.EXE, psr, C:\\Windows\\System32\\psr.exe."),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonFlag,
) -> None:
    """A binary's detection history, rule by rule.

    Each rule's verdict on it over time (renames followed), the dates each source gained and
    lost detection, and its LOLBAS entry's history. Read from the history store (refresh --history-since). Exit code 1 when no rule ever
    named it.

    \b
    Example: indexer timeline psr.exe
    """
    from .timeline import timeline as run_timeline

    result = run_timeline(_data_dir(data_dir), name)

    def table() -> None:
        from .timeline import timeline_lines

        for line in timeline_lines(result):
            _echo(line)

    _show(View(result.to_dict(), table), _format(json=as_json))


@app.command()
def links(
    data_dir: Optional[Path] = DataDir,
    status: List[str] = ListOption(
        "--status", "Only these statuses: ok, moved, deprecated, deleted, unresolvable.", _link_statuses
    ),
    rule_set: List[str] = ListOption("--source", "Only links to these rule sets: sigma, elastic, splunk.", _rule_sets),
    as_json: bool = JsonFlag,
    as_csv: bool = CsvFlag,
    at: Optional[str] = AtOption,
) -> None:
    """LOLBAS links to Sigma, Elastic and Splunk rules, resolved.

    With --at DATE: the links the entries declared then, resolved against the rules then.

    \b
    Example: indexer links --status moved,deleted --source elastic
    Example: indexer links --at 2021-01-01 --json
    """
    from . import xref

    with _open_reader(_data_dir(data_dir), at) as reader:
        items = xref.links(reader, status, rule_set)

    def table() -> None:
        from .report import print_links

        print_links(_console(), items)

    def csv(stream: TextIO) -> None:
        from .export import links_csv

        stream.write(links_csv(items))

    _show(View(items, table, csv=csv), _format(json=as_json, csv=as_csv))


@app.command()
def coverage(
    data_dir: Optional[Path] = DataDir,
    as_json: bool = JsonFlag,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV, one row per LOLBAS entry."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown report."),
    include_deprecated: bool = typer.Option(
        False, "--include-deprecated", help="Count deprecated and unsupported rules too."
    ),
    at: Optional[str] = AtOption,
) -> None:
    """Each LOLBAS entry's coverage tier, and the rules behind it.

    Tiers: running (a Sigma rule detects it running), other (as parent, target, loaded module
    or in a command line), mentioned, none; the rules LOLBAS links; counts per tier, category
    and ATT&CK technique; rule_sets: the tiers by each detection source alone and together.

    \b
    Example: indexer coverage --json | jq '.summary.tiers'
    Example: indexer coverage --at 2021-01-01 --json | jq '.summary.tiers'
    """
    from .joins import coverage as find_coverage

    fmt = _format(json=as_json, csv=as_csv, markdown=as_markdown)
    with _open_reader(_data_dir(data_dir), at) as reader:  # as of a date: AsOf.read_json's coverage then
        data = find_coverage(reader, include_retired=include_deprecated)

    def table() -> None:
        from .report import print_coverage

        print_coverage(_console(), data)

    def csv(stream: TextIO) -> None:
        from .export import coverage_csv

        stream.write(coverage_csv(data))

    def markdown() -> str:
        from .export import coverage_markdown

        return coverage_markdown(data)

    _show(View(data, table, csv=csv, markdown=markdown), fmt)


@app.command()
def gaps(
    data_dir: Optional[Path] = DataDir,
    rule_set: List[str] = ListOption(
        "--rule-set", "Count only these detection sources' rules (default: every one indexed: sigma, ...)."
    ),
    platform: Optional[str] = ChoiceOption("--platform", "Only this platform (windows, linux, macos).", _platforms),
    show_all: bool = typer.Option(
        False, "--all", help="List every binary attackers use with the rule sets that detect it, not only the gaps."
    ),
    min_sources: int = typer.Option(
        1, "--min-sources", min=1, help="Only binaries that at least this many sources say attackers use."
    ),
    limit: int = typer.Option(25, "--limit", min=0, help="Rows shown per platform in the table (0: every one)."),
    as_json: bool = JsonFlag,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV, one row per binary and platform."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown report."),
    as_navigator: bool = typer.Option(
        False, "--navigator", help="Print an ATT&CK Navigator layer: techniques scored by their gaps."
    ),
    at: Optional[str] = AtOption,
) -> None:
    """Binaries attackers use that no rule detects, per platform.

    Attackers use: a LOLBAS entry, an atomic test, GTFOBins, LOOBins or a HijackLibs host names
    it. Detected: a rule (not deprecated or unsupported) of a detection source detects it
    running or invoked by another process (verdict runs or invoked) on its platform. Ranked by
    how many sources name it, then by how many files; the summary counts each rule set alone and
    together. --json, --csv and --markdown list every gap (the table the first --limit).

    \b
    Example: indexer gaps --platform windows --limit 10
    Example: indexer gaps --platform linux --at 2022-01-01 --json
    """
    from .joins import gaps as find_gaps

    fmt = _format(json=as_json, csv=as_csv, markdown=as_markdown, navigator=as_navigator)
    with _open_reader(_data_dir(data_dir), at) as reader:
        try:
            report = find_gaps(reader, rule_sets=rule_set, platform=platform, every=show_all, min_sources=min_sources)
        except ValueError as exc:  # not a detection source of the index
            raise typer.BadParameter(str(exc), param_hint="--rule-set") from None
        data = report.to_dict()

    def table() -> None:
        from .report import gaps_lines

        for line in gaps_lines(data, limit or None):
            _echo(line)

    def csv(stream: TextIO) -> None:
        from .export import csv_cell, csv_writer

        writer = csv_writer(stream)
        columns = ("platform", "binary", "sources", "files", "detected_by", "verdicts", "techniques", "named_in")
        writer.writerow(columns)
        for row in data["rows"]:
            verdicts = ";".join(f"{k}:{','.join(v)}" for k, v in row["verdicts"].items())
            writer.writerow([csv_cell(verdicts if c == "verdicts" else row[c]) for c in columns])

    def markdown() -> str:
        from .joins import gaps_markdown

        return gaps_markdown(report)

    def navigator() -> Any:
        from .navigator import gaps_layer

        return gaps_layer(reader, report).to_dict()

    _show(View(data, table, csv=csv, markdown=markdown, navigator=navigator), fmt)


@app.command()
def tests(
    name: str = typer.Argument(..., help="A binary name, as search reads it: rundll32.exe, certutil, cert*.exe."),
    data_dir: Optional[Path] = DataDir,
    rule_set: List[str] = ListOption("--rule-set", "Only these detection sources' rules (default: every one)."),
    as_json: bool = JsonFlag,
    at: Optional[str] = AtOption,
) -> None:
    """Atomic tests that run a binary, and the rules that should fire.

    For each atomic-red-team test whose command, cleanup or steps name the binary: the rules
    (not deprecated or unsupported) that detect one of the test's binaries (verdict runs,
    parent, target, loads or invoked) and carry one of its ATT&CK techniques; and the
    detections that name the test's guid (Splunk's tags.atomic_guid), when indexed. Exit code 1
    when no test names it.

    \b
    Example: indexer tests certutil.exe --json
    Example: indexer tests certutil.exe --at 2023-01-01
    """
    from .joins import tests as find_tests

    with _open_reader(_data_dir(data_dir), at) as reader:
        try:
            report = find_tests(reader, name, rule_sets=rule_set).to_dict()
        except ValueError as exc:  # a name that names no file, or not a detection source
            raise UsageError(str(exc)) from None

    def table() -> None:
        from .report import tests_lines

        for line in tests_lines(report):
            _echo(line)

    _show(View(report, table), _format(json=as_json))
    if not report["tests"]:
        raise typer.Exit(ExitCode.NOT_FOUND)


@app.command()
def serve(
    data_dir: Optional[Path] = DataDir,
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on (loopback by default; 0.0.0.0 shows the index to the network).",
    ),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="uvicorn worker processes, each reading the published index."
    ),
    cors_origin: List[str] = ListOption("--cors-origin", "Let pages of this origin read the API (none by default)."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Say where it listens as one JSON line on stdout "
        "(url, host, port, workers, data_dir) instead of a line on stderr.",
    ),
) -> None:
    """Serve the index over HTTP: pages, a JSON API and MCP.

    Pages for people, a JSON API for scripts (/api/openapi.json), and the MCP server of
    'indexer mcp' at /mcp (streamable HTTP) for AI assistants. A refresh may run meanwhile:
    each request reads the index current when it starts.

    \b
    Example: indexer serve --port 8080   (then open http://127.0.0.1:8080/)
    """
    from .index import IndexMissing, current_generation

    folder = _data_dir(data_dir)
    if current_generation(folder, strict=True) is None:
        raise IndexMissing(f"no index in {folder}: run 'indexer refresh' first")
    for origin in cors_origin:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
            raise UsageError(
                f"--cors-origin {origin[:80]!r} is no origin (scheme://host[:port], e.g. https://intranet.example)"
            )
    from .web.app import serve as run_serve

    try:
        run_serve(folder, host, port, workers, tuple(cors_origin), as_json=as_json)
    except OSError as exc:  # address in use, permission denied, unknown host
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@app.command()
def mcp(data_dir: Optional[Path] = DataDir) -> None:
    """Serve the index to AI assistants over MCP (stdio).

    An assistant starts this command itself and speaks JSON-RPC (the Model Context Protocol)
    on its standard input and output: nothing else is printed there, so there is no --json.
    Tools: search_binary, show_rule, coverage, gaps, atomic_tests, links, changes, navigator_layer. Without an index
    the server still starts, and each tool answers with the error until 'indexer refresh' has
    built one.

    \b
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
        typer.echo(
            f"indexer: warning: no index in {folder} yet: run 'indexer refresh' (tools answer with this error until then)",
            err=True,
        )
    run_stdio(folder)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Index the executables named by Sigma rules and LOLBAS entries, and search them."""


_COMMAND: list[Any] = []


def _click_command() -> Any:
    """The Click command Typer makes of `app`, made once per process: making it reads every
    command's signature and type hints (about 40 ms), which in-process callers of `main` (the
    tests) would otherwise pay on every call."""
    if not _COMMAND:
        _COMMAND.append(typer.main.get_command(app))
    return _COMMAND[0]


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
    try:
        try:
            command = _click_command()  # a tenth of a second at start-up: Ctrl-C there is an interruption too
            if os.environ.get("_INDEXER_COMPLETE"):  # the shell asks for completions (--show-completion's script)
                command.main(args, prog_name="indexer")  # Click answers on stdout and exits
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

    text = (
        f"indexer {__version__}, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
        f"arguments: {redact_text(repr(args))}\n\n" + redact_text("".join(traceback.format_exception(exc)))
    )
    try:
        fd, log = tempfile.mkstemp(prefix="indexer-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
            handle.write(text)
    except OSError:
        log = "(no log: the temporary directory cannot be written)"
    _error_line(
        f"internal error ({type(exc).__name__}: {str(exc)[:200]}); the traceback is in {log} - please report it"
    )
    return ExitCode.INTERNAL


def run() -> None:
    """Console entry point."""
    sys.exit(main())
