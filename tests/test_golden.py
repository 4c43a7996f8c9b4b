"""Golden test set: hand-checked mentions of real Sigma and LOLBAS files, compared with the index.

tests/golden/mentions.yaml lists, for each file, EVERY mention the extraction policy gives
(written by reading the file, not from the indexer's output). Each file is its own test:
a missing or an extra mention fails it with a readable diff. Files on which the indexer is
known to disagree with the policy carry `known_defect` and are strict xfails, so the defect
stays visible and the test turns red the day it is fixed (then drop the key).
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from indexer.model import ROLES, Mention
from indexer.sources import SOURCES

GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "mentions.yaml"

# Roles of Sigma detection values: their context defaults to "selection"; every other role
# (text, LOLBAS) has context "".
DETECTION_ROLES = frozenset(
    {
        "process",
        "parent",
        "original_filename",
        "target",
        "command_line",
        "loaded_module",
        "file",
        "registry",
        "other",
        "keyword",
    }
)
MENTION_KEYS = {"binary", "role", "line", "context", "inferred"}
ENTRY_KEYS = {"source", "path", "why", "mentions", "known_defect"}

Key = tuple[str, str, int, str, bool]  # (binary, role, line, context, inferred)


def _load() -> list[dict[str, Any]]:
    entries = yaml.safe_load(GOLDEN_FILE.read_text(encoding="utf-8"))
    assert isinstance(entries, list) and entries, f"{GOLDEN_FILE}: expected a list of entries"
    return entries


ENTRIES = _load()


def default_context(role: str) -> str:
    return "selection" if role in DETECTION_ROLES else ""


def golden_key(m: dict[str, Any]) -> Key:
    return (
        m["binary"],
        m["role"],
        int(m["line"]),
        m.get("context", default_context(m["role"])),
        bool(m.get("inferred", False)),
    )


def index_key(m: Mention) -> Key:
    return (m.binary, m.role, m.line, m.context, m.inferred)


def _params(entries: list[dict[str, Any]], with_defects: bool) -> list[Any]:
    params = []
    for entry in entries:
        marks = []
        if with_defects and entry.get("known_defect"):
            marks.append(pytest.mark.xfail(strict=True, reason=f"indexer defect: {entry['known_defect']}"))
        params.append(pytest.param(entry, id=f"{entry['source']}:{entry['path']}", marks=marks))
    return params


@lru_cache(maxsize=None)
def _file_lines(checkout: Path, path: str) -> tuple[str, ...]:
    text = subprocess.run(
        ["git", "-C", str(checkout), "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout.decode("utf-8-sig")
    return tuple(text.splitlines())


@pytest.fixture()
def file_lines(sigma_checkout: Path, lolbas_checkout: Path):
    def read(source: str, path: str) -> tuple[str, ...]:
        return _file_lines(sigma_checkout if source == "sigma" else lolbas_checkout, path)

    return read


def _describe(key: Key, lines: tuple[str, ...]) -> str:
    binary, role, line, context, inferred = key
    text = lines[line - 1].strip() if 0 < line <= len(lines) else "<no such line>"
    flags = " ".join(f for f in (context and f"context={context}", inferred and "inferred") if f)
    return f"L{line:<4} {binary:<28} {role:<17} {flags:<34} | {text[:110]}"


# --- the golden file itself --------------------------------------------------------------


def test_golden_file_is_well_formed():
    seen = set()
    mentions = 0
    for entry in ENTRIES:
        assert set(entry) <= ENTRY_KEYS and {"source", "path", "why", "mentions"} <= set(entry), entry
        assert entry["source"] in SOURCES, entry["source"]
        assert isinstance(entry["why"], str) and entry["why"].strip()
        ref = (entry["source"], entry["path"])
        assert ref not in seen, f"duplicate golden entry {ref}"
        seen.add(ref)
        keys = [golden_key(m) for m in entry["mentions"]]
        assert len(keys) == len(set(keys)), f"{ref}: duplicate mentions"
        for m in entry["mentions"]:
            assert set(m) <= MENTION_KEYS and {"binary", "role", "line"} <= set(m), m
            assert m["role"] in ROLES, m
            assert m["binary"] == m["binary"].lower() and "/" not in m["binary"] and "\\" not in m["binary"], m
            assert m.get("context", default_context(m["role"])) in (
                ("selection", "filter") if m["role"] in DETECTION_ROLES else ("",)
            ), m
            mentions += 1
    assert len(ENTRIES) >= 45 and mentions > 0


def assert_lines_name_the_binary(entry: dict[str, Any], lines: tuple[str, ...]) -> None:
    """Guards a golden file against typos: each line exists and spells the name (or its stem);
    a `comment` mention sits after a `#`."""
    for m in entry["mentions"]:
        assert 0 < m["line"] <= len(lines), f"{entry['path']}: line {m['line']} out of range"
        text = lines[m["line"] - 1].lower().replace("\\.", ".")
        stem = m["binary"].rpartition(".")[0] or m["binary"]
        needle = stem if m.get("inferred") or "|re" in text else m["binary"]
        assert needle in text, f"{entry['path']}:{m['line']}: {m['binary']!r} not on the line: {text.strip()}"
        if m["role"] == "comment":
            assert "#" in text and text.index("#") < text.rindex(needle), (
                f"{entry['path']}:{m['line']}: {m['binary']!r} is not inside a comment"
            )


def assert_index_matches(
    entry: dict[str, Any],
    reader: Any,
    lines: tuple[str, ...],
    golden: Callable[[Any], tuple],
    indexed: Callable[[Mention], tuple],
    describe: Callable[[tuple], str],
    title: str,
) -> None:
    """The index holds exactly the golden mentions of one file; else a readable diff."""
    source, path = entry["source"], entry["path"]
    report = reader.state.files.get(f"{source}:{path}")
    assert report is not None, f"{source}:{path} is not in the index at all"
    assert report.status == "indexed", f"{source}:{path} was not indexed: {report.status} {report.reason}"
    expected = {golden(m) for m in entry["mentions"]}
    actual = {indexed(m) for m in reader.file_mentions(source, path)}
    if expected == actual:
        return
    by_line = lambda k: (k[2], k[0], k[1])  # noqa: E731
    out = [f"{source}:{path}: index differs from {title}"]
    missing, extra = sorted(expected - actual, key=by_line), sorted(actual - expected, key=by_line)
    if missing:
        out.append(f"  missing (golden, not in index): {len(missing)}")
        out += ["    - " + describe(k) for k in missing]
    if extra:
        out.append(f"  extra (in index, not golden): {len(extra)}")
        out += ["    + " + describe(k) for k in extra]
    pytest.fail("\n".join(out), pytrace=False)


@pytest.mark.parametrize("entry", _params(ENTRIES, with_defects=False))
def test_golden_lines_name_the_binary(entry, file_lines):
    assert_lines_name_the_binary(entry, file_lines(entry["source"], entry["path"]))


# --- golden against the index ------------------------------------------------------------


@pytest.mark.parametrize("entry", _params(ENTRIES, with_defects=True))
def test_golden_mentions(entry, tip_reader, file_lines):
    lines = file_lines(entry["source"], entry["path"])
    assert_index_matches(
        entry, tip_reader, lines, golden_key, index_key, lambda k: _describe(k, lines), "the golden set"
    )


@pytest.mark.parametrize("entry", _params(ENTRIES, with_defects=False))
def test_golden_snippets(entry, tip_reader, file_lines):
    """Every mention the index holds for a golden file quotes its line of the real file, stripped."""
    source, path = entry["source"], entry["path"]
    lines = file_lines(source, path)
    bad = []
    for m in tip_reader.file_mentions(source, path):
        if not 0 < m.line <= len(lines):
            bad.append(f"L{m.line} {m.binary}: line out of range ({len(lines)} lines)")
            continue
        if m.snippet != lines[m.line - 1].strip():
            bad.append(f"L{m.line} {m.binary}: snippet {m.snippet!r} != {lines[m.line - 1].strip()!r}")
    assert not bad, f"{source}:{path}:\n  " + "\n  ".join(bad)
