"""The CLI's conventions (issue 15 item 4, issue 16 item 5): one error hierarchy and one handler,
exit codes from one enum, one output helper, comma lists, `-` for stdin, completion, whole help.

Commands run in this process through `indexer.cli.main` (the console entry point's own handler)
on a small corpus written here (test_hostile's helpers), as processes where the process itself
is the point (completion).
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from indexer import cli, errors
from indexer.cli import main
from indexer.errors import ExitCode, IndexerError
from indexer.model import IndexMissing
from indexer.parse import RuleFileError, parse_yaml
from indexer.parsers import ParserFailed
from indexer.lock import Locked
from indexer.repository import SourceError
from indexer.sources import get

from test_hostile import GOOD, INDEXER, clean_env, lolbas_entry, make_repo

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """`indexer ARGS` in this process, through the console entry point's handler."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three Sigma rules (certutil twice, psr) and two LOLBAS entries, indexed once."""
    root = tmp_path_factory.mktemp("cli")
    sigma = make_repo(root / "sigma", dict(GOOD))
    lolbas = make_repo(
        root / "lolbas",
        {
            "yml/OSBinaries/Psr.yml": lolbas_entry("Psr.exe", "psr.exe /start"),
            "yml/OSBinaries/Certutil.yml": lolbas_entry("Certutil.exe", "certutil.exe -f"),
        },
    )
    folder = root / "data"
    code = main(
        [
            "refresh",
            "--data-dir",
            str(folder),
            "--sigma-url",
            str(sigma),
            "--sigma-branch",
            "main",
            "--lolbas-url",
            str(lolbas),
            "--lolbas-branch",
            "main",
            "-q",
        ]
    )
    assert code == 0
    return folder


# --- one hierarchy, the reason apart from the location, one code each ------------------------------


def test_every_error_class_is_an_indexer_error_with_its_documented_code() -> None:
    expected = {
        SourceError: ExitCode.SOURCE_FAILED,
        ParserFailed: ExitCode.SOURCE_FAILED,
        Locked: ExitCode.LOCKED,
        IndexMissing: ExitCode.USAGE,
        RuleFileError: ExitCode.FILE_ERRORS,
        errors.UsageError: ExitCode.USAGE,
        errors.NotFound: ExitCode.NOT_FOUND,
    }
    for cls, code in expected.items():
        assert issubclass(cls, IndexerError) and cls.exit_code == code, cls


def test_a_rule_file_error_carries_path_and_line_apart_from_its_reason() -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_yaml("rules/x.yml", "title: a\ntitle: b\n")
    exc = caught.value
    assert (exc.path, exc.line, exc.reason) == ("rules/x.yml", 2, "duplicate key 'title'")
    assert str(exc) == "rules/x.yml:2: duplicate key 'title'" and exc.location == errors.Location("rules/x.yml", 2)
    assert str(RuleFileError("rules/y.yml", "not valid UTF-8 (byte 3)")) == "rules/y.yml: not valid UTF-8 (byte 3)"


def test_a_source_error_names_its_source_and_hides_credentials() -> None:
    with pytest.raises(SourceError) as caught:
        get("sigma").spec("ext::sh -c 'curl https://u:secret@evil.example'", "master", Path("x"))
    exc = caught.value
    assert exc.source == "sigma" and str(exc).startswith("sigma: refused URL") and "secret" not in str(exc)
    assert exc.where == "sigma" and not str(exc.reason).startswith("sigma")


