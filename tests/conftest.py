"""Shared fixtures: the real bundles in ../shared/corpora and an index built from them once."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from indexer.extract import Mention
from indexer.index import IndexReader
from indexer.refresh import RefreshOptions, refresh
from indexer.repository import SourceSpec
from indexer.sources import get

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
SIGMA_BUNDLE = CORPORA / "sigma.bundle"
LOLBAS_BUNDLE = CORPORA / "lolbas.bundle"


# the atlas's sources, each from its bundle (corpora/<name>.bundle), indexed beside Sigma and LOLBAS
ATLAS = ("atomic", "loldrivers", "hijacklibs", "gtfobins", "loobins", "elastic", "splunk")


def specs(
    sigma: Path | str = SIGMA_BUNDLE, lolbas: Path | str = LOLBAS_BUNDLE, atlas: dict[str, Path | str] | None = None
) -> list[SourceSpec]:
    """Every source: Sigma and LOLBAS from these URLs, the atlas's from its bundles unless `atlas` says."""
    urls = {name: CORPORA / f"{name}.bundle" for name in ATLAS} | (atlas or {})
    return [
        get("sigma").spec(str(sigma)),
        get("lolbas").spec(str(lolbas)),
        *(get(name).spec(str(url)) for name, url in urls.items()),
    ]


@pytest.fixture(scope="session")
def bundles() -> tuple[Path, Path]:
    if not all((CORPORA / f"{name}.bundle").exists() for name in ("sigma", "lolbas", *ATLAS)):
        pytest.fail(f"the real bundles are missing: {CORPORA} (../shared must sit beside the project)")
    return SIGMA_BUNDLE, LOLBAS_BUNDLE


def run_shared(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(folder)` once per test run, whatever the number of pytest-xdist workers: the first
    worker to ask builds it under a lock, the others wait for it and read the same folder (each
    worker's base temp sits in the run's, as pytest-xdist documents). What is built this way is
    only read by the tests. A build that failed is made again by the next worker to ask."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tip_data_dir(tmp_path_factory: pytest.TempPathFactory, bundles: tuple[Path, Path]) -> Path:
    """A data directory with every bundle indexed at its tip (built once per test run, shared by the workers)."""

    def build(data_dir: Path) -> None:
        manifest = refresh(RefreshOptions(data_dir, specs(*bundles)))
        assert manifest.exit_code == 0, manifest.file_errors

    return run_shared(tmp_path_factory, "tip", build)


@pytest.fixture(scope="session")
def tip_reader(tip_data_dir: Path):
    """The tip's index, opened once per worker and read by every test that asks (as `serve`
    keeps a reader open across requests): its state, the reports of 10,549 files, is decoded
    once instead of once per test (0.3-0.5 s of CPU each, for 900 tests)."""
    with IndexReader(tip_data_dir) as reader:
        yield reader


def mentions_by_file(reader: IndexReader, source: str) -> dict[str, list[Mention]]:
    """Each file of `source` -> its mentions, what `reader.file_mentions(source, path)` gives
    (not in line order), read in one pass over the index: file_mentions called file by file
    decodes the whole document of every binary the file names each time (cmd.exe's thousands
    of mentions once per rule naming it). Each file's binaries are among its report's, the
    documents file_mentions reads."""
    files: dict[str, list[Mention]] = {}
    for mention in reader.all_mentions():
        if mention.source == source:
            files.setdefault(mention.path, []).append(mention)
    for path, mentions in files.items():
        report = reader.state.files.get(f"{source}:{path}")
        assert report is not None and {m.binary for m in mentions} <= set(report.binaries), path
    return files


@pytest.fixture(scope="session")
def tip_site(tmp_path_factory: pytest.TempPathFactory, tip_data_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The static site of the tip's index (`write_site`, as `export --format html` writes it) and
    write_site's summary: written once per test run for the tests that read its pages."""
    from indexer.web.site import write_site

    def build(folder: Path) -> None:
        with IndexReader(tip_data_dir) as reader:
            summary = write_site(reader, folder / "site")
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")

    folder = run_shared(tmp_path_factory, "site", build)
    return folder / "site", json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def _clone(tmp_path_factory: pytest.TempPathFactory, bundle: Path, name: str) -> Path:
    def build(folder: Path) -> None:
        subprocess.run(["git", "clone", "-q", str(bundle), str(folder / name)], check=True)

    return run_shared(tmp_path_factory, f"{name}-clone", build) / name


@pytest.fixture(scope="session")
def sigma_checkout(tmp_path_factory: pytest.TempPathFactory, bundles: tuple[Path, Path]) -> Path:
    """A plain clone of the Sigma bundle (work tree at the tip) for tests that read files."""
    return _clone(tmp_path_factory, bundles[0], "sigma")


@pytest.fixture(scope="session")
def lolbas_checkout(tmp_path_factory: pytest.TempPathFactory, bundles: tuple[Path, Path]) -> Path:
    return _clone(tmp_path_factory, bundles[1], "lolbas")


_CORPUS_FIXTURES = frozenset({"bundles", "tip_data_dir", "tip_reader", "tip_site", "sigma_checkout", "lolbas_checkout"})


# Modules whose module-scoped fixtures clone or build from the real bundles and move their own
# upstreams: each runs in one worker under `make test` (-n 2 --dist loadgroup), so that no two
# workers build the same history or OLD index; the other tests are spread one by one.
ONE_WORKER = frozenset(
    {"tests/test_timeline.py", "tests/test_refresh.py", "tests/test_hostile.py", "tests/test_elastic.py"}
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadgroup, with each ONE_WORKER module a group. (pytest-xdist 3.8 cannot group by
    `xdist_group` marks under pytest 9: it renames `item._nodeid`, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER else super()._split_scope(nodeid)

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the real bundles are `slow`: `make test-fast` (-m 'not slow') leaves them out."""
    for item in items:
        if _CORPUS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
