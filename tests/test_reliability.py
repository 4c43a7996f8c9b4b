"""Issue 14: the ways a refresh or a command still broke, each on a repository or data
directory built here (test_hostile's helpers), and a fault-injection run over every file of a
generation.

Commands run in this process through `indexer.cli.main` (the console entry point's own
handler) where many runs are needed, and as processes where the exit status of the process
itself is the point (broken pipe, tracebacks, terminals).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import threading
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest

from indexer.cli import main
from indexer.errors import ExitCode
from indexer.extract import FileContext
from indexer.parsers import file_mentions, process_file
from indexer.lock import RefreshLock
from indexer.repository import Repository, SourceSpec

from test_hostile import GOOD, INDEXER, REAL_GIT, clean_env, git, lolbas_entry, make_repo, sigma_rule

W = "rules/windows/process_creation/"
EXIT_CODES = {
    "ok": ExitCode.OK,
    "file_errors": ExitCode.FILE_ERRORS,
    "source_failed": ExitCode.SOURCE_FAILED,
    "locked": ExitCode.LOCKED,
    "usage": ExitCode.USAGE,
    "internal": ExitCode.INTERNAL,
    "interrupted": ExitCode.INTERRUPTED,
    "broken_pipe": ExitCode.BROKEN_PIPE,
}


# --- helpers ------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`indexer ARGS` in this process, through the console entry point's handler."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def proc(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INDEXER, *map(str, args)], capture_output=True, text=True, timeout=120, env=env or clean_env(), **kwargs
    )


def one_line(err: str) -> bool:
    """stderr is at most one line, and no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return len(lines) <= 1 and "Traceback" not in err


