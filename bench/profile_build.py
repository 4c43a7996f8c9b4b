"""Where a refresh's time goes: phase timings of one in-process refresh, optionally cProfile.

    .venv/bin/python bench/profile_build.py [--jobs 1] [--cprofile N] [--keep DIR] [--back N | --cold]

Builds once into a scratch data dir (untimed: clones and a first generation), then times one
`refresh(RefreshOptions(data_dir, specs, full=True, jobs=...))` in this process. With --back N
the first build is made with Sigma N first-parent commits behind its tip (a bare clone whose
master is moved), and the timed refresh is the incremental one to the tip (not --full). Phases are
measured by wrapping the refresh's own functions from outside (the indexer is not modified);
times are inclusive, nested phases are indented under their parent. With --jobs 1 the parse
stage runs in this process, so its parts (YAML, pySigma check, extraction) are timed too.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"

from indexer import index as index_mod  # noqa: E402
from indexer import refresh as refresh_mod  # noqa: E402
from indexer import repository as repository_mod  # noqa: E402
from indexer.refresh import RefreshOptions, refresh  # noqa: E402
from indexer.sources import SOURCES, base as base_mod, get, lolbas as lolbas_mod, sigma as sigma_mod  # noqa: E402

TOTALS: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)  # this process's CPU time in the phase (steadier than wall under load)
CALLS: dict[str, int] = defaultdict(int)

# (label, owner, attribute, depth): wrapped if present (the code under test changes)
PHASES = [
    ("previous state (open index, read state.json)", refresh_mod._Refresh, "_previous_state", 0),
    ("fetch (git fetch from the bundles)", refresh_mod._Refresh, "_fetch", 0),
    ("plan (ls-tree, diffs)", refresh_mod._Refresh, "_plan", 0),
    ("write (everything below)", refresh_mod._Refresh, "_write", 0),
    ("read + parse + extract", refresh_mod._Refresh, "_read", 1),
    ("read blobs (git cat-file --batch)", repository_mod.Repository, "read_many", 2),
    ("parse_yaml (C loader + nodes + size check)", base_mod, "parse_yaml", 2),
    ("sigma_errors (pySigma from_dicts)", sigma_mod, "sigma_errors", 2),
    ("extract_sigma", sigma_mod, "extract_sigma", 2),
    ("extract_lolbas", lolbas_mod, "extract_lolbas", 2),
    ("files containing changed stems (re-read)", refresh_mod._Refresh, "_files_containing", 1),
    ("bare names + index rows (wait for the parser processes)", refresh_mod._Refresh, "_mentions", 1),
    ("old documents, for the manifest (all: while names resolve)", refresh_mod._Refresh, "_old_documents", 1),
    ("IndexWriter() (new generation, hard links)", index_mod.IndexWriter, "__init__", 1),
    ("IndexWriter.replace_files (build documents)", index_mod.IndexWriter, "replace_files", 1),
    ("IndexWriter.commit (Whoosh commit, meta.json)", index_mod.IndexWriter, "commit", 1),
    ("wait for pySigma's verdicts (parser processes)", refresh_mod._Refresh, "_await_verdicts", 1),
    ("IndexWriter.write_state (state.json)", index_mod.IndexWriter, "write_state", 1),
    ("summarise (manifest diff)", refresh_mod._Refresh, "_summarise", 1),
    ("cross-reference (history, links, xref.json)", refresh_mod._Refresh, "_cross_reference", 1),
    ("finish (publish, count mentions, manifest)", refresh_mod._Refresh, "_finish", 0),
    ("IndexReader.count", index_mod.IndexReader, "count", 1),
]


def wrap(label: str, owner: object, attr: str) -> bool:
    original = getattr(owner, attr, None)
    if original is None:
        return False

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            TOTALS[label] += time.perf_counter() - start
            CPU[label] += time.process_time() - cpu
            CALLS[label] += 1

    setattr(owner, attr, timed)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="parse processes (1: in this process, default)")
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="N",
        help="also run under cProfile and print the top N functions by cumulative time",
    )
    parser.add_argument("--keep", type=Path, help="use (and keep) this data dir instead of a scratch one")
    parser.add_argument(
        "--cold", action="store_true", help="time a build from nothing but the clones (no index, history or manifests)"
    )
    parser.add_argument(
        "--back",
        type=int,
        default=0,
        metavar="N",
        help="time the incremental refresh across N first-parent Sigma commits instead",
    )
    parser.add_argument("--all", action="store_true", help="every registered source (default: Sigma and LOLBAS)")
    args = parser.parse_args()
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="profile-", dir=ROOT / "bench" / "out"))
    sigma_url = CORPORA / "sigma.bundle"
    if args.back:
        sigma_url = scratch / "sigma-bare.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(CORPORA / "sigma.bundle"), str(sigma_url)], check=True)
        first_parent = subprocess.run(
            ["git", "rev-list", "--first-parent", "refs/heads/master"],
            cwd=sigma_url,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        tip, older = first_parent[0], first_parent[args.back]
        subprocess.run(["git", "update-ref", "refs/heads/master", older], cwd=sigma_url, check=True)
    specs = [get("sigma").spec(str(sigma_url)), get("lolbas").spec(str(CORPORA / "lolbas.bundle"))]
    if args.all:
        specs += [get(n).spec(str(CORPORA / f"{n}.bundle")) for n in SOURCES if n not in ("sigma", "lolbas")]
    data_dir = args.keep or scratch / "data"
    try:
        print("first refresh (clones, untimed) ...", flush=True)
        refresh(RefreshOptions(data_dir, specs))
        if args.back:
            subprocess.run(["git", "update-ref", "refs/heads/master", tip], cwd=sigma_url, check=True)
        if args.cold:
            for name in ("index", "history", "manifests"):
                shutil.rmtree(data_dir / name, ignore_errors=True)
        active = [(label, depth) for label, owner, attr, depth in PHASES if wrap(label, owner, attr)]
        profiler = cProfile.Profile() if args.cprofile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        manifest = refresh(RefreshOptions(data_dir, specs, full=not (args.back or args.cold), jobs=args.jobs))
        if profiler:
            profiler.disable()
        total = time.perf_counter() - start
        kind = (
            f"refresh across {args.back} commits"
            if args.back
            else "build from the clones alone"
            if args.cold
            else "full build"
        )
        print(
            f"\n{kind}, jobs={args.jobs}: {total:.2f} s in-process (manifest {manifest.duration_s:.2f} s,"
            f" {manifest.files_parsed} files){' under cProfile' if profiler else ''}\n"
        )
        print(f"{'phase':58} {'seconds':>8} {'share':>6} {'cpu s':>6} {'calls':>6}")
        for label, depth in active:
            if CALLS[label]:
                print(
                    f"{'  ' * depth + label:58} {TOTALS[label]:8.2f} {TOTALS[label] / total:6.0%} {CPU[label]:6.2f} {CALLS[label]:6}"
                )
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.cprofile)
            print(out.getvalue())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            (ROOT / "bench" / "out").rmdir()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
