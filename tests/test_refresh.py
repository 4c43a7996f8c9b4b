"""Refresh on the real bundles with upstream moving: incremental equals full, small refreshes
stay small, nothing new is a no-op, SIGKILL at any point keeps the previous index, the lock,
and failing sources keep the previous index.

Upstream is a bare clone of sigma.bundle whose master is set with `git update-ref`: first to
the commit 300 first-parent commits before the tip (OLD), then to OLD's first-parent successor
(NEXT) or back to the tip (TIP). The expensive builds happen once per module.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from indexer.index import IndexReader
from indexer.verdicts import DETECTING, is_retired
from indexer.sources import get
from indexer.errors import ExitCode
from indexer.lock import Locked, RefreshLock
from indexer.manifest import mention_key
from indexer.refresh import CHECKER, RefreshOptions, _Refresh, refresh

from conftest import ATLAS, CORPORA, specs
from repos import (
    RefreshRun,
    Upstream,
    copy_data_dir,
    current,
    git,
    has_open,
    indexer,
    is_rule_file,
    popen_indexer,
    refresh_args,
    sorted_export,
)

pytestmark = pytest.mark.slow

STEPS_BACK = 300
ATLAS_STEPS_BACK = 10  # the atlas's sources move too: each from this many first-parent commits before its tip


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refresh")


@pytest.fixture(scope="module")
def upstream(work: Path, bundles: tuple[Path, Path]) -> Upstream:
    up = Upstream(bundles[0], work / "sigma.git")
    assert len(up.first_parent) > STEPS_BACK + 1
    return up


@pytest.fixture(scope="module")
def lolbas(bundles: tuple[Path, Path]) -> Path:
    return bundles[1]


@pytest.fixture(scope="module")
def old(upstream: Upstream) -> str:
    return upstream.back(STEPS_BACK)


@pytest.fixture(scope="module")
def atlas(work: Path, bundles: tuple[Path, Path]) -> dict[str, Upstream]:
    """The atlas's sources, each upstream a bare clone of its bundle (moved with `atlas_at`)."""
    ups = {name: Upstream(CORPORA / f"{name}.bundle", work / f"{name}.git", get(name).branch) for name in ATLAS}
    assert all(len(up.first_parent) > ATLAS_STEPS_BACK for up in ups.values())
    return ups


def atlas_at(atlas: dict[str, Upstream], where: str) -> None:
    """Every atlas upstream at its OLD (ATLAS_STEPS_BACK before the tip) or at its tip."""
    for up in atlas.values():
        up.move(up.back(ATLAS_STEPS_BACK) if where == "old" else up.tip)


@pytest.fixture(scope="module")
def old_dir(work: Path, upstream: Upstream, lolbas: Path, old: str, atlas: dict[str, Upstream]) -> Path:
    """Sigma indexed at OLD, the atlas's sources at theirs (+ LOLBAS at its tip). Tests copy it;
    nobody refreshes it."""
    upstream.move(old)
    atlas_at(atlas, "old")
    data_dir = work / "old"
    manifest = refresh(RefreshOptions(data_dir, specs(upstream.path, lolbas, {n: up.path for n, up in atlas.items()})))
    # LOLDrivers 10 commits back had a file with a duplicate key (upstream's "remove duplicate yaml
    # keys" fixed it): reported, the rest indexed; the refresh to the tip reads it again
    assert manifest.exit_code in (ExitCode.OK, ExitCode.FILE_ERRORS), manifest.file_errors
    assert all(e["source"] in ATLAS and "duplicate key" in e["reason"] for e in manifest.file_errors), (
        manifest.file_errors
    )
    assert manifest.sources["sigma"].after == old
    return data_dir


@pytest.fixture(scope="module")
def tip_export(work: Path, tip_data_dir: Path, upstream: Upstream) -> bytes:
    """The full build at the tip (conftest's tip_data_dir, built from the same bundles)."""
    with IndexReader(tip_data_dir) as reader:
        assert reader.sources["sigma"]["commit"] == upstream.tip
    return sorted_export(tip_data_dir, work / "tip.jsonl")


@pytest.fixture(scope="module")
def old_export(work: Path, old_dir: Path) -> bytes:
    return sorted_export(old_dir, work / "old.jsonl")