def commit(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def refresh_cmd(data_dir: Path, sigma: Path, lolbas: Path | None, *extra: str) -> list[str]:
    args = ["refresh", "--data-dir", str(data_dir), "--sigma-url", str(sigma), "--sigma-branch", "main", "-q", *extra]
    if lolbas is None:
        return [*args, "--source", "sigma"]
    return [*args, "--lolbas-url", str(lolbas), "--lolbas-branch", "main"]


def export_lines(capsys: pytest.CaptureFixture[str], data_dir: Path) -> list[str]:
    code, out, err = run(capsys, "export", "-f", "jsonl", "-o", "-", "--data-dir", data_dir)
    assert code == 0, err
    return sorted(out.splitlines())


def rule(title: str, image: str, number: int, extra: str = "") -> str:
    return sigma_rule(title, image, f"0badc0de-1400-4000-8000-{number:012d}", extra)


def corpus(root: Path) -> tuple[Path, Path]:
    """A small Sigma repository (with history: a rename) and a LOLBAS one that links a rule."""
    sigma = make_repo(
        root / "sigma",
        {
            "LICENSE": "Detection Rule License (DRL) 1.1\n",
            **GOOD,
            W + "psr_old.yml": rule("Screen capture via Psr", "psr.exe", 1),
            W + "whoami.yml": rule(
                "Whoami run", "whoami.exe", 2, "    cmd:\n        CommandLine|contains: 'rundll32 x'\n"
            ),
        },
    )
    git(sigma, "mv", W + "psr_old.yml", W + "psr.yml")
    commit(sigma, "rename")
    psr = lolbas_entry("Psr.exe", "psr.exe /start /output x.zip")
    psr += f"  - Sigma: https://github.com/SigmaHQ/sigma/blob/master/{W}psr_old.yml\n"
    lolbas = make_repo(
        root / "lolbas",
        {"yml/OSBinaries/Psr.yml": psr, "yml/OSBinaries/Rundll32.yml": lolbas_entry("Rundll32.exe", "rundll32.exe x")},
    )
    return sigma, lolbas


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The small corpus indexed once (copied by the tests that damage or refresh it)."""
    root = tmp_path_factory.mktemp("reliability")
    sigma, lolbas = corpus(root)
    data_dir = root / "data"
    assert main(refresh_cmd(data_dir, sigma, lolbas)) == 0
    return {"root": root, "sigma": sigma, "lolbas": lolbas, "data_dir": data_dir}


# --- item 1: memory bounded by the file's size ---------------------------------------------------


def _peak_memory(names: int) -> tuple[int, int]:
    """(file size, peak bytes allocated) reading one rule naming `names` executables on one line."""
    line = " ".join(f"t{i:05d}x.exe" for i in range(names))
    raw = (rule("Many", "many.exe", 3, f"    many:\n        CommandLine|contains: '{line}'\n")).encode()
    tracemalloc.start()
    try:
        item = process_file(FileContext("sigma", W + "many.yml"), raw, 1 << 24, known_warnings=[])
        rows = file_mentions(item.extraction, ({}, {}, {})).rows
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert item.report.status == "indexed" and len(rows) == names + 2  # and many.exe in Image, description
    return len(raw), peak


def test_item01_memory_grows_with_the_file_not_with_names_times_line_length() -> None:
    size_small, peak_small = _peak_memory(1000)
    size_big, peak_big = _peak_memory(4000)
    # every mention copied the whole line: 4x the names on a 4x longer line took 16x the memory
    assert peak_big / peak_small < 6, (peak_small, peak_big)
    assert peak_big < 1000 * size_big, (size_big, peak_big)


def test_item01_a_long_line_gives_a_snippet_around_the_name() -> None:
    line = " ".join(f"t{i:05d}x.exe" for i in range(1000))
    raw = rule("Many", "many.exe", 3, f"    many:\n        CommandLine|contains: '{line}'\n").encode()
    item = process_file(FileContext("sigma", W + "many.yml"), raw, 1 << 24, known_warnings=[])
    found = {m.binary: m.snippet for m in item.extraction.mentions}
    assert "t00500x.exe" in found["t00500x.exe"] and len(found["t00500x.exe"]) <= 502
    assert found["many.exe"] == "Image|endswith: '\\many.exe'"  # short lines are kept whole


# --- item 2: a hundred thousand names are not a command line -------------------------------------


@pytest.mark.slow  # 150,000 names through git grep: 4-6 s
def test_item02_grep_for_150000_names_does_not_exceed_the_argument_list(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "sigma", {W + "a.yml": rule("A", "certutil.exe", 4), W + "b.yml": "title: nothing\n"})
    words = [f"nosuchname{i:06d}" for i in range(150_000)] + ["certutil"]
    assert sum(len(w) + 4 for w in words) > int(os.sysconf("SC_ARG_MAX"))  # would not fit as -e arguments
    source = Repository(SourceSpec("sigma", str(repo), "main"), repo / ".git")
    try:
        assert source.grep("HEAD", words) == {W + "a.yml"}
    finally:
        source.close()


# --- item 3 and the fault injection --------------------------------------------------------------


def _garbage(size: int) -> bytes:
    return hashlib.sha256(str(size).encode()).digest() * (max(size, 64) // 32 + 1)


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(_garbage(p.stat().st_size)[: max(p.stat().st_size, 64)]),
    "json-shape": lambda p: p.write_bytes(b'[{"x": 1}, 2, "gen-0"]\n'),
    "not-utf8": lambda p: p.write_bytes(b"\xff\xfe\xfa gen-\xc3\x28 \x80\n"),
    "directory": lambda p: (p.unlink(), p.mkdir(), (p / "x").write_text("x")),
}


def _generation_files(data_dir: Path) -> list[str]:
    """Every file a command or a refresh reads back, relative to the data directory."""
    generation = (data_dir / "index" / "CURRENT").read_text().strip()
    files = ["index/CURRENT", "index/PUBLISHED", "history/sigma.json"]
    files += [
        f"index/{generation}/{p.name}"
        for p in sorted((data_dir / "index" / generation).iterdir())
        if p.is_file() and p.stat().st_size > 0
    ]
    files.append(f"manifests/{sorted(p.name for p in (data_dir / 'manifests').glob('*.json'))[-1]}")
    return files


COMMANDS = [
    ["search", "psr.exe"],
    ["search", "psr.exe", "--json"],
    ["show", "psr.exe"],
    ["show", W + "psr.yml"],
    ["stats"],
    ["stats", "--json"],
    ["changes"],
    ["changes", "--json"],
    ["links"],
    ["links", "--json"],
    ["coverage"],
    ["coverage", "--json"],
    ["export", "-f", "jsonl", "-o", "-"],
    ["export", "-f", "csv", "-o", "-"],
]


def test_fault_injection_lists_the_files_of_a_generation(built: dict[str, Any]) -> None:
    names = {Path(f).name for f in _generation_files(built["data_dir"])}
    assert {
        "CURRENT",
        "PUBLISHED",
        "sigma.json",
        "meta.json",
        "state.json",
        "xref.json",
        "declared.json",
        "SUMS",
        "manifest.json",
    } <= names
    assert any(n.endswith(".seg") for n in names) and any(n.endswith(".toc") for n in names)


@pytest.mark.slow  # every command against every damaged file: 40 s, the better part of `make test-fast`
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_fault_injection_every_file_every_damage(
    damage: str, built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file of a generation damaged in turn: every command exits 0, 1 or 4 with at most
    one line on stderr, and the next refresh (a plain one) rebuilds what the full build has."""
    full = export_lines(capsys, built["data_dir"])
    full_views = {
        tuple(c): run(capsys, *c, "--json", "--data-dir", built["data_dir"])[1] for c in (["links"], ["coverage"])
    }
    failures = []
    for name in _generation_files(built["data_dir"]):
        data_dir = tmp_path / f"{damage}-{name.replace('/', '_')}"
        shutil.copytree(built["data_dir"], data_dir, symlinks=True)
        DAMAGES[damage](data_dir / name)
        for command in COMMANDS:
            code, _, err = run(capsys, *command, "--data-dir", data_dir)
            if code not in (0, 1, 4) or not one_line(err):
                failures.append((name, command, code, err[-300:]))
        code, _, err = run(capsys, *refresh_cmd(data_dir, built["sigma"], built["lolbas"]))
        if code != 0 or export_lines(capsys, data_dir) != full:
            failures.append((name, "refresh", code, err[-300:]))
            continue
        for command in (["links"], ["coverage"]):
            if run(capsys, *command, "--json", "--data-dir", data_dir)[1] != full_views[tuple(command)]:
                failures.append((name, command, "differs after the refresh"))
        for command in COMMANDS:
            code, _, err = run(capsys, *command, "--data-dir", data_dir)
            if code != 0 or err.strip():
                failures.append((name, command, "after the refresh", code, err[-300:]))
    assert not failures, failures


def test_item03_damaged_cross_references_are_an_error_not_an_empty_answer(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = shutil.copytree(built["data_dir"], tmp_path / "data", symlinks=True)
    generation = data_dir / "index" / (data_dir / "index" / "CURRENT").read_text().strip()
    (generation / "xref.json").write_text('{"links": 1}')
    (generation / "declared.json").write_text("garbage")
    for command in (["links"], ["coverage"], ["search", "psr.exe"]):
        code, out, err = run(capsys, *command, "--data-dir", data_dir)
        assert code == 4 and one_line(err) and "damaged" in err, (command, code, out, err)
    code, out, err = run(capsys, *refresh_cmd(data_dir, built["sigma"], built["lolbas"]))
    assert code == 0, err
    code, out, _ = run(capsys, "links", "--json", "--data-dir", data_dir)
    assert code == 0 and json.loads(out), out  # the link is back


def test_item03_a_damaged_published_list_leaves_no_generation_behind(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = shutil.copytree(built["data_dir"], tmp_path / "data", symlinks=True)
    (data_dir / "index" / "PUBLISHED").write_bytes(b"\xff\xfe not utf-8\n")
    for _ in range(5):
        code, _, err = run(capsys, *refresh_cmd(data_dir, built["sigma"], built["lolbas"], "--full"))
        assert code == 0, err
    assert len(list((data_dir / "index").glob("gen-*"))) <= 3  # the current one and two before it


# --- item 4: --max-file-mb -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e400"])
def test_item04_a_size_limit_that_is_not_a_size_is_a_usage_error(
    value: str, built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = shutil.copytree(built["data_dir"], tmp_path / "data", symlinks=True)
    before = export_lines(capsys, data_dir)
    code, out, err = run(capsys, *refresh_cmd(data_dir, built["sigma"], built["lolbas"], f"--max-file-mb={value}"))
    assert code == 4 and one_line(err) and "--max-file-mb" in err, (code, out, err)
    assert export_lines(capsys, data_dir) == before


def test_item04_raising_the_size_limit_reads_the_skipped_files_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padding = "".join(f"    # {'x' * 70}\n" for _ in range(400))  # about 30 KB
    sigma = make_repo(
        tmp_path / "sigma",
        {W + "big.yml": rule("Big", "bigone.exe", 5) + padding, W + "small.yml": rule("Small", "small.exe", 6)},
    )
    data_dir = tmp_path / "data"
    code, _, err = run(capsys, *refresh_cmd(data_dir, sigma, None, "--max-file-mb", "0.02"))
    assert code == 0, err
    assert run(capsys, "search", "bigone.exe", "--data-dir", data_dir)[0] == 1
    code, _, err = run(capsys, *refresh_cmd(data_dir, sigma, None))
    assert code == 0, err
    assert run(capsys, "search", "bigone.exe", "--data-dir", data_dir)[0] == 0
    code, _, err = run(capsys, *refresh_cmd(data_dir, sigma, None, "--max-file-mb", "0.02"))
    assert code == 0 and run(capsys, "search", "bigone.exe", "--data-dir", data_dir)[0] == 1


# --- item 5: a refresh killed after publishing still shows in `changes` --------------------------


class Killed(BaseException):
    """What SIGKILL does to the rest of a refresh: nothing after this point runs."""


def test_item05_a_refresh_killed_before_saving_its_manifest_shows_in_changes(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = shutil.copytree(built["data_dir"], tmp_path / "data", symlinks=True)
    sigma = shutil.copytree(built["sigma"], tmp_path / "sigma", symlinks=True)
    (sigma / W / "new.yml").write_text(rule("New", "newtool.exe", 7))
    commit(sigma)

    def killed(*args: object) -> None:
        raise Killed()

    monkeypatch.setattr("indexer.refresh.save_manifest", killed)
    with pytest.raises(Killed):
        main(refresh_cmd(data_dir, sigma, built["lolbas"]))
    monkeypatch.undo()
    assert run(capsys, "search", "newtool.exe", "--data-dir", data_dir)[0] == 0  # it was published
    code, out, err = run(capsys, "changes", "--json", "--data-dir", data_dir)
    assert code == 0, err
    current = (data_dir / "index" / "CURRENT").read_text().strip()
    shown = [m for m in json.loads(out) if m["generation"] == current]
    assert len(shown) == 1 and "newtool.exe" in shown[0]["binaries"], out[:500]


# --- item 6: what is published is on disk first --------------------------------------------------


def test_item06_every_file_of_a_generation_is_synced_before_current_names_it(
    built: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = shutil.copytree(built["data_dir"], tmp_path / "data", symlinks=True)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert main(refresh_cmd(data_dir, built["sigma"], built["lolbas"], "--full")) == 0
    monkeypatch.undo()
    switch = events.index(("replace", str(data_dir / "index" / "CURRENT")))
    generation = data_dir / "index" / (data_dir / "index" / "CURRENT").read_text().strip()
    synced = {path for kind, path in events[:switch] if kind == "fsync"}
    for item in generation.iterdir():
        if item.is_file() and "LOCK" not in item.name:
            assert str(item) in synced, item.name
    assert str(generation) in synced


def test_item06_an_incremental_refresh_leaves_the_previous_generation_as_it_was_and_verifiable(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sigma = shutil.copytree(built["sigma"], tmp_path / "sigma", symlinks=True)
    data_dir = tmp_path / "data"
    assert run(capsys, *refresh_cmd(data_dir, sigma, built["lolbas"]))[0] == 0
    before = data_dir / "index" / (data_dir / "index" / "CURRENT").read_text().strip()
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in before.iterdir() if p.is_file()}
    (sigma / W / "new.yml").write_text(rule("New", "newtool.exe", 15))
    commit(sigma)
    code, out, err = run(capsys, *refresh_cmd(data_dir, sigma, built["lolbas"], "--json"))
    assert code == 0 and json.loads(out)["sources"]["sigma"]["mode"] == "incremental", err
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in before.iterdir() if p.is_file()} == sums
    code, out, err = run(capsys, *refresh_cmd(data_dir, sigma, built["lolbas"], "--json"))
    manifest = json.loads(out)  # nothing new, and nothing found damaged: no rebuild
    assert code == 0 and not manifest["reason"] and manifest["files_parsed"] == 0, manifest["reason"]


# --- item 7: an upstream that lost its rules -----------------------------------------------------


@pytest.mark.parametrize("left", [0, 2])
def test_item07_a_source_that_lost_most_rule_files_is_not_published(
    left: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sigma = make_repo(tmp_path / "sigma", {W + f"r{i}.yml": rule(f"R{i}", f"tool{i}.exe", 100 + i) for i in range(12)})
    data_dir = tmp_path / "data"
    assert run(capsys, *refresh_cmd(data_dir, sigma, None))[0] == 0
    for i in range(left, 12):
        (sigma / W / f"r{i}.yml").unlink()
    commit(sigma, "lose the rules")
    code, out, err = run(capsys, *[a for a in refresh_cmd(data_dir, sigma, None) if a != "-q"])
    assert code == 2 and "--allow-shrink" in out, (code, out, err)
    assert run(capsys, "search", "tool11.exe", "--data-dir", data_dir)[0] == 0  # the previous index answers
    code, out, err = run(capsys, *refresh_cmd(data_dir, sigma, None, "--allow-shrink"))
    assert code == 0, err
    assert run(capsys, "search", "tool11.exe", "--data-dir", data_dir)[0] == 1


# --- item 8: incremental equals full --------------------------------------------------------------


def test_item08_a_bare_name_written_with_the_kelvin_sign_is_read_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kelvin = "\u212a"
    assert f"{kelvin}eepass".lower() == "keepass"
    sigma = make_repo(
        tmp_path / "sigma",
        {
            W + "dump.yml": rule(
                "Dump", "dumper.exe", 8, f"    cmd:\n        CommandLine|contains: '{kelvin}eePass --export'\n"
            ),
        },
    )
    incremental = tmp_path / "incremental"
    assert run(capsys, *refresh_cmd(incremental, sigma, None))[0] == 0
    (sigma / W / "keepass.yml").write_text(rule("KeePass run", "KeePass.exe", 9))
    commit(sigma)
    assert run(capsys, *refresh_cmd(incremental, sigma, None))[0] == 0
    full = tmp_path / "full"
    assert run(capsys, *refresh_cmd(full, sigma, None))[0] == 0
    assert export_lines(capsys, incremental) == export_lines(capsys, full)
    code, out, _ = run(capsys, "search", "keepass.exe", "--json", "--data-dir", incremental)
    assert {m["path"] for m in json.loads(out)[0]["mentions"]} == {W + "dump.yml", W + "keepass.yml"}


def test_item08_the_files_read_again_for_a_stem_are_those_python_would_match(tmp_path: Path) -> None:
    """The Kelvin sign is searched on its own: folded by git in a UTF-8 locale, it matched
    every file holding a 'k' (every file of the corpus read again)."""
    repo = make_repo(
        tmp_path / "sigma",
        {
            W + "kelvin.yml": "title: \u212aeePass export\n",
            W + "plain.yml": "title: KEEPASS export\n",
            W + "other.yml": "title: kill the task\n",
        },
    )
    source = Repository(SourceSpec("sigma", str(repo), "main"), repo / ".git")
    try:
        for locale in ("C", "C.UTF-8"):
            os.environ["LC_ALL"] = locale
            assert source.grep("HEAD", ["keepass"]) == {W + "kelvin.yml", W + "plain.yml"}, locale
    finally:
        os.environ.pop("LC_ALL", None)
        source.close()


def test_item08_incremental_and_full_record_the_same_changes_for_the_same_commits(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sigma = shutil.copytree(built["sigma"], tmp_path / "sigma", symlinks=True)
    before = tmp_path / "before"
    assert run(capsys, *refresh_cmd(before, sigma, built["lolbas"]))[0] == 0
    git(sigma, "mv", W + "whoami.yml", W + "whoami_renamed.yml")  # a rename, a change and an addition
    text = (sigma / W / "psr.yml").read_text().replace("level: high", "level: low")
    (sigma / W / "psr.yml").write_text(text)
    (sigma / W / "added.yml").write_text(rule("Added", "added.exe", 10))
    commit(sigma)
    manifests = {}
    for mode in ("incremental", "full"):
        data_dir = shutil.copytree(before, tmp_path / mode, symlinks=True)
        code, out, err = run(
            capsys, *refresh_cmd(data_dir, sigma, built["lolbas"], "--json", *(["--full"] if mode == "full" else []))
        )
        assert code == 0, err
        manifests[mode] = json.loads(out)
    keys = (
        "mentions_added",
        "mentions_removed",
        "mentions_total",
        "binaries",
        "rules_added",
        "rules_removed",
        "rules_renamed",
    )
    assert {k: manifests["incremental"][k] for k in keys} == {k: manifests["full"][k] for k in keys}
    assert manifests["full"]["sources"]["sigma"]["renamed"] == [[W + "whoami.yml", W + "whoami_renamed.yml"]]


# --- item 9: show says what it found ---------------------------------------------------------------


def test_item09_show_says_which_kind_it_found_and_lists_duplicate_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sigma = make_repo(
        tmp_path / "sigma",
        {
            W + "certutil.yml": rule("Certutil", "certutil.exe", 11),
            W + "named_like_a_binary.yml": sigma_rule("Id like a binary", "other.exe", "certutil.exe"),
            W + "dup_a.yml": sigma_rule("Dup A", "dupa.exe", "dup-id-0000-0001"),
            W + "dup_b.yml": sigma_rule("Dup B", "dupb.exe", "dup-id-0000-0001"),
        },
    )
    data_dir = tmp_path / "data"
    assert run(capsys, *refresh_cmd(data_dir, sigma, None))[0] in (0, 1)
    code, out, err = run(capsys, "show", "certutil.exe", "--json", "--data-dir", data_dir)
    shown = json.loads(out)
    assert code == 0 and shown["kind"] == "binary" and shown["binaries"] == ["certutil.exe"], out[:300]
    assert shown["other_matches"] == [
        {"kind": "rule", "source": "sigma", "path": W + "named_like_a_binary.yml", "matched_by": "id"}
    ]
    code, out, _ = run(capsys, "show", "certutil.exe", "--kind", "rule", "--json", "--data-dir", data_dir)
    assert json.loads(out)["path"] == W + "named_like_a_binary.yml"
    code, out, _ = run(capsys, "show", "dup-id-0000-0001", "--json", "--data-dir", data_dir)
    shown = json.loads(out)
    assert shown["kind"] == "rule" and shown["matched_by"] == "id"
    assert {shown["path"], *(o["path"] for o in shown["other_matches"])} == {W + "dup_a.yml", W + "dup_b.yml"}
    code, out, _ = run(capsys, "show", "dup-id-0000-0001", "--data-dir", data_dir)
    assert "duplicate id" in out and "rule id" in out.splitlines()[0]


# --- item 10: one page per binary ------------------------------------------------------------------


def test_item10_a_name_that_looks_hashed_gets_its_own_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lookalike = "notepad__.exe-" + hashlib.sha1(b"notepad++.exe").hexdigest()[:8]
    lolbas = make_repo(
        tmp_path / "lolbas",
        {
            "yml/OtherMSBinaries/Notepad.yml": lolbas_entry("notepad++.exe", "notepad++.exe x"),
            "yml/OtherMSBinaries/Look.yml": lolbas_entry(lookalike, f"{lookalike} x"),
        },
    )
    data_dir = tmp_path / "data"
    code, _, err = run(
        capsys,
        "refresh",
        "--data-dir",
        data_dir,
        "--source",
        "lolbas",
        "--lolbas-url",
        lolbas,
        "--lolbas-branch",
        "main",
        "-q",
    )
    assert code == 0, err
    pages = tmp_path / "pages"
    assert run(capsys, "export", "-f", "markdown", "-o", pages, "--data-dir", data_dir)[0] == 0
    names = {}
    for page in pages.glob("*.md"):
        if page.name != "README.md":
            names[page.name] = page.read_text()
    assert len(names) == 2, sorted(names)
    headings = {re.sub(r"\\(.)", r"\1", text.splitlines()[0]) for text in names.values()}  # Markdown escapes undone
    assert headings == {"# notepad++.exe", f"# {lookalike}"}, headings


# --- item 11: a URL git's config quotes --------------------------------------------------------


def test_item11_a_url_with_quotes_and_semicolons_is_reused_by_a_plain_refresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sigma = make_repo(tmp_path / 'we;ird#"dir\\x', {W + "a.yml": rule("A", "certutil.exe", 12)})
    data_dir = tmp_path / "data"
    assert run(capsys, *refresh_cmd(data_dir, sigma, None))[0] == 0
    monkeypatch.delenv("INDEXER_SIGMA_URL", raising=False)
    code, out, err = run(capsys, "refresh", "--data-dir", data_dir, "--source", "sigma", "--sigma-branch", "main")
    assert code == 0 and "up to date" in out, (code, out, err)


# --- item 13: no traceback, and none exits 1 -------------------------------------------------------


@pytest.mark.parametrize("url", ["https://u:p@host:abc/x", "https://host:70000/x", "https://[::1/x", "ssh://[x/y"])
def test_item13_a_url_python_cannot_parse_is_refused(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "refresh", "--data-dir", tmp_path / "data", "--source", "sigma", f"--sigma-url={url}")
    assert code == 4 and one_line(err) and "refused URL" in err, (code, out, err)
    assert ":p@" not in err


@pytest.fixture()
def broken_git(tmp_path: Path) -> dict[str, str]:
    """A `git` on PATH whose `ls-tree` answers garbage: an error no code path expects."""
    folder = tmp_path / "broken-git"
    folder.mkdir()
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = ls-tree ] && { printf \'garbage without a tab\\0\'; exit 0; }; done\n'
        f'exec {REAL_GIT} "$@"\n'
    )
    script.chmod(0o755)
    return clean_env(PATH=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", TMPDIR=str(tmp_path))


def test_item13_an_unexpected_error_is_exit_5_with_one_line_and_a_log(
    built: dict[str, Any], tmp_path: Path, broken_git: dict[str, str]
) -> None:
    done = proc(*refresh_cmd(tmp_path / "data", built["sigma"], built["lolbas"]), env=broken_git)
    assert done.returncode == 5 and one_line(done.stderr), (done.returncode, done.stderr)
    log = Path(re.search(r"traceback is in (\S+\.log)", done.stderr).group(1))
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "ValueError" in log.read_text()


# --- item 14: Click's exit codes, missing bundles, broken pipes --------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["refresh", "--jobs", "abc"],
        ["refresh", "--no-such-option"],
        ["search"],
        ["nosuchcommand"],
        ["search", "x", "extra", "--last", "3"],
        [],
    ],
)
def test_item14_click_usage_errors_exit_4(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *args, *(["--data-dir", tmp_path] if args else []))
    assert code == 4, (code, out, err)
    if args:
        assert one_line(err) and err.startswith("indexer: error:"), err


def test_item14_a_missing_bundle_is_a_fetch_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such.bundle"
    code, out, err = run(
        capsys, "refresh", "--data-dir", tmp_path / "data", "--source", "sigma", "--sigma-url", missing, "-q"
    )
    assert code == 2 and str(missing) in err and one_line(err), (code, out, err)


def test_item14_a_closed_pipe_is_not_nothing_found(built: dict[str, Any]) -> None:
    child = subprocess.Popen(
        [*INDEXER, "search", "psr.exe", "certutil.exe", "--data-dir", str(built["data_dir"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before anything was written
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141 and not err.strip(), err


# --- item 15: invalid choices ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, valid",
    [
        (["search", "psr.exe", "--role", "bogus"], "process"),
        (["search", "psr.exe", "--role", "PROCESS"], "process"),
        (["search", "psr.exe", "--source", "Sigma"], "lolbas"),
        (["search", "psr.exe", "--context", "filters"], "selection"),
        (["show", "psr.exe", "--kind", "tool"], "binary"),
        (["refresh", "--source", "Sigma"], "lolbas"),
        (["changes", "--since", "2026-13-01"], "YYYY-MM-DD"),
        (["changes", "--since", "yesterday"], "YYYY-MM-DD"),
        (["refresh", "--wait", "nan"], "seconds"),
        (["refresh", "--jobs", "-1"], "--jobs"),
    ],
)
def test_item15_invalid_choices_are_usage_errors_listing_the_valid_ones(
    args: list[str], valid: str, built: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *args, "--data-dir", built["data_dir"])
    assert code == 4 and one_line(err) and valid in err, (code, out, err)


# --- item 16: a shallow mirror ---------------------------------------------------------------------


def test_item16_a_shallow_mirror_is_reported_as_one(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", "--branch", "main", f"file://{built['sigma']}", str(shallow)],
        check=True,
        capture_output=True,
    )
    code, out, err = run(
        capsys,
        "refresh",
        "--data-dir",
        tmp_path / "data",
        "--source",
        "sigma",
        "--sigma-url",
        shallow,
        "--sigma-branch",
        "main",
        "-q",
    )
    assert code == 2 and one_line(err) and "shallow" in err and "not found" not in err, (code, out, err)


# --- item 20: no terminal control sequences from rules ------------------------------------------------

ESC_PATH = W + "esc_\x1b]0;pwned\x07_\x1b[2J.yml"
ESC_TITLE = '"Title \\e]0;owned\\a \\e[31mred \\x9b2J"'  # YAML escapes: ESC, BEL, CSI


@pytest.fixture(scope="module")
def escapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("escapes")
    text = rule("placeholder", "escaper.exe", 13).replace("title: placeholder", f"title: {ESC_TITLE}")
    sigma = make_repo(root / "sigma", {ESC_PATH: text, W + "bad\x1b[31m.yml": "title: [unclosed\n"})
    data_dir = root / "data"
    first = proc(*[a for a in refresh_cmd(data_dir, sigma, None) if a != "-q"])
    return {"root": root, "sigma": sigma, "data_dir": data_dir, "refresh": first}


def _controls(text: str) -> list[str]:
    """Control characters left in `text`, Rich's colour sequences (ESC [ ... m) aside."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


def test_item20_no_control_characters_reach_a_pipe(escapes: dict[str, Any]) -> None:
    data_dir = escapes["data_dir"]
    assert escapes["refresh"].returncode == 1
    outputs = {"refresh": escapes["refresh"].stdout + escapes["refresh"].stderr}
    for args in (
        ["search", "escaper.exe"],
        ["stats", "--errors"],
        ["changes"],
        ["show", "escaper.exe"],
        ["show", ESC_PATH],
        ["export", "-f", "csv", "-o", "-"],
        ["export", "-f", "markdown", "-o", "-"],
    ):
        done = proc(*args, "--data-dir", data_dir)
        assert done.returncode == 0, (args, done.stderr)
        outputs[" ".join(args[:2])] = done.stdout + done.stderr
    for name, text in outputs.items():
        assert not _controls(text), (name, [hex(ord(c)) for c in _controls(text)])
    assert "pwned" in outputs["search escaper.exe"] and "owned" in "".join(outputs.values())


def test_item20_no_control_characters_reach_a_terminal(escapes: dict[str, Any]) -> None:
    for args in (["search", "escaper.exe"], ["show", "escaper.exe"], ["show", ESC_PATH], ["stats", "--errors"]):
        master, slave = pty.openpty()
        child = subprocess.Popen(
            [*INDEXER, *args, "--data-dir", str(escapes["data_dir"])],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=clean_env(TERM="xterm-256color"),
            close_fds=True,
        )
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            try:
                chunk = os.read(master, 65536) if ready else b""
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        assert child.wait(timeout=30) == 0
        text = b"".join(chunks).decode("utf-8", "replace").replace("\r", "")
        assert "process_creation" in text and not _controls(text), (args, text[:400])


# --- item 21: CSV in `;` locales --------------------------------------------------------------------


def test_item21_csv_cells_stay_cells_in_a_semicolon_locale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = "    cmd:\n        CommandLine|contains: 'formula.exe x;=2+3;@SUM(A1);-1;+1'\n"
    text = rule("Formula", "formula.exe", 14, extra).replace(
        "level: high", "level: high\ntags:\n    - attack.t1059\n    - =cmd|' /c calc'!A0"
    )
    sigma = make_repo(tmp_path / "sigma", {W + "formula.yml": text})
    data_dir = tmp_path / "data"
    assert run(capsys, *refresh_cmd(data_dir, sigma, None))[0] in (0, 1)
    code, out, _ = run(capsys, "export", "-f", "csv", "-o", "-", "--data-dir", data_dir)
    assert code == 0 and "x;" in out
    for delimiter in (",", ";"):
        for row in csv.reader(io.StringIO(out), delimiter=delimiter):
            for cell in row:
                assert cell.lstrip(' "')[:1] not in ("=", "+", "-", "@"), (delimiter, cell)


# --- item 22: credentials in every URL form --------------------------------------------------------


@pytest.mark.parametrize(
    "url, secret",
    [
        ("user:s3cretpass@example.invalid:org/x.git", "s3cretpass"),
        ("ghp_S3CRETTOKEN@127.0.0.1:org/x.git", "S3CRETTOKEN"),
        ("https://ghp_S3CRETTOKEN@127.0.0.1:9/x.git", "S3CRETTOKEN"),
    ],
)
def test_item22_credentials_never_printed_logged_or_recorded(url: str, secret: str, tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "refresh.log"
    env = clean_env(GIT_SSH_COMMAND="false")
    runs = [
        proc("refresh", "--data-dir", data_dir, "--source", "sigma", f"--sigma-url={url}", *extra, env=env)
        for extra in (["--json"], ["--verbose", "--log-file", str(log)])
    ]
    for done in runs:
        assert done.returncode in (2, 4) and "Traceback" not in done.stderr, done.stderr
        assert secret not in done.stdout + done.stderr, done.stdout + done.stderr
        assert "***@" in done.stdout + done.stderr
    for path in [log, *data_dir.rglob("*")] if data_dir.exists() else [log]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# --- the README's exit codes, each from a real scenario ---------------------------------------------


def _documented_codes() -> dict[int, str]:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("| exit code | meaning |", 1)[1].split("\n\n", 1)[0]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.+) \|$", table, re.MULTILINE)}


def _interrupted_reading_stdin(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`search --stdin` sent SIGINT once it is certainly reading its standard input (Ctrl-C on a
    long list). Ready is when it has taken in more comment lines than the pipe holds: a write of
    that many returns only then, whatever the load. It starts with SIGINT's default disposition,
    as from a terminal: a process started in the background by a shell without job control
    (`make test &`) inherits SIGINT ignored, keeps ignoring it (as Python does), and would read on
    to the end of its input, find no name and exit 4."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a child starts with SIG_DFL
    try:
        waiting = subprocess.Popen(
            [*INDEXER, "search", "--stdin", "--data-dir", str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    assert waiting.stdin is not None
    pipe_bytes = 1 << 20  # Linux's F_GETPIPE_SZ where there is one: 64 KiB unless raised
    if hasattr(fcntl, "F_GETPIPE_SZ"):
        pipe_bytes = fcntl.fcntl(waiting.stdin.fileno(), fcntl.F_GETPIPE_SZ)
    comment = b"# " + b"x" * 1021 + b"\n"
    stuck = threading.Timer(60, waiting.kill)  # a child that never reads: the write fails, not hangs
    stuck.start()
    try:
        waiting.stdin.write(comment * (2 * pipe_bytes // len(comment) + 1))
        waiting.stdin.flush()  # returns once the child has read at least pipe_bytes of it
    finally:
        stuck.cancel()
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=60)
    return subprocess.CompletedProcess(waiting.args, waiting.returncode, out.decode(), err.decode())


@pytest.mark.slow  # every exit code's real scenario, each a process: 3-6 s
def test_readme_exit_code_table_is_true(built: dict[str, Any], tmp_path: Path, broken_git: dict[str, str]) -> None:
    documented = _documented_codes()
    assert set(documented) == set(EXIT_CODES.values()) == set(ExitCode), documented
    data_dir = shutil.copytree(built["data_dir"], tmp_path / "data", symlinks=True)
    sigma, lolbas = built["sigma"], built["lolbas"]
    seen: dict[int, str] = {}

    def check(name: str, done: subprocess.CompletedProcess[str]) -> None:
        assert done.returncode == EXIT_CODES[name], (name, done.returncode, done.stderr[-500:])
        assert "Traceback" not in done.stderr
        seen[done.returncode] = name

    check("ok", proc(*refresh_cmd(data_dir, sigma, lolbas)))
    check("ok", proc("search", "psr.exe", "--data-dir", data_dir))
    check("file_errors", proc("search", "nosuchname.exe", "--data-dir", data_dir))
    bad = shutil.copytree(sigma, tmp_path / "bad-sigma", symlinks=True)
    (bad / W / "broken.yml").write_text("title: [unclosed\n")
    commit(bad)
    check("file_errors", proc(*refresh_cmd(tmp_path / "bad-data", bad, None)))
    check("source_failed", proc(*refresh_cmd(data_dir, tmp_path / "no-such.bundle", lolbas)))
    with RefreshLock(data_dir) as lock:
        lock.acquire()
        check("locked", proc(*refresh_cmd(data_dir, sigma, lolbas)))
    check("usage", proc("search", "psr.exe", "--role", "bogus", "--data-dir", data_dir))
    check("usage", proc("stats", "--data-dir", tmp_path / "empty"))  # no index yet
    check("internal", proc(*refresh_cmd(tmp_path / "broken", sigma, lolbas), env=broken_git))
    check("interrupted", _interrupted_reading_stdin(data_dir))
    piped = subprocess.Popen(
        [*INDEXER, "search", "psr.exe", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert piped.stdout is not None
    piped.stdout.close()
    err = piped.stderr.read() if piped.stderr else ""
    check("broken_pipe", subprocess.CompletedProcess(piped.args, piped.wait(timeout=60), "", err))
    assert set(seen) == set(documented)
