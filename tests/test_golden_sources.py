"""Golden files of the atlas's sources and Elastic's rules: hand-written mentions of real files, compared with the index.

tests/golden/sources/<source>.yaml lists, for at least 15 real files of each source, EVERY
mention its policy (the file's header comment) gives, written by reading the file at the tip
of the source's bundle. Each file is its own test; a missing or extra mention fails it with a
readable diff (test_golden's helpers). Keys: binary, line, role, `inferred` (a bare name),
`field` (GTFOBins' function, LOOBins' key: compared where the golden file gives it) and
`default` (atomic: the `#{argument}` whose default names the binary), `context` (Elastic: a
query value's `selection` or `filter`). A file on which the
indexer is known to disagree with the policy carries `known_defect`: a strict xfail of the
index comparison, red the day it is fixed.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer.model import ROLES, Mention, snippet_around
from indexer.sources import get
from test_golden import assert_index_matches, assert_lines_name_the_binary

GOLDEN_DIR = Path(__file__).resolve().parent / "golden" / "sources"
ATLAS = ("atomic", "loldrivers", "hijacklibs", "gtfobins", "loobins", "elastic", "splunk")
MENTION_KEYS = {"binary", "line", "role", "inferred", "field", "default", "context", "via"}

Key = tuple[str, str, int, bool, str, str, str, str]  # binary, role, line, inferred, field, default, context, via


def _load(source: str) -> list[dict[str, Any]]:
    entries = yaml.safe_load((GOLDEN_DIR / f"{source}.yaml").read_text(encoding="utf-8"))
    assert isinstance(entries, list), f"{source}.yaml: expected a list of entries"
    return [{**entry, "source": source} for entry in entries]


ENTRIES = {source: _load(source) for source in ATLAS}
PARAMS = [pytest.param(e, id=f"{e['source']}:{e['path']}") for source in ATLAS for e in ENTRIES[source]]
DEFECTS = [
    pytest.param(
        e,
        id=f"{e['source']}:{e['path']}",
        marks=[pytest.mark.xfail(strict=True, reason=f"indexer defect: {e['known_defect']}")]
        if e.get("known_defect")
        else [],
    )
    for source in ATLAS
    for e in ENTRIES[source]
]
WITH_FIELD = {s for s in ATLAS if any("field" in m for e in ENTRIES[s] for m in e["mentions"])}
# detection rules' golden files say whether each query value is a selection or a filter
WITH_CONTEXT = {s for s in ATLAS if any("context" in m for e in ENTRIES[s] for m in e["mentions"])}


def golden_key(m: dict[str, Any], source: str) -> Key:
    return (
        m["binary"],
        m["role"],
        int(m["line"]),
        bool(m.get("inferred", False)),
        m.get("field", "") if source in WITH_FIELD else "",
        m.get("default", ""),
        m.get("context", "") if source in WITH_CONTEXT else "",
        m.get("via", ""),
    )


def index_key(m: Mention) -> Key:
    default = next((x[2:-1] for x in m.modifiers if x.startswith("#{") and x.endswith("}")), "")
    via = next((x[4:] for x in m.modifiers if x.startswith("via:")), "")
    context = m.context if m.source in WITH_CONTEXT else ""
    return (m.binary, m.role, m.line, m.inferred, m.field if m.source in WITH_FIELD else "", default, context, via)


@lru_cache(maxsize=None)
def _lines(clone: str, commit: str, path: str) -> tuple[str, ...]:
    text = subprocess.run(
        ["git", "--git-dir", clone, "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout.decode("utf-8-sig")
    return tuple(text.splitlines())


@pytest.fixture()
def file_lines(tip_data_dir: Path, tip_reader):
    """A file at the commit indexed, read from the data directory's clone of its bundle."""

    def read(source: str, path: str) -> tuple[str, ...]:
        commit = tip_reader.sources[source]["commit"]
        return _lines(str(tip_data_dir / "sources" / f"{source}.git"), commit, path)

    return read


