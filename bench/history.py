"""Issue 19's measures: the history store of the whole Sigma bundle beside a full build of it,
and `search --at` latency. Run: .venv/bin/python bench/history.py [scratch dir]

Prints (and appends to bench/HISTORY.md): the full build's time (one `indexer refresh` of the
Sigma bundle at its tip), the history build's time (`refresh --history-since all` on that data
directory: every first-parent commit of the 14,248 in the bundle) and the store's size, then
`search NAME --at DATE` as a process (what a person waits for) and in-process (the store's own
cost), p50 and p99 over names x dates.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGMA = ROOT.parent / "shared" / "corpora" / "sigma.bundle"
INDEXER = str(Path(sys.executable).parent / "indexer")
NAMES = ["cmd.exe", "powershell.exe", "rundll32.exe", "certutil.exe", "psr.exe", "mshta.exe", "wmic.exe", "curl"]
DATES = ["2018-06-01", "2020-01-01", "2021-06-01", "2023-01-01", "2024-06-01", "2026-01-01"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}


def run(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([INDEXER, *args], check=False, capture_output=True, env=ENV)
    return time.perf_counter() - started


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    scratch = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-history-"))
    data = scratch / "data"
    shutil.rmtree(data, ignore_errors=True)
    full = run("refresh", "--data-dir", str(data), "--sources", "sigma", "--url", f"sigma={SIGMA}", "-q")
    history = run("refresh", "--data-dir", str(data), "--history-since", "all", "-q")
    store = data / "history" / "chronicle.sqlite"
    size = store.stat().st_size
    commits = subprocess.run(
        ["git", "--git-dir", str(data / "sources" / "sigma.git"), "rev-list", "--count", "--all"],
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
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load {os.getloadavg()[0]:.1f}",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| full build of the Sigma bundle (refresh, one process) | {full:.1f} s |",
        f"| history build, whole Sigma history ({commits} commits in the bundle) | {history:.1f} s |",
        f"| history store size | {size / 1e6:.1f} MB |",
        f"| `search NAME --at DATE` as a process, p50 / p99 ({len(process)} runs) | "
        f"{pct(process, 50) * 1000:.0f} / {pct(process, 99) * 1000:.0f} ms |",
        f"| the same in-process, p50 / p99 | {pct(inside, 50) * 1000:.0f} / {pct(inside, 99) * 1000:.0f} ms |",
        f"| (median in-process) | {statistics.median(inside) * 1000:.0f} ms |",
        "",
    ]
    print("\n".join(lines))
    with open(ROOT / "bench" / "HISTORY.md", "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
