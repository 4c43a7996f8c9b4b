"""Benchmarks of the indexer on the real bundles at their tips; writes bench/RESULTS.md.

Run with `make bench` (or `.venv/bin/python bench/run.py`). Standard library plus the project's
own dependencies (PyYAML) and the project itself (in-process query latency). Scratch data goes
to a temporary directory under bench/out/ (git-ignored), removed at the end.

Every measurement states its target and whether the median meets it: this script reports, it
never fails because a target is missed. The noise figure of each row is (max - min) / median.

Measurements:
  1. floor: yaml.load_all(CSafeLoader) over every rule file, texts in memory (median of 5)
  2. full build, clones already there: `indexer refresh --full --quiet`, wall time of the process
     and the manifest's duration_s, as a ratio to the floor (3 runs; also peak memory, see 7);
     and a build from the clones alone (no index, no history: 3 runs)
 2b. every registered source with a bundle in ../shared/corpora: the floor of all the files the
     sources read (C loader for YAML, tomllib for TOML), the full build as a ratio to it (3 runs),
     and the no-change refresh of them all (5 runs)
  3. no-change refresh: `indexer refresh --quiet` on an up-to-date data dir (5 runs)
  4. refresh across 1 and ~300 first-parent Sigma commits (3 runs each, state restored by cp -a)
  5. `indexer search NAME` as a process against `grep -ril NAME` over the two work trees
     (7 runs each, alternating), `--stdin` with all names, interpreter start-up
  6. in-process `query.search(reader, name)` over every indexed binary
  7. peak memory of a full build (/usr/bin/time -v on the runs of 2, plus a /proc sampler of the
     whole process tree), index and clone sizes
  8. `indexer serve`: /api/binary/{name}, 200 requests from 4 clients, p50/p90/p99; the
     server's memory over 600 spellings of one name
  9. the index against a plain substring grep of every rule line (bench/grep_compare.py)
 10. `indexer mcp`: `search_binary` round trips over one stdio session (bench/mcp_latency.py),
     p50/p99 beside the `indexer search` process figures of 5
 11. the history (bench/history.py): the whole Sigma history's build time and store size beside
     the Sigma bundle's full build, `search NAME --at DATE` p50/p99 (process and in-process), and
     `search --at` against full builds of every bundle reset to 10 dates, 20 names each
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project itself (the sources' registry, in-process queries)
BENCH = ROOT / "bench"
CORPORA = ROOT.parent / "shared" / "corpora"
SIGMA_BUNDLE = CORPORA / "sigma.bundle"
LOLBAS_BUNDLE = CORPORA / "lolbas.bundle"
RESULTS = BENCH / "RESULTS.md"
BIN = Path(sys.executable).parent
INDEXER = str(BIN / "indexer") if (BIN / "indexer").exists() else (shutil.which("indexer") or "indexer")
PYTHON = sys.executable
TIME_V = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

RULE_DIRS = {
    "sigma": re.compile(r"^(rules[^/]*|deprecated|unsupported)/.+\.ya?ml$"),
    "lolbas": re.compile(r"^(yml|Archive-Old-Version)/.+\.ya?ml$"),
}
COMMON = ["cmd.exe", "powershell.exe", "rundll32.exe", "certutil.exe"]
RARE = ["psr.exe", "dfsrs.exe", "vssvc.exe"]
MISS = ["notabinary.exe"]
NAMES = COMMON + RARE + MISS

RUNS_FLOOR, RUNS_FULL, RUNS_NOCHANGE, RUNS_INC, RUNS_SEARCH, RUNS_START, RUNS_BATCH = 5, 3, 5, 3, 7, 7, 5
QUERY_BUDGET_S = 90.0  # measurement 6 stops here (reported) so the whole run stays near 5 minutes

# Environment for child processes: no INDEXER_* variables leaking in from the caller.
CHILD_ENV = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}


# --- small helpers -------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


LAST_STDERR: list[str] = [""]


def timed(cmd: Sequence[str], stdin: str | None = None) -> tuple[float, int]:
    """Wall time (s) and exit code of one process, output discarded (stderr's last line kept)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, text=True, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    LAST_STDERR[0] = lines[-1].strip()[:200] if lines else ""
    return wall, proc.returncode


def summary(values: Sequence[float]) -> dict[str, float]:
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {"median": med, "min": lo, "max": hi, "spread": (hi - lo) / med if med else 0.0, "n": len(values)}


def fmt_s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def row(label: str, values: Sequence[float], fmt: Callable[[float], str] = fmt_s, *extra: str) -> list[str]:
    s = summary(values)
    return [label, fmt(s["median"]), fmt(s["min"]), fmt(s["max"]), f"{s['spread'] * 100:.0f}%", str(s["n"]), *extra]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


STAT_HEAD = ["measure", "median", "min", "max", "noise (max-min)/median", "runs"]


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def rule_files(name: str, checkout: Path) -> list[Path]:
    out = []
    for path in sorted(checkout.rglob("*")):
        rel = path.relative_to(checkout).as_posix()
        if rel.startswith(".git/"):
            continue
        if RULE_DIRS[name].match(rel) and path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def registered_sources() -> list[str]:
    """The sources the indexer registers."""
    from indexer.sources import SOURCES

    return list(SOURCES)


def source_texts(data_dir: Path, name: str) -> list[tuple[str, str]]:
    """(path, text) of every file source `name` reads, at the commit its clone in `data_dir` fetched."""
    from indexer.sources import get

    source, clone = get(name), data_dir / "sources" / f"{name}.git"
    ref = f"refs/remotes/origin/{source.branch}"
    wanted = [p for p in git("ls-tree", "-r", "--name-only", ref, cwd=clone).splitlines() if source.wants(p)]
    batch = "".join(f"{ref}:{p}\n" for p in wanted).encode()
    blobs = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=clone, input=batch, capture_output=True, check=True
    ).stdout
    texts, pos = [], 0
    for path in wanted:
        end = blobs.index(b"\n", pos)
        size = int(blobs[pos:end].split()[2])
        texts.append((path, blobs[end + 1 : end + 1 + size].decode("utf-8-sig", errors="replace")))
        pos = end + 2 + size
    return texts


def parse_floor(path: str, text: str) -> None:
    """The cheapest whole parse of one file: tomllib for TOML, the C loader for the rest."""
    if path.endswith(".toml"):
        tomllib.loads(text)
    else:
        for _doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
            pass


