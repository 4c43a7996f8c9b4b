"""The CLI's conventions (issue 15 item 4, issue 16 item 5): one error hierarchy and one handler,
exit codes from one enum, one output helper, comma lists, `-` for stdin, completion, whole help.

Commands run in this process through `indexer.cli.main` (the console entry point's own handler)
on a small corpus written here (test_hostile's helpers), as processes where the process itself
is the point (completion).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from indexer import cli, errors
from indexer.cli import main
from indexer.errors import ExitCode, IndexerError
from indexer.model import IndexMissing
from indexer.parse import RuleFileError, parse_yaml
from indexer.parsers import ParserFailed
from indexer.refresh import Locked
from indexer.sources import SourceError, SourceSpec

from test_hostile import GOOD, lolbas_entry, make_repo

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
    lolbas = make_repo(root / "lolbas", {"yml/OSBinaries/Psr.yml": lolbas_entry("Psr.exe", "psr.exe /start"),
                                         "yml/OSBinaries/Certutil.yml": lolbas_entry("Certutil.exe", "certutil.exe -f")})
    folder = root / "data"
    code = main(["refresh", "--data-dir", str(folder), "--sigma-url", str(sigma), "--sigma-branch", "main",
                 "--lolbas-url", str(lolbas), "--lolbas-branch", "main", "-q"])
    assert code == 0
    return folder


# --- one hierarchy, the reason apart from the location, one code each ------------------------------

def test_every_error_class_is_an_indexer_error_with_its_documented_code() -> None:
    expected = {SourceError: ExitCode.SOURCE_FAILED, ParserFailed: ExitCode.SOURCE_FAILED, Locked: ExitCode.LOCKED,
                IndexMissing: ExitCode.USAGE, RuleFileError: ExitCode.FILE_ERRORS, errors.UsageError: ExitCode.USAGE,
                errors.NotFound: ExitCode.NOT_FOUND}
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
        SourceSpec.default("sigma", "ext::sh -c 'curl https://u:secret@evil.example'", "master", Path("x"))
    exc = caught.value
    assert exc.source == "sigma" and str(exc).startswith("sigma: refused URL") and "secret" not in str(exc)
    assert exc.where == "sigma" and not str(exc.reason).startswith("sigma")


def test_no_exit_code_is_a_literal_in_the_cli_or_the_refresh() -> None:
    """Exit codes come from errors.ExitCode: no `return 4`, `Exit(1)`, `exit_code = 2` in these modules."""
    for module in ("cli", "refresh"):
        tree = ast.parse((ROOT / "indexer" / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values: list[ast.expr] = []
            if isinstance(node, ast.Return) and node.value is not None:
                values = [node.value]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "Exit":
                values = list(node.args)
            elif isinstance(node, ast.Assign) and any(getattr(t, "attr", "") == "exit_code" for t in node.targets):
                values = [node.value]
            for value in values:
                assert not (isinstance(value, ast.Constant) and isinstance(value.value, int)
                            and not isinstance(value.value, bool)), (module, node.lineno)


def test_the_entry_point_handles_every_indexer_error_in_one_place() -> None:
    source = inspect.getsource(cli)
    assert source.count("except IndexerError") == 1
    assert "def fail(" not in source


@pytest.mark.parametrize("args, code, message", [
    (["show", "nosuch.exe"], ExitCode.NOT_FOUND, "indexer: error: no rule or binary 'nosuch.exe' in the index"),
    (["export", "-f", "csv", "-o", "-", "-b", "nosuch.exe"], ExitCode.NOT_FOUND, "nosuch.exe"),
    (["export", "-f", "csv", "-o", "{file}/x.csv"], ExitCode.USAGE, "{file}: File exists"),
])
def test_errors_are_one_line_and_their_code(args: list[str], code: int, message: str, data_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("a file where a directory should be")
    args, message = [a.format(file=tmp_path / "file") for a in args], message.format(file=tmp_path / "file")
    got, out, err = run(capsys, *args, "--data-dir", data_dir)
    assert got == code and len(err.splitlines()) == 1 and message in err, (got, err)


def test_a_missing_index_is_exit_4_naming_the_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "stats", "--data-dir", tmp_path)
    assert code == ExitCode.USAGE and err == f"indexer: error: no index in {tmp_path}: run 'indexer refresh' first\n"
