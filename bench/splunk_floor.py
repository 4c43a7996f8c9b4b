"""The Splunk plug-in's parse + extract CPU time against its YAML floor, same files, same run.

    .venv/bin/python bench/splunk_floor.py [--runs 5]

Reads every file the plug-in wants (detections and macros) at the tip of splunk.bundle once
(untimed), then alternates, `--runs` times each, with the cyclic garbage collector off as in a
refresh: the floor (PyYAML's C loader constructing every document: `get_node` +
`construct_document`, what `parse.parse_yaml` costs at least) and the plug-in's whole read of
each file (`parsers.process_file`: parse with lines, SPL tokenized, macros expanded,
comparisons, mentions), its macros handed over first as a refresh does (`Source.share`,
timed with it). Prints each run, the medians and their ratio (CPU seconds, `time.process_time`).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"

from indexer.extract import FileContext  # noqa: E402
from indexer.parsers import process_file  # noqa: E402
from indexer.sources import get  # noqa: E402
from indexer.sources.spl import _tokens  # noqa: E402


def files(clone: Path) -> dict[str, bytes]:
    git = ["git", "--git-dir", str(clone)]
    paths = [
        p
        for p in subprocess.run(
            [*git, "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if get("splunk").wants(p)
    ]
    return {p: subprocess.run([*git, "show", f"HEAD:{p}"], capture_output=True, check=True).stdout for p in paths}


def yaml_floor(texts: list[str]) -> float:
    start = time.process_time()
    for text in texts:
        loader = yaml.CSafeLoader(text)
        try:
            while loader.check_node():
                loader.construct_document(loader.get_node())
        finally:
            loader.dispose()
    return time.process_time() - start


def plugin(blobs: dict[str, bytes]) -> tuple[float, int]:
    source = get("splunk")
    _tokens.cache_clear()  # macro definitions tokenized anew, as in a fresh parser process
    start = time.process_time()
    source.share({p: b for p, b in blobs.items() if source.shared(p)})
    mentions = sum(len(process_file(FileContext("splunk", p), b).extraction.mentions) for p, b in blobs.items())
    return time.process_time() - start, mentions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "splunk.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(CORPORA / "splunk.bundle"), str(clone)], check=True)
        blobs = files(clone)
    texts = [b.decode("utf-8-sig") for b in blobs.values()]
    gc.disable()
    floors, reads = [], []
    for run in range(args.runs):
        floors.append(yaml_floor(texts))
        seconds, mentions = plugin(blobs)
        reads.append(seconds)
        print(f"run {run + 1}: floor {floors[-1]:.3f} s, plug-in {reads[-1]:.3f} s ({mentions} explicit mentions)")
    floor, read = statistics.median(floors), statistics.median(reads)
    print(f"{len(blobs)} files: median YAML floor {floor:.3f} s, parse+extract {read:.3f} s: x{read / floor:.2f}")


if __name__ == "__main__":
    main()