def disk_usage(path: Path) -> tuple[int, int]:
    """(apparent bytes, bytes allocated on disk) of a file tree; hard links counted once."""
    apparent = allocated = 0
    seen: set[tuple[int, int]] = set()
    for folder, _dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(folder, f))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def mb(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def manifest_files(data_dir: Path) -> set[Path]:
    folder = data_dir / "manifests"
    return set(folder.glob("*.json")) if folder.is_dir() else set()


def new_manifest(data_dir: Path, before: set[Path]) -> dict[str, Any]:
    """The manifest a refresh just wrote (the one file that was not there before)."""
    fresh = sorted(manifest_files(data_dir) - before, key=lambda p: p.stat().st_mtime)
    if not fresh:
        return {}
    return json.loads(fresh[-1].read_text(encoding="utf-8"))


def refresh_cmd(data_dir: Path, sigma_url: Path, lolbas_url: Path, *flags: str) -> list[str]:
    return [
        INDEXER,
        "refresh",
        "--quiet",
        *flags,
        "--data-dir",
        str(data_dir),
        "--sigma-url",
        str(sigma_url),
        "--lolbas-url",
        str(lolbas_url),
    ]


def run_refresh(cmd: list[str], data_dir: Path) -> tuple[float, dict[str, Any], int]:
    """Wall, manifest ({} if the refresh wrote none) and exit code of one refresh process."""
    before = manifest_files(data_dir)
    wall, rc = timed(cmd)
    manifest = new_manifest(data_dir, before)
    if rc not in (0, 1) or not manifest:
        manifest = {"_failed": f"exit code {rc}: {LAST_STDERR[0] or 'no message'}"}
    return wall, manifest, rc


def ok_refresh(manifest: dict[str, Any]) -> bool:
    return bool(manifest) and "_failed" not in manifest


def failures(manifests: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({m["_failed"] for m in manifests if "_failed" in m})


# --- memory sampling of a process tree -----------------------------------------------------------


class TreeSampler:
    """Samples the summed PSS and RSS of a process and its descendants every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_pss = 0
        self.peak_rss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        pids, stack = [], [self.pid]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as fh:
                        stack += [int(c) for c in fh.read().split()]
            except OSError:
                continue
        return pids

    def _loop(self) -> None:
        while not self._stop.is_set():
            pss = rss = procs = 0
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/smaps_rollup") as fh:
                        for line in fh:
                            if line.startswith("Pss:"):
                                pss += int(line.split()[1]) * 1024
                            elif line.startswith("Rss:"):
                                rss += int(line.split()[1]) * 1024
                    procs += 1
                except (OSError, ValueError):
                    continue
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_procs = max(self.peak_procs, procs)
            self._stop.wait(self.interval)


def timed_full_build(cmd: list[str], data_dir: Path, scratch: Path, sample: bool = False) -> dict[str, Any]:
    """One full build as a process: wall, manifest, max RSS of one process (time -v); with
    `sample`, also the tree's peak PSS (the sampler takes CPU from the build: not for timing)."""
    before = manifest_files(data_dir)
    tv_out = scratch / "time-v.txt"
    full_cmd = [TIME_V, "-v", "-o", str(tv_out), *cmd] if TIME_V else list(cmd)
    start = time.perf_counter()
    proc = subprocess.Popen(full_cmd, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeSampler(proc.pid)
    if sample:
        with sampler:
            _out, err = proc.communicate()
    else:
        _out, err = proc.communicate()
    wall = time.perf_counter() - start
    max_rss = 0
    if TIME_V and tv_out.exists():
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv_out.read_text())
        max_rss = int(match.group(1)) * 1024 if match else 0
    else:  # fallback: the largest child the benchmark ever waited for
        import resource

        max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "wall": wall,
        "manifest": new_manifest(data_dir, before),
        "rc": proc.returncode,
        "max_rss": max_rss,
        "tree_pss": sampler.peak_pss,
        "tree_rss": sampler.peak_rss,
        "procs": sampler.peak_procs,
        "stderr": err.decode(errors="replace")[-400:],
    }


SERVE_NAMES = COMMON + ["psr.exe", "mshta.exe", "wmic.exe"]


def serve_load(data: Path) -> tuple[list[tuple[float, int]], float, tuple[int, int]]:
    """200 GETs of /api/binary/{name} from 4 threads against a real `indexer serve`, then 600
    GETs of spellings of one name: (latency, status) each, the wall time of the 200, and the
    server's resident memory after each phase."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import quote

    server = subprocess.Popen(
        [INDEXER, "serve", "--data-dir", str(data), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=CHILD_ENV,
        cwd=ROOT,
    )
    try:
        line, deadline = "", time.time() + 60
        while "serving" not in line and time.time() < deadline and server.poll() is None:
            line = server.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if not match:
            raise RuntimeError(f"the server did not start: {line!r}")
        base = match.group(1)
        urllib.request.urlopen(f"{base}/api/binary/psr.exe").read()  # warm: reader opened

        def client(seed: int) -> list[tuple[float, int]]:
            rng = random.Random(seed)
            out = []
            for _ in range(50):
                start = time.perf_counter()
                with urllib.request.urlopen(f"{base}/api/binary/{rng.choice(SERVE_NAMES)}") as response:
                    response.read()
                    out.append((time.perf_counter() - start, response.status))
            return out

        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            results = [r for part in pool.map(client, range(4)) for r in part]
        wall = time.perf_counter() - t0
        before = _rss(server.pid)
        for i in range(600):
            urllib.request.urlopen(f"{base}/api/binary/" + quote(f"C:\\x{i}\\powershell.exe", safe="")).read()
        return results, wall, (before, _rss(server.pid))
    finally:
        server.terminate()
        server.wait(10)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- the measurements ----------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.sections: list[str] = []
        self.verdicts: list[tuple[str, str, bool]] = []  # (what, figure, met)
        self.facts: dict[str, Any] = {}

    def section(self, title: str, target: str, body: str, note: str = "") -> None:
        text = f"## {title}\n\nTarget: {target}\n\n{body}\n"
        if note:
            text += f"\n{note}\n"
        self.sections.append(text)

    # 0 ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        say("setup: plain clones of the bundles")
        self.sigma = self.work / "sigma"
        self.lolbas = self.work / "lolbas"
        for bundle, dest in ((SIGMA_BUNDLE, self.sigma), (LOLBAS_BUNDLE, self.lolbas)):
            git("clone", "-q", str(bundle), str(dest))
        self.facts["sigma_tip"] = git("rev-parse", "HEAD", cwd=self.sigma).strip()
        self.facts["lolbas_tip"] = git("rev-parse", "HEAD", cwd=self.lolbas).strip()
        self.data = self.work / "data"

    # 1 ---------------------------------------------------------------------------------------
    def floor(self) -> None:
        say("1. floor: yaml.load_all(CSafeLoader) over every rule file")
        texts: list[str] = []
        counts = {}
        for name, checkout in (("sigma", self.sigma), ("lolbas", self.lolbas)):
            files = rule_files(name, checkout)
            counts[name] = len(files)
            texts += [p.read_bytes().decode("utf-8-sig") for p in files]
        total_bytes = sum(len(t.encode()) for t in texts)
        times = []
        docs = 0
        for _ in range(RUNS_FLOOR):
            start = time.perf_counter()
            docs = 0
            for text in texts:
                for _doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
                    docs += 1
            times.append(time.perf_counter() - start)
        self.floor_s = statistics.median(times)
        self.facts["rule_files"] = counts
        body = table(STAT_HEAD, [row("parse all rule files", times)])
        body += (
            f"\n\n{counts['sigma']:,} Sigma + {counts['lolbas']:,} LOLBAS rule files, "
            f"{total_bytes / 1e6:.1f} MB of text, {docs:,} YAML documents; "
            f"files read into memory before timing (read and decode not timed)."
        )
        self.section("1. Baseline floor: parse every rule file with the C loader", "none (the yardstick for 2)", body)
        say(f"   floor median {fmt_s(self.floor_s)} ({len(texts)} files) {summary(times)['spread']:.0%} noise")

    # 2 + 7 -----------------------------------------------------------------------------------
    def full_build(self) -> None:
        say("2. full build (clones already there): first refresh clones, untimed")
        cmd = refresh_cmd(self.data, SIGMA_BUNDLE, LOLBAS_BUNDLE)
        first_wall, first, rc = run_refresh(cmd, self.data)
        say(
            f"   first refresh (with clone): {fmt_s(first_wall)} rc={rc}, files_parsed={first.get('files_parsed')}"
            + (f" FAILED {first['_failed']}" if not ok_refresh(first) else "")
        )
        runs = []
        for i in range(RUNS_FULL):
            r = timed_full_build(refresh_cmd(self.data, SIGMA_BUNDLE, LOLBAS_BUNDLE, "--full"), self.data, self.work)
            if r["rc"] not in (0, 1) or not r["manifest"]:
                r["manifest"] = {"_failed": f"exit code {r['rc']}: {r['stderr'].strip().splitlines()[-1:] or ''}"}
            runs.append(r)
            m = r["manifest"]
            say(
                f"   run {i + 1}: wall {fmt_s(r['wall'])}, manifest {fmt_s(m.get('duration_s', 0))}, "
                f"files_parsed {m.get('files_parsed')}, rc {r['rc']}, max RSS {mb(r['max_rss'])}, "
                + (f" FAILED {m['_failed']}" if not ok_refresh(m) else "")
            )
        self.full_runs = runs
        self.sampled = timed_full_build(
            refresh_cmd(self.data, SIGMA_BUNDLE, LOLBAS_BUNDLE, "--full"), self.data, self.work, sample=True
        )
        say(f"   one more run, sampling memory (untimed): tree PSS {mb(self.sampled['tree_pss'])}")
        cold = []
        for i in range(RUNS_FULL):  # no index, no history, no manifests: only the clones
            cold_dir = self.work / f"cold-{i}"
            shutil.copytree(self.data / "sources", cold_dir / "sources", symlinks=True)
            r = timed_full_build(refresh_cmd(cold_dir, SIGMA_BUNDLE, LOLBAS_BUNDLE), cold_dir, self.work)
            shutil.rmtree(cold_dir)
            m = r["manifest"] or {"_failed": f"exit code {r['rc']}: {r['stderr'].strip().splitlines()[-1:] or ''}"}
            if ok_refresh(m):
                cold.append(r)
            say(
                f"   from the clones alone, run {i + 1}: wall {fmt_s(r['wall'])}, "
                f"manifest {fmt_s(m.get('duration_s', 0))}" + (f" FAILED {m['_failed']}" if not ok_refresh(m) else "")
            )
        good = [r for r in runs if ok_refresh(r["manifest"])]
        if not good:
            self.section(
                "2. Full build, clones already there",
                "in-process ≤ 3× the floor",
                "Every run failed: " + "; ".join(failures([r["manifest"] for r in runs])),
            )
            self.verdicts.append(("full build / floor", "failed", False))
            return
        walls = [r["wall"] for r in good]
        durs = [r["manifest"]["duration_s"] for r in good]
        med_wall, med_dur = statistics.median(walls), statistics.median(durs)
        ratio_dur, ratio_wall = med_dur / self.floor_s, med_wall / self.floor_s
        ratio = lambda v: f"{v:.1f}×"  # noqa: E731
        rows = [
            row("wall time of `indexer refresh --full --quiet`", walls),
            row("in-process (manifest duration_s)", durs),
            row("wall / floor", [w / self.floor_s for w in walls], ratio),
            row("in-process / floor", [d / self.floor_s for d in durs], ratio),
        ]
        cold_durs = [r["manifest"]["duration_s"] for r in cold]
        if cold:
            rows += [
                row("from the clones alone: wall of `indexer refresh --quiet`", [r["wall"] for r in cold]),
                row("from the clones alone: in-process", cold_durs),
                row("from the clones alone: in-process / floor", [d / self.floor_s for d in cold_durs], ratio),
            ]
        m = good[-1]["manifest"]
        modes = ", ".join(f"{k}: {v.get('mode')}" for k, v in m.get("sources", {}).items())
        body = table(STAT_HEAD, rows)
        body += (
            f"\n\nFloor median {fmt_s(self.floor_s)}. In-process ratio {ratio_dur:.1f}× → "
            f"{verdict(ratio_dur <= 3)}; wall ratio (with interpreter start-up and imports) "
            f"{ratio_wall:.1f}× → {verdict(ratio_wall <= 3)}.\n\n"
            f"Each run: files_parsed {m.get('files_parsed')}, mentions_total {m.get('mentions_total')}, "
            f"exit codes {[r['rc'] for r in runs]}, sources {modes}, parse jobs = default (one per core). "
            f"`--full` reads and parses every file and asks pySigma again (no verdict is reused); it keeps "
            f"Sigma's path history (a cache of `git log`, extended per commit). 'From the clones alone' "
            f"is a data dir holding only the clones: no index, no history, so `git log --raw -M` over "
            f"Sigma's whole history runs too (in a thread, beside the parse). "
            f"The first refresh of the data dir (clone + first build, untimed above, no previous "
            f"generation) took {fmt_s(first_wall)} wall, {fmt_s(first.get('duration_s', 0.0))} in-process."
        )
        if len(good) < len(runs):
            body += f"\n\n{len(runs) - len(good)} run(s) failed: {'; '.join(failures([r['manifest'] for r in runs]))}"
        self.section("2. Full build, clones already there", "in-process ≤ 3× the floor", body)
        self.verdicts.append(
            (
                "full build / floor (in-process)",
                f"{ratio_dur:.1f}× median, best run {min(durs) / self.floor_s:.1f}× (≤ 3×)",
                ratio_dur <= 3,
            )
        )
        self.verdicts.append(
            (
                "full build / floor (process wall)",
                f"{ratio_wall:.1f}× median, best run {min(walls) / self.floor_s:.1f}× (≤ 3×)",
                ratio_wall <= 3,
            )
        )
        if cold:
            cold_ratio = statistics.median(cold_durs) / self.floor_s
            self.verdicts.append(
                (
                    "build from the clones alone / floor (in-process)",
                    f"{cold_ratio:.1f}× median, best run {min(cold_durs) / self.floor_s:.1f}× (≤ 3×)",
                    cold_ratio <= 3,
                )
            )
        say(
            f"   full build median wall {fmt_s(med_wall)} ({ratio_wall:.1f}× floor), "
            f"in-process {fmt_s(med_dur)} ({ratio_dur:.1f}× floor)"
        )

    def every_source(self) -> None:
        names = [n for n in registered_sources() if (CORPORA / f"{n}.bundle").exists()]
        say(f"2b. every source ({', '.join(names)}): first refresh clones, untimed")
        data = self.work / "data-all"
        cmd = [INDEXER, "refresh", "--quiet", "--data-dir", str(data)]
        for name in names:
            cmd += ["--url", f"{name}={CORPORA / f'{name}.bundle'}"]
        _w, first, rc = run_refresh(cmd, data)
        if not ok_refresh(first):
            raise RuntimeError(f"the first refresh of every source failed: {failures([first])}")
        texts = {name: source_texts(data, name) for name in names}
        floors: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(RUNS_FLOOR):
            for name in names:
                start = time.perf_counter()
                for path, text in texts[name]:
                    parse_floor(path, text)
                floors[name].append(time.perf_counter() - start)
        per_source = {name: statistics.median(times) for name, times in floors.items()}
        totals = [sum(floors[n][i] for n in names) for i in range(RUNS_FLOOR)]
        floor = statistics.median(totals)
        builds = []
        for i in range(RUNS_FULL):
            r = timed_full_build([*cmd, "--full"], data, self.work)
            if r["rc"] in (0, 1) and ok_refresh(r["manifest"]):
                builds.append(r)
            say(f"   full build {i + 1}: wall {fmt_s(r['wall'])}, rc {r['rc']}")
        nochange = []
        for _ in range(RUNS_NOCHANGE):
            wall, m, rc = run_refresh(cmd, data)
            if ok_refresh(m) and m.get("files_parsed") == 0:
                nochange.append((wall, m["duration_s"]))
        if not builds:
            raise RuntimeError("every full build of every source failed")
        durs = [r["manifest"]["duration_s"] for r in builds]
        walls = [r["wall"] for r in builds]
        ratio = lambda v: f"{v:.1f}×"  # noqa: E731
        rows = [row(f"floor: {name} ({len(texts[name]):,} files)", floors[name]) for name in names]
        rows += [
            row("floor: every file the sources read", totals),
            row("full build: wall of `indexer refresh --full --quiet`", walls),
            row("full build: in-process (manifest duration_s)", durs),
            row("in-process / floor", [d / floor for d in durs], ratio),
            row("wall / floor", [w / floor for w in walls], ratio),
        ]
        if nochange:
            rows += [
                row("no-change refresh: wall", [w for w, _ in nochange]),
                row("no-change refresh: in-process", [d for _, d in nochange]),
            ]
        m = builds[-1]["manifest"]
        heaviest = max(per_source, key=per_source.__getitem__)
        rest = floor - per_source[heaviest]
        body = table(STAT_HEAD, rows)
        body += (
            f"\n\nThe floor parses every file each source reads, whole (YAML with the C loader, TOML with "
            f"`tomllib`), texts in memory. In-process ratio {statistics.median(durs) / floor:.1f}× → "
            f"{verdict(statistics.median(durs) / floor <= 3)}. The heaviest floor is {heaviest} "
            f"({fmt_s(per_source[heaviest])}); without it the floor would be {fmt_s(rest)} and the ratio "
            f"{statistics.median(durs) / rest:.1f}× (the build still reads {heaviest}). "
            f"Each build: files_parsed {m.get('files_parsed')}, mentions_total {m.get('mentions_total')}; "
            f"no-change runs with 0 files parsed: {len(nochange)} of {RUNS_NOCHANGE}."
        )
        self.section("2b. Every source: full build and no-change refresh", "in-process ≤ 3× the floor", body)
        self.verdicts.append(
            (
                f"full build of every source ({len(names)}) / its floor (in-process)",
                f"{statistics.median(durs) / floor:.1f}× median (≤ 3×)",
                statistics.median(durs) / floor <= 3,
            )
        )
        if nochange:
            self.verdicts.append(
                (
                    f"no-change refresh of every source ({len(names)}), wall",
                    f"{fmt_s(statistics.median(w for w, _ in nochange))} median",
                    None,
                )
            )
        shutil.rmtree(data, ignore_errors=True)

    def memory(self) -> None:
        runs = self.full_runs + [self.sampled]
        max_rss = [r["max_rss"] for r in runs]
        pss = [self.sampled["tree_pss"]]
        rss = [self.sampled["tree_rss"]]
        peak = max(max_rss)
        gen = self.data / "index" / (self.data / "index" / "CURRENT").read_text().strip()
        sizes = [
            ("index generation " + gen.name, *disk_usage(gen)),
            ("index/ (all generations kept, hard links counted once)", *disk_usage(self.data / "index")),
            ("sigma bare clone (data dir)", *disk_usage(self.data / "sources" / "sigma.git")),
            ("lolbas bare clone (data dir)", *disk_usage(self.data / "sources" / "lolbas.git")),
            ("sigma plain clone (work tree + .git)", *disk_usage(self.sigma)),
            ("lolbas plain clone (work tree + .git)", *disk_usage(self.lolbas)),
        ]
        big = sorted(((p.stat().st_size, p.name) for p in gen.iterdir() if p.is_file()), reverse=True)[:4]
        body = table(
            STAT_HEAD,
            [
                row(
                    "max RSS of one process (/usr/bin/time -v)"
                    if TIME_V
                    else "max RSS of one process (getrusage children)",
                    max_rss,
                    mb,
                ),
                row("peak PSS, whole process tree (sampled /proc every 50 ms)", pss, mb),
                row("peak RSS summed over the tree (counts shared pages twice)", rss, mb),
            ],
        )
        body += (
            f"\n\nPeak of the largest single process {mb(peak)} → {verdict(peak <= 400 * 2**20)}; "
            f"whole tree (PSS) {mb(max(pss))}, up to {self.sampled['procs']} processes "
            f"(`time`, the refresh, its parser processes, git). RSS: the runs of measurement 2 and one "
            f"more; PSS and summed RSS: that one more run only, sampled (the sampler would slow the "
            f"timed runs).\n\n"
        )
        body += table(["on disk", "apparent size", "allocated"], [[n, mb(a), mb(b)] for n, a, b in sizes])
        body += "\n\nLargest files of the generation: " + ", ".join(f"{n} {mb(s)}" for s, n in big) + "."
        self.section("7. Peak memory of a full build; sizes on disk", "peak RSS ≤ 400 MB", body)
        self.verdicts.append(("full build peak RSS (largest process)", f"{mb(peak)} (≤ 400 MB)", peak <= 400 * 2**20))
        self.verdicts.append(
            ("full build peak PSS (whole tree)", f"{mb(max(pss))} (≤ 400 MB)", max(pss) <= 400 * 2**20)
        )
        say(f"7. peak RSS {mb(peak)} (largest process), tree PSS {mb(max(pss))}; index {mb(sizes[0][2])}")

    # 3 ---------------------------------------------------------------------------------------
    def no_change(self) -> None:
        say("3. no-change refresh")
        walls, ms, rcs = [], [], []
        for _ in range(RUNS_NOCHANGE):
            wall, m, rc = run_refresh(refresh_cmd(self.data, SIGMA_BUNDLE, LOLBAS_BUNDLE), self.data)
            walls.append(wall)
            ms.append(m)
            rcs.append(rc)
        good = [i for i, m in enumerate(ms) if ok_refresh(m)]
        parsed = [m.get("files_parsed", "failed") for m in ms]
        modes = sorted({f"{k}: {v.get('mode')}" for m in ms for k, v in m.get("sources", {}).items()})
        zero = bool(good) and all(p == 0 for p in parsed)
        if not good:
            body = "Every run failed: " + "; ".join(failures(ms))
            self.verdicts.append(("no-change refresh", "failed", False))
        else:
            gw = [walls[i] for i in good]
            med = statistics.median(gw)
            body = table(
                STAT_HEAD,
                [
                    row("wall time of `indexer refresh --quiet`", gw),
                    row("in-process (manifest duration_s)", [ms[i]["duration_s"] for i in good]),
                ],
            )
            body += (
                f"\n\nMedian wall {fmt_s(med)} → {verdict(med <= 0.5)}. files_parsed per run: {parsed} → "
                f"{'all 0, as expected' if zero else '**NOT all 0**'}; exit codes {rcs}; "
                f"modes {', '.join(modes)}. Each run fetches from the bundles (git fetch of an "
                f"unchanged bundle) and opens the index to read the previous state."
            )
            if failures(ms):
                body += f"\n\nFailed runs: {'; '.join(failures(ms))}"
            self.verdicts.append(
                ("no-change refresh wall", f"{fmt_s(med)} median, best {fmt_s(min(gw))} (≤ 0.5 s)", med <= 0.5)
            )
            say(
                f"   median wall {fmt_s(med)}, in-process {fmt_s(statistics.median(ms[i]['duration_s'] for i in good))}"
                f", files_parsed {parsed}"
            )
        self.verdicts.append(("no-change refresh files_parsed", f"{parsed} (all == 0)", zero))
        self.section("3. Refresh with nothing new", "process wall ≤ 0.5 s; files_parsed == 0", body)

    # 4 ---------------------------------------------------------------------------------------
    def incremental(self) -> None:
        say("4. refresh across 1 and ~300 first-parent Sigma commits")
        bare = self.work / "sigma-bare.git"
        git("clone", "-q", "--bare", str(SIGMA_BUNDLE), str(bare))
        tip = git("rev-parse", "refs/heads/master", cwd=bare).strip()
        first_parent = git("rev-list", "--first-parent", "refs/heads/master", cwd=bare).split()
        rows, notes = [], []
        for back in (1, 300):
            if back >= len(first_parent):
                notes.append(f"only {len(first_parent)} first-parent commits: {back} back skipped")
                continue
            older = first_parent[back]
            rule_changes = [
                line
                for line in git("diff", "--name-status", "-M", older, tip, cwd=bare).splitlines()
                if any(RULE_DIRS["sigma"].match(p) for p in line.split("\t")[1:])
            ]
            all_commits = int(git("rev-list", "--count", f"{older}..{tip}", cwd=bare).strip())
            git("update-ref", "refs/heads/master", older, cwd=bare)
            saved = self.work / f"older-{back}.saved"
            _w, m0, rc0 = run_refresh(refresh_cmd(saved, bare, LOLBAS_BUNDLE), saved)  # untimed
            git("update-ref", "refs/heads/master", tip, cwd=bare)
            walls, ms, rcs = [], [], []
            run_dir = self.work / f"older-{back}.run"
            for _ in range(RUNS_INC if ok_refresh(m0) else 0):
                shutil.rmtree(run_dir, ignore_errors=True)
                subprocess.run(["cp", "-a", str(saved), str(run_dir)], check=True)
                wall, m, rc = run_refresh(refresh_cmd(run_dir, bare, LOLBAS_BUNDLE), run_dir)
                walls.append(wall)
                ms.append(m)
                rcs.append(rc)
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(saved, ignore_errors=True)
            label = f"{back} first-parent commit{'s' if back > 1 else ''} ({all_commits} commit{'s' if all_commits > 1 else ''} in all)"
            good = [i for i, m in enumerate(ms) if ok_refresh(m)]
            parsed = [m.get("files_parsed", "failed") for m in ms]
            modes = sorted({f"{k}: {v.get('mode')}" for m in ms for k, v in m.get("sources", {}).items()})
            note = (
                f"{label}: {older[:12]} → {tip[:12]}, {len(rule_changes)} rule-file changes in "
                f"`git diff --name-status -M`; files_parsed {parsed}; exit codes {rcs} "
                f"(build at the older commit: rc {rc0}, {m0.get('files_parsed', 'failed')} files); "
                f"modes {', '.join(modes) or '—'}"
            )
            if failures(ms + [m0]):
                note += f"; **failed runs**: {'; '.join(failures(ms + [m0]))}"
            if good:
                gw = [walls[i] for i in good]
                gd = [ms[i]["duration_s"] for i in good]
                rows.append(row(f"{label}: wall", gw))
                rows.append(row(f"{label}: in-process", gd))
                if back == 1:
                    note += f" → wall median {fmt_s(statistics.median(gw))}: {verdict(statistics.median(gw) <= 1.0)}"
                    self.verdicts.append(
                        (
                            "refresh across 1 commit (wall)",
                            f"{fmt_s(statistics.median(gw))} median, best {fmt_s(min(gw))} (≤ 1 s)",
                            statistics.median(gw) <= 1.0,
                        )
                    )
                self.verdicts.append(
                    (
                        f"refresh across {back} commit(s): in-process, files parsed",
                        f"{fmt_s(statistics.median(gd))}, {parsed[good[0]]}",
                        None,
                    )
                )
                say(
                    f"   {back} back: wall median {fmt_s(statistics.median(gw))}, in-process "
                    f"{fmt_s(statistics.median(gd))}, files_parsed {parsed}, rule changes {len(rule_changes)}"
                )
            else:
                rows.append([f"{label}", "failed", "", "", "", str(len(ms))])
                self.verdicts.append(
                    (
                        f"refresh across {back} commit(s)",
                        "failed: " + "; ".join(failures(ms + [m0])),
                        False if back == 1 else None,
                    )
                )
                say(f"   {back} back: FAILED {failures(ms + [m0])}")
            notes.append(note)
        shutil.rmtree(bare, ignore_errors=True)
        body = table(STAT_HEAD, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes)
        body += (
            "\n\nMethod: `git clone --bare` of the Sigma bundle; master moved to the older commit with "
            "`git update-ref`; a data dir indexed there (untimed) and kept; master moved back to the tip; "
            "before each timed run the kept data dir is copied with `cp -a`; LOLBAS from its bundle, unchanged."
        )
        self.section("4. Refresh across 1 and ~300 Sigma commits", "1 commit: process wall ≤ 1 s; 300: none", body)

    # 5 ---------------------------------------------------------------------------------------
    def search_vs_grep(self) -> None:
        say("5. `indexer search NAME` vs `grep -ril NAME`")
        start_rows = []
        stack = "import typer, whoosh.index, whoosh.reading"
        starts: dict[str, list[float]] = {}
        for label, cmd in (
            ("`python -c pass`", [PYTHON, "-c", "pass"]),
            ('`python -c "import typer"`', [PYTHON, "-c", "import typer"]),
            (
                '`python -c "import whoosh.index, whoosh.reading"`',
                [PYTHON, "-c", "import whoosh.index, whoosh.reading"],
            ),
            (f'`python -c "{stack}"` (the stack\'s floor)', [PYTHON, "-c", stack]),
            ('`python -c "import indexer.cli"`', [PYTHON, "-c", "import indexer.cli"]),
            ("`indexer --version`", [INDEXER, "--version"]),
        ):
            starts[label] = [timed(cmd)[0] for _ in range(RUNS_START)]
            start_rows.append(row(label, starts[label]))
        stack_floor = statistics.median(starts[f'`python -c "{stack}"` (the stack\'s floor)'])
        trees = [str(self.sigma), str(self.lolbas)]
        rows, ratios, notes = [], {}, []
        for name in NAMES:
            idx, grp, strict = [], [], []
            for _ in range(RUNS_SEARCH):
                w, rc_i = timed([INDEXER, "search", name, "--data-dir", str(self.data)])
                if rc_i not in (0, 1):
                    notes.append(f"`indexer search {name}` exit code {rc_i}: {LAST_STDERR[0]}")
                idx.append(w)
                w, rc_g = timed(["grep", "-ril", name, *trees])
                grp.append(w)
                strict.append(timed(["grep", "-rilF", "--exclude-dir=.git", name, *trees])[0])
            r = statistics.median(idx) / statistics.median(grp)
            ratios[name] = r
            self.facts.setdefault("search_process", {})[name] = statistics.median(idx)
            kind = "common" if name in COMMON else "rare" if name in RARE else "miss"
            rows.append(
                [
                    f"{name} ({kind})",
                    fmt_s(statistics.median(idx)),
                    f"{summary(idx)['spread']:.0%}",
                    fmt_s(statistics.median(grp)),
                    f"{summary(grp)['spread']:.0%}",
                    fmt_s(statistics.median(strict)),
                    f"{r:.1f}×",
                    f"rc {rc_i}/{rc_g}",
                    verdict(r <= 1.0),
                ]
            )
            say(f"   {name}: indexer {fmt_s(statistics.median(idx))}, grep {fmt_s(statistics.median(grp))}, {r:.1f}×")
        # one process for all names vs one grep per name
        batch, greps = [], []
        for _ in range(RUNS_BATCH):
            w, rc_b = timed([INDEXER, "search", "--stdin", "--data-dir", str(self.data)], stdin="\n".join(NAMES) + "\n")
            if rc_b not in (0, 1):
                notes.append(f"`indexer search --stdin` exit code {rc_b}: {LAST_STDERR[0]}")
            batch.append(w)
            total = 0.0
            for name in NAMES:
                total += timed(["grep", "-ril", name, *trees])[0]
            greps.append(total)
        batch_ratio = statistics.median(batch) / statistics.median(greps)
        worst = max(ratios.values())
        body = (
            "Start-up of the venv's interpreter and of the libraries the brief fixes (Typer for the "
            "command line, Whoosh for the index; `whoosh.compat` imports `urllib.request`, hence ssl, and "
            "`whoosh.reading` imports `cached_property`, hence asyncio), as context:\n\n" + table(STAT_HEAD, start_rows)
        )
        body += (
            "\n\nPer name, medians of 7 runs (the two commands alternate); noise = (max-min)/median; "
            "the ratio is indexer / `grep -ril` median:\n\n"
        )
        body += table(
            [
                "name",
                "indexer search",
                "noise",
                "grep -ril",
                "noise",
                "grep -rilF --exclude-dir=.git",
                "ratio",
                "exit codes",
                "≤ 1.0",
            ],
            rows,
        )
        body += "\n\nAll names in one process against one grep per name, run after run:\n\n"
        body += table(
            STAT_HEAD, [row("`indexer search --stdin` (8 names)", batch), row("8 × `grep -ril` (sum)", greps)]
        )
        grep_median = statistics.median([timed(["grep", "-ril", "psr.exe", *trees])[0] for _ in range(RUNS_START)])
        body += (
            f"\n\nBatch ratio {batch_ratio:.2f}× → {verdict(batch_ratio <= 1.0)}. Worst single-name ratio "
            f"{worst:.1f}× → {verdict(worst <= 1.0)}. Importing Typer and Whoosh alone takes "
            f"{fmt_s(stack_floor)} ({stack_floor / grep_median:.1f}× `grep -ril psr.exe`): no process "
            f"built on that stack reaches 1.0 for one name. Output goes to a pipe (grep-like lines, "
            f"as when piped). `grep -ril` reads the `.git` directories of the clones too "
            f"(as the brief's command does); the `-rilF --exclude-dir=.git` column is the leaner grep."
        )
        if notes:
            body += "\n\n**Searches that failed** (their times are in the figures above): " + "; ".join(
                sorted(set(notes))
            )
        self.section("5. `indexer search` as a process against grep", "indexer / grep ≤ 1.0 per name", body)
        self.verdicts.append(("search process / grep, worst name", f"{worst:.1f}× (≤ 1.0)", worst <= 1.0))
        self.verdicts.append(
            ("search process / grep, best name", f"{min(ratios.values()):.1f}× (≤ 1.0)", min(ratios.values()) <= 1.0)
        )
        self.verdicts.append(("search --stdin (8 names) / 8 greps", f"{batch_ratio:.2f}× (≤ 1.0)", batch_ratio <= 1.0))
        self.verdicts.append(("importing Typer + Whoosh alone / grep", f"{stack_floor / grep_median:.1f}×", None))
        say(
            f"   --stdin 8 names {fmt_s(statistics.median(batch))} vs 8 greps {fmt_s(statistics.median(greps))}"
            f" ({batch_ratio:.2f}×)"
        )

    # 6 ---------------------------------------------------------------------------------------
    def query_latency(self) -> None:
        say("6. in-process query latency over every indexed binary")
        from indexer.index import IndexReader
        from indexer.query import search

        with IndexReader(self.data) as reader:
            t0 = time.perf_counter()
            names = list(reader.binaries())
            first = time.perf_counter() - t0
            search(reader, names[0])  # warm
            order = list(names)
            random.Random(0).shuffle(order)  # a pass cut short by the budget is still an even sample
            times: list[tuple[float, str, int]] = []
            deadline = time.perf_counter() + QUERY_BUDGET_S
            for name in order:
                start = time.perf_counter()
                result = search(reader, name)
                times.append((time.perf_counter() - start, name, len(result.mentions)))
                if start > deadline:
                    break
        values = sorted(t for t, _, _ in times)
        coverage = (
            f"every one of the {len(names):,} binaries"
            if len(times) == len(names)
            else f"**{len(times):,} of {len(names):,} binaries** (random order, seed 0; the "
            f"{QUERY_BUDGET_S:.0f} s budget of this measurement ran out)"
        )

        def pct(p: float) -> float:
            return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]

        p99 = pct(99)
        body = table(
            ["names timed", "p50", "p90", "p99", "max", "mean"],
            [
                [
                    f"{len(values):,}",
                    fmt_s(pct(50)),
                    fmt_s(pct(90)),
                    fmt_s(p99),
                    fmt_s(values[-1]),
                    fmt_s(statistics.mean(values)),
                ]
            ],
        )
        body += "\n\nSlowest five:\n\n" + table(
            ["name", "time", "mentions"], [[n, fmt_s(t), str(c)] for t, n, c in sorted(times, reverse=True)[:5]]
        )
        body += (
            f"\n\np99 {fmt_s(p99)} → {verdict(p99 <= 0.005)}. One pass over {coverage}: a single run "
            f"per name, after one warm-up query; the reader's binary list ({fmt_s(first)}) loaded before. "
            f"`query.search(reader, name)` with default options, as `indexer search` calls it."
        )
        self.section("6. In-process query latency, every indexed binary", "p99 ≤ 5 ms", body)
        self.verdicts.append(("in-process query p99", f"{fmt_s(p99)} (≤ 5 ms)", p99 <= 0.005))
        say(
            f"   {len(values)} names: p50 {fmt_s(pct(50))}, p90 {fmt_s(pct(90))}, p99 {fmt_s(p99)}, "
            f"max {fmt_s(values[-1])} ({sorted(times)[-1][1]})"
        )

    # 8 ---------------------------------------------------------------------------------------
    def api_load(self) -> None:
        say("8. indexer serve: /api/binary/{name} under 4 clients x 50 requests; 600 spellings of one name")
        results, wall, rss = serve_load(self.data)
        values = sorted(t for t, _ in results)
        p99 = values[min(len(values) - 1, round(0.99 * len(values)) - 1)]
        errors = sum(1 for _, status in results if status != 200)
        body = table(
            ["requests", "errors", "p50", "p90", "p99", "max", "throughput"],
            [
                [
                    str(len(values)),
                    str(errors),
                    fmt_s(values[len(values) // 2]),
                    fmt_s(values[round(0.9 * len(values)) - 1]),
                    fmt_s(p99),
                    fmt_s(values[-1]),
                    f"{len(values) / wall:.0f} req/s",
                ]
            ],
        )
        body += (
            f"\n\nNames drawn at random from {', '.join(SERVE_NAMES)} (the common ones return hundreds of "
            "mentions; an answer holds a page of 100 rule files). One `indexer serve` process (uvicorn, one "
            "worker) on loopback, 4 client threads in this process, HTTP/1.1 without keep-alive (urllib). "
            f"Resident memory of the server: {rss[0] / 1e6:.0f} MB after the load, {rss[1] / 1e6:.0f} MB after "
            "600 more GETs of different spellings of powershell.exe (`C:\\x1\\powershell.exe`, ...: the "
            "issue 14.17 attack; the http.server version grew to 1 GB)."
        )
        self.section("8. `indexer serve`: /api/binary/{name} under a small load", "report p99", body)
        self.verdicts.append(("/api/binary p99, 4 clients x 50", f"{fmt_s(p99)}, {errors} errors", None))
        say(
            f"   p99 {fmt_s(p99)}, {errors} errors, {len(values) / wall:.0f} req/s, RSS {rss[0] / 1e6:.0f} -> "
            f"{rss[1] / 1e6:.0f} MB over 600 spellings"
        )

    def grep_comparison(self) -> None:
        say("9. the index against a plain substring grep (bench/grep_compare.py)")
        out = self.work / "grep_compare.json"
        text = subprocess.run(
            [PYTHON, str(BENCH / "grep_compare.py"), str(self.data), str(self.sigma), str(self.lolbas), str(out)],
            capture_output=True,
            text=True,
            env=CHILD_ENV,
            cwd=ROOT,
            check=True,
        ).stdout
        unexplained = len(json.loads(out.read_text())["unexplained"])
        self.section(
            "9. Mentions against a plain grep", "every grep-only hit explained", "```\n" + text.strip() + "\n```"
        )
        self.verdicts.append(("grep hits the index lacks, unexplained", str(unexplained), unexplained == 0))
        say(f"   unexplained grep-only hits: {unexplained}")

    # 10 --------------------------------------------------------------------------------------
    def mcp_latency(self) -> None:
        say("10. indexer mcp: search_binary round trips over one stdio session")
        sys.path.insert(0, str(BENCH))
        from mcp_latency import measure

        m = measure(self.data, NAMES)
        cli = self.facts.get("search_process", {})
        rows = [[n, fmt_s(m["by_name"][n]), fmt_s(cli[n]) if n in cli else "—"] for n in NAMES]
        body = table(
            ["calls", "errors", "p50", "p90", "p99", "max", "session start-up"],
            [
                [
                    str(m["calls"]),
                    str(m["errors"]),
                    fmt_s(m["p50"]),
                    fmt_s(m["p90"]),
                    fmt_s(m["p99"]),
                    fmt_s(m["max"]),
                    fmt_s(m["startup"]),
                ]
            ],
        )
        body += "\n\nMedian per name, beside `indexer search NAME` as a process (measurement 5, this run):\n\n"
        body += table(["name", "MCP search_binary", "indexer search (process)"], rows)
        body += (
            "\n\nOne `indexer mcp` process started by the SDK's client (`ClientSession` over `stdio_client`), "
            "one warm-up call per name, then 25 rounds over the names; `search_binary` with its default "
            "arguments (20 rules, 5 lines each). A round trip includes JSON-RPC both ways, argument "
            "validation, the query, the typed result and the client's check against the output schema. "
            "Session start-up (spawn, initialize, list_tools) is paid once per assistant session."
        )
        self.section("10. `indexer mcp`: `search_binary` round trips over stdio", "report p50/p99", body)
        cli_note = f"; `indexer search` process median {fmt_s(statistics.median(cli.values()))}" if cli else ""
        self.verdicts.append(
            ("MCP search_binary round trip p50 / p99", f"{fmt_s(m['p50'])} / {fmt_s(m['p99'])}{cli_note}", None)
        )
        say(f"   p50 {fmt_s(m['p50'])}, p99 {fmt_s(m['p99'])}, start-up {fmt_s(m['startup'])}, {m['errors']} errors")

    # 11 --------------------------------------------------------------------------------------
    def history(self) -> None:
        say("11. the history store: Sigma's whole history, search --at, 10 dates x 20 names against full builds")
        sys.path.insert(0, str(BENCH))
        from history import check, lines_of, measure, pct

        m, c = measure(self.work / "history"), check(self.work / "history")
        body = "\n".join(lines_of(m, c)[2:])
        body += (
            "\n\nThe history build is `refresh --history-since all` on a data directory holding the Sigma bundle "
            "at its tip (the full build beside it). The check builds every bundle's whole history once, then "
            "for each date resets the bundles to their last first-parent commit at or before it and builds "
            "them in full: `search NAME` from the history and from that build, field for field."
        )
        self.section("11. The history: build, size, `search --at`", "search --at == full build", body)
        equal = c["compared"] - len(c["differ"])
        self.verdicts.append(
            (
                "history: whole Sigma history build / full build; search --at p50 / p99 (in-process)",
                f"{fmt_s(m['history_s'])} / {fmt_s(m['full_s'])}; {fmt_s(pct(m['inside'], 50))} / "
                f"{fmt_s(pct(m['inside'], 99))}",
                None,
            )
        )
        self.verdicts.append(
            ("search --at == full build (10 dates x 20 names)", f"{equal} of {c['compared']}", equal == c["compared"])
        )
        say(f"   history {fmt_s(m['history_s'])} ({m['size'] / 1e6:.0f} MB); --at equal {equal} of {c['compared']}")

    # report ------------------------------------------------------------------------------------
    def write(self, started: float, load_before: str) -> None:
        elapsed = time.time() - started
        cpu = ""
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        head, dirty = project_state()
        start_head, start_dirty = self.facts["project_at_start"]
        moved = (
            f" — **the project changed during the run** (at the start: {start_head}"
            f"{', indexer/ uncommitted changes' if start_dirty else ''}); figures mix both states"
            if (head, dirty) != (start_head, start_dirty)
            else ""
        )
        lines = [
            "# Benchmarks",
            "",
            f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- Command: `make bench` (that is `{Path(PYTHON).relative_to(ROOT) if PYTHON.startswith(str(ROOT)) else PYTHON} bench/run.py`)",
            f"- Machine: nproc {os.cpu_count()}, {cpu or platform.processor()}, {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}",
            f"- Load average at start {load_before}, at end {_loadavg()} (other jobs may share the machine: "
            f"read the noise column)",
            f"- Project at {head}{' (indexer/ has uncommitted changes)' if dirty else ''}{moved}; "
            f"sigma tip {self.facts['sigma_tip'][:12]}, lolbas tip {self.facts['lolbas_tip'][:12]}",
            f"- Whole run: {elapsed:.0f} s",
            "",
            "## Summary",
            "",
            table(
                ["measurement", "figure (target)", "target"],
                [[w, f, "—" if ok is None else verdict(ok)] for w, f, ok in self.verdicts],
            ),
            "",
        ]
        order = sorted(self.sections, key=lambda s: int(re.match(r"## (\d+)", s).group(1)))  # 10 after 9
        RESULTS.write_text("\n".join(lines) + "\n" + "\n".join(order), encoding="utf-8")


def project_state() -> tuple[str, bool]:
    """(HEAD, whether indexer/ has uncommitted changes): the code these figures belong to."""
    head = git("rev-parse", "--short", "HEAD", cwd=ROOT).strip()
    dirty = bool(git("status", "--porcelain", "--", "indexer", cwd=ROOT).strip())
    return head, dirty


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    started = time.time()
    load_before = _loadavg()
    if not SIGMA_BUNDLE.exists() or not LOLBAS_BUNDLE.exists():
        print(f"bench: the bundles are missing under {CORPORA}", file=sys.stderr)
        return 2
    (BENCH / "out").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=BENCH / "out"))
    say(f"bench: scratch in {work}; {os.cpu_count()} cores; load {load_before}")
    bench = Bench(work)
    bench.facts["project_at_start"] = project_state()
    try:
        bench.setup()
        bench.floor()
        for number, step in (
            (2, bench.full_build),
            ("2b", bench.every_source),
            (3, bench.no_change),
            (4, bench.incremental),
            (5, bench.search_vs_grep),
            (6, bench.query_latency),
            (7, bench.memory),
            (8, bench.api_load),
            (9, bench.grep_comparison),
            (10, bench.mcp_latency),
            (11, bench.history),
        ):
            try:
                step()
            except Exception as exc:  # report and go on: one broken measurement must not lose the rest
                detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                say(f"   measurement {number} FAILED: {detail}")
                bench.section(f"{number}. {step.__name__}", "—", f"**The measurement failed**: `{detail}`")
                bench.verdicts.append((f"measurement {number} ({step.__name__})", "failed", False))
        bench.write(started, load_before)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            (BENCH / "out").rmdir()
        except OSError:
            pass
    say("")
    say(f"summary ({time.time() - started:.0f} s; written to {RESULTS.relative_to(ROOT)}):")
    for what, figure, ok in bench.verdicts:
        mark = "   " if ok is None else ("ok " if ok else "NO ")
        say(f"  {mark} {what}: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
