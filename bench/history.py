"""Issue 19's measures: the history store of the whole Sigma bundle beside a full build of it,
`search --at` latency, and `search --at` against full builds of every bundle reset to 10 dates.
Run: .venv/bin/python bench/history.py [check] [scratch dir]   (measurement 11 of `make bench`;
`check` alone: the acceptance check without the Sigma measures)

`measure` gives: the full build's time (one `indexer refresh` of the Sigma bundle at its tip), the
history build's time (`refresh --history-since all` on that data directory: every first-parent
commit of the bundle) and the store's size, then `search NAME --at DATE` as a process (what a
person waits for) and in-process (the store's own cost), p50 and p99 over names x dates.

`check` gives issue 19's acceptance: every bundle in ../shared/corpora indexed at its tip with
its whole history, then for 10 dates spread over the bundles' histories, the bundles reset to the
last first-parent commit at or before the date and built in full: `search NAME` for 20 names
from the history (`--at`) and from that full build compared, field for field.
The main prints both and appends them to bench/HISTORY.md.
"""

from __future__ import annotations

import calendar
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
SIGMA = CORPORA / "sigma.bundle"
INDEXER = str(Path(sys.executable).parent / "indexer")
NAMES = ["cmd.exe", "powershell.exe", "rundll32.exe", "certutil.exe", "psr.exe", "mshta.exe", "wmic.exe", "curl"]
DATES = ["2018-06-01", "2020-01-01", "2021-06-01", "2023-01-01", "2024-06-01", "2026-01-01"]
# the acceptance check: 10 dates from Sigma's first years to the bundles' tips, 20 names (bare,
# patterns, Unix and Windows, names that Splunk reaches through its macros)
CHECK_DATES = [
    "2018-03-01",
    "2018-11-01",
    "2019-07-01",
    "2020-03-01",
    "2020-11-15",
    "2021-08-01",
    "2022-06-15",
    "2023-05-01",
    "2024-03-01",
    "2025-03-01",
]
CHECK_NAMES = [
    "psr.exe",
    "rundll32.exe",
    "certutil.exe",
    "mshta.exe",
    "regsvr32.exe",
    "powershell.exe",
    "cmd.exe",
    "wmic.exe",
    "bitsadmin.exe",
    "msbuild.exe",
    "comsvcs.dll",
    "pwsh.exe",
    "nltest.exe",
    "schtasks.exe",
    "msiexec.exe",
    "wermgr.exe",
    "curl",
    "bash",
    "psr",
    "cert*.exe",
]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}