def test_no_exit_code_is_a_literal_in_the_cli_or_the_refresh() -> None:
    """Exit codes come from errors.ExitCode: no `return 4`, `Exit(1)`, `exit_code = 2` in the CLI or
    the refresh's modules."""
    for module in ("cli", "refresh", "manifest", "lock", "plan"):
        tree = ast.parse((ROOT / "indexer" / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values: list[ast.expr] = []
            if isinstance(node, ast.Return) and node.value is not None:
                values = [node.value]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "Exit":
                values = list(node.args)
            elif isinstance(node, ast.Assign) and any(getattr(t, "attr", "") == "exit_code" for t in node.targets):
                values = [node.value]
            elif isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "exit_code" and node.value:
                values = [node.value]  # a dataclass field's default
            for value in values:
                assert not (
                    isinstance(value, ast.Constant)
                    and isinstance(value.value, int)
                    and not isinstance(value.value, bool)
                ), (module, node.lineno)


def test_the_entry_point_handles_every_indexer_error_in_one_place() -> None:
    source = inspect.getsource(cli)
    assert source.count("except IndexerError") == 1
    assert "def fail(" not in source


def test_every_command_prints_through_the_one_output_helper() -> None:
    """JSON, CSV and Markdown are written by `_show` alone: no command has its own switch."""
    source = inspect.getsource(cli)
    assert source.count("_print_json(") == 2  # its definition, and its call in _show
    for name, command in _commands().items():
        body = inspect.getsource(command.callback)
        # mcp prints only the protocol; serve's line comes from web.app.serve once its socket is bound
        assert ("_show(" in body or name in ("mcp", "serve")) and "json.dumps" not in body, name


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["show", "nosuch.exe"], ExitCode.NOT_FOUND, "indexer: error: no rule or binary 'nosuch.exe' in the index"),
        (["export", "-f", "csv", "-o", "-", "-b", "nosuch.exe"], ExitCode.NOT_FOUND, "nosuch.exe"),
        (["export", "-f", "csv", "-o", "{file}/x.csv"], ExitCode.USAGE, "{file}: File exists"),
    ],
)
def test_errors_are_one_line_and_their_code(
    args: list[str], code: int, message: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("a file where a directory should be")
    args, message = [a.format(file=tmp_path / "file") for a in args], message.format(file=tmp_path / "file")
    got, out, err = run(capsys, *args, "--data-dir", data_dir)
    assert got == code and len(err.splitlines()) == 1 and message in err, (got, err)


def test_a_missing_index_is_exit_4_naming_the_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "stats", "--data-dir", tmp_path)
    assert code == ExitCode.USAGE and err == f"indexer: error: no index in {tmp_path}: run 'indexer refresh' first\n"


# --- CLI conventions (issue 16 item 5) ---------------------------------------------------------------


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_dash_reads_the_names_from_stdin(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, "psr.exe\n")
    code, out, err = run(capsys, "search", "-", "--json", "--data-dir", data_dir)
    assert code == ExitCode.OK, err
    assert [r["query"] for r in json.loads(out)] == ["psr.exe"]


def test_stdin_skips_comments_and_blank_lines(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, "# binaries to check\n\n  psr.exe  \n   \n# certutil.exe\ncertutil.exe\n")
    for names in (["--stdin"], ["-"]):
        code, out, err = run(capsys, "search", *names, "--json", "--data-dir", data_dir)
        _stdin(monkeypatch, "# binaries to check\n\n  psr.exe  \n   \n# certutil.exe\ncertutil.exe\n")
        assert code == ExitCode.OK, err
        assert [r["query"] for r in json.loads(out)] == ["psr.exe", "certutil.exe"], names


def test_stdin_from_a_windows_editor_finds_the_names(data_dir: Path) -> None:
    """A name list saved by Notepad: a UTF-8 byte order mark before the first name, CRLF line
    ends. The mark made the first name '\\ufeffpsr.exe', found nowhere."""
    done = subprocess.run(
        [*INDEXER, "search", "-", "--json", "--data-dir", str(data_dir)],
        input=b"\xef\xbb\xbfpsr.exe\r\n# a comment\r\ncertutil.exe\r\n",
        capture_output=True,
        timeout=120,
        env=clean_env(),
    )
    assert done.returncode == ExitCode.OK, done.stderr
    found = json.loads(done.stdout)
    assert [r["query"] for r in found] == ["psr.exe", "certutil.exe"] and all(r["mentions"] for r in found)


