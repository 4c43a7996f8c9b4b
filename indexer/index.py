"""The Whoosh index of mentions: built beside the current one and swapped in whole.

Layout of `<data dir>/index/`:

    CURRENT            name of the generation readers open (replaced atomically)
    gen-<id>/          a complete Whoosh index plus `state.json` (sources, file reports)

A refresh writes a new generation (a full build, or hard links to the current one updated for
the changed files), then replaces CURRENT. Readers that opened the previous generation keep
reading it; the two newest previous generations are kept for them, older ones removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from whoosh import index as whoosh_index
from whoosh.fields import ID, STORED, Schema
from whoosh.query import And, Or, Query, Term

from .model import FileReport, Mention

KEEP_PREVIOUS = 2
STATE_FILE = "state.json"
META_FILE = "meta.json"      # the format version and the sources: all a search needs besides Whoosh
INDEX_FORMAT = 1


class IndexMissing(Exception):
    """No usable index in this data directory: none built yet, or one of another format."""


def _schema() -> Schema:
    return Schema(
        binary=ID(),
        source=ID(),
        role=ID(),
        field=ID(),
        context=ID(),
        inferred=ID(),
        fileref=ID(),           # "<source>:<path>", the unit of incremental updates
        data=STORED(),
    )


def fileref(source: str, path: str) -> str:
    return f"{source}:{path}"


def stem_of(binary: str) -> str:
    stem, dot, _ = binary.rpartition(".")
    return stem if dot and stem else binary


# Filled in at read time from the generation's sources: an unchanged file's mentions then
# point at the commit indexed now, whichever refresh last read the file.
_PER_SOURCE = ("commit", "url", "license")


def _document(mention: Mention) -> dict[str, Any]:
    data = mention.to_dict()
    for key in _PER_SOURCE:
        del data[key]
    return {
        "binary": mention.binary,
        "source": mention.source,
        "role": mention.role,
        "field": mention.field.lower(),
        "context": mention.context or "none",
        "inferred": "yes" if mention.inferred else "no",
        "fileref": fileref(mention.source, mention.path),
        "data": json.dumps(data, separators=(",", ":"), ensure_ascii=False),
    }


@dataclass
class State:
    """What a generation holds besides mentions: sources and the report of every file."""

    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> commit, url, license
    files: dict[str, FileReport] = field(default_factory=dict)        # fileref -> report
    built_at: float = 0.0
    executables: list[str] = field(default_factory=list)              # names bare stems resolve to

    def to_json(self) -> str:
        return json.dumps({
            "sources": self.sources,
            "files": {k: v.to_dict() for k, v in sorted(self.files.items())},
            "built_at": self.built_at,
            "executables": sorted(self.executables),
        }, indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "State":
        data = json.loads(text)
        return cls(
            sources=data.get("sources", {}),
            files={k: FileReport.from_dict(v) for k, v in data.get("files", {}).items()},
            built_at=data.get("built_at", 0.0),
            executables=data.get("executables", []),
        )


def index_root(data_dir: Path) -> Path:
    return Path(data_dir) / "index"


def current_generation(data_dir: Path) -> Path | None:
    root = index_root(data_dir)
    try:
        name = (root / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    if not name or "/" in name or name.startswith("."):
        return None
    path = root / name
    return path if path.is_dir() else None


class IndexWriter:
    """A new generation being written; nothing is visible to readers until `publish`."""

    def __init__(self, data_dir: Path, base: Path | None) -> None:
        self.data_dir = Path(data_dir)
        root = index_root(self.data_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f"gen-{time.time_ns():x}-{os.getpid()}"
        self.path.mkdir()
        if base is not None:
            # Whoosh never rewrites a segment file, so hard links share them safely.
            for item in base.iterdir():
                if item.is_file() and "LOCK" not in item.name and item.name not in (STATE_FILE, META_FILE):
                    os.link(item, self.path / item.name)
            self._index = whoosh_index.open_dir(str(self.path))
        else:
            self._index = whoosh_index.create_in(str(self.path), _schema())
        self._writer = self._index.writer(limitmb=256)

    def remove_files(self, refs: Iterable[str]) -> None:
        for ref in refs:
            self._writer.delete_by_term("fileref", ref)

    def add(self, mentions: Iterable[Mention]) -> int:
        count = 0
        for mention in mentions:
            self._writer.add_document(**_document(mention))
            count += 1
        return count

    def commit(self, state: State, optimize: bool = False) -> None:
        self._writer.commit(optimize=optimize)
        self._index.close()
        meta = json.dumps({"format": INDEX_FORMAT, "sources": state.sources}, indent=1)
        for name, text in ((STATE_FILE, state.to_json()), (META_FILE, meta)):
            tmp = self.path / (name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path / name)

    def abort(self) -> None:
        try:
            self._writer.cancel()
            self._index.close()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def publish(self) -> None:
        """Make this generation the one readers open, atomically; prune old generations."""
        _fsync_dir(self.path)
        root = index_root(self.data_dir)
        tmp = root / f".CURRENT.{os.getpid()}"
        with open(tmp, "w") as handle:
            handle.write(self.path.name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, root / "CURRENT")
        _fsync_dir(root)
        prune(self.data_dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(data_dir: Path) -> None:
    """Remove generations older than the current one and the KEEP_PREVIOUS before it,
    and any unpublished generation left by a killed refresh."""
    root = index_root(data_dir)
    current = current_generation(data_dir)
    if current is None:
        return
    gens = sorted((p for p in root.glob("gen-*") if p.is_dir()), key=lambda p: p.name)
    older = [p for p in gens if p.name < current.name]
    newer = [p for p in gens if p.name > current.name]
    for stale in older[:-KEEP_PREVIOUS] + newer:
        shutil.rmtree(stale, ignore_errors=True)


def read_meta(generation: Path) -> dict[str, Any]:
    """The generation's format and sources; IndexMissing if it is not of this version's format."""
    try:
        meta = json.loads((generation / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    if meta.get("format") != INDEX_FORMAT:
        raise IndexMissing(f"the index in {generation.parent.parent} was written by another version of indexer: "
                           "run 'indexer refresh --full'")
    return meta


class IndexReader:
    """The current generation, opened once: mentions by binary, by file, and the state."""

    def __init__(self, data_dir: Path) -> None:
        generation = current_generation(Path(data_dir))
        if generation is None:
            raise IndexMissing(f"no index in {data_dir}: run 'indexer refresh' first")
        self.generation = generation
        self.sources: dict[str, dict[str, Any]] = read_meta(generation)["sources"]
        self._index = whoosh_index.open_dir(str(generation))
        self._searcher = self._index.searcher()
        self._state: State | None = None
        self._binaries: list[str] | None = None

    def close(self) -> None:
        self._searcher.close()
        self._index.close()

    def __enter__(self) -> "IndexReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = State.from_json((self.generation / STATE_FILE).read_text(encoding="utf-8"))
        return self._state

    def binaries(self) -> list[str]:
        """Every binary name in the index, sorted."""
        if self._binaries is None:
            self._binaries = [t.decode("utf-8") for t in self._searcher.lexicon("binary")]
        return self._binaries

    def stems(self, stem: str) -> list[str]:
        """Binary names whose stem (name without extension) is `stem`."""
        return [b for b in self.binaries() if stem_of(b) == stem]

    def count(self) -> int:
        return self._searcher.doc_count()

    def search(self, binaries: Iterable[str], *, source: str | None = None, role: Iterable[str] = (),
               field: str | None = None, context: str | None = None,
               inferred: bool | None = None) -> list[Mention]:
        """Mentions of any of `binaries`, filtered; sorted by source, path, line."""
        names = list(binaries)
        if not names:
            return []
        clauses: list[Query] = [Or([Term("binary", n) for n in names])]
        if source:
            clauses.append(Term("source", source))
        roles = list(role)
        if roles:
            clauses.append(Or([Term("role", r) for r in roles]))
        if field:
            clauses.append(Term("field", field.lower()))
        if context:
            clauses.append(Term("context", context))
        if inferred is not None:
            clauses.append(Term("inferred", "yes" if inferred else "no"))
        return self._run(And(clauses))

    def file_mentions(self, source: str, path: str) -> list[Mention]:
        return self._run(Term("fileref", fileref(source, path)))

    def all_mentions(self) -> Iterator[Mention]:
        reader = self._searcher.reader()
        for _docnum, stored in reader.iter_docs():
            yield self._mention(stored["data"])

    def _mention(self, stored: str) -> Mention:
        data = json.loads(stored)
        source = self.sources.get(data["source"], {})
        commit = source.get("commit", "")
        web = source.get("web_url", "")
        data["commit"] = commit
        data["license"] = source.get("license", "")
        data["url"] = f"{web}/blob/{commit}/{data['path']}#L{data['line']}" if web else ""
        return Mention.from_dict(data)

    def _run(self, query: Query) -> list[Mention]:
        hits = self._searcher.search(query, limit=None, scored=False, sortedby=None)
        mentions = [self._mention(hit["data"]) for hit in hits]
        mentions.sort(key=lambda m: (m.source != "sigma", m.source, m.path, m.line, m.binary, m.role))
        return mentions
