"""A refresh frees what it made as it goes: nothing of it waits for Python's cyclic collector.

The refresh pauses the collector (refresh.collector_paused); whatever it leaves in a reference
cycle is freed only by the collector's next pass, after the refresh, over every object it kept.
"""

from __future__ import annotations

import gc
from pathlib import Path

from conftest import LOLBAS_BUNDLE
from indexer.model import FileReport
from indexer.refresh import RefreshOptions, refresh
from indexer.sources import get


def _alive(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


def test_a_refresh_leaves_none_of_its_file_reports_in_a_reference_cycle(tmp_path: Path) -> None:
    specs = [get("lolbas").spec(str(LOLBAS_BUNDLE))]
    refresh(RefreshOptions(tmp_path, specs))  # the first build: the full build below has an index to replace
    gc.collect()
    before = _alive(FileReport)
    gc.disable()  # as refresh() leaves it: what refcounting does not free stays visible
    try:
        refresh(RefreshOptions(tmp_path, specs, full=True))
        left = _alive(FileReport) - before
    finally:
        gc.enable()
    assert left == 0, f"{left} file reports of the refresh outlive it, held in a cycle only the collector frees"