def test_search_json_has_one_shape_whatever_the_count(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = json.loads(run(capsys, "search", "psr.exe", "--json", "--data-dir", data_dir)[1])
    two = json.loads(run(capsys, "search", "psr.exe", "certutil.exe", "--json", "--data-dir", data_dir)[1])
    none = json.loads(run(capsys, "search", "nosuch.exe", "--json", "--data-dir", data_dir)[1])
    assert isinstance(one, list) and isinstance(two, list) and isinstance(none, list)
    assert [r["query"] for r in two] == ["psr.exe", "certutil.exe"] and one == two[:1]
    assert none[0]["mentions"] == [] and set(none[0]) == set(one[0])


@pytest.mark.parametrize(
    "option, values, key",
    [
        ("--role", "process,lolbas_entry", "role"),
        ("--verdict", "runs,documented", None),
        ("--source", "sigma", "source"),
    ],
)
def test_repeatable_options_take_comma_lists(
    option: str, values: str, key: str | None, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = json.loads(run(capsys, "search", "psr.exe", option, values, "--json", "--data-dir", data_dir)[1])
    repeated = [a for v in values.split(",") for a in (option, v)]
    each = json.loads(run(capsys, "search", "psr.exe", *repeated, "--json", "--data-dir", data_dir)[1])
    assert listed == each and listed[0]["mentions"]
    if key:
        assert {m[key] for m in listed[0]["mentions"]} == set(values.split(","))


def test_refresh_sources_and_link_statuses_take_comma_lists(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "refresh",
        "--source",
        "sigma,lolbas",
        "--sigma-branch",
        "main",
        "--lolbas-branch",
        "main",
        "--json",
        "--data-dir",
        data_dir,
    )
    assert code == ExitCode.OK and set(json.loads(out)["sources"]) == {"sigma", "lolbas"}, err
    code, out, err = run(capsys, "links", "--status", "ok,moved", "--json", "--data-dir", data_dir)
    assert code == ExitCode.OK and isinstance(json.loads(out), list), err


@pytest.mark.parametrize(
    "args, valid",
    [
        (["search", "psr.exe", "--role", "process,bogus"], "command_line"),
        (["search", "psr.exe", "--source", "sigma,nosuch"], "lolbas"),
        (["links", "--status", "ok,bogus"], "unresolvable"),
        (["refresh", "--source", "sigma,bogus"], "lolbas"),
        (["export", "--format", "pdf"], "jsonl"),
        (["links", "--json", "--csv"], "--json and --csv"),
    ],
)
def test_invalid_values_in_lists_are_usage_errors_listing_the_valid_ones(
    args: list[str], valid: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *args, "--data-dir", data_dir)
    assert code == ExitCode.USAGE and len(err.splitlines()) == 1 and valid in err, (code, err)


@pytest.mark.parametrize(
    "args, option",
    [
        (["refresh", "--sources", ",,"], "--sources"),
        (["search", "psr.exe", "--role", " , "], "--role"),
        (["search", "psr.exe", "--verdict", ","], "--verdict"),
        (["links", "--status", ""], "--status"),
        (["export", "--format", "lookup", "--binary", ",", "--output", "-"], "--binary"),
    ],
)
def test_an_empty_list_is_a_usage_error_not_every_value(
    args: list[str], option: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--sources ,,` (a variable that expanded to nothing) refreshed every source, `--binary ,`
    exported every binary: a list given with no value in it is refused, naming the option."""
    code, out, err = run(capsys, *args, "--data-dir", data_dir)
    assert code == ExitCode.USAGE and len(err.splitlines()) == 1 and option in err, (code, out[:200], err)


def _commands() -> dict[str, Any]:
    import typer

    return dict(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]


def test_no_short_help_is_cut(capsys: pytest.CaptureFixture[str]) -> None:
    """Click shortens a command's help to its first sentence, cut at a period ("e.g.") or at the
    width with "...": each command's line in `indexer --help` is a whole sentence."""
    code, out, _ = run(capsys, "--help")
    section = out.split("Commands:", 1)[1]
    rows = dict(re.findall(r"^  (\w+)\s+(.+)$", section, re.MULTILINE))
    assert set(rows) == set(_commands()), rows
    for name, text in rows.items():
        assert text.endswith(".") and not text.endswith("..."), (name, text)
        assert not re.search(r"\b(e\.g|i\.e|etc)\.$", text), (name, text)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_has_an_example_and_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, name, "--help")
    assert code == ExitCode.OK and "Example:" in out, out
    if name != "mcp":  # its standard output is the JSON-RPC stream itself
        assert "--json" in out, out


@pytest.mark.parametrize("fmt", ["csv", "lookup", "jsonl", "navigator"])
def test_an_export_to_a_closed_pipe_is_141_and_silent(fmt: str, data_dir: Path) -> None:
    """`indexer export -o - | head -1`: the reader went away, as for search (README's table: 141,
    nothing more written); the export's own OSError handler made it 'error: -: Broken pipe', 4."""
    proc = subprocess.Popen(
        [*INDEXER, "export", "-f", fmt, "-o", "-", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    proc.stdout.close()  # before the export writes a byte: the pipe has no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == ExitCode.BROKEN_PIPE and err == "", (proc.returncode, err)


def test_export_json_to_stdout_is_refused(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`export -o - --json` wrote the export and then the summary on stdout: two documents no
    reader can parse. A usage error naming both options."""
    code, out, err = run(capsys, "export", "-f", "json", "-o", "-", "--json", "--data-dir", data_dir)
    assert code == ExitCode.USAGE and out == "" and len(err.splitlines()) == 1, (code, out[-300:], err)
    assert "--json" in err and "--output" in err, err


def test_shell_completion_is_enabled(tmp_path: Path) -> None:
    # --show-completion detects the parent shell, and `make test` runs under sh, which Typer does
    # not support ("Shell sh not supported"): the variable makes it take the shell named.
    shown = subprocess.run(
        [*INDEXER, "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"),
    )
    assert shown.returncode == 0 and "_INDEXER_COMPLETE" in shown.stdout, shown.stderr
    for words, expected in (
        ("indexer sea", "search"),
        ("indexer search psr.exe --role proc", "process"),
        ("indexer search psr.exe --role process,par", "process,parent"),
        ("indexer show x --kind b", "binary"),
    ):
        done = subprocess.run(
            [*INDEXER],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(_INDEXER_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1)),
        )
        assert expected in done.stdout.split(), (words, done.stdout, done.stderr)


def test_serve_json_says_where_it_listens(data_dir: Path) -> None:
    """`serve --port 0 --json`: one JSON line on stdout with the port it chose, then it serves."""
    import signal
    import urllib.request

    proc = subprocess.Popen(
        [*INDEXER, "serve", "--data-dir", str(data_dir), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        listening = json.loads(proc.stdout.readline())
        assert listening["port"] > 0 and listening["url"] == f"http://127.0.0.1:{listening['port']}/", listening
        assert listening["workers"] == 1 and Path(listening["data_dir"]) == data_dir.resolve()
        with urllib.request.urlopen(listening["url"] + "api/binary/psr.exe", timeout=30) as answer:
            assert json.loads(answer.read())["binaries"] == ["psr.exe"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "args, shape",
    [
        (["search", "psr.exe"], list),
        (["search", "psr.exe", "certutil.exe"], list),
        (["search", "nosuch.exe"], list),
        (["changes"], list),
        (["changes", "--since", "2999-01-01"], list),
        (["links"], list),
        (["links", "--status", "deleted"], list),
        (["show", "psr.exe"], dict),
        (["stats"], dict),
        (["coverage"], dict),
        (["gaps"], dict),
        (["tests", "psr.exe"], dict),
        (["export", "-f", "csv", "-o", "{tmp}/x.csv"], dict),
        (["refresh", "--sigma-branch", "main", "--lolbas-branch", "main"], dict),
    ],
)
def test_each_command_prints_one_json_shape_whatever_the_count(
    args: list[str], shape: type, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shapes README's "Command-line conventions" lists: a list for search (one object per
    name), changes and links, even with one item or none; an object for the others."""
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in args], "--json", "--data-dir", data_dir)
    assert code in (ExitCode.OK, ExitCode.NOT_FOUND), err
    assert isinstance(json.loads(out), shape), out[:200]


@pytest.mark.parametrize("name", sorted(_commands()))
def test_each_example_is_printed_whole(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Click rewraps help paragraphs: an example cut over two lines cannot be copied. Each line
    of a command's example is one line of its --help, as written."""
    docstring = inspect.cleandoc(_commands()[name].callback.__doc__ or "")
    example = docstring.split("Example: ", 1)[1].strip().splitlines()
    code, out, _ = run(capsys, name, "--help")
    printed = [line.strip() for line in out.splitlines()]
    assert f"Example: {example[0].strip()}" in printed, out
    for line in example[1:]:
        assert line.strip() in printed, (line, out)


def test_a_held_lock_names_the_lock_file_as_its_location(tmp_path: Path) -> None:
    from indexer.lock import RefreshLock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from indexer.lock import RefreshLock; "
            f"RefreshLock({str(tmp_path)!r}).acquire(); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Locked) as caught:
            RefreshLock(tmp_path).acquire()
        exc = caught.value
        assert exc.path == str(tmp_path / "refresh.lock") and exc.exit_code == ExitCode.LOCKED
        assert exc.reason == f"a refresh is already running (pid {holder.pid})"
        assert str(exc) == f"{tmp_path / 'refresh.lock'}: {exc.reason}"
    finally:
        holder.communicate("")


def test_stats_csv_lists_the_files_not_indexed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    sigma = make_repo(
        tmp_path / "sigma",
        {**GOOD, "rules/windows/broken.yml": "title: [unclosed\n", "rules/windows/=cmd.yml": "- just a list\n"},
    )
    folder = tmp_path / "data"
    assert (
        run(
            capsys,
            "refresh",
            "--data-dir",
            folder,
            "--sigma-url",
            sigma,
            "--sigma-branch",
            "main",
            "--source",
            "sigma",
            "-q",
        )[0]
        == ExitCode.FILE_ERRORS
    )
    code, out, err = run(capsys, "stats", "--csv", "--data-dir", folder)
    assert code == ExitCode.OK, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["path"], r["status"]) for r in rows] == [
        ("rules/windows/=cmd.yml", "error"),
        ("rules/windows/broken.yml", "error"),
    ], rows
    assert rows[1]["reason"].startswith("line 2: invalid YAML") and rows[1]["source"] == "sigma"
    assert rows[0]["reason"] == "no YAML mapping in the file (documents: list)"


# Ctrl-C while `indexer` imports its command line (most of a search's tenth of a second): the
# import of indexer.cli raises KeyboardInterrupt, as Python raises it from the signal handler.
_INTERRUPTED_IMPORT = """
import sys


class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "indexer.cli":
            raise KeyboardInterrupt


sys.meta_path.insert(0, Interrupt())
sys.argv = ["indexer", "--help"]
from indexer.entry import run

run()
"""


@pytest.mark.parametrize("entry", ["indexer.entry:run", "python -m indexer"])
def test_ctrl_c_while_importing_is_an_interruption_not_a_traceback(entry: str) -> None:
    script = (
        _INTERRUPTED_IMPORT
        if entry == "indexer.entry:run"
        else _INTERRUPTED_IMPORT.replace(
            "from indexer.entry import run\n\nrun()", "import runpy\nrunpy.run_module('indexer', run_name='__main__')"
        )
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (ExitCode.INTERRUPTED, "indexer: interrupted\n")


def test_the_console_script_is_the_entry_that_catches_it() -> None:
    scripts = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"indexer": "indexer.entry:run"}
