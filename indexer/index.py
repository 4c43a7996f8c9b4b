"""The Whoosh index of mentions: built beside the current one and swapped in whole.

Layout of `<data dir>/index/`:

    CURRENT            name of the generation readers open (replaced atomically)
    gen-<id>/          a complete Whoosh index plus `state.json` (sources, file reports)

A refresh writes a new generation (a full build, or hard links to the current one updated for
the changed files), then replaces CURRENT. Readers that opened the previous generation keep
reading it; the two newest previous generations are kept for them, older ones removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from whoosh import index as whoosh_index
from whoosh import columns as whoosh_columns
from whoosh.codec.whoosh3 import W3Codec, W3PerDocReader, W3PerDocWriter
from whoosh.fields import ID, STORED, Schema
from whoosh.reading import TermNotFound

from .atomic import write_atomic
from .codec import STORED_KEYS, Row, encode, file_order, mention_filter, mention_order, order, verdict_order
from .jsontext import loads
from .model import IndexMissing, Mention
from .state import State
from .verdicts import RuleVerdict

KEEP_PREVIOUS = 2
STATE_FILE = "state.json"
PUBLISHED_FILE = "PUBLISHED"  # generations published, oldest first
META_FILE = "meta.json"  # format, sources, mention count, binary names: all a search needs besides Whoosh
MANIFEST_FILE = "manifest.json"  # the manifest of the refresh that wrote the generation
DECLARED_FILE = "declared.json"  # binary -> the Sigma links its LOLBAS entries declare (written by xref)
DIGESTS_FILE = "digests.json"  # binary -> digest of its stored mentions: what a refresh compares before reading
SUMS_FILE = "SUMS"  # sha256 of every other file of the generation, written when it is published
INDEX_FORMAT = 13  # 6: each binary's document holds its rule verdicts; 7: coverage stores them; 8: rule titles; 9: verdicts of Path in Task Scheduler and Defender events; 10: `homoglyph`, comments, the names policy of issue 13; 11: `platform`; 12: Elastic investigation guides and Kibana filters, Splunk eval comparisons; 13: module loads of Elastic (file.* in library and image-load subqueries) and Splunk (Sysmon events 7, 6)


def _schema() -> Schema:
    # One document per binary: its name, its mentions as JSON and the verdict of every rule file
    # that names it (JSON). A search is one term lookup; the binaries a file's mentions name are
    # in its report (state.json).
    return Schema(binary=ID(unique=True, stored=True), data=STORED(), rules=STORED())


def fileref(source: str, path: str) -> str:
    return f"{source}:{path}"


def stem_of(binary: str) -> str:
    stem, dot, _ = binary.rpartition(".")
    return stem if dot and stem else binary


def _dict_of(value: Any, kind: type) -> bool:
    return isinstance(value, dict) and all(isinstance(v, kind) for v in value.values())


def _list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _declared(data: Any) -> dict[str, list[dict[str, Any]]] | None:
    """declared.json as xref.write writes it, or None."""
    ok = isinstance(data, dict) and all(
        isinstance(links, list)
        and all(
            isinstance(l, dict)
            and isinstance(l.get("lolbas_path"), str)
            and isinstance(l.get("line"), int)
            and isinstance(l.get("status"), str)
            for l in links
        )
        for links in data.values()
    )
    return data if ok else None


def _fields(reader: Any, binary: str) -> dict[str, Any] | None:
    """A binary's stored fields (mentions and rule verdicts as JSON text) from a Whoosh reader,
    or None (deleted documents are skipped: the postings of a reader leave them out)."""
    try:
        return reader.stored_fields(reader.first_id("binary", binary))
    except TermNotFound:
        return None


def _verdicts(generation: Path, text: Any) -> list[dict[str, Any]]:
    """A document's stored rule verdicts; IndexMissing if they are not a list of objects (damaged)."""
    try:
        items = loads(text or "[]")
        if not _list_of(items, dict):
            raise ValueError("not a list of verdicts")
    except (ValueError, TypeError) as exc:
        raise _damaged(generation, exc) from None
    return items


def index_root(data_dir: Path) -> Path:
    return Path(data_dir) / "index"


