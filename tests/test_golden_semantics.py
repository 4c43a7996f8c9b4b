"""Golden set for the extraction policy of issue 13: hand-checked mentions of real files.

tests/golden/semantics.yaml lists, for each file, EVERY mention the new policy gives (process
values without extension, Unix tails, logsource-aware inference, guards against protocol and
log-source words, LOLBAS own stems, bare names in prose, comments, homoglyphs). It was written
by reading the files, not from the indexer's output. The comparison is test_golden's; a mention
may also carry `homoglyph`. Entries the indexer does not meet yet carry `known_defect` and are
strict xfails: the day the indexer meets one, its test turns red and the mark goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer.model import ROLES, Mention
from indexer.sources import SOURCES
from test_golden import (
    DETECTION_ROLES,
    _describe,
    _params,
    assert_index_matches,  # noqa: F401 (fixture)
    assert_lines_name_the_binary,
    default_context,
    file_lines,  # noqa: F401 (fixture)
)

GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "semantics.yaml"
NEW_ROLES = ("comment",)  # names in YAML comments (issue 13 item 5)
MENTION_KEYS = {"binary", "role", "line", "context", "inferred", "homoglyph"}
ENTRY_KEYS = {"source", "path", "why", "mentions", "known_defect"}

Key = tuple[str, str, int, str, bool, bool]  # (binary, role, line, context, inferred, homoglyph)


def _load() -> list[dict[str, Any]]:
    entries = yaml.safe_load(GOLDEN_FILE.read_text(encoding="utf-8"))
    assert isinstance(entries, list) and entries, f"{GOLDEN_FILE}: expected a list of entries"
    return entries


ENTRIES = _load()


def golden_key(m: dict[str, Any]) -> Key:
    return (
        m["binary"],
        m["role"],
        int(m["line"]),
        m.get("context", default_context(m["role"])),
        bool(m.get("inferred", False)),
        bool(m.get("homoglyph", False)),
    )


def index_key(m: Mention) -> Key:
    return (m.binary, m.role, m.line, m.context, m.inferred, bool(getattr(m, "homoglyph", False)))


def test_semantics_file_is_well_formed():
    seen = set()
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
            assert m["role"] in ROLES + NEW_ROLES, m
            name = m["binary"]
            assert name == name.lower() and name.strip() == name and "/" not in name and "\\" not in name, m
            assert m.get("context", default_context(m["role"])) in (
                ("selection", "filter") if m["role"] in DETECTION_ROLES else ("",)
            ), m
            if m.get("homoglyph"):
                assert not name.isascii(), f"{ref}: homoglyph {name!r} is plain ASCII"
    assert len(ENTRIES) >= 40


@pytest.mark.parametrize("entry", _params(ENTRIES, with_defects=False))
def test_semantics_lines_name_the_binary(entry, file_lines):
    assert_lines_name_the_binary(entry, file_lines(entry["source"], entry["path"]))


@pytest.mark.parametrize("entry", _params(ENTRIES, with_defects=True))
def test_semantics_mentions(entry, tip_reader, file_lines):
    lines = file_lines(entry["source"], entry["path"])
    assert_index_matches(
        entry,
        tip_reader,
        lines,
        golden_key,
        index_key,
        lambda k: _describe(k[:5], lines) + (" homoglyph" if k[5] else ""),
        "the golden set (issue 13 policy)",
    )
