"""The atlas's cost: a full build of all seven sources against Sigma + LOLBAS only, same run.

    .venv/bin/python bench/atlas_build.py [--runs 3] [--jobs 0]

Clones each bundle once into two scratch data dirs (untimed), then alternates timed
`refresh(RefreshOptions(data_dir, specs, full=True))` of the two sets, `--runs` times each, and
prints each run and the medians. Also the YAML parse floor of each atlas source (C loader, node
tree, as `parse.parse_yaml`), LOLDrivers whole and pruned.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"

from indexer.parse import parse_yaml  # noqa: E402
from indexer.refresh import RefreshOptions, refresh  # noqa: E402
from indexer.sources import get  # noqa: E402
from indexer.sources.loldrivers import parse_driver  # noqa: E402

BASE = ("sigma", "lolbas")
ALL = (*BASE, "atomic", "loldrivers", "hijacklibs", "gtfobins", "loobins")


def build(data_dir: Path, names: tuple[str, ...], jobs: int) -> float:
    specs = [get(n).spec(str(CORPORA / f"{n}.bundle")) for n in names]
    start = time.perf_counter()
    manifest = refresh(RefreshOptions(data_dir, specs, full=True, jobs=jobs))
    assert manifest.exit_code == 0, manifest.file_errors
    return time.perf_counter() - start


def floor(data_dir: Path, name: str) -> tuple[int, float, float]:
    """(files, seconds to parse them whole, seconds with the plug-in's own parse)."""
    git = ["git", "--git-dir", str(data_dir / "sources" / f"{name}.git")]
    commit = (
        subprocess.run([*git, "rev-parse", "FETCH_HEAD"], capture_output=True, text=True).stdout.strip()
        or subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    )
    paths = [
        p
        for p in subprocess.run(
            [*git, "ls-tree", "-r", "--name-only", commit], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if get(name).wants(p)
    ]
    texts = [
        subprocess.run([*git, "show", f"{commit}:{p}"], capture_output=True, check=True).stdout.decode("utf-8-sig")
        for p in paths
    ]
    start = time.perf_counter()
    for path, text in zip(paths, texts):
        parse_yaml(path, text) if name != "gtfobins" else get(name).parse(path, text)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    for path, text in zip(paths, texts):
        parse_driver(path, text) if name == "loldrivers" else get(name).parse(path, text)
    return len(paths), whole, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        dirs = {BASE: Path(scratch) / "base", ALL: Path(scratch) / "all"}
        for names, data_dir in dirs.items():
            build(data_dir, names, args.jobs)  # clones, first generation: untimed
        times: dict[tuple[str, ...], list[float]] = {BASE: [], ALL: []}
        for run in range(args.runs):
            for names, data_dir in dirs.items():
                times[names].append(build(data_dir, names, args.jobs))
                print(
                    f"run {run + 1} {'+'.join(names) if names == BASE else 'all seven'}: {times[names][-1]:.1f} s",
                    flush=True,
                )
        base, full = statistics.median(times[BASE]), statistics.median(times[ALL])
        print(
            f"median full build: sigma+lolbas {base:.1f} s, all seven {full:.1f} s (+{full - base:.1f} s, "
            f"x{full / base:.2f})"
        )
        for name in ALL[2:]:
            files, whole, own = floor(dirs[ALL], name)
            print(f"{name}: {files} files, YAML parse {whole:.2f} s, the plug-in's parse {own:.2f} s")


if __name__ == "__main__":
    main()
