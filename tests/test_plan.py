"""The refresh's plan and its change summary on hand-built states: no git, no corpus."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from indexer import plan
from indexer.parsers import ParserPool
from indexer.refresh import Progress, RefreshOptions, _Refresh
from indexer.manifest import Manifest, SourceOutcome, mention_key, summarise
from indexer.model import FileReport
from indexer.repository import Change, TreeEntry
from indexer.state import SourceState, State

URL = "https://github.com/SigmaHQ/sigma.git"
OPTIONS = plan.Options(full=False, max_file_bytes=1000, allow_shrink=False, checker="pySigma 1")


def entry(path: str, size: int = 10, mode: str = "100644") -> TreeEntry:
    return TreeEntry(path, "0" * 40, mode, size)


def state(files: dict[str, str], commit: str = "a" * 40, checker: str = "pySigma 1", **reports: Any) -> State:
    """A previous state: sigma at `commit`, one indexed report per "path": "rule id"."""
    return State(
        sources={"sigma": SourceState(commit, URL)},
        files={
            f"sigma:{p}": FileReport("sigma", p, "indexed", rule_ids=[rid] if rid else [], **reports)
            for p, rid in files.items()
        },
        checker=checker,
        max_file_bytes=1000,
    )


# --- how a source is read ------------------------------------------------------------------------


def test_mode_is_unchanged_incremental_or_full_and_says_why() -> None:
    indexed = SourceState("a" * 40, URL)
    assert plan.mode(indexed, URL, "a" * 40, known=True, read_again=False) == "unchanged"
    assert plan.mode(indexed, URL, "b" * 40, known=True, read_again=False) == "incremental"
    assert plan.mode(None, URL, "b" * 40, known=False, read_again=False) == "full"  # first time
    assert plan.mode(indexed, URL + "x", "a" * 40, known=True, read_again=False) == "full"  # another repository
    assert plan.mode(indexed, URL, "b" * 40, known=False, read_again=False) == "full"  # commit gone (forced push)
    assert plan.mode(indexed, URL, "a" * 40, known=True, read_again=True) == "full"  # --full, checker, limit


def test_every_file_is_read_again_for_another_checker_or_size_limit() -> None:
    assert plan.read_again_reason(None, OPTIONS) == ""
    assert plan.read_again_reason(state({}), OPTIONS) == ""
    assert (
        plan.read_again_reason(state({}, checker="pySigma 0"), OPTIONS)
        == "rules checked by pySigma 0 before, pySigma 1 now"
    )
    assert plan.read_again_reason(state({}, checker=""), OPTIONS).startswith("rules checked by another checker")
    bigger = plan.Options(max_file_bytes=2000, checker="pySigma 1")
    assert (
        plan.read_again_reason(state({}), bigger)
        == "file size limit 1,000 bytes before, 2,000 now: every file read again"
    )


def test_an_incremental_plan_reads_only_what_moved_and_removes_what_went() -> None:
    tree = [entry("rules/a.yml"), entry("rules/b.yml"), entry("rules/c.yml"), entry("rules/new.yml")]
    changes = [
        Change("M", "rules/a.yml"),
        Change("D", "rules/gone.yml"),
        Change("R", "rules/c.yml", "rules/old_c.yml"),
        Change("A", "rules/new.yml"),
    ]
    planned = plan.plan_source("sigma", "incremental", tree, changes, first=False)
    assert [e.path for e in planned.read] == ["rules/a.yml", "rules/c.yml", "rules/new.yml"]
    assert (planned.added, planned.modified, planned.deleted, planned.renamed) == (
        ["rules/new.yml"],
        ["rules/a.yml"],
        ["rules/gone.yml"],
        [("rules/old_c.yml", "rules/c.yml")],
    )
    previous = state({"rules/a.yml": "1", "rules/b.yml": "2", "rules/old_c.yml": "3", "rules/gone.yml": "4"})
    assert plan.removed({"sigma": planned}, previous.files) == {
        "sigma:rules/a.yml",
        "sigma:rules/gone.yml",
        "sigma:rules/old_c.yml",
        "sigma:rules/new.yml",
    }
    assert not plan.rebuilds_all(previous, {"sigma": planned})


def test_files_depending_on_a_changed_shared_file_are_read_again_and_replaced() -> None:
    """Extraction.depends (Splunk: the macros a detection calls): a change to one of them, a rename
    away from one, reads the files that depend on it again; a full read needs no such list."""
    tree = [entry("macros/m.yml"), entry("macros/n2.yml"), entry("d/a.yml"), entry("d/b.yml"), entry("d/c.yml")]
    files = {
        "sigma:d/a.yml": FileReport("sigma", "d/a.yml", "indexed", depends=["macros/m.yml"]),
        "sigma:d/b.yml": FileReport("sigma", "d/b.yml", "indexed", depends=["macros/n.yml", "macros/x.yml"]),
        "sigma:d/c.yml": FileReport("sigma", "d/c.yml", "indexed"),
        "lolbas:d/a.yml": FileReport("lolbas", "d/a.yml", "indexed", depends=["macros/m.yml"]),
    }
    changes = [Change("M", "macros/m.yml"), Change("R", "macros/n2.yml", "macros/n.yml")]
    planned = plan.plan_source("sigma", "incremental", tree, changes, first=False, files=files)
    assert planned.dependents == ["d/a.yml", "d/b.yml"]
    assert [e.path for e in planned.read] == ["macros/m.yml", "macros/n2.yml", "d/a.yml", "d/b.yml"]
    assert planned.modified == ["macros/m.yml"]  # what git says changed: dependents are not modified files
    assert plan.removed({"sigma": planned}, files) >= {"sigma:d/a.yml", "sigma:d/b.yml"}
    assert "sigma:d/c.yml" not in plan.removed({"sigma": planned}, files)
    assert plan.plan_source("sigma", "full", tree, changes, first=False, files=files).dependents == []


def test_a_full_plan_reads_the_whole_tree_and_lists_it_added_only_the_first_time() -> None:
    tree = [entry("rules/a.yml"), entry("LICENSE")]
    first = plan.plan_source("sigma", "full", tree, [], first=True)
    assert [e.path for e in first.read] == ["rules/a.yml", "LICENSE"] and first.added == ["rules/a.yml", "LICENSE"]
    again = plan.plan_source("sigma", "full", tree, [Change("R", "rules/a.yml", "rules/z.yml")], first=False)
    assert again.added == [] and again.renamed == [("rules/z.yml", "rules/a.yml")]  # the summary follows renames
    previous = state({"rules/z.yml": "1"})
    lolbas = FileReport("lolbas", "yml/x.yml", "indexed")
    assert plan.removed({"sigma": again}, {**previous.files, "lolbas:yml/x.yml": lolbas}) == {"sigma:rules/z.yml"}
    assert plan.rebuilds_all(previous, {"sigma": again}) and plan.rebuilds_all(None, {})
    assert not plan.rebuilds_all(previous, {"sigma": plan.SourcePlan("failed")})


def test_files_the_source_does_not_read_are_reported_skipped_with_why() -> None:
    planned = plan.SourcePlan(
        "full",
        read=[
            entry("rules/a.yml"),
            entry("rules/link.yml", mode="120000"),
            entry("rules/sub", mode="160000"),
            entry("LICENSE.Detection.Rules.md"),
            entry("docs/x.yml"),
            entry("rules/big.yml", size=1001),
            entry("rules/exec.yml", mode="100755"),
        ],
    )
    read, skipped = plan.to_read({"sigma": planned}, max_bytes=1000)
    assert [(name, e.path) for name, e in read] == [("sigma", "rules/a.yml"), ("sigma", "rules/exec.yml")]
    assert {r.path: r.reason for r in skipped} == {
        "rules/link.yml": "symbolic link: not followed",
        "rules/sub": "submodule: not followed",
        "LICENSE.Detection.Rules.md": "license file (read for the license, not a rule)",
        "docs/x.yml": "outside the rule folders",
        "rules/big.yml": "file is 1,001 bytes, over the 1,000-byte limit",
    }
    assert all(r.status == "skipped" and r.source == "sigma" for r in skipped)


def test_a_source_that_lost_most_of_its_files_is_not_published() -> None:
    previous = state({f"rules/r{i}.yml": str(i) for i in range(20)})
    few = [entry(f"rules/r{i}.yml") for i in range(9)]
    assert plan.shrink_error("sigma", few, previous, OPTIONS).startswith("9 rule files at the new commit, 20 indexed")
    assert plan.shrink_error("sigma", few + [entry("rules/r9.yml")], previous, OPTIONS) == ""  # half is enough
    assert plan.shrink_error("sigma", few, previous, plan.Options(allow_shrink=True, max_file_bytes=1000)) == ""
    assert plan.shrink_error("sigma", [], state({"rules/a.yml": "1"}), OPTIONS) == ""  # under 10 before
    assert plan.shrink_error("sigma", [], None, OPTIONS) == ""


def test_nothing_new_keeps_the_index_unless_it_is_damaged() -> None:
    unchanged, failed, full = plan.SourcePlan("unchanged"), plan.SourcePlan("failed"), plan.SourcePlan("full")
    assert plan.nothing_new({"sigma": unchanged, "lolbas": failed}, damaged=False)
    assert not plan.nothing_new({"sigma": unchanged}, damaged=True)
    assert plan.nothing_new({"sigma": failed}, damaged=True)  # nothing to build it from
    assert not plan.nothing_new({"sigma": unchanged, "lolbas": full}, damaged=False)


# --- what changed ----------------------------------------------------------------------------------


def mention(path: str, binary: str, line: int, **kw: Any) -> dict[str, Any]:
    base = {
        "source": "sigma",
        "path": path,
        "binary": binary,
        "line": line,
        "role": "process",
        "field": "Image",
        "modifiers": ["endswith"],
        "context": "selection",
        "detection": "selection",
        "inferred": False,
        "snippet": f"Image|endswith: '\\\\{binary}'",
        "title": "T",
        "level": "high",
        "status": "test",
        "rule_id": "",
        "tags": [],
        "logsource": "windows/process_creation",
    }
    return {**base, **kw}


def test_a_mention_moving_down_a_line_or_to_a_renamed_file_is_no_change() -> None:
    a = mention("rules/a.yml", "x.exe", 10)
    assert mention_key(a, {}) == mention_key({**a, "line": 12}, {})
    assert mention_key(a, {"sigma:rules/a.yml": "sigma:rules/b.yml"}) == mention_key({**a, "path": "rules/b.yml"}, {})
    assert mention_key(a, {}) != mention_key({**a, "context": "filter"}, {})


def test_the_summary_counts_mentions_binaries_and_rules_from_the_documents() -> None:
    previous = state({"rules/a.yml": "id-a", "rules/old.yml": "id-old"}, title="")
    now = state({"rules/b.yml": "id-a", "rules/new.yml": "id-new"})
    now.files["sigma:rules/new.yml"].title = "New rule"
    old_docs = {
        "x.exe": json.dumps([mention("rules/a.yml", "x.exe", 3), mention("rules/old.yml", "x.exe", 4)]),
        "y.exe": json.dumps([mention("rules/a.yml", "y.exe", 5)]),
    }
    written = {
        "x.exe": json.dumps([mention("rules/b.yml", "x.exe", 9), mention("rules/new.yml", "x.exe", 2)]),
        "y.exe": json.dumps([mention("rules/a.yml", "y.exe", 5)]),
    }  # the same: skipped
    got = summarise(old_docs, written, previous, now, {"sigma": [("rules/a.yml", "rules/b.yml")]}, ["sigma"])
    assert (got["mentions_added"], got["mentions_removed"]) == (1, 1)
    assert got["binaries"] == {"x.exe": {"rules_before": 2, "rules_after": 2, "gained": 1, "lost": 1}}
    assert (got["rules_added"], got["rules_removed"]) == (["id-new"], ["id-old"])
    assert got["rules_renamed"] == [{"id": "id-a", "from": "sigma:rules/a.yml", "to": "sigma:rules/b.yml"}]
    assert got["rules_added_detail"] == [{"id": "id-new", "path": "rules/new.yml", "title": "New rule"}]
    assert set(got) <= set(Manifest(started="").to_dict())  # fields of the manifest, nothing else


def test_a_first_build_lists_no_detections_or_rule_details() -> None:
    written = {"x.exe": json.dumps([mention("rules/a.yml", "x.exe", 3)])}
    got = summarise({}, written, None, state({"rules/a.yml": "id-a"}), {}, ["sigma"])
    assert got["mentions_added"] == 1 and got["rules_added"] == ["id-a"]
    assert got["detections"] == {} and got["rules_added_detail"] == []


def test_a_manifest_reads_back_what_it_wrote() -> None:
    m = Manifest(
        started="2026-01-01T00:00:00Z",
        reason="r",
        full=True,
        sources={
            "sigma": SourceOutcome("sigma", URL, "master", "a" * 40, "b" * 40, "incremental", renamed=[("x", "y")])
        },
    )
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


# --- the order of the refresh's phases -----------------------------------------------------------


def test_parser_processes_are_never_forked_while_the_history_thread_runs(tmp_path: Path) -> None:
    """A process forked while another thread runs may inherit a lock that thread holds: the
    refresh's reader factory waits for the history thread before it forks parser processes."""
    run = _Refresh(RefreshOptions(tmp_path, [], jobs=2), Progress())
    release, order = threading.Event(), []

    def history() -> dict[str, Any]:
        release.wait(10)
        order.append("history done")
        return {}

    with ThreadPoolExecutor(max_workers=1) as pool:
        run._history = pool.submit(history)
        threading.Timer(0.3, release.set).start()
        reader = run._reader(1000)  # enough files for parser processes
        order.append("forked")
        reader.close()
    assert isinstance(reader, ParserPool) and order == ["history done", "forked"]