def _by_binary(export: bytes) -> dict[str, set[tuple[str, str, int, str]]]:
    out: dict[str, set[tuple[str, str, int, str]]] = {}
    for line in export.splitlines():
        m = json.loads(line)
        out.setdefault(m["binary"], set()).add((m["source"], m["path"], m["line"], m["role"]))
    return out


@pytest.fixture(scope="module")
def changed_name(old_export: bytes, tip_export: bytes) -> str:
    """A binary indexed at OLD and at the tip whose mentions (file, line, role) differ most."""
    before, after = _by_binary(old_export), _by_binary(tip_export)
    both = [b for b in before.keys() & after.keys() if before[b] != after[b]]
    assert both, "no binary changed between OLD and the tip: the commits chosen prove nothing"
    return max(both, key=lambda b: (len(before[b] ^ after[b]), b))


def _search(data_dir: Path, *names: str) -> str:
    done = indexer("search", *names, "--json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def old_search(old_dir: Path, changed_name: str) -> str:
    return _search(old_dir, "psr.exe", changed_name)


@pytest.fixture(scope="module")
def tip_search(tip_data_dir: Path, changed_name: str) -> str:
    return _search(tip_data_dir, "psr.exe", changed_name)


@pytest.fixture(scope="module")
def incremental(work: Path, old_dir: Path, upstream: Upstream, lolbas: Path, atlas: dict[str, Upstream]):
    """OLD's data dir copied and refreshed to the tip with `indexer refresh --json` (the atlas's
    sources from the clones the data dir has)."""
    data_dir = copy_data_dir(old_dir, work / "incremental")
    upstream.move(upstream.tip)
    atlas_at(atlas, "tip")
    return data_dir, indexer(*refresh_args(upstream.path, lolbas, "--json"), data_dir=data_dir)


@pytest.fixture()
def tip_copy(work: Path, tip_data_dir: Path, request: pytest.FixtureRequest) -> Path:
    """A copy of the full build at the tip, made from the bundles: refresh it with refresh_args(*bundles)."""
    return copy_data_dir(tip_data_dir, work / f"tip-{request.node.name}")


# --- 1. incremental equals full -----------------------------------------------------------------


def test_incremental_refresh_equals_full_build(
    work: Path,
    incremental,
    upstream: Upstream,
    old: str,
    tip_export: bytes,
    old_export: bytes,
    tip_data_dir: Path,
    atlas: dict[str, Upstream],
) -> None:
    data_dir, done = incremental
    assert done.returncode == ExitCode.OK, done.stderr[-600:]
    manifest = json.loads(done.stdout)
    assert manifest["exit_code"] == ExitCode.OK
    assert manifest["sources"]["lolbas"]["mode"] == "unchanged"
    moved = {"sigma": (upstream, old), **{name: (up, up.back(ATLAS_STEPS_BACK)) for name, up in atlas.items()}}
    assert set(manifest["sources"]) == {"lolbas", *moved}
    for name, (up, before) in moved.items():
        outcome = manifest["sources"][name]
        assert (outcome["mode"], outcome["before"], outcome["after"]) == ("incremental", before, up.tip), name
        changes = [c for c in up.diff(before, up.tip) if get(name).wants(c.path) or get(name).wants(c.old_path)]
        want = {s: sorted(c.path for c in changes if c.status == s) for s in "AMD"}
        want_renamed = sorted([c.old_path, c.path] for c in changes if c.status == "R")
        for status, key in (("A", "added"), ("M", "modified"), ("D", "deleted")):
            assert len(outcome[key]) == len(want[status]) and sorted(outcome[key]) == want[status], (name, key)
        assert len(outcome["renamed"]) == len(want_renamed) and sorted(map(list, outcome["renamed"])) == want_renamed
        counts = {
            "A": len(outcome["added"]),
            "M": len(outcome["modified"]),
            "D": len(outcome["deleted"]),
            "R": len(outcome["renamed"]),
        }
        assert {s: n for s, n in counts.items() if n} == dict(Counter(c.status for c in changes)), name
        assert name == "sigma" or changes, f"{name}: no file changed in {ATLAS_STEPS_BACK} commits: go further back"

    incremental_export = sorted_export(data_dir, work / "incremental.jsonl")
    assert incremental_export != old_export  # the refresh did something
    if incremental_export != tip_export:
        inc, full = set(incremental_export.splitlines()), set(tip_export.splitlines())
        only_inc, only_full = sorted(inc - full)[:3], sorted(full - inc)[:3]
        pytest.fail(
            f"incremental export differs from the full build: {len(inc - full)} lines only in the "
            f"incremental one, e.g. {only_inc}; {len(full - inc)} only in the full one, e.g. {only_full}"
        )
    assert manifest["mentions_total"] == len(tip_export.splitlines())
    # binary names (stats, wildcards, suggestions): none left over from deleted documents
    with IndexReader(data_dir) as reader:
        assert reader.binaries() == sorted({json.loads(line)["binary"] for line in tip_export.splitlines()})
        # the verdicts stored per (rule file, binary) too
        with IndexReader(tip_data_dir) as full:
            assert sorted(reader.all_rules(), key=repr) == sorted(full.all_rules(), key=repr)


def test_incremental_manifest_says_what_the_exports_say_changed(
    incremental, old_export: bytes, tip_export: bytes
) -> None:
    """Mentions added and removed, binaries that gained or lost rules: recomputed from the two
    full exports (a renamed file's mentions count as moved, not removed and added)."""
    _, done = incremental
    manifest = json.loads(done.stdout)
    renamed = {
        f"{name}:{old}": f"{name}:{new}"
        for name, outcome in manifest["sources"].items()
        for old, new in outcome.get("renamed", [])
    }

    def keyed(export: bytes, ref_map: dict[str, str]) -> Counter:
        return Counter(mention_key(json.loads(line), ref_map) for line in export.splitlines())

    before, after = keyed(old_export, renamed), keyed(tip_export, {})
    assert manifest["mentions_added"] == sum((after - before).values()) > 0
    assert manifest["mentions_removed"] == sum((before - after).values()) > 0
    # the rule files naming each binary, before (renames followed) and after
    rules_before: dict[str, set[str]] = {}
    rules_after: dict[str, set[str]] = {}
    for counter, rules in ((before, rules_before), (after, rules_after)):
        for ref, binary, *_ in counter:
            rules.setdefault(binary, set()).add(ref)
    changed = {
        b for b in rules_before.keys() | rules_after.keys() if rules_before.get(b, set()) != rules_after.get(b, set())
    }
    assert set(manifest["binaries"]) == changed and len(changed) > 10
    for binary, counts in manifest["binaries"].items():
        old_rules, new_rules = rules_before.get(binary, set()), rules_after.get(binary, set())
        assert counts == {
            "rules_before": len(old_rules),
            "rules_after": len(new_rules),
            "gained": len(new_rules - old_rules),
            "lost": len(old_rules - new_rules),
        }, binary


def test_incremental_manifest_lists_detection_changes(
    incremental, old_export: bytes, tip_export: bytes, tip_data_dir: Path
) -> None:
    """Binaries that gained or lost a detecting rule (verdict runs, parent, target, loads or
    invoked; deprecated and unsupported rules never detect), recomputed from the verdicts the
    two full exports carry; rules added and removed with their titles; `changes --all` lists them."""
    data_dir, done = incremental
    manifest = json.loads(done.stdout)
    renamed = {
        f"{name}:{old}": f"{name}:{new}" for name, info in manifest["sources"].items() for old, new in info["renamed"]
    }
    detects = {name for name in manifest["sources"] if get(name).detects}  # Sigma's and Elastic's rules

    def detecting(export: bytes, ref_map: dict[str, str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for line in export.splitlines():
            m = json.loads(line)
            if m["source"] in detects and m["verdict"] in DETECTING and not is_retired(m["path"], m["status"]):
                ref = f"{m['source']}:{m['path']}"
                out.setdefault(m["binary"], {})[ref_map.get(ref, ref)] = m["verdict"]
        return out

    def paths(refs: Any) -> set[str]:
        return {ref.split(":", 1)[1] for ref in refs}

    before, after = detecting(old_export, renamed), detecting(tip_export, {})
    changed = {b for b in before.keys() | after.keys() if before.get(b, {}) != after.get(b, {})}
    assert set(manifest["detections"]) == changed and len(changed) > 5
    for binary, d in manifest["detections"].items():
        was, now = before.get(binary, {}), after.get(binary, {})
        assert (d["before"], d["after"]) == (len(was), len(now)), binary
        assert {r["path"] for r in d["gained"]} == paths(now.keys() - was.keys()), binary
        assert {r["path"] for r in d["lost"]} == paths(was.keys() - now.keys()), binary
        assert {r["path"] for r in d["changed"]} == paths(
            ref for ref in was.keys() & now.keys() if was[ref] != now[ref]
        ), binary
        by_path = {ref.split(":", 1)[1]: verdict for ref, verdict in now.items()}
        assert all(r["verdict"] == by_path[r["path"]] and r["title"] for r in d["gained"])
    with IndexReader(tip_data_dir) as reader:
        titles = {rid: (report.path, report.title) for report in reader.state.files.values() for rid in report.rule_ids}
    assert [r["id"] for r in manifest["rules_added_detail"]] == manifest["rules_added"] and manifest["rules_added"]
    assert all((r["path"], r["title"]) == titles[r["id"]] for r in manifest["rules_added_detail"])
    assert [r["id"] for r in manifest["rules_removed_detail"]] == manifest["rules_removed"]
    assert all(r["title"] and r["path"] for r in manifest["rules_removed_detail"])
    shown = indexer("changes", "--last", "1", "--all", data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    listed = {
        line.split(":")[0].strip()
        for line in shown.stdout.splitlines()
        if " detecting rules" in line and line.startswith("  ") and not line.startswith("  detections")
    }
    assert listed == changed
    for r in manifest["rules_added_detail"]:
        assert f"    + {r['title']}  {r['path']}" in shown.stdout.splitlines()
    short = indexer("changes", "--last", "1", data_dir=data_dir).stdout
    assert len(short.splitlines()) < len(shown.stdout.splitlines())


# --- 2. a one-commit refresh reads only what changed --------------------------------------------


def _reread(reason: str) -> int:
    if not reason:
        return 0
    match = re.search(r"(\d+) more files? read again", reason)
    assert match, f"the manifest's reason does not say how many files were read again: {reason!r}"
    return int(match.group(1))


def test_a_full_build_over_an_index_reads_only_the_documents_that_changed(
    work: Path, old_dir: Path, upstream: Upstream, lolbas: Path, atlas: dict[str, Upstream], incremental, monkeypatch
) -> None:
    """`refresh --full` over OLD's index says what changed as the incremental refresh to the same
    tips does, reading from the index it replaces only the documents whose digests differ."""
    _, done = incremental  # every upstream at its tip now
    expected = json.loads(done.stdout)
    data_dir = copy_data_dir(old_dir, work / "full-over-old")
    asked: list[list[str] | None] = []
    read = _Refresh._old_documents

    def spy(self: _Refresh, binaries: Any = None) -> dict[str, str]:
        asked.append(None if binaries is None else sorted(binaries))
        return read(self, binaries)

    monkeypatch.setattr(_Refresh, "_old_documents", spy)
    urls = specs(upstream.path, lolbas, {name: up.path for name, up in atlas.items()})
    manifest = refresh(RefreshOptions(data_dir, urls, full=True)).to_dict()
    for key in ("mentions_added", "mentions_removed", "binaries", "detections", "rules_added", "rules_removed"):
        assert manifest[key] == expected[key], key
    with IndexReader(old_dir) as before:
        indexed = len(before.binaries())
    # 300 Sigma commits change about a third of the documents (metadata is in every mention)
    assert len(asked) == 1 and asked[0] is not None
    assert len(manifest["binaries"]) <= len(asked[0]) < indexed / 2, (len(asked[0]), indexed)


def test_one_commit_refresh_parses_only_the_changed_files(
    work: Path, old_dir: Path, upstream: Upstream, lolbas: Path, old: str, atlas: dict[str, Upstream]
) -> None:
    nxt = upstream.back(STEPS_BACK - 1)
    data_dir = copy_data_dir(old_dir, work / "one-commit")
    upstream.move(nxt)
    atlas_at(atlas, "old")  # as the data dir has them
    done = indexer(*refresh_args(upstream.path, lolbas, "--json"), data_dir=data_dir)
    assert done.returncode == ExitCode.OK, done.stderr[-600:]
    manifest = json.loads(done.stdout)
    sigma = manifest["sources"]["sigma"]
    assert (sigma["mode"], sigma["before"], sigma["after"]) == ("incremental", old, nxt)
    assert {o["mode"] for name, o in manifest["sources"].items() if name != "sigma"} == {"unchanged"}

    changes = upstream.diff(old, nxt)
    assert changes, "OLD and its successor have the same tree: pick other commits"
    to_read = sorted(c.path for c in changes if c.status != "D" and is_rule_file("sigma", c.path))
    reread = _reread(manifest["reason"])
    assert manifest["files_parsed"] == len(to_read) + reread, (manifest["files_parsed"], to_read, manifest["reason"])
    assert manifest["files_parsed"] < 100

    # Each file changed was read again at NEXT: every mention's line is that file's line now.
    checked = 0
    with IndexReader(data_dir) as reader:
        assert reader.sources["sigma"]["commit"] == nxt
        for path in to_read:
            lines = upstream.show(nxt, path).splitlines()
            for m in reader.file_mentions("sigma", path):
                assert m.line <= len(lines) and lines[m.line - 1].strip() == m.snippet, (path, m.line, m.snippet)
                checked += 1
    assert checked, f"no mention in the changed files {to_read}: the line check proves nothing"


# --- 3. nothing new upstream --------------------------------------------------------------------


def test_refresh_with_nothing_new_does_nothing(tip_copy: Path, bundles: tuple[Path, Path]) -> None:
    generation = current(tip_copy)
    done = indexer(*refresh_args(*bundles, "--json"), data_dir=tip_copy)
    assert done.returncode == ExitCode.OK, done.stderr[-600:]
    manifest = json.loads(done.stdout)
    assert manifest["exit_code"] == ExitCode.OK
    assert manifest["files_parsed"] == 0
    # every source the data dir has (the atlas's from the clones of their bundles)
    assert {n: s["mode"] for n, s in manifest["sources"].items()} == {
        n: "unchanged" for n in ("sigma", "lolbas", *ATLAS)
    }
    assert (manifest["mentions_added"], manifest["mentions_removed"]) == (0, 0)

    done = indexer(*refresh_args(*bundles), data_dir=tip_copy)
    assert done.returncode == ExitCode.OK, done.stderr[-600:]
    assert all(f"{name}: up to date" in done.stdout for name in ("sigma", "lolbas", *ATLAS)), done.stdout
    assert current(tip_copy) == generation  # no new generation written


# --- 4. SIGKILL at any point keeps the previous index -------------------------------------------

# Where `indexer refresh --verbose` is killed: after the stderr line containing the marker, plus
# a delay. Each stage line ("parse: 2425 to do") is logged when the stage starts.
KILL_POINTS = {
    "fetch": ("fetch:", 0.0),
    "parse": ("parse:", 0.0),
    "index": ("index:", 0.0),
    "index-random": ("index:", None),  # a random 0.05-0.5 s into the index stage
    "links": ("links:", 0.0),  # the new generation committed, not yet published
}


@pytest.fixture(scope="module")
def kills(work: Path, old_dir: Path, upstream: Upstream, lolbas: Path, changed_name: str, atlas: dict[str, Upstream]):
    """OLD's data dir copied; a refresh to the tip started and SIGKILLed at each point in turn
    (each a new `indexer refresh`, so each also has to get past what the kills before left).
    After each kill: CURRENT and `indexer search psr.exe <changed> --json` are recorded."""
    data_dir = copy_data_dir(old_dir, work / "killed")
    upstream.move(upstream.tip)
    atlas_at(atlas, "tip")
    records: dict[str, dict[str, object]] = {"": {"generation": current(data_dir)}}
    for point, (marker, delay) in KILL_POINTS.items():
        if delay is None:
            delay = round(random.uniform(0.05, 0.5), 2)
        run = RefreshRun(refresh_args(upstream.path, lolbas), data_dir)
        try:
            reached = run.wait_for(marker)
            time.sleep(delay)
            code = run.kill()
            records[point] = {
                "reached": reached,
                "code": code,
                "when": f"killed {delay}s after {marker!r}",
                "lines": list(run.lines),
                "generation": current(data_dir),
                "search": indexer("search", "psr.exe", changed_name, "--json", data_dir=data_dir),
            }
        finally:
            run.cleanup()
        if code != -signal.SIGKILL:
            break  # it finished: the index moved on, later kill points would prove nothing
    return data_dir, records


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_keeps_the_previous_index(point: str, kills, old_search: str, tip_search: str) -> None:
    _data_dir, records = kills
    assert point in records, "not run: an earlier refresh of the sequence finished before its kill"
    rec = records[point]
    assert rec["reached"], f"the refresh ended before the kill point: {rec['lines']}"
    assert rec["code"] == -signal.SIGKILL, f"the refresh finished before it was {rec['when']}: {rec['lines']}"
    assert old_search != tip_search  # so that "still the old results" can fail
    assert rec["generation"] == records[""]["generation"], rec["when"]
    search = rec["search"]
    assert search.returncode == 0, (rec["when"], search.stderr)
    assert search.stdout == old_search, rec["when"]


@pytest.fixture(scope="module")
def recovered(kills, upstream: Upstream, lolbas: Path, atlas: dict[str, Upstream]):
    """After the kills, a normal `indexer refresh --json` to the tip."""
    data_dir, _records = kills
    upstream.move(upstream.tip)
    atlas_at(atlas, "tip")
    return data_dir, indexer(*refresh_args(upstream.path, lolbas, "--json"), data_dir=data_dir)


def test_after_sigkills_the_next_refresh_equals_the_full_build(
    recovered, work: Path, upstream: Upstream, tip_search: str, tip_export: bytes, changed_name: str
) -> None:
    data_dir, done = recovered
    assert done.returncode == ExitCode.OK, done.stderr[-600:]
    manifest = json.loads(done.stdout)
    assert manifest["sources"]["sigma"]["after"] == upstream.tip
    assert manifest["mentions_total"] == len(tip_export.splitlines())
    assert _search(data_dir, "psr.exe", changed_name) == tip_search
    assert sorted_export(data_dir, work / "killed.jsonl") == tip_export


def test_after_sigkills_no_unpublished_generation_is_left(recovered, kills) -> None:
    data_dir, done = recovered
    assert done.returncode == ExitCode.OK, done.stderr[-600:]
    published = {kills[1][""]["generation"], current(data_dir)}
    left = {p.name for p in (data_dir / "index").glob("gen-*")}
    assert left == published, f"left behind: {sorted(left - published)}; removed: {sorted(published - left)}"


# --- 5. the lock ---------------------------------------------------------------------------------


def test_a_held_lock_makes_refresh_exit_3_and_wait_proceeds_once_released(
    tip_copy: Path, bundles: tuple[Path, Path]
) -> None:
    generation = current(tip_copy)
    lock = RefreshLock(tip_copy)
    lock.acquire()
    try:
        done = indexer(*refresh_args(*bundles), data_dir=tip_copy)
        assert done.returncode == ExitCode.LOCKED, (done.returncode, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "lock" in lines[0].lower(), done.stderr
        assert done.stdout == ""

        # --wait 5: started while the lock is held, released once the refresh is seen waiting on it.
        proc = popen_indexer(*refresh_args(*bundles, "--wait", "5"), data_dir=tip_copy)
        deadline = time.monotonic() + 60
        while not has_open(proc.pid, tip_copy / "refresh.lock") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, ("the refresh did not wait", proc.communicate())
        time.sleep(1.0)
        assert proc.poll() is None, ("the refresh gave up after 1 s of --wait 5", proc.communicate())
        released = time.monotonic()
        lock.release()
        out, err = proc.communicate(timeout=60)
    finally:
        lock.release()
    assert proc.returncode == ExitCode.OK, (proc.returncode, err)
    assert time.monotonic() - released < 30 and "up to date" in out, out
    assert current(tip_copy) == generation


def _start_holding_refresh(data_dir: Path, bundles: tuple[Path, Path]) -> RefreshRun:
    run = RefreshRun(refresh_args(*bundles, "--full"), data_dir)
    assert run.wait_for("fetch:"), run.lines
    with pytest.raises(Locked):  # the subprocess holds the lock now
        RefreshLock(data_dir).acquire()
    return run


def test_the_lock_of_a_killed_refresh_does_not_block(tip_copy: Path, bundles: tuple[Path, Path]) -> None:
    generation = current(tip_copy)
    run = _start_holding_refresh(tip_copy, bundles)
    try:
        assert run.kill() == -signal.SIGKILL
        assert (tip_copy / "refresh.lock").exists()  # left behind by the killed process
        done = indexer(*refresh_args(*bundles), data_dir=tip_copy)
        assert done.returncode == ExitCode.OK, (done.returncode, done.stderr)
        assert current(tip_copy) == generation
    finally:
        run.cleanup()


def test_the_lock_of_a_refresh_killed_while_parsing_does_not_block(tip_copy: Path, bundles: tuple[Path, Path]) -> None:
    run = _start_holding_refresh(tip_copy, bundles)
    try:
        assert run.wait_for("parse:"), run.lines
        assert run.wait_for_workers(), "no parser processes started"
        assert run.kill() == -signal.SIGKILL
        done = indexer(*refresh_args(*bundles), data_dir=tip_copy)
        assert done.returncode == ExitCode.OK, (done.returncode, done.stderr)
    finally:
        run.cleanup()


def rewrite_state(state_file: Path, state: dict) -> None:
    """state.json as another version would have written it, its checksum in SUMS to match
    (a file changed behind the index's back is damage, and the refresh rebuilds)."""
    state_file.write_text(json.dumps(state))
    sums_file = state_file.parent / "SUMS"
    sums = json.loads(sums_file.read_text())
    sums[state_file.name] = hashlib.sha256(state_file.read_bytes()).hexdigest()
    sums_file.write_text(json.dumps(sums))


@pytest.fixture(scope="module")
def other_pysigma(work: Path, tip_data_dir: Path, bundles: tuple[Path, Path]) -> dict[str, Any]:
    """A copy of the tip's index whose state says another pySigma checked it (one file with a
    warning only that version gave), refreshed while Sigma cannot be fetched, then normally:
    the state written, both refreshes' manifests, and what the index said after each."""
    data_dir = copy_data_dir(tip_data_dir, work / "other-pysigma")
    state_file = data_dir / "index" / current(data_dir) / "state.json"
    state = json.loads(state_file.read_text())
    assert state["checker"] == CHECKER
    state["checker"] = "pySigma 0.0.1"
    stale = next(
        ref
        for ref, r in state["files"].items()
        if r["status"] == "indexed" and ref.startswith("sigma:") and not r["warnings"]
    )
    state["files"][stale]["warnings"] = ["pySigma 0.0.1: a verdict no longer given"]
    rewrite_state(state_file, state)
    failing = specs(*bundles)
    failing[0] = get("sigma").spec(str(bundles[0]), "no-such-branch")
    out: dict[str, Any] = {"state": state, "stale": stale}
    for step, urls in (("failing", failing), ("refreshed", specs(*bundles))):
        out[step] = refresh(RefreshOptions(data_dir, urls))
        with IndexReader(data_dir) as reader:
            out[f"{step}_checker"] = reader.state.checker
            out[f"{step}_warnings"] = reader.state.files[stale].warnings
    return out


def test_another_pysigma_version_has_every_rule_checked_again(other_pysigma: dict[str, Any]) -> None:
    """pySigma's verdicts are kept per blob, and only for the pySigma version that gave them:
    the refresh after one that could not fetch Sigma (the state still says pySigma 0.0.1, next
    test) reads every file again."""
    state, manifest = other_pysigma["state"], other_pysigma["refreshed"]
    assert other_pysigma["failing_checker"] == "pySigma 0.0.1"  # what this refresh starts from
    assert manifest.full and "pySigma 0.0.1" in manifest.reason, manifest.reason
    assert manifest.files_parsed == sum(1 for r in state["files"].values() if r["status"] != "skipped")
    assert manifest.mentions_added == manifest.mentions_removed == 0
    assert other_pysigma["refreshed_checker"] == CHECKER
    assert other_pysigma["refreshed_warnings"] == []


def test_verdicts_of_another_pysigma_stay_marked_while_sigma_cannot_be_fetched(other_pysigma: dict[str, Any]) -> None:
    manifest = other_pysigma["failing"]
    assert manifest.exit_code == ExitCode.SOURCE_FAILED and manifest.sources["sigma"].mode == "failed"
    # Sigma's verdicts are still the old version's, and say so
    assert other_pysigma["failing_checker"] == "pySigma 0.0.1"
    assert other_pysigma["failing_warnings"] == ["pySigma 0.0.1: a verdict no longer given"]
    manifest = other_pysigma["refreshed"]
    assert manifest.exit_code == ExitCode.OK and manifest.sources["sigma"].mode == "full"
    assert other_pysigma["refreshed_checker"] == CHECKER and other_pysigma["refreshed_warnings"] == []


def test_a_parser_process_killed_fails_the_refresh_and_keeps_the_index(
    tip_copy: Path, bundles: tuple[Path, Path], tip_search: str, changed_name: str
) -> None:
    generation = current(tip_copy)
    run = RefreshRun(refresh_args(*bundles, "--full"), tip_copy)
    try:
        assert run.wait_for("parse:"), run.lines
        workers = run.wait_for_workers()
        assert workers, "no parser processes started"
        os.kill(workers[0][0], signal.SIGKILL)
        assert not run.wait_for("\0"), run.lines  # read stderr to its end
        code = run.proc.wait(timeout=60)
        assert code == ExitCode.SOURCE_FAILED, (code, workers, "\n".join(run.lines))
        assert "Traceback" not in "\n".join(run.lines)
        errors = [line for line in run.lines if line.startswith("indexer: error:")]
        assert len(errors) == 1 and "parser process" in errors[0] and "previous index is kept" in errors[0], run.lines
    finally:
        run.cleanup()
    assert current(tip_copy) == generation
    assert _search(tip_copy, "psr.exe", changed_name) == tip_search
    left = [pid for pid, _ in workers[1:] if Path(f"/proc/{pid}").exists()]
    assert not left, f"parser processes left running: {left}"


# --- 6. failing sources keep the previous index -------------------------------------------------


@pytest.fixture(scope="module")
def failing_dir(work: Path, old_dir: Path) -> Path:
    return copy_data_dir(old_dir, work / "failing")


@pytest.mark.parametrize("case", ["no-such-path", "not-a-repository", "a-file", "no-such-branch"])
def test_a_failing_source_keeps_the_previous_index(
    case: str,
    work: Path,
    failing_dir: Path,
    upstream: Upstream,
    lolbas: Path,
    old_search: str,
    changed_name: str,
    atlas: dict[str, Upstream],
) -> None:
    upstream.move(upstream.tip)
    atlas_at(atlas, "old")  # as the data dir has them: only Sigma would change
    generation = current(failing_dir)
    extra: list[str] = []
    if case == "no-such-path":
        # a bundle or clone that is not there is a source that cannot be fetched (issue 14, item 14)
        url, expected_code, named = work / "no-such-repo", ExitCode.SOURCE_FAILED, str(work / "no-such-repo")
    elif case == "not-a-repository":
        url, expected_code = work / "plain-folder", ExitCode.SOURCE_FAILED
        url.mkdir(exist_ok=True)
        (url / "README").write_text("not a repository\n")
        named = str(url)
    elif case == "a-file":
        url, expected_code = work / "plain-file", ExitCode.SOURCE_FAILED
        url.write_text("not a repository\n")
        named = str(url)
    else:
        url, expected_code, named = upstream.path, ExitCode.SOURCE_FAILED, "nope"
        extra = ["--sigma-branch", "nope"]

    done = indexer(*refresh_args(url, lolbas, *extra), data_dir=failing_dir)
    assert done.returncode == expected_code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert "sigma" in errors[0] and named in errors[0], errors[0]
    if expected_code == ExitCode.SOURCE_FAILED:
        assert "sigma: FAILED" in done.stdout and "previous index kept" in done.stdout, done.stdout

    assert current(failing_dir) == generation
    assert _search(failing_dir, "psr.exe", changed_name) == old_search


@pytest.mark.parametrize("damage", ["objects", "HEAD"])
def test_a_corrupt_clone_is_repaired_by_the_next_refresh(
    damage: str, tip_copy: Path, bundles: tuple[Path, Path], tip_search: str, changed_name: str
) -> None:
    generation = current(tip_copy)
    clone = tip_copy / "sources" / "sigma.git"
    tip = git("-C", str(clone), "rev-parse", "refs/remotes/origin/master^{commit}").strip()
    target = clone / damage
    shutil.rmtree(target) if target.is_dir() else target.unlink()

    done = indexer(*refresh_args(*bundles, "--json"), data_dir=tip_copy)
    assert done.returncode == ExitCode.OK, (done.returncode, done.stderr)
    sigma = json.loads(done.stdout)["sources"]["sigma"]
    assert (sigma["mode"], sigma["after"]) == ("unchanged", tip)
    assert git("-C", str(clone), "rev-parse", "refs/remotes/origin/master^{commit}").strip() == tip
    git("-C", str(clone), "cat-file", "-e", f"{tip}^{{tree}}")
    assert current(tip_copy) == generation
    assert _search(tip_copy, "psr.exe", changed_name) == tip_search