def current_generation(data_dir: Path, strict: bool = False) -> Path | None:
    """The generation readers open; None if there is none yet, or if CURRENT is damaged (not a
    file, not UTF-8, not a generation's name): then, with `strict`, IndexMissing saying so."""
    root = index_root(data_dir)
    try:
        name = (root / "CURRENT").read_bytes().decode("utf-8").strip()
        if name and (not name.startswith("gen-") or "/" in name or "\\" in name):
            raise ValueError("CURRENT names no generation")
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        if strict:
            raise IndexMissing(f"{data_dir} is not a data directory (a file is in the way)") from None
        return None
    except (OSError, ValueError) as exc:  # a directory, unreadable, garbage, not UTF-8
        if strict:
            raise IndexMissing(
                f"the index in {data_dir} is damaged (CURRENT: {exc.__class__.__name__}): run 'indexer refresh'"
            ) from None
        return None
    path = root / name
    return path if name and path.is_dir() else None


class IndexWriter:
    """A new generation being written; nothing is visible to readers until `publish`."""

    def __init__(self, data_dir: Path, base: Path | None) -> None:
        self.data_dir = Path(data_dir)
        root = index_root(self.data_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f"gen-{time.time_ns():x}-{os.getpid()}"
        self.path.mkdir()
        self._base = base
        base_meta = read_meta(base) if base is not None else {"mentions": 0, "binaries": []}
        self._mentions: int = base_meta["mentions"]
        self._binaries: set[str] = set(base_meta["binaries"])
        # None: the base has none (an older generation), so this one cannot have them all either
        self._digests: dict[str, str] | None = read_digests(base) if base is not None else {}
        if base is not None:
            # Whoosh never rewrites a segment file, so hard links share them safely.
            for item in base.iterdir():
                # only Whoosh's files: the generation's own (state, meta, cross-references, SUMS,
                # manifest) are written anew, and writing through a link would change the base's
                if (
                    item.is_file()
                    and "LOCK" not in item.name
                    and not item.name.endswith(".json")
                    and item.name != SUMS_FILE
                ):
                    os.link(item, self.path / item.name)
            self._index = whoosh_index.open_dir(str(self.path))
        else:
            self._index = whoosh_index.create_in(str(self.path), _schema())
        self._writer = _whoosh_writer(self._index)
        self._committed = False
        self._rules: dict[str, str] = {}  # binary -> its stored verdicts, of the documents this refresh writes
        self._base_reader: Any = None  # the base's documents, from replace_files to commit

    def replace_files(
        self, removed: dict[str, list[str]], rows: Iterable[Row], verdict_rows: Iterable[Row] = ()
    ) -> dict[str, str]:
        """Drop every mention and verdict of the `removed` files (fileref -> the binaries it
        named), add `rows` (mentions) and `verdict_rows` (the files' verdicts on each binary).

        Call once.
        Returns the documents written: binary -> its mentions as stored ("[]" once it has none).
        """
        added: dict[str, list[tuple[tuple[Any, ...], str]]] = {}
        for binary, key, text in rows:
            added.setdefault(binary, []).append((key, text))
        rules: dict[str, list[tuple[tuple[Any, ...], str]]] = {}
        for binary, key, text in verdict_rows:
            rules.setdefault(binary, []).append((key, text))
        before: dict[str, int] = {}  # mentions each affected binary had
        affected = set(added)
        if self._base is not None:
            affected.update(binary for binaries in removed.values() for binary in binaries)
            # open until commit (the cross-references read the base's verdicts): Whoosh's commit,
            # in its thread, may remove the base's segment files from this generation meanwhile
            self._base_reader = reader = self._index.reader()
            for binary in affected:
                stored = _fields(reader, binary)
                if stored is not None:
                    items = loads(stored["data"])
                    before[binary] = len(items)
                    added.setdefault(binary, []).extend(
                        (order(d), encode(d)) for d in items if fileref(d["source"], d["path"]) not in removed
                    )
                    rules.setdefault(binary, []).extend(
                        (verdict_order(d), encode(d))
                        for d in loads(stored.get("rules") or "[]")
                        if fileref(d["source"], d["path"]) not in removed
                    )
        written: dict[str, str] = {}
        for binary in sorted(affected):
            items = sorted(added.get(binary, []), key=lambda item: item[0])
            self._mentions += len(items) - before.get(binary, 0)
            if not items:
                self._binaries.discard(binary)
                written[binary] = "[]"
                self._rules[binary] = "[]"
                if self._digests is not None:
                    self._digests.pop(binary, None)
                continue
            self._binaries.add(binary)
            written[binary] = "[" + ",".join(text for _, text in items) + "]"
            if self._digests is not None:
                self._digests[binary] = document_digest(written[binary])
            verdicts = sorted(rules.get(binary, []), key=lambda item: item[0])
            self._rules[binary] = "[" + ",".join(text for _, text in verdicts) + "]"
        write = self._writer.update_document if self._base else self._writer.add_document
        for binary, data in written.items():
            if data == "[]":
                self._writer.delete_by_term("binary", binary)
            else:
                write(binary=binary, data=data, rules=self._rules[binary])
        return written

    def rules(self, binaries: Iterable[str]) -> list[RuleVerdict]:
        """As IndexReader.rules, for the generation being written (the cross-references are
        built before it is committed): this refresh's documents, else the base's."""
        stored: list[dict[str, Any]] = []
        missing = [binary for binary in dict.fromkeys(binaries) if binary not in self._rules]
        if missing and self._base_reader is not None:
            for binary in missing:
                fields = _fields(self._base_reader, binary)
                stored += _verdicts(self.path, fields.get("rules")) if fields is not None else []
        for binary in dict.fromkeys(binaries):
            if binary in self._rules:
                stored += loads(self._rules[binary])
        return sorted(map(RuleVerdict.from_dict, stored), key=RuleVerdict.sort_key)

    def commit(self, sources: dict[str, dict[str, Any]], aliases: dict[str, list[str]] | None = None) -> None:
        """Write the documents and the sources: the generation can be searched (not yet published).

        aliases: name -> names the corpus pairs with it (extract.derive_aliases), kept in meta.json.
        """
        self._writer.commit(optimize=self._base is None)
        self._close_base()
        self._committed = True
        self._index.close()
        meta = {
            "format": INDEX_FORMAT,
            "sources": sources,
            "mentions": self._mentions,
            "binaries": sorted(self._binaries),
            "aliases": aliases or {},
        }
        self._write_file(META_FILE, json.dumps(meta, indent=1))
        if self._digests is not None:
            self._write_file(DIGESTS_FILE, json.dumps(self._digests, sort_keys=True, separators=(",", ":")))

    @property
    def mentions(self) -> int:
        """Mentions in the generation (once written)."""
        return self._mentions

    @property
    def digests(self) -> dict[str, str] | None:
        """binary -> the digest of its stored mentions (`document_digest`), of every document of
        the generation; None if the base generation had none."""
        return self._digests

    def write_manifest(self, text: str) -> None:
        """The manifest of the refresh writing this generation, kept with it."""
        self._write_file(MANIFEST_FILE, text)

    def write_state(self, state: State) -> None:
        """The file reports and the rest of the state; last, before `publish`."""
        self._write_file(STATE_FILE, state.to_json())

    def _write_file(self, name: str, text: str) -> None:
        write_atomic(self.path / name, text)  # on disk (fsync) when published

    def abort(self) -> None:
        """Drop this generation, committed or not."""
        try:
            self._close_base()
            if not self._committed:
                self._writer.cancel()
                self._index.close()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def _close_base(self) -> None:
        if self._base_reader is not None:
            self._base_reader.close()
            self._base_reader = None

    def publish(self) -> None:
        """Make this generation the one readers open, atomically; prune old generations.

        Every file of the generation is on disk (fsync) before CURRENT names it, with its
        checksum in SUMS: a refresh rebuilds a generation whose files no longer match.
        """
        sums = {}
        for item in sorted(self.path.iterdir()):
            if item.is_file():
                sums[item.name] = _sync_and_hash(item)
        self._write_file(SUMS_FILE, json.dumps(sums, indent=1))
        _fsync_file(self.path / SUMS_FILE)
        _fsync_dir(self.path)
        root = index_root(self.data_dir)
        published = (_published(root) + [self.path.name])[-(KEEP_PREVIOUS + 8) :]
        write_atomic(root / PUBLISHED_FILE, "\n".join(published) + "\n", sync=True)
        write_atomic(root / "CURRENT", self.path.name + "\n", sync=True)
        _fsync_dir(root)
        prune(self.data_dir)


# Stored fields (a binary's mentions and verdicts, JSON) are pickled without Whoosh's zlib: 16 MB
# per build of Sigma and LOLBAS, 0.1 s of the main process's CPU to compress and a decompression
# per document read, for an index of 22 MB instead of 9. A segment records its codec, so a
# generation written before is read with Whoosh's own.
_STORED = whoosh_columns.PickleColumn(whoosh_columns.VarBytesColumn())


class _PerDocWriter(W3PerDocWriter):
    def _create_column(self, fieldname: str, column: Any) -> None:
        super()._create_column(fieldname, _STORED if fieldname == "_stored" else column)


class _PerDocReader(W3PerDocReader):
    def stored_fields(self, docnum: int) -> dict[str, Any]:
        return self._cached_reader("_stored", _STORED)[docnum] or {}


class _Codec(W3Codec):
    """Whoosh's codec, with stored fields uncompressed. Posting blocks are uncompressed too: each
    of ours holds one document (a binary name is one document's term), a few bytes, and Whoosh
    compresses every block (its "under 20 bytes" test is overwritten on the next line of
    whoosh3.py): 3,459 calls to zlib per build of Sigma and LOLBAS. Each block records its
    compression: readers read both."""

    def per_document_writer(self, storage: Any, segment: Any) -> Any:
        return _PerDocWriter(self, storage, segment)

    def per_document_reader(self, storage: Any, segment: Any) -> Any:
        return _PerDocReader(storage, segment)


_CODEC = _Codec(compression=0)


def _whoosh_writer(index: Any) -> Any:
    """A Whoosh writer on `index`, made in a thread of its own.

    Making one raises and catches an exception inside Whoosh (a temporary folder made twice)
    whose traceback stays in a reference cycle, and with it every calling frame and their
    variables. Made in the refresh's thread, that kept the whole refresh (200,000 objects,
    its state and rows) until the collector ran: a tenth of a full build, after it.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="whoosh") as pool:
        return pool.submit(index.writer, limitmb=256, codec=_CODEC).result()


def _sync_and_hash(path: Path) -> str:
    """The file's sha256, once it is on disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        os.fsync(handle.fileno())
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def verify(generation: Path) -> str:
    """Why a published generation cannot be trusted ('' if every file matches its checksum)."""
    try:
        sums = json.loads((generation / SUMS_FILE).read_bytes().decode("utf-8"))
        if not _dict_of(sums, str) or not sums:
            return f"{SUMS_FILE}: not a list of checksums"
        for name, expected in sums.items():
            if "/" in name or not (generation / name).is_file():
                return f"{name}: missing"
            digest = hashlib.sha256((generation / name).read_bytes()).hexdigest()
            if digest != expected:
                return f"{name}: changed since it was written"
    except (OSError, ValueError) as exc:
        return f"{SUMS_FILE}: {type(exc).__name__}"
    return ""


def _published(root: Path) -> list[str]:
    """Generations published, oldest first (none if the list is missing or damaged)."""
    try:
        text = (root / PUBLISHED_FILE).read_bytes().decode("utf-8", "replace")
    except OSError:
        return []
    return [n for n in text.split() if re.fullmatch(r"gen-[0-9a-f]+-[0-9]+", n)]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(data_dir: Path) -> None:
    """Keep the current generation and the KEEP_PREVIOUS published before it (readers may still
    have them open); remove the rest, including unpublished ones left by a killed refresh.

    Runs under the refresh lock, so no other refresh is writing a generation meanwhile.
    """
    root = index_root(data_dir)
    current = current_generation(data_dir)
    if current is None:
        return
    published = [n for n in _published(root) if n != current.name]
    keep = {current.name, *published[-KEEP_PREVIOUS:]}
    for generation in root.glob("gen-*"):
        if generation.is_dir() and generation.name not in keep:
            shutil.rmtree(generation, ignore_errors=True)


def document_digest(document: str) -> str:
    """A stored document's digest (64 bits of BLAKE2b): equal digests, equal documents."""
    return hashlib.blake2b(document.encode("utf-8"), digest_size=8).hexdigest()


def read_digests(generation: Path) -> dict[str, str] | None:
    """binary -> the digest of its stored mentions in the generation; None if it has none (written
    by an older version) or they cannot be read."""
    try:
        digests = json.loads((generation / DIGESTS_FILE).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return digests if _dict_of(digests, str) else None


def read_meta(generation: Path) -> dict[str, Any]:
    """The generation's format and sources; IndexMissing if it is not of this version's format
    or damaged."""
    try:
        meta = json.loads((generation / META_FILE).read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise _damaged(generation, exc, META_FILE) from None
    if isinstance(meta, dict) and "format" in meta and meta["format"] != INDEX_FORMAT:
        raise IndexMissing(
            f"the index in {generation.parent.parent} was written by another version of indexer: "
            "run 'indexer refresh --full'"
        )
    if not (
        isinstance(meta, dict)
        and _dict_of(meta.get("sources"), dict)
        and isinstance(meta.get("mentions"), int)
        and _list_of(meta.get("binaries"), str)
    ):
        raise _damaged(generation, ValueError("not the expected fields"), META_FILE)
    return meta


def _damaged(generation: Path, exc: BaseException, name: str = "") -> IndexMissing:
    where = f"{generation.name}/{name}" if name else generation.name
    return IndexMissing(
        f"the index in {generation.parent.parent} is damaged ({where}: "
        f"{type(exc).__name__}): run 'indexer refresh --full'"
    )


class IndexReader:
    """The current generation, opened once: mentions by binary, by file, and the state."""

    def __init__(self, data_dir: Path, generation: Path | None = None) -> None:
        """Open the current generation (or a given one: a refresh reads what it just wrote)."""
        generation = generation or current_generation(Path(data_dir), strict=True)
        if generation is None:
            raise IndexMissing(f"no index in {data_dir}: run 'indexer refresh' first")
        self.generation = generation
        self._meta = read_meta(generation)
        self.sources: dict[str, dict[str, Any]] = self._meta["sources"]
        try:
            self._index = whoosh_index.open_dir(str(generation))
            self._reader = self._index.reader()  # no Searcher: a lookup needs no query machinery
        except Exception as exc:  # missing or truncated Whoosh files
            raise _damaged(generation, exc) from None
        self._state: State | None = None
        self.cache: dict[str, Any] = {}  # what other modules derive from this generation, read once

    def close(self) -> None:
        self._reader.close()
        self._index.close()

    def __enter__(self) -> "IndexReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> State:
        if self._state is None:
            try:
                self._state = State.from_json((self.generation / STATE_FILE).read_bytes().decode("utf-8"))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise _damaged(self.generation, exc, STATE_FILE) from None
        return self._state

    def read_json(self, name: str, read: Callable[[Any], Any]) -> Any:
        """Another file of the generation, as JSON, made a value by `read` (None if the JSON is
        not one); IndexMissing if damaged."""
        try:
            data = loads((self.generation / name).read_bytes())
        except (OSError, ValueError) as exc:
            raise _damaged(self.generation, exc, name) from None
        value = read(data)
        if value is None:
            raise _damaged(self.generation, ValueError("not the expected fields"), name)
        return value

    def _documents(self, texts: Iterable[str]) -> Iterator[list[dict[str, Any]]]:
        """Stored documents decoded; IndexMissing if one is not a list of mentions (damaged)."""
        for text in texts:
            try:
                items = loads(text)
                if not (
                    isinstance(items, list) and all(isinstance(d, dict) and STORED_KEYS <= d.keys() for d in items)
                ):
                    raise ValueError("not a list of mentions")
            except (ValueError, TypeError) as exc:
                raise _damaged(self.generation, exc) from None
            yield items

    def aliases(self) -> dict[str, list[str]]:
        """name -> its aliases (Image and OriginalFileName paired by the rules), from meta.json."""
        aliases = self._meta.get("aliases")
        return aliases if isinstance(aliases, dict) else {}

    def declared_links(self, binaries: Iterable[str]) -> list[dict[str, Any]]:
        """The Sigma links (records.Link as dicts) declared by the LOLBAS entries of `binaries`,
        by entry and line; IndexMissing if declared.json is damaged. The search path reads
        them here, without the record classes: `show` reads them back through Link.from_dict."""
        if DECLARED_FILE not in self.cache:
            self.cache[DECLARED_FILE] = self.read_json(DECLARED_FILE, _declared)
        seen: dict[tuple[str, int], dict[str, Any]] = {}
        for name in binaries:
            for link in self.cache[DECLARED_FILE].get(name, []):
                seen.setdefault((link["lolbas_path"], link["line"]), link)
        return sorted(seen.values(), key=lambda l: (l["lolbas_path"], l["line"]))

    def binaries(self) -> list[str]:
        """Every binary name in the index, sorted (from meta.json: Whoosh's lexicon keeps the
        names of deleted documents until their segment is merged)."""
        return self._meta["binaries"]

    @property
    def mention_count(self) -> int:
        """Number of mentions (recorded when the generation was written)."""
        return self._meta["mentions"]

    def search(
        self,
        binaries: Iterable[str],
        *,
        source: str | None = None,
        role: Iterable[str] = (),
        field: str | None = None,
        context: str | None = None,
        platform: str | None = None,
        inferred: bool | None = None,
    ) -> list[Mention]:
        """Mentions of any of `binaries`, filtered (codec.mention_filter); sorted by source, path, line."""
        keeps = mention_filter(
            source=source, role=role, field=field, context=context, platform=platform, inferred=inferred
        )
        texts = (self._text(binary) for binary in dict.fromkeys(binaries))
        documents = self._documents(text for text in texts if text is not None)
        return sorted((self._mention(data) for items in documents for data in items if keeps(data)), key=mention_order)

    def rules(self, binaries: Iterable[str]) -> list[RuleVerdict]:
        """The verdicts of every rule file naming any of `binaries`, strongest first."""
        try:
            out = [RuleVerdict.from_dict(d) for binary in dict.fromkeys(binaries) for d in self.stored_rules(binary)]
        except (ValueError, TypeError, AttributeError) as exc:
            raise _damaged(self.generation, exc) from None
        return sorted(out, key=RuleVerdict.sort_key)

    def stored_rules(self, binary: str) -> list[dict[str, Any]]:
        """A binary's rule verdicts as stored (dicts, in source and path order)."""
        stored = self._stored_fields(binary)
        return _verdicts(self.generation, stored.get("rules")) if stored is not None else []

    def all_rules(self) -> Iterator[RuleVerdict]:
        """Every (rule file, binary) verdict in the index."""
        try:
            for _docnum, stored in self._reader.iter_docs():
                for data in _verdicts(self.generation, stored.get("rules")):
                    yield RuleVerdict.from_dict(data)
        except IndexMissing:
            raise
        except Exception as exc:  # whatever a damaged segment makes Whoosh raise
            raise _damaged(self.generation, exc) from None

    def _stored_fields(self, binary: str) -> dict[str, Any] | None:
        """A binary's stored fields; IndexMissing if Whoosh cannot read them (damaged files)."""
        try:
            stored = _fields(self._reader, binary)
        except Exception as exc:  # whatever a damaged segment makes Whoosh raise
            raise _damaged(self.generation, exc) from None
        if stored is not None and not isinstance(stored, dict):
            raise _damaged(self.generation, TypeError("stored fields are not a mapping"))
        return stored

    def _text(self, binary: str) -> str | None:
        """A binary's stored mentions (JSON text); IndexMissing if they cannot be read (damaged files)."""
        stored = self._stored_fields(binary)
        text = stored.get("data") if stored is not None else None
        if stored is not None and not isinstance(text, str):
            raise _damaged(self.generation, TypeError("a stored document is not text"))
        return text

    def stored(self, binary: str) -> list[dict[str, Any]]:
        """A binary's mentions as stored: dicts without commit, url and license (no Mention built)."""
        text = self._text(binary)
        return next(self._documents([text])) if text is not None else []

    def file_mentions(self, source: str, path: str, binaries: Iterable[str] | None = None) -> list[Mention]:
        """Every mention in one file (or only those of `binaries`: one page of a file that names
        thousands), in line order."""
        ref = fileref(source, path)
        report = self.state.files.get(ref)
        wanted = (report.binaries if report else ()) if binaries is None else binaries
        out = []
        for binary in wanted:
            out += [self._mention(d) for d in self.stored(binary) if fileref(d["source"], d["path"]) == ref]
        return sorted(out, key=file_order)

    def raw_documents(self, binaries: Iterable[str] | None = None) -> dict[str, str]:
        """Stored mentions as written (JSON text, not decoded): of every binary, or of `binaries`."""
        if binaries is None:
            return dict(self._all_documents())
        found = {binary: self._text(binary) for binary in binaries}
        return {binary: text for binary, text in found.items() if text is not None}

    def _all_documents(self) -> Iterator[tuple[str, str]]:
        """(binary, stored mentions as JSON text) of every document."""
        try:
            for _docnum, stored in self._reader.iter_docs():
                if not (isinstance(stored.get("binary"), str) and isinstance(stored.get("data"), str)):
                    raise TypeError("a stored document is not text")
                yield stored["binary"], stored["data"]
        except IndexMissing:
            raise
        except Exception as exc:  # whatever a damaged segment makes Whoosh raise
            raise _damaged(self.generation, exc) from None

    def all_mentions(self) -> Iterator[Mention]:
        for items in self._documents(text for _, text in self._all_documents()):
            for data in items:
                yield self._mention(data)

    def _mention(self, data: dict[str, Any]) -> Mention:
        try:
            source = self.sources.get(data["source"], {})
            commit = source.get("commit", "")
            web = source.get("web_url", "")
            data["commit"] = commit
            data["license"] = source.get("license", "")
            data["url"] = f"{web}/blob/{commit}/{quote(data['path'])}#L{data['line']}" if web else ""
            return Mention.from_dict(data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise _damaged(self.generation, exc) from None
