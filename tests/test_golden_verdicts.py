"""tests/golden/verdicts.yaml: (rule, binary) verdicts read by hand in the real rule files,
compared with the verdicts the index stores.

Pairs whose right answer needs the names work of issue 13 (items 4-6: process values without
extension, comments, bare names in text, logsource.definition, false names) are strict xfails
listed in PENDING_NAMES: each turns red the day the index gets it right; then drop it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer.verdicts import VERDICTS

GOLDEN = yaml.safe_load((Path(__file__).resolve().parent / "golden" / "verdicts.yaml").read_text(encoding="utf-8"))

# (rule file name, binary) -> what the index still lacks
PENDING_NAMES: dict[tuple[str, str], str] = {}  # all 19 met by the names work (branch names)


def _params() -> list[Any]:
    out = []
    for pair in GOLDEN:
        key = (pair["rule"].rsplit("/", 1)[-1], pair["binary"])
        marks = (
            [pytest.mark.xfail(strict=True, reason=f"issue 13 names: {PENDING_NAMES[key]}")]
            if key in PENDING_NAMES
            else []
        )
        out.append(pytest.param(pair, id=f"{key[0]}:{key[1]}", marks=marks))
    return out


def test_golden_verdicts_file_is_well_formed():
    assert len(GOLDEN) >= 50
    keys = {(p["rule"].rsplit("/", 1)[-1], p["binary"]) for p in GOLDEN}
    assert len(keys) == len(GOLDEN) and set(PENDING_NAMES) <= keys
    for pair in GOLDEN:
        assert pair["verdict"] in (None, *VERDICTS) and all(v in VERDICTS for v in pair["verdicts"])
        assert (pair["verdict"] is None) == (pair["verdicts"] == []) and pair["evidence"]
        if pair["verdict"]:
            assert pair["verdicts"][0] == pair["verdict"]


@pytest.mark.parametrize("pair", _params())
def test_golden_verdict(tip_reader, pair):
    found = [r for r in tip_reader.rules([pair["binary"]]) if r.path == pair["rule"]]
    got = (found[0].verdict, list(found[0].verdicts)) if found else (None, [])
    assert got == (pair["verdict"], pair["verdicts"]), f"{pair['rule']} {pair['binary']}: {pair.get('note', '')}"