def run(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([INDEXER, *args], check=False, capture_output=True, env=ENV)
    return time.perf_counter() - started


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(scratch: Path) -> dict[str, Any]:
    """The Sigma bundle's full build and whole history, and search --at's latency (seconds, bytes)."""
    data = scratch / "data"
    shutil.rmtree(data, ignore_errors=True)
    full = run("refresh", "--data-dir", str(data), "--sources", "sigma", "--url", f"sigma={SIGMA}", "-q")
    history = run("refresh", "--data-dir", str(data), "--history-since", "all", "-q")
    size = (data / "history" / "chronicle.sqlite").stat().st_size
    commits = subprocess.run(
        ["git", "--git-dir", str(data / "sources" / "sigma.git"), "rev-list", "--first-parent", "--count", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    process = [run("search", name, "--at", date, "--data-dir", str(data)) for date in DATES for name in NAMES]
    sys.path.insert(0, str(ROOT))
    from indexer.chronicle import open_at
    from indexer.query import search

    inside = []
    for date in DATES:
        for name in NAMES:
            started = time.perf_counter()
            with open_at(data, date) as reader:
                search(reader, name)
            inside.append(time.perf_counter() - started)
    shutil.rmtree(data, ignore_errors=True)
    return {
        "full_s": full,
        "history_s": history,
        "size": size,
        "commits": commits,
        "process": process,
        "inside": inside,
    }


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def check(scratch: Path, dates: list[str] = CHECK_DATES, names: list[str] = CHECK_NAMES) -> dict[str, Any]:
    """search --at against full builds of every bundle reset to each date, and at each date the
    cross-references (LOLBAS's links, the Sigma rules' references, coverage, former paths): the pairs compared
    and those that differ ((date, name) or (date, "links")), with the history build's and the
    full builds' times."""
    sys.path.insert(0, str(ROOT))
    from indexer import xref
    from indexer.chronicle import AsOf
    from indexer.index import IndexReader
    from indexer.query import search
    from indexer.refresh import RefreshOptions, refresh
    from indexer.sources import SOURCES, get

    names_here = [n for n in SOURCES if (CORPORA / f"{n}.bundle").exists()]
    upstreams = {}
    for name in names_here:
        path = scratch / "upstreams" / name
        shutil.rmtree(path, ignore_errors=True)
        _git("clone", "-q", "--bare", str(CORPORA / f"{name}.bundle"), str(path))
        ref = f"refs/heads/{get(name).branch}"
        log = [
            line.split()
            for line in _git("-C", str(path), "log", "--first-parent", "--format=%H %ct", ref).split("\n")
            if line
        ]
        upstreams[name] = (path, ref, log)
    whole = scratch / "whole"
    shutil.rmtree(whole, ignore_errors=True)
    started = time.perf_counter()
    specs = [get(n).spec(str(path)) for n, (path, _, _) in upstreams.items()]
    refresh(RefreshOptions(whole, specs, history_since=""))
    built_whole = time.perf_counter() - started

    compared, differ, full_builds = 0, [], []
    for date in dates:
        when = calendar.timegm(time.strptime(date, "%Y-%m-%d"))
        then = {n: next((sha for sha, ct in log if int(ct) <= when), None) for n, (_, _, log) in upstreams.items()}
        existing = {n: sha for n, sha in then.items() if sha}
        built = scratch / "built"
        shutil.rmtree(built, ignore_errors=True)
        try:
            for n, sha in existing.items():
                _git("-C", str(upstreams[n][0]), "update-ref", upstreams[n][1], sha)
            started = time.perf_counter()
            refresh(RefreshOptions(built, [get(n).spec(str(upstreams[n][0])) for n in existing]))
            full_builds.append(time.perf_counter() - started)
        finally:
            for path, ref, log in upstreams.values():
                _git("-C", str(path), "update-ref", ref, log[0][0])
        with IndexReader(built) as reader, AsOf(whole, when) as past:
            for name in names:
                compared += 1
                if search(reader, name).to_dict() != search(past, name).to_dict():
                    differ.append((date, name))
            # LOLBAS's links then, resolved then; the Sigma rules citing LOLBAS pages; coverage's links;
            # the Sigma rules' former paths then
            now, then_ = xref.load(reader), xref.load(past)  # type: ignore[arg-type]
            compared += 1
            fields = ("links", "references", "coverage", "former_paths")
            if any(getattr(now, f) != getattr(then_, f) for f in fields):
                differ.append((date, "links"))
    shutil.rmtree(scratch / "upstreams", ignore_errors=True)
    for folder in (whole, scratch / "built"):
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "sources": names_here,
        "dates": len(dates),
        "names": len(names),
        "compared": compared,
        "differ": differ,
        "whole_s": built_whole,
        "full_builds_s": full_builds,
    }


def lines_of(m: dict[str, Any] | None, c: dict[str, Any] | None) -> list[str]:
    """The run as a section of bench/HISTORY.md: its date, commit and load, and the figures of
    `measure` (m) and `check` (c), either of which may be left out."""
    commit = _git("-C", str(ROOT), "rev-parse", "--short", "HEAD").strip()
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, commit {commit}, load {os.getloadavg()[0]:.1f}",
        "",
        "| measure | value |",
        "| --- | ---: |",
    ]
    if m is not None:
        lines += _measure_lines(m)
    if c is not None:
        lines += [
            f"| every bundle ({len(c['sources'])}) at its tip with its whole history (refresh in-process) | "
            f"{c['whole_s']:.1f} s |",
            f"| full builds of the bundles reset to each date, median | {statistics.median(c['full_builds_s']):.1f} s |",
            f"| `search --at` == full build then: {c['dates']} dates x {c['names']} names | "
            f"{c['compared'] - len(c['differ'])} of {c['compared']} equal |",
        ]
        if c["differ"]:
            lines.append(f"| differing (date, name) | {', '.join(f'{d} {n}' for d, n in c['differ'])} |")
    return lines + [""]


def _measure_lines(m: dict[str, Any]) -> list[str]:
    process, inside = m["process"], m["inside"]
    return [
        f"| full build of the Sigma bundle (refresh, one process) | {m['full_s']:.1f} s |",
        f"| history build, whole Sigma history ({m['commits']} first-parent commits) | {m['history_s']:.1f} s |",
        f"| history store size | {m['size'] / 1e6:.1f} MB |",
        f"| `search NAME --at DATE` as a process, p50 / p99 ({len(process)} runs) | "
        f"{pct(process, 50) * 1000:.0f} / {pct(process, 99) * 1000:.0f} ms |",
        f"| the same in-process, p50 / p99 | {pct(inside, 50) * 1000:.0f} / {pct(inside, 99) * 1000:.0f} ms |",
        f"| (median in-process) | {statistics.median(inside) * 1000:.0f} ms |",
    ]


def main() -> None:
    args = sys.argv[1:]
    only_check = bool(args) and args[0] == "check"
    args = args[1:] if only_check else args
    scratch = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="bench-history-"))
    lines = lines_of(None if only_check else measure(scratch), check(scratch))
    print("\n".join(lines))
    with open(ROOT / "bench" / "HISTORY.md", "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
