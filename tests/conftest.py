"""Shared fixtures: the real bundles in ../shared/corpora and an index built from them once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def tip_data_dir(tmp_path_factory: pytest.TempPathFactory, bundles: tuple[Path, Path]) -> Path:
    """A data directory with every bundle indexed at its tip (built once per test run)."""
    data_dir = tmp_path_factory.mktemp("tip")
    manifest = refresh(RefreshOptions(data_dir, specs(*bundles)))
    assert manifest.exit_code == 0, manifest.file_errors
    return data_dir


@pytest.fixture()
def tip_reader(tip_data_dir: Path):
    with IndexReader(tip_data_dir) as reader:
        yield reader


@pytest.fixture(scope="session")
def sigma_checkout(tmp_path_factory: pytest.TempPathFactory, bundles: tuple[Path, Path]) -> Path:
    """A plain clone of the Sigma bundle (work tree at the tip) for tests that read files."""
    dest = tmp_path_factory.mktemp("sigma-clone") / "sigma"
    subprocess.run(["git", "clone", "-q", str(bundles[0]), str(dest)], check=True)
    return dest


@pytest.fixture(scope="session")
def lolbas_checkout(tmp_path_factory: pytest.TempPathFactory, bundles: tuple[Path, Path]) -> Path:
    dest = tmp_path_factory.mktemp("lolbas-clone") / "lolbas"
    subprocess.run(["git", "clone", "-q", str(bundles[1]), str(dest)], check=True)
    return dest


_CORPUS_FIXTURES = frozenset({"bundles", "tip_data_dir", "tip_reader", "sigma_checkout", "lolbas_checkout"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the real bundles are `slow`: `make test-fast` (-m 'not slow') leaves them out."""
    for item in items:
        if _CORPUS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
