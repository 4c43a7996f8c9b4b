"""Parser processes give exactly what reading in this process gives, whatever order they finish in.

The three steps (read, mentions, finish) run over real rule files twice: in this process
(InlineReader) and in parser processes (ParserPool) fed batches of very different sizes, so one
process is still parsing while the other has sent its mentions and verdicts. Reports, index
rows and pySigma verdicts must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.extract import FileContext
from indexer.names import known_stems
from indexer.parsers import InlineReader, ParserPool

MAX_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def files(sigma_checkout: Path, lolbas_checkout: Path) -> list[tuple[FileContext, bytes, None]]:
    """600 real files (the 100 largest Sigma rules first, then Sigma, then LOLBAS files), one with a
    modifier pySigma refuses, one that is not YAML."""
    sigma = sorted((sigma_checkout / "rules").rglob("*.yml"))
    largest = sorted(sigma, key=lambda p: -p.stat().st_size)[:100]
    rest = [p for p in sigma if p not in set(largest)][:450]
    out = [(FileContext("sigma", str(p.relative_to(sigma_checkout))), p.read_bytes(), None) for p in largest + rest]
    out += [
        (FileContext("lolbas", str(p.relative_to(lolbas_checkout))), p.read_bytes(), None)
        for p in sorted((lolbas_checkout / "yml").rglob("*.yml"))[:49]
    ]
    out.insert(100, (FileContext("sigma", "rules/bad_modifier.yml"), BAD_MODIFIER, None))
    out.append((FileContext("sigma", "rules/broken.yml"), b"title: [unclosed\n", None))
    return out


BAD_MODIFIER = b"""title: Bad modifier
logsource:
  product: windows
  category: process_creation
detection:
  selection:
    Image|notamodifier: '\\certutil.exe'
  condition: selection
"""


def _three_steps(reader, batches, executables, guess=None):
    if guess is not None:
        reader.guess(guess)
    reports = reader.read(iter(batches))
    stems = known_stems(executables)
    reader.resolve(stems)
    found = reader.mentions()
    reader.finish()
    return reports, found


def test_parser_processes_give_what_reading_here_gives(files) -> None:
    # One batch of every Sigma rule, then small LOLBAS batches: one process is busy with the
    # rules while the other takes every LOLBAS batch, and sends its mentions and its (empty)
    # verdicts while the first is still resolving bare names.
    skewed = [files[:551]] + [files[i : i + 5] for i in range(551, len(files), 5)]
    executables = sorted({n for r in InlineReader(MAX_BYTES).read(iter(skewed)) for n in r.executables})
    here_reports, here_found = _three_steps(InlineReader(MAX_BYTES), skewed, executables)
    pool = ParserPool(2, MAX_BYTES)
    try:
        pool_reports, pool_found = _three_steps(pool, skewed, executables)
    finally:
        pool.close()

    assert [r.to_dict() for r in pool_reports] == [r.to_dict() for r in here_reports]
    assert pool_found == here_found
    assert sum(len(f.rows) for f in pool_found) > 1000
    assert pool_reports[100].warnings == ["pySigma: Unknown modifier 'notamodifier'"]
    assert pool_found[100].binaries == ["certutil.exe"]
    assert pool_reports[-1].status == "error" and "invalid YAML" in pool_reports[-1].reason
    assert any(row[2].find('"inferred":true') != -1 for f in pool_found for row in f.rows)


def test_a_blob_missing_from_the_clone_is_a_source_error(tip_data_dir: Path) -> None:
    from indexer.repository import Repository, SourceError
    from indexer.sources import get

    repo = Repository(get("sigma").spec(), tip_data_dir / "sources" / "sigma.git")
    tree = [e for e in repo.tree(repo.tip()) if e.path.endswith(".yml")][:3]
    blobs = list(repo.read_many([e.sha for e in tree]))
    assert [len(b) for b in blobs] == [e.size for e in tree]
    with pytest.raises(SourceError, match="0{40}"):
        list(repo.read_many([tree[0].sha, "0" * 40]))
    repo.close()


@pytest.mark.parametrize("guess", ["right", "wrong"])
def test_rows_made_with_a_guess_are_kept_only_when_the_guess_was_right(files, guess) -> None:
    # The refresh guesses the stems of the index it replaces: the processes make the rows with
    # them while the reports are still collected. A wrong guess (here: no bare name known, so
    # nothing inferred) must give the rows of the real stems, not the guessed ones.
    batches = [files[i : i + 60] for i in range(0, len(files), 60)]
    executables = sorted({n for r in InlineReader(MAX_BYTES).read(iter(batches)) for n in r.executables})
    here_reports, here_found = _three_steps(InlineReader(MAX_BYTES), batches, executables)
    stems = known_stems(executables) if guess == "right" else ({}, {}, {})
    pool = ParserPool(2, MAX_BYTES)
    try:
        pool_reports, pool_found = _three_steps(pool, batches, executables, guess=stems)
    finally:
        pool.close()

    assert pool_found == here_found
    assert [r.to_dict() for r in pool_reports] == [r.to_dict() for r in here_reports]
    assert any('"inferred":true' in row[2] for f in pool_found for row in f.rows)