def _describe(key: Key, lines: tuple[str, ...]) -> str:
    binary, role, line, inferred, field, default, context, via = key
    text = lines[line - 1].strip() if 0 < line <= len(lines) else "<no such line>"
    flags = " ".join(
        f
        for f in (
            field and f"field={field}",
            default and f"default={default}",
            context and f"context={context}",
            via and f"via={via}",
            inferred and "inferred",
        )
        if f
    )
    return f"L{line:<5} {binary:<26} {role:<17} {flags:<30} | {text[:100]}"


# --- the golden files themselves -----------------------------------------------------------


@pytest.mark.parametrize("source", ATLAS)
def test_golden_file_is_well_formed(source: str) -> None:
    entries = ENTRIES[source]
    paths = [e["path"] for e in entries]
    assert len(set(paths)) == len(paths) >= 15, f"{source}: at least 15 distinct real files"
    plugin = get(source)
    for entry in entries:
        assert {"source", "path", "why", "mentions"} <= set(entry) <= {
            "source",
            "path",
            "why",
            "mentions",
            "known_defect",
        } and entry["why"].strip(), entry
        assert plugin.wants(entry["path"]), f"{source} does not read {entry['path']}"
        keys = [golden_key(m, source) for m in entry["mentions"]]
        assert len(keys) == len(set(keys)), f"{entry['path']}: duplicate mentions"
        for m in entry["mentions"]:
            assert set(m) <= MENTION_KEYS and {"binary", "line", "role"} <= set(m), m
            assert m["role"] in ROLES and m["binary"] == m["binary"].lower(), m
    assert sum(len(e["mentions"]) for e in entries) > len(entries)


@pytest.mark.parametrize("entry", PARAMS)
def test_golden_lines_name_the_binary(entry: dict[str, Any], file_lines) -> None:
    """Typos in a golden file: each line exists and spells the name, except where the policy
    puts a name on a line that does not spell it (a function's or an alias line, a placeholder)."""
    lines = file_lines(entry["source"], entry["path"])
    spelled = []
    for m in entry["mentions"]:
        assert 0 < m["line"] <= len(lines), f"{entry['path']}: line {m['line']} out of range"
        text = lines[m["line"] - 1]
        if "default" in m:
            assert "#{" + m["default"] + "}" in text, f"{entry['path']}:{m['line']}: no #{{{m['default']}}}"
        elif "via" in m:  # a macro's value: the line calls the macro, the macro's line spells the name
            macro_path, _, macro_line = m["via"].partition("#L")
            assert f"`{macro_path.rsplit('/', 1)[-1][:-4]}" in text, (
                f"{entry['path']}:{m['line']}: no call of {macro_path}"
            )
            defined = file_lines(entry["source"], macro_path)[int(macro_line) - 1].lower()
            assert m["binary"] in defined, f"{m['via']}: {m['binary']!r} not on the line: {defined.strip()}"
        elif entry["source"] == "gtfobins" and m["binary"] not in text.lower():
            assert text.strip() in (f"{m['field']}:", f"alias: {text.split(':')[-1].strip()}"), text
        else:
            spelled.append(m)
    assert_lines_name_the_binary({**entry, "mentions": spelled}, lines)


# --- golden against the index ----------------------------------------------------------------


@pytest.mark.parametrize("entry", DEFECTS)
def test_golden_mentions(entry: dict[str, Any], tip_reader, file_lines) -> None:
    lines = file_lines(entry["source"], entry["path"])
    source = entry["source"]
    assert_index_matches(
        entry,
        tip_reader,
        lines,
        lambda m: golden_key(m, source),
        index_key,
        lambda k: _describe(k, lines),
        f"tests/golden/sources/{source}.yaml",
    )


@pytest.mark.parametrize("entry", PARAMS)
def test_golden_snippets(entry: dict[str, Any], tip_reader, file_lines) -> None:
    """Every mention of a golden file quotes its line of the real file, stripped (a long line: the
    window around the name)."""
    lines = file_lines(entry["source"], entry["path"])
    bad = [
        f"L{m.line} {m.binary}: {m.snippet!r}"
        for m in tip_reader.file_mentions(entry["source"], entry["path"])
        if not 0 < m.line <= len(lines) or m.snippet != snippet_around(lines[m.line - 1].strip(), m.binary)
    ]
    assert not bad, f"{entry['source']}:{entry['path']}:\n  " + "\n  ".join(bad)
