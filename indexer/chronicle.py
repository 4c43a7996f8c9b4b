"""The history store: what every source's rule files said at each first-parent commit, and the
index as of any date read from it (`search --at`, `show --at`, `timeline`, `changes --since`).

One SQLite file (`<data dir>/history/chronicle.sqlite`, the standard library's sqlite3: one file,
transactions, indexes, readers while a refresh writes, nothing to install) holds, per source:

- `commits`: the first-parent commits from the history's start (`--history-since`) to the
  commit indexed, numbered `seq` 0, 1, ... with committer and author dates;
- `files`: each (path, blob) the source's files ever held, extracted once by the per-file code
  a refresh runs (`parsers.process_file`); the explicit mentions and the bare-name candidates,
  not yet resolved (bare names resolve against the vocabulary of the date asked for). A file
  that read the source's shared files (Splunk's macros: `Source.shared`, `Extraction.depends`)
  is read with them as they were at the commit, and its `context` names their blobs then: a
  changed macro reads its callers again, a new version of each whose mentions changed;
- `spans`: which file a path held from commit `start` until commit `stop` (NULL: still);
- `tokens`: what a file names (`b:` binaries, `x:` executables of the vocabulary, `w:` words
  that a bare stem may match, `p:`/`q:` Image/OriginalFileName pairs) and `names`: when each
  such name is in the source (the vocabulary, the binaries and the aliases at any commit,
  without reading the files);
- `renames`, `licenses` per commit;
- for a source whose path history is kept (`Source.history`: Sigma), `lasts` (what each path
  last held) and `moves` (every rename, on any branch), each with the first-parent commit that
  merged it: history.PathHistory as of any date (links resolved then, a rule's former paths).

Everything that depends on more than one file is computed as of the date asked: the vocabulary
bare names resolve against (`names.known_stems` of the executables named then), the aliases
(`extract.derive_aliases`'s rule, counted in `names`). Reading imports no git: the builder
(`build`) is handed a `Repository` per source and runs the extraction in forked processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
import zlib
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote

from .codec import file_order, mention_filter, mention_order, stored
from .errors import IndexerError
from .history import LastContent, rule_id_of
from .model import FileReport, Mention
from .names import MODULE_PREFIX, UNIX_PREFIX, WINDOWS_PREFIX, known_stems
from .verdicts import RuleVerdict, rule_verdicts

if TYPE_CHECKING:  # types only: reading the store runs no git
    from .extract import Extraction
    from .repository import Repository

FORMAT = 7  # 7: a version's warnings (its extraction's and its source's check: pySigma's), every rename (`moves`); 6: links, rule ids (`i:`, `r`), entry names (`n:`) and the paths' history (`lasts`) for links as of a date; 5: a version read with the shared files it depends on (`context`, `d:` tokens); 4: `u:` words of Unix prose; 3: `born`, the path a file was added at; 2: a LOLBAS entry's name, aliases and categories (coverage --at)
STORE = "chronicle.sqlite"
PARTIAL = "chronicle.partial.sqlite"  # the first build, resumable; renamed to STORE when complete
BATCH_COMMITS = 250  # commits per transaction: an interrupted build resumes after the last one
_EXTRACTION_CODE = ("extract.py", "names.py", "parse.py", "parsers.py", "model.py", "verdicts.py", "codec.py")
_WORD = re.compile(r"\w(?:[\w\-]*\w)?")  # names.bare_names' tokens: a stem matches one whole
_STEM = re.compile(r"^[a-z0-9_][a-z0-9_.+\-]+$")  # names.stem_map's stems (Unix ones: 2 characters or more)
_DLL_WORDS = re.compile(r"(?<![\w.\-])([\w\-]+(?:/[\w\-]+)*)\s+dlls?\b", re.IGNORECASE)  # extract._DLL_PHRASE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources(
    source TEXT PRIMARY KEY, web_url TEXT NOT NULL, tip TEXT NOT NULL, seq INTEGER NOT NULL,
    rooted INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commits(
    source TEXT NOT NULL, seq INTEGER NOT NULL, sha TEXT NOT NULL, ctime INTEGER NOT NULL,
    atime INTEGER NOT NULL, adate TEXT NOT NULL, PRIMARY KEY (source, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS commits_ctime ON commits(source, ctime);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, path TEXT NOT NULL, blob TEXT NOT NULL,
    payload BLOB NOT NULL, made TEXT NOT NULL, made_date TEXT NOT NULL, added TEXT NOT NULL,
    added_date TEXT NOT NULL, born TEXT NOT NULL, context TEXT NOT NULL DEFAULT '',
    UNIQUE (source, path, blob, context));
CREATE TABLE IF NOT EXISTS tokens(token TEXT NOT NULL, file INTEGER NOT NULL, PRIMARY KEY (token, file)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spans(
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, path TEXT NOT NULL, file INTEGER NOT NULL,
    start INTEGER NOT NULL, stop INTEGER);
CREATE INDEX IF NOT EXISTS spans_file ON spans(file);
CREATE INDEX IF NOT EXISTS spans_open ON spans(source, stop);
CREATE INDEX IF NOT EXISTS spans_path ON spans(source, path);
CREATE TABLE IF NOT EXISTS names(
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, token TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER);
CREATE INDEX IF NOT EXISTS names_token ON names(token, source);
CREATE TABLE IF NOT EXISTS renames(source TEXT NOT NULL, seq INTEGER NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS renames_old ON renames(source, old);
CREATE TABLE IF NOT EXISTS licenses(source TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lasts(
    source TEXT NOT NULL, path TEXT NOT NULL, ord INTEGER NOT NULL, seq INTEGER NOT NULL, blob TEXT NOT NULL,
    sha TEXT NOT NULL, date TEXT NOT NULL, status TEXT NOT NULL, rule_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS lasts_path ON lasts(source, path, seq);
CREATE TABLE IF NOT EXISTS moves(
    source TEXT NOT NULL, ord INTEGER NOT NULL, seq INTEGER NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL,
    sha TEXT NOT NULL, date TEXT NOT NULL);
"""


class HistoryError(IndexerError):
    """No history to answer from: none built, another version's, or a date it does not cover."""


def store_path(data_dir: Path) -> Path:
    return Path(data_dir) / "history" / STORE


def fingerprint() -> str:
    """The extraction code's fingerprint: a store made by other code is rebuilt, never mixed."""
    here = Path(__file__).parent
    digest = hashlib.sha256(f"{FORMAT}".encode())
    for name in sorted(_EXTRACTION_CODE) + sorted(p.name for p in (here / "sources").glob("*.py")):
        path = here / name if (here / name).is_file() else here / "sources" / name
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# -- dates --

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(text: str, option: str = "--at") -> int:
    """A date (YYYY-MM-DD: its start, UTC) or an ISO 8601 date and time (UTC unless it says its
    offset) as a Unix time; HistoryError naming the option otherwise."""
    value = text.strip()
    try:
        if _DAY.match(value):
            moment = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        elif re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", value):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
        else:
            raise ValueError
    except ValueError:
        raise HistoryError(
            f"{option} {text!r} is not a date: give YYYY-MM-DD or an ISO date and time (2024-05-01T12:00:00Z)"
        ) from None
    return int(moment.timestamp())


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# -- what a file gives, stored once per (source, path, blob) --


def encode_file(
    extraction: Extraction | None,
    title: str = "",
    error: str = "",
    executables: Iterable[str] | None = None,
    rule_id: str = "",
    warnings: Sequence[str] = (),
) -> tuple[bytes, list[str]]:
    """A file's extraction as stored (zlib JSON) and its tokens; executables: the names it adds to
    the vocabulary (its report's: none for a source that feeds no stems, `Source.feeds_stems`);
    rule_id: the first id of its text (history.rule_id_of: what a link to it resolves by);
    warnings: its report's (the extraction's and the source's check, pySigma's)."""
    if extraction is None:
        return zlib.compress(json.dumps({"error": error, "r": rule_id}).encode()), []
    payload = {
        "m": [stored(m) for m in extraction.mentions],
        "c": [[c.text, c.line, c.snippet, stored(c.template), c.in_prose, c.platform] for c in extraction.candidates],
        "o": extraction.own_stems,
        "t": title,
        "i": list(dict.fromkeys(extraction.rule_ids)),
        "e": extraction.entry,
        "d": sorted(set(extraction.depends)),
        "l": extraction.links,
        "r": rule_id,
        "w": list(warnings),
    }
    tokens = {"b:" + m.binary for m in extraction.mentions}
    tokens.update("x:" + name for name in (extraction.executables() if executables is None else executables))
    for image, original, kind in extraction.alias_pairs():
        tokens.add(f"p:{image}\t{original}")
        if kind == "stem":
            tokens.add(f"q:{image}\t{original}")
    from .names import unix_program_paths

    for cand in extraction.candidates:
        if "/" in cand.text:  # a program folder's tail names a program, known or not (extract.infer)
            tokens.update("b:" + hit.name for hit in unix_program_paths(cand.text))
        lowered = cand.text.lower()
        words = set(_WORD.findall(lowered))
        for match in _DLL_WORDS.finditer(lowered):
            words.update(match.group(1).split("/"))
        stems = [w for w in words if _STEM.match(w)]
        tokens.update("w:" + w for w in stems)
        if cand.platform == "unix" and cand.in_prose:  # may name a Windows program (extract._across_platforms)
            tokens.update("u:" + w for w in stems)
    tokens.update("w:" + w for w in extraction.own_stems)
    tokens.update("d:" + path for path in extraction.depends)  # the shared files it read: re-read when one changes
    tokens.update("i:" + rule for rule in extraction.rule_ids)  # what a link to a moved rule finds it by
    tokens.update("n:" + name for name in _entry_names(extraction.entry))  # a LOLBAS entry's names
    tokens.update("k:" + link["kind"] for link in extraction.links)  # it links to a LOLBAS page, a Sigma rule, ...
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return zlib.compress(text, 6), sorted(tokens)


@dataclass
class FileRecord:
    """A stored file: its explicit mentions, its candidates for bare names, its title and ids."""

    mentions: list[Mention]
    candidates: list[Any]
    own_stems: dict[str, str]
    title: str = ""
    rule_ids: list[str] = field(default_factory=list)
    error: str = ""
    entry: dict[str, Any] = field(default_factory=dict)  # a LOLBAS entry: name, aliases, categories
    links: list[dict[str, Any]] = field(default_factory=list)  # Extraction.links: LOLBAS <-> rules
    rule_id: str = ""  # the first id of its text (history.rule_id_of)
    warnings: list[str] = field(default_factory=list)  # FileReport.warnings: the extraction's, pySigma's

    @classmethod
    def decode(cls, payload: bytes, binaries: Iterable[str] | None = None) -> "FileRecord":
        """The stored file; with `binaries`, only what can name them: their explicit mentions and
        the candidates holding one of their stems (a bare name resolves a stem on its own)."""
        from .extract import Candidate

        data = json.loads(zlib.decompress(payload))
        if "error" in data:
            return cls([], [], {}, error=data["error"], rule_id=data["r"])
        mentions, candidates = data["m"], data["c"]
        if binaries is not None:
            wanted = set(binaries)
            stems = {stem_of(b) for b in wanted}
            mentions = [m for m in mentions if m["binary"] in wanted]
            candidates = [c for c in candidates if any(stem in c[0].lower() for stem in stems)]
        read = Mention.from_dict
        return cls(
            [read(m) for m in mentions],
            [
                Candidate(text, line, snippet, read(t), prose, platform)
                for text, line, snippet, t, prose, platform in candidates
            ],
            data["o"],
            data["t"],
            data["i"],
            entry=data["e"],
            links=data["l"],
            rule_id=data["r"],
            warnings=data["w"],
        )

    def mentions_with(self, stems: tuple[dict[str, str], dict[str, str], dict[str, str]]) -> list[Mention]:
        """Its mentions with the bare names `stems` resolve (as parsers.file_mentions does)."""
        if not self.candidates:
            return sorted(self.mentions, key=Mention.sort_key)
        from .extract import infer

        windows, unix, modules = stems
        inferred = infer(self.candidates, windows, unix, self.mentions, self.own_stems, modules)
        return sorted(self.mentions + inferred, key=Mention.sort_key)


def _entry_names(entry: dict[str, Any]) -> list[str]:
    """xref.entry_names (a LOLBAS entry's name and aliases, lower case)."""
    from .xref import entry_names

    return list(entry_names(entry)) if entry else []


def stem_of(name: str) -> str:
    """The stem a bare name must be to stand for `name` (names.stem_map), without the marks of
    names.known_stems (`windows:`, `unix:`, `module:`)."""
    for prefix in (WINDOWS_PREFIX, UNIX_PREFIX, MODULE_PREFIX):
        name = name.removeprefix(prefix)
    return name.rpartition(".")[0] or name


# -- opening --


def connect(path: Path, write: bool = False) -> sqlite3.Connection:
    if write:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
    else:
        # a reader may be kept between calls served by other threads (indexer mcp), one at a time
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False)
    return conn


def open_store(data_dir: Path) -> sqlite3.Connection:
    """The complete history store, read-only; HistoryError if there is none or it is stale."""
    path = store_path(data_dir)
    if not path.is_file():
        partial = "being built (interrupted? 'indexer refresh' resumes it)" if (path.parent / PARTIAL).exists() else ""
        raise HistoryError(
            f"no history in {data_dir}"
            + (f": it is {partial}" if partial else ": run 'indexer refresh --history-since YYYY-MM-DD'")
        )
    try:
        conn = connect(path)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise HistoryError(f"the history store {path} cannot be read ({exc}): 'indexer refresh' rebuilds it") from None
    if meta.get("fingerprint") != fingerprint():
        conn.close()
        raise HistoryError(
            f"the history in {data_dir} was made by another version of the extraction: 'indexer refresh' rebuilds it"
        )
    return conn


# -- reading: the index as of a date --


class AsOf:
    """The index as it was at a date, read from the history store: the methods of IndexReader
    that `query.search` and `query.show_target` use, answered as a full build of every source
    checked out at its last first-parent commit at or before `when` (committer date, as `git
    rev-list --first-parent --before`) would answer."""

    def __init__(self, data_dir: Path, when: int) -> None:
        self.data_dir = Path(data_dir)
        self.when = when
        self._conn = open_store(self.data_dir)
        self.seqs: dict[str, int] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        self.cache: dict[str, Any] = {}
        for source, web_url, rooted in self._conn.execute(
            "SELECT source, web_url, rooted FROM sources ORDER BY source"
        ):
            row = self._conn.execute(
                "SELECT seq, sha, adate, ctime FROM commits WHERE source = ? AND ctime <= ? ORDER BY seq DESC LIMIT 1",
                (source, when),
            ).fetchone()
            if row is None:
                if not rooted:
                    first = self._conn.execute("SELECT min(ctime) FROM commits WHERE source = ?", (source,)).fetchone()[
                        0
                    ]
                    self._conn.close()
                    raise HistoryError(
                        f"the history of {source} starts at {iso(first)} (--history-since): nothing known of {iso(when)}"
                    )
                continue  # the repository did not exist yet
            seq, sha, adate, _ = row
            license_row = self._conn.execute(
                "SELECT name FROM licenses WHERE source = ? AND seq <= ? ORDER BY seq DESC LIMIT 1", (source, seq)
            ).fetchone()
            self.seqs[source] = seq
            self.sources[source] = {
                "commit": sha,
                "web_url": web_url,
                "license": license_row[0] if license_row else "",
                "date": adate,
            }
        self._stems: tuple[dict[str, str], dict[str, str], dict[str, str]] | None = None
        self._binaries: list[str] | None = None
        self._files: dict[tuple[str, ...], list[tuple[str, str, list[Mention]]]] = {}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "AsOf":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self, table: str) -> tuple[str, list[Any]]:
        """SQL restricting `table` (spans or names) to the rows live at each source's commit."""
        if not self.seqs:
            return "0", []
        clauses, args = [], []
        for source, seq in self.seqs.items():
            clauses.append(
                f"({table}.source = ? AND {table}.start <= ? AND ({table}.stop IS NULL OR {table}.stop > ?))"
            )
            args += [source, seq, seq]
        return "(" + " OR ".join(clauses) + ")", args

    def as_of(self) -> dict[str, object]:
        """The date asked and each source's commit then (author date)."""
        return {
            "at": iso(self.when),
            "sources": {name: {"commit": s["commit"], "date": s["date"]} for name, s in self.sources.items()},
        }

    def _names(self, kind: str) -> list[str]:
        live, args = self._live("names")
        rows = self._conn.execute(
            f"SELECT DISTINCT substr(token, 3) FROM names WHERE token >= ? AND token < ? AND {live}",
            [kind + ":", kind + ";", *args],
        )
        return sorted(r[0] for r in rows)

    def binaries(self) -> list[str]:
        """Every name a mention has as of the date: those written out (`b:`), and the Windows
        programs' stems Unix prose names bare (extract._across_platforms), confirmed by inference."""
        if self._binaries is None:
            from .extract import _across_platforms

            explicit = self._names("b")
            windows, unix, _ = self.stems()
            words = set(self._names("u"))
            _, unix_prose = _across_platforms(windows, unix)
            known = set(explicit)
            maybe = sorted({name for stem, name in unix_prose.items() if stem in words and name not in known})
            found = {m.binary for _, _, mentions in self._mentions_of(maybe) for m in mentions} if maybe else set()
            self._binaries = sorted(explicit + sorted(found))
        return self._binaries

    def stems(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """The bare-name vocabulary as of the date (names.known_stems of the executables named then)."""
        if self._stems is None:
            self._stems = known_stems(self._names("x"))
        return self._stems

    def aliases(self) -> dict[str, list[str]]:
        """extract.derive_aliases as of the date: a stem pair, or a pair two rule files make."""
        found: dict[str, set[str]] = {}
        for pair in set(self._names("p")) | set(self._names("q")):
            image, original = pair.split("\t")
            found.setdefault(image, set()).add(original)
            found.setdefault(original, set()).add(image)
        return {name: sorted(v) for name, v in sorted(found.items())}

    @property
    def state(self) -> "_StateThen":
        """IndexReader.state as of the date: the file reports (`files`), no build time."""
        if "state" not in self.cache:
            self.cache["state"] = _StateThen(self)
        return self.cache["state"]

    def report(self, source: str, path: str) -> FileReport | None:
        """The report of the file the history keeps at `path` as of the date; None if none lived then."""
        if source not in self.seqs:
            return None
        row = self._conn.execute(
            "SELECT files.payload FROM spans JOIN files ON files.id = spans.file WHERE spans.source = ? "
            "AND spans.path = ? AND spans.start <= ? AND (spans.stop IS NULL OR spans.stop > ?)",
            (source, path, self.seqs[source], self.seqs[source]),
        ).fetchone()
        return None if row is None else self._report(source, path, FileRecord.decode(row[0]))

    def _report(self, source: str, path: str, record: FileRecord, blob: str = "") -> FileReport:
        """A stored version as the refresh reports it (its executables, aliases and shared files
        are not kept: no answer shows them)."""
        if record.error:
            return FileReport(source, path, "error", record.error, blob=blob)
        mentions = record.mentions_with(self.stems())
        return FileReport(
            source,
            path,
            "indexed",
            warnings=record.warnings,
            rule_ids=record.rule_ids,
            mentions=len(mentions),
            links=record.links,
            entry=record.entry,
            blob=blob,
            binaries=sorted({m.binary for m in mentions}),
            title=record.title,
        )

    def reports(self) -> dict[str, FileReport]:
        """Every file of each source's tree at its commit then ("source:path" -> report), as a full
        build's state holds them: those it skips (outside the rule folders, links, over the size
        limit) with the reason, from the trees in the data directory's clones (git: only here);
        the others from the history."""
        from .repository import Repository, SourceSpec, clone_path
        from .sources import get

        row = self._conn.execute("SELECT value FROM meta WHERE key = 'max_bytes'").fetchone()
        max_bytes = int(row[0])
        live, args = self._live("spans")
        stored = {
            (source, path): payload
            for source, path, payload in self._conn.execute(
                f"SELECT spans.source, spans.path, files.payload FROM spans JOIN files ON files.id = spans.file "
                f"WHERE {live}",
                args,
            )
        }
        reports: dict[str, FileReport] = {}
        for source, info in self.sources.items():
            repo = Repository(SourceSpec(source, ""), clone_path(self.data_dir, source))
            try:
                tree = repo.tree(info["commit"])
            except Exception as exc:  # GitPython's error: no clone, or one without the commit
                raise HistoryError(
                    f"the tree of {source} at {info['commit']} cannot be read from its clone in {self.data_dir} "
                    f"({type(exc).__name__}): 'indexer refresh' fetches it"
                ) from None
            finally:
                repo.close()
            for entry in tree:
                reason = get(source).skip_reason(entry, max_bytes)
                payload = stored.get((source, entry.path))
                if reason:
                    reports[f"{source}:{entry.path}"] = FileReport(source, entry.path, "skipped", reason)
                elif payload is None:
                    raise HistoryError(f"the history of {source} lacks {entry.path} at {info['commit']}")
                else:
                    reports[f"{source}:{entry.path}"] = self._report(
                        source, entry.path, FileRecord.decode(payload), entry.sha
                    )
        return reports

    def read_json(self, name: str, read: Any) -> Any:
        """The generation's other files as of the date: xref.json (xref.load) with the LOLBAS
        entries, their links and the Sigma rules' references then, the links resolved against
        the rule sets then, and the former paths of Sigma's rules then."""
        from . import xref

        if name != xref.XREF_FILE:
            raise HistoryError(f"{name} is not kept in the history")
        entries = self._reports("lolbas", "yml/")  # as xref.build: not Archive-Old-Version/
        sigma = [r for r in self._reports("sigma", "", "k:lolbas") if r.status == "indexed"]
        return xref.assemble(self, [r for r in entries if r.entry], sigma, self._rule_sets(), self._former_paths())

    def _former_paths(self) -> dict[str, tuple[Any, ...]]:
        """xref.build's former paths as of the date: for each Sigma rule path then, the paths its
        file had before (history.PathHistory.former_paths over the renames merged by then)."""
        from .history import PathHistory
        from .xref import FormerPath

        sets = self._rule_sets()
        if "sigma" not in sets:
            return {}
        rows = self._conn.execute(
            "SELECT old, new, sha, date FROM moves WHERE source = 'sigma' AND seq <= ? ORDER BY ord",
            (self.seqs["sigma"],),
        )
        history = PathHistory(renames=[list(row) for row in rows])
        former = {path: history.former_paths(path) for path in sorted(sets["sigma"].paths)}
        return {path: tuple(map(FormerPath.from_dict, steps)) for path, steps in former.items() if steps}

    def declared_links(self, binaries: Iterable[str]) -> list[dict[str, Any]]:
        """IndexReader.declared_links as of the date: the Sigma links the LOLBAS entries of
        `binaries` declared then, resolved against Sigma's rules then."""
        from . import xref

        tokens = sorted({"n:" + name for name in binaries})
        if "lolbas" not in self.seqs or not tokens:
            return []
        entries = [r for r in self._reports("lolbas", "yml/", *tokens) if r.entry]
        sets = {name: rules for name, rules in self._rule_sets().items() if name == "sigma"}
        links = [link.to_dict() for link in xref.entry_links(entries, sets) if link.rule_set == "sigma"]
        return sorted(links, key=lambda l: (l["lolbas_path"], l["line"]))

    def _reports(self, source: str, prefix: str, *tokens: str) -> list[FileReport]:
        """The files of `source` under `prefix` live at the date (those holding one of `tokens`,
        if given) as reports with their entry, links and rule ids."""
        if source not in self.seqs:
            return []
        seq = self.seqs[source]
        query = (
            "SELECT spans.path, files.payload FROM spans JOIN files ON files.id = spans.file WHERE spans.source = ? "
            "AND spans.start <= ? AND (spans.stop IS NULL OR spans.stop > ?) AND substr(spans.path, 1, ?) = ?"
        )
        args: list[Any] = [source, seq, seq, len(prefix), prefix]
        if tokens:
            query += f" AND spans.file IN (SELECT file FROM tokens WHERE token IN ({','.join('?' * len(tokens))}))"
            args += tokens
        reports = []
        for path, payload in self._conn.execute(query, args):
            record = FileRecord.decode(payload, ())
            report = FileReport(source, path, "error" if record.error else "indexed", record.error)
            report.entry, report.links, report.rule_ids = record.entry, record.links, record.rule_ids
            reports.append(report)
        return sorted(reports, key=lambda r: r.path)

    def _rule_sets(self) -> dict[str, Any]:
        """The rule sets LOLBAS links to (xref.RuleSet) as they were at the date."""
        from . import xref

        if "rule_sets" not in self.cache:
            sets = {}
            for key, value in self._conn.execute("SELECT key, value FROM meta WHERE key LIKE 'target:%'"):
                name = key.removeprefix("target:")
                if name in self.seqs:
                    spec = json.loads(value)
                    wants = re.compile(spec["paths"], spec["flags"]).match
                    target = xref.LinkTarget(name, frozenset(spec["repositories"]), lambda p, w=wants: bool(w(p)))
                    then = _RuleSetThen(self._conn, name, self.seqs[name])
                    sets[name] = xref.RuleSet(target, then, then, then.rules, then.paths)
            self.cache["rule_sets"] = sets
        return self.cache["rule_sets"]

    def _mentions_of(self, binaries: Sequence[str]) -> list[tuple[str, str, list[Mention]]]:
        """(source, path, mentions of `binaries`) of each file live at the date that names them."""
        key = tuple(sorted(set(binaries)))
        if key in self._files:
            return self._files[key]
        wanted = set(key)
        tokens = sorted({"b:" + b for b in key} | {"w:" + stem_of(b) for b in key})
        live, args = self._live("spans")
        rows = self._conn.execute(
            f"SELECT spans.source, spans.path, files.payload FROM spans JOIN files ON files.id = spans.file "
            f"WHERE spans.file IN (SELECT file FROM tokens WHERE token IN ({','.join('?' * len(tokens))})) AND {live}",
            [*tokens, *args],
        ).fetchall()
        out = []
        for source, path, payload in rows:
            record = FileRecord.decode(payload, wanted)
            mentions = [m for m in record.mentions_with(self.stems()) if m.binary in wanted]
            if mentions:
                out.append((source, path, [self._fill(m) for m in mentions]))
        self._files[key] = out
        return out

    def file_mentions(self, source: str, path: str, binaries: Iterable[str] | None = None) -> list[Mention]:
        """IndexReader.file_mentions as of the date: every mention of the file then (or of `binaries`)."""
        if source not in self.seqs:
            return []
        seq = self.seqs[source]
        row = self._conn.execute(
            "SELECT files.payload FROM spans JOIN files ON files.id = spans.file WHERE spans.source = ? "
            "AND spans.path = ? AND spans.start <= ? AND (spans.stop IS NULL OR spans.stop > ?)",
            (source, path, seq, seq),
        ).fetchone()
        if row is None:
            return []
        wanted = None if binaries is None else set(binaries)
        mentions = FileRecord.decode(row[0]).mentions_with(self.stems())
        return sorted((self._fill(m) for m in mentions if wanted is None or m.binary in wanted), key=file_order)

    def live_files(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(source, the file's identity through renames: "<commit that added it>:<path then>")
        -> (its path, the stored version) at the date. Two live files of one identity (a copy
        git saw as neither): the second is told apart by its path."""
        live, args = self._live("spans")
        rows = self._conn.execute(
            f"SELECT spans.source, files.added || ':' || files.born, spans.path, spans.file FROM spans "
            f"JOIN files ON files.id = spans.file "
            f"WHERE {live}",
            args,
        )
        live_files: dict[tuple[str, str], tuple[str, int]] = {}
        for source, identity, path, file in rows:
            key = (source, identity) if (source, identity) not in live_files else (source, f"{identity}:{path}")
            live_files[key] = (path, file)
        return live_files

    def files_with_words(self, words: Iterable[str]) -> set[int]:
        """The stored files whose candidates hold any of these words (bare stems)."""
        tokens = sorted({"w:" + w for w in words})
        found: set[int] = set()
        for start in range(0, len(tokens), 500):
            chunk = tokens[start : start + 500]
            found.update(
                r[0]
                for r in self._conn.execute(
                    f"SELECT file FROM tokens WHERE token IN ({','.join('?' * len(chunk))})", chunk
                )
            )
        return found

    def record(self, file_id: int) -> FileRecord:
        return FileRecord.decode(self._conn.execute("SELECT payload FROM files WHERE id = ?", (file_id,)).fetchone()[0])

    def verdicts(self, file_id: int) -> list[RuleVerdict]:
        """A stored file's verdict on each binary it names, bare names resolved as of the date."""
        return rule_verdicts(m.__dict__ for m in self.record(file_id).mentions_with(self.stems()))

    def _fill(self, mention: Mention) -> Mention:
        """The mention with its source's commit, URL and license as of the date (as IndexReader._mention)."""
        source = self.sources.get(mention.source, {})
        commit, web = source.get("commit", ""), source.get("web_url", "")
        filled = object.__new__(Mention)  # as Mention.at does: dataclasses.replace is slower
        filled.__dict__.update(mention.__dict__)
        filled.__dict__.update(
            commit=commit,
            license=source.get("license", ""),
            url=f"{web}/blob/{commit}/{quote(mention.path)}#L{mention.line}" if web else "",
        )
        return filled

    def search(self, binaries: Iterable[str], **filters: Any) -> list[Mention]:
        """Mentions of any of `binaries` as of the date, filtered as IndexReader.search filters
        (`filters`: codec.mention_filter's)."""
        keeps = mention_filter(**filters)
        out = [m for _, _, mentions in self._mentions_of(list(binaries)) for m in mentions if keeps(m.__dict__)]
        return sorted(out, key=mention_order)

    def stored(self, binary: str) -> list[dict[str, Any]]:
        """A binary's mentions as of the date, as IndexReader.stored gives them (no commit, url, license)."""
        return [stored(m) for _, _, mentions in self._mentions_of([binary]) for m in mentions]

    def all_mentions(self) -> Iterator[Mention]:
        """Every mention as of the date (`export --at`), file by file."""
        live, args = self._live("spans")
        rows = self._conn.execute(
            f"SELECT files.payload FROM spans JOIN files ON files.id = spans.file WHERE {live}", args
        )
        for (payload,) in rows:
            for mention in FileRecord.decode(payload).mentions_with(self.stems()):
                yield self._fill(mention)

    def all_rules(self) -> Iterator[RuleVerdict]:
        """Every (rule file, binary) verdict as of the date (joins.detection_sources)."""
        live, args = self._live("spans")
        rows = self._conn.execute(
            f"SELECT files.payload FROM spans JOIN files ON files.id = spans.file WHERE {live}", args
        )
        for (payload,) in rows:
            yield from rule_verdicts(m.__dict__ for m in FileRecord.decode(payload).mentions_with(self.stems()))

    def rules(self, binaries: Iterable[str]) -> list[RuleVerdict]:
        """The verdict of every rule file naming any of `binaries` as of the date, strongest first."""
        out = [
            v
            for _, _, mentions in self._mentions_of(list(binaries))
            for v in rule_verdicts(m.__dict__ for m in mentions)
        ]
        # as stored: through the dict form (the index keeps verdicts as JSON)
        return sorted((RuleVerdict.from_dict(v.to_dict()) for v in out), key=RuleVerdict.sort_key)


class _RuleSetThen:
    """A rule set at a first-parent commit, as xref.resolve_link reads its `Repository`,
    `PathHistory` and tip, from the store: the commits then, what each path last held then (the
    `lasts` of every commit merged by then), its rule ids and paths then. The store keeps a
    file's rule id, not its text: `read` and `read_at` give the one line `rule_id_of` finds."""

    def __init__(self, conn: sqlite3.Connection, source: str, seq: int) -> None:
        self._conn, self.source, self.seq = conn, source, seq
        self.last = self  # PathHistory.last.get
        self.rules = _RulesThen(self)
        self.paths = _PathsThen(self)
        self._ids: dict[str, str] = {}

    def _live(self, path: str, seq: int) -> FileRecord | None:
        row = self._conn.execute(
            "SELECT files.payload FROM spans JOIN files ON files.id = spans.file WHERE spans.source = ? "
            "AND spans.path = ? AND spans.start <= ? AND (spans.stop IS NULL OR spans.stop > ?)",
            (self.source, path, seq, seq),
        ).fetchone()
        return FileRecord.decode(row[0], ()) if row else None

    def has_commit(self, commit: str) -> bool:
        """A first-parent commit up to then (one off that line is not known: its link resolves
        through the path's history, as for a commit the clone lacks)."""
        row = self._conn.execute(
            "SELECT 1 FROM commits WHERE source = ? AND sha = ? AND seq <= ?", (self.source, commit, self.seq)
        ).fetchone()
        return row is not None

    def read_at(self, commit: str, path: str) -> bytes:
        seq = self._conn.execute("SELECT seq FROM commits WHERE source = ? AND sha = ?", (self.source, commit))
        record = self._live(path, seq.fetchone()[0])
        if record is None:
            raise KeyError(f"no file {path!r} at {commit}")
        return f"id: {record.rule_id}".encode() if record.rule_id else b""

    def read(self, blob: str) -> bytes:
        rule_id = self._ids.get(blob, "")
        return f"id: {rule_id}".encode() if rule_id else b""

    def get(self, path: str) -> LastContent | None:
        row = self._conn.execute(
            "SELECT blob, sha, date, status, rule_id FROM lasts WHERE source = ? AND path = ? AND seq <= ? "
            "ORDER BY ord DESC LIMIT 1",
            (self.source, path, self.seq),
        ).fetchone()
        if row is None:
            return None
        self._ids[row[0]] = row[4]
        return LastContent(*row[:4])


class _RulesThen:
    """xref._tip's rule id -> path as of then: of the readable files holding the id, the last path."""

    def __init__(self, rule_set: _RuleSetThen) -> None:
        self._set = rule_set

    def get(self, rule_id: str, default: str | None = None) -> str | None:
        s = self._set
        row = s._conn.execute(
            "SELECT max(spans.path) FROM spans JOIN tokens ON tokens.file = spans.file WHERE tokens.token = ? "
            "AND spans.source = ? AND spans.start <= ? AND (spans.stop IS NULL OR spans.stop > ?)",
            ("i:" + rule_id, s.source, s.seq, s.seq),
        ).fetchone()
        return row[0] if row and row[0] is not None else default


class _PathsThen:
    """xref._tip's paths of rule files as of then."""

    def __init__(self, rule_set: _RuleSetThen) -> None:
        self._set = rule_set

    def __contains__(self, path: object) -> bool:
        s = self._set
        return (
            s._conn.execute(
                "SELECT 1 FROM spans WHERE source = ? AND path = ? AND start <= ? AND (stop IS NULL OR stop > ?)",
                (s.source, path, s.seq, s.seq),
            ).fetchone()
            is not None
        )

    def __iter__(self) -> Iterator[str]:
        s = self._set
        rows = s._conn.execute(
            "SELECT path FROM spans WHERE source = ? AND start <= ? AND (stop IS NULL OR stop > ?)",
            (s.source, s.seq, s.seq),
        )
        return (row[0] for row in rows)


class _StateThen:
    """`IndexReader.state` as of a date: `files` and `built_at` (0: built by no refresh)."""

    built_at = 0.0

    def __init__(self, reader: AsOf) -> None:
        self.files = _FilesThen(reader)


class _FilesThen(Mapping[str, FileReport]):
    """`State.files` as of a date: "source:path" -> report. Listing them reads each source's tree
    then (AsOf.reports, once); `get` of a file the history keeps reads it alone."""

    def __init__(self, reader: AsOf) -> None:
        self._reader = reader
        self._all: dict[str, FileReport] | None = None

    def _every(self) -> dict[str, FileReport]:
        if self._all is None:
            self._all = self._reader.reports()
        return self._all

    def get(self, key: str, default: Any = None) -> Any:
        if self._all is None:
            source, _, path = key.partition(":")
            report = self._reader.report(source, path)
            if report is not None:
                return report
        return self._every().get(key, default)

    def __getitem__(self, key: str) -> FileReport:
        return self._every()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._every())


def open_at(data_dir: Path, at: str) -> AsOf:
    """The index as of the date `at` (text as typed: YYYY-MM-DD or ISO); HistoryError if unknown."""
    return AsOf(data_dir, parse_date(at))


# -- building --


class Progress:
    """What the build reports (refresh.Progress has these)."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...

    def log(self, message: str) -> None: ...


@dataclass
class _Commit:
    sha: str
    ctime: int
    atime: int
    adate: str
    changes: list[tuple[str, str, str, str, str]]  # (status, path, new path or "", new blob, old blob)
    modes: dict[str, str] = field(default_factory=dict)  # path -> its new mode


def parse_log(text: str) -> list[_Commit]:
    """Repository.first_parent_log's text as commits with their changes, oldest first."""
    commits: list[_Commit] = []
    tokens = text.split("\0")
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip("\n")
        i += 1
        if token.startswith("\x01"):
            sha, ctime, atime, adate = token[1:].strip().split(" ")
            commits.append(_Commit(sha, int(ctime), int(atime), adate, []))
        elif token.startswith(":"):
            meta = token.split()
            mode, old_blob, blob, status = meta[1], meta[2], meta[3], meta[4]
            path = tokens[i]
            i += 1
            new = ""
            if status[0] in "RC":
                new = tokens[i]
                i += 1
            commits[-1].changes.append((status[0], path, new, blob, old_blob))
            commits[-1].modes[new or path] = mode
    return commits


def _skip(source: Any, path: str, mode: str) -> bool:
    """Whether the refresh leaves this file out (Source.skip_reason without the size: the reader
    gives a file over the limit no mentions, as the skipped file has none)."""
    return not (mode.startswith("100") and source.wants(path))


def _extract_one(item: tuple[str, str, bytes, int]) -> tuple[bytes, list[str]]:
    """One file in a forked process: the refresh's per-file code, its source's check (pySigma) included."""
    from .extract import FileContext
    from .parsers import process_file

    source, path, raw, max_bytes = item
    processed = process_file(FileContext(source, path), raw, max_bytes)
    report, rule_id = processed.report, rule_id_of(raw)
    if report.status != "indexed":
        return encode_file(None, error=report.reason, rule_id=rule_id)
    return encode_file(
        processed.extraction, report.title, executables=report.executables, rule_id=rule_id, warnings=report.warnings
    )


def _threshold(token: str) -> int:
    """How many live files must hold a name token for it to count: a pair that only one rule
    makes is an alias only if of the same stem (extract.derive_aliases, ALIAS_MIN_RULES)."""
    from .extract import ALIAS_MIN_RULES

    return ALIAS_MIN_RULES if token.startswith("p:") else 1


class _SourceBuild:
    """One source's history brought up to its tip, a batch of commits per transaction."""

    def __init__(
        self, conn: sqlite3.Connection, repo: Repository, tip: str, since: int | None, max_bytes: int, pool: Any
    ) -> None:
        from .sources import get
        from .sources.base import Source

        self.conn, self.repo, self.tip, self.since = conn, repo, tip, since
        self.name = repo.spec.name
        self.source = get(self.name)
        self.max_bytes, self.pool = max_bytes, pool
        self.jobs = 0  # extraction processes (0: one per core)
        # a source whose files read its shared files (Splunk's macros): read commit by commit
        self.sharing = type(self.source).shared is not Source.shared
        self.shared: dict[str, str] = {}  # shared file path -> its blob at the commit applied last
        self.shared_raw: dict[str, bytes] = {}  # ... and its content (those within max_bytes)
        self.providers: dict[str, str] = {}  # what a shared file answers for -> the file (Source.provides)
        self.provides: dict[tuple[str, str], list[str]] = {}  # (path, blob) -> Source.provides
        self.live: dict[str, tuple[int, int]] = {}  # path -> (span id, file id)
        self.counts: dict[str, int] = {}  # name token -> live files holding it
        self.open_names: dict[str, int] = {}  # name token -> its open row in `names`
        self.file_tokens: dict[int, list[str]] = {}
        self.licenses: dict[str, str] = {}  # license file path -> blob
        self.license = ""

    def pending(self) -> list[_Commit]:
        """The commits to add (the base commit first for a source not in the store yet)."""
        row = self.conn.execute("SELECT tip, seq FROM sources WHERE source = ?", (self.name,)).fetchone()
        if row is not None and row[0] == self.tip:
            return []
        if row is not None and self.repo.has_commit(row[0]) and self.repo.is_ancestor(row[0], self.tip):
            self.seq = row[1]
            self._load()
            self._lineage(f"{row[0]}..{self.tip}")
            commits = parse_log(self.repo.first_parent_log(f"{row[0]}..{self.tip}"))
            self._paths(f"{row[0]}..{self.tip}", {c.sha: self.seq + 1 + i for i, c in enumerate(commits)})
            return commits
        if row is not None:  # history rewritten upstream: this source's history is made again
            self._drop()
        commits = parse_log(self.repo.first_parent_log(self.tip))
        self._lineage(self.tip)
        start = 0
        if self.since is not None:
            start = max((i for i, c in enumerate(commits) if c.ctime <= self.since), default=0)
        # the base commit: the state before it is the sum of its first-parent changes
        state: dict[str, tuple[str, str]] = {}
        for commit in commits[: start + 1]:
            for status, path, new, blob, _ in commit.changes:
                state.pop(path, None)
                if status != "D":
                    state[new or path] = (blob, commit.modes[new or path])
        self._paths(self.tip, {c.sha: max(0, i - start) for i, c in enumerate(commits)})
        base = commits[start]
        base.changes = [("A", path, "", blob, "") for path, (blob, _) in sorted(state.items())]
        base.modes = {path: mode for path, (_, mode) in state.items()}
        self.seq = -1
        self.rooted = start == 0
        self.conn.execute(
            "INSERT INTO sources VALUES (?, ?, '', -1, ?)", (self.name, self.repo.spec.web_url, int(self.rooted))
        )
        return commits[start:]

    def _paths(self, revs: str, mainline: dict[str, int]) -> None:
        """For a rule set LOLBAS links to (Source.history): what each of its paths last held as
        `git log --raw -M` of `revs` tells it (history.PathHistory's `last`), each step kept with
        the first-parent commit that brought it in (`seq`: the commits merged by it count from
        then) and the rule id of the blob, so a link resolves as of any date (AsOf.declared_links).
        `mainline`: the first-parent commits of `revs` -> their seq, in order."""
        if not getattr(self.source, "history", False) or not mainline:
            return
        # a resumed build: what the commits not applied yet brought is made again
        for table in ("lasts", "moves"):
            self.conn.execute(f"DELETE FROM {table} WHERE source = ? AND seq >= ?", (self.name, min(mainline.values())))
        parents: dict[str, list[str]] = {}
        steps: list[tuple[str, str, str, str, str]] = []  # (path, blob, commit, date, status), in log order
        moves: list[tuple[str, str, str, str]] = []  # (old, new, commit, date): PathHistory.renames
        tokens = self.repo.raw_log(revs, parents=True).split("\0")
        commit = date = ""
        i = 0
        while i < len(tokens):
            token = tokens[i].lstrip("\n")
            i += 1
            if token.startswith("\x01"):
                commit, date, *above = token[1:].split()
                parents[commit] = above
            elif token.startswith(":"):
                _, _, old_blob, new_blob, status = token.split()[:5]
                path, new = tokens[i], ""
                i += 1
                if status[0] in "RC":  # as history._apply_log
                    new = tokens[i]
                    i += 1
                    steps.append((path, old_blob, commit, date, "renamed"))
                    steps.append((new, new_blob, commit, date, "present"))
                    if status[0] == "R":
                        moves.append((path, new, commit, date))
                elif status == "D":
                    steps.append((path, old_blob, commit, date, "deleted"))
                else:
                    steps.append((path, new_blob, commit, date, "present"))
        merged = dict(mainline)  # each commit -> the first-parent commit that brought it in
        for sha, seq in mainline.items():
            stack = list(parents.get(sha, [])[1:])
            while stack:
                other = stack.pop()
                if other in parents and other not in merged:
                    merged[other] = seq
                    stack.extend(parents[other])
        steps = [step for step in steps if self.source.wants(step[0])]
        ids = dict(self.conn.execute("SELECT DISTINCT blob, rule_id FROM lasts WHERE source = ?", (self.name,)))
        unread = sorted({blob for _, blob, *_ in steps if blob not in ids and blob.strip("0")})
        ids.update(zip(unread, map(rule_id_of, self.repo.read_many(unread))))
        first = self.conn.execute("SELECT coalesce(max(ord), -1) + 1 FROM lasts WHERE source = ?", (self.name,))
        start = first.fetchone()[0]
        top = max(mainline.values())
        self.conn.executemany(
            "INSERT INTO lasts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self.name, path, start + n, merged.get(commit, top), blob, commit, date, status, ids.get(blob, ""))
                for n, (path, blob, commit, date, status) in enumerate(steps)
            ],
        )
        first = self.conn.execute("SELECT coalesce(max(ord), -1) + 1 FROM moves WHERE source = ?", (self.name,))
        start = first.fetchone()[0]
        self.conn.executemany(
            "INSERT INTO moves VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (self.name, start + n, merged.get(commit, top), old, new, commit, date)
                for n, (old, new, commit, date) in enumerate(moves)
            ],
        )
        paths = self.source.paths
        target = {"repositories": sorted(self.source.repositories()), "paths": paths.pattern, "flags": paths.flags}
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"target:{self.name}", json.dumps(target)))

    def _lineage(self, revs: str) -> None:
        """Which commit made each (path, blob) in `revs` (any branch, merges left out): the
        oldest that did, with how (A, M, R and the version it came from)."""
        self.made: dict[tuple[str, str], tuple[str, str, str, str, str]] = {}
        for commit in parse_log(self.repo.lineage_log(revs)):
            for status, path, new, blob, old_blob in commit.changes:
                if status != "D":
                    self.made.setdefault((new or path, blob), (commit.sha, commit.adate, status, path, old_blob))

    def _origin(self, path: str, blob: str, first: _Commit) -> tuple[str, str, str, str, str]:
        """(made, its date, added, its date, born) of a version: the commit that made it, and the
        one that added the file it is a version of, at the path `born`, through its modifications
        and renames (as `git log --follow` does); the first-parent commit `first` where none is
        known. (added, born) is the file's identity: one commit may add many files."""
        made = self.made.get((path, blob))
        if made is None:
            return first.sha, first.adate, first.sha, first.adate, path
        seen = set()
        step: tuple[str, str, str, str, str] | None = made
        added, born = made, path
        while step is not None and (path, blob) not in seen:
            seen.add((path, blob))
            added, born = step, path
            sha, _, status, old_path, old_blob = step
            if status == "A":
                break
            path, blob = (old_path, old_blob)
            step = self.made.get((path, blob))
            if step is None:  # made before this range: the store knows it
                row = self.conn.execute(
                    "SELECT added, added_date, born FROM files WHERE source = ? AND path = ? AND blob = ?",
                    (self.name, path, blob),
                ).fetchone()
                if row is not None:
                    return made[0], made[1], row[0], row[1], row[2]
        return made[0], made[1], added[0], added[1], born

    def _drop(self) -> None:
        for table in ("commits", "spans", "names", "renames", "licenses", "sources", "lasts", "moves"):
            self.conn.execute(f"DELETE FROM {table} WHERE source = ?", (self.name,))
        self.conn.execute("DELETE FROM tokens WHERE file IN (SELECT id FROM files WHERE source = ?)", (self.name,))
        self.conn.execute("DELETE FROM files WHERE source = ?", (self.name,))

    def _load(self) -> None:
        """The state at the stored tip: the open spans, name counts, license files (resuming)."""
        for span, path, file, blob in self.conn.execute(
            "SELECT spans.id, spans.path, spans.file, files.blob FROM spans JOIN files ON files.id = spans.file "
            "WHERE spans.source = ? AND spans.stop IS NULL",
            (self.name,),
        ):
            self.live[path] = (span, file)
            if self.sharing and self.source.shared(path):
                self.shared[path] = blob
        self._read_shared(list(self.shared))
        if self.sharing:
            self._share()
        for (token,) in self.conn.execute(
            "SELECT tokens.token FROM tokens JOIN spans ON spans.file = tokens.file "
            "WHERE spans.source = ? AND spans.stop IS NULL AND substr(tokens.token, 1, 1) IN ('b', 'x', 'p', 'q', 'u')",
            (self.name,),
        ):
            self.counts[token] = self.counts.get(token, 0) + 1
        for row_id, token in self.conn.execute(
            "SELECT id, token FROM names WHERE source = ? AND stop IS NULL", (self.name,)
        ):
            self.open_names[token] = row_id
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (f"licenses:{self.name}",)).fetchone()
        self.licenses = json.loads(row[0]) if row else {}
        row = self.conn.execute(
            "SELECT name FROM licenses WHERE source = ? ORDER BY seq DESC LIMIT 1", (self.name,)
        ).fetchone()
        self.license = row[0] if row else ""

    def run(self, commits: list[_Commit], progress: Progress) -> None:
        for start in range(0, len(commits), BATCH_COMMITS):
            batch = commits[start : start + BATCH_COMMITS]
            files = None if self.sharing else self._extract(batch)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if files is None:
                    self._run_shared(batch)
                else:
                    ids = self._store_files(files)
                    for commit in batch:
                        self._apply(commit, ids)
                self.conn.execute(
                    "UPDATE sources SET tip = ?, seq = ? WHERE source = ?", (batch[-1].sha, self.seq, self.name)
                )
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"licenses:{self.name}", json.dumps(self.licenses))
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            progress.advance(len(batch))
        if self.sharing:  # the source left as a refresh at the tip leaves it
            self._share()

    def _known(self, path: str, blob: str) -> int | None:
        """The stored version of (path, blob) read with the shared files as they are now (for
        a file that read none, the one stored)."""
        for file_id, context in self.conn.execute(
            "SELECT id, context FROM files WHERE source = ? AND path = ? AND blob = ? ORDER BY id",
            (self.name, path, blob),
        ):
            if not context or all(self._state(p) == b for p, b in json.loads(context).items()):
                return file_id
        return None

    def _extract(
        self, batch: list[_Commit], again: dict[str, str] | None = None
    ) -> dict[tuple[str, str], tuple[_Commit, bytes, list[str]]]:
        """Each new (path, blob) of the batch extracted (in the forked processes), with the
        first-parent commit that brought it; `again`: unchanged files (path -> blob) read again
        at the batch's first commit (their shared files changed)."""
        wanted: dict[tuple[str, str], _Commit] = {(path, blob): batch[0] for path, blob in (again or {}).items()}
        for commit in batch:
            for status, path, new, blob, _ in commit.changes:
                target = new or path
                if status != "D" and not _skip(self.source, target, commit.modes[target]):
                    if (target, blob) not in wanted and self._known(target, blob) is None:
                        wanted[(target, blob)] = commit
        keys = list(wanted)
        raws = self.repo.read_many([blob for _, blob in keys])
        items = ((self.name, path, raw, self.max_bytes) for (path, _), raw in zip(keys, raws))
        results = self.pool.imap(_extract_one, items, chunksize=16) if self.pool else map(_extract_one, items)
        return {key: (wanted[key], payload, tokens) for key, (payload, tokens) in zip(keys, results)}

    def _store_files(
        self, files: dict[tuple[str, str], tuple[_Commit, bytes, list[str]]]
    ) -> dict[tuple[str, str], int]:
        ids = {}
        for (path, blob), (first, payload, tokens) in files.items():
            context = self._context(tokens)
            row = self.conn.execute(
                "SELECT id FROM files WHERE source = ? AND path = ? AND blob = ? AND context = ?",
                (self.name, path, blob, context),
            ).fetchone()
            if row is not None:  # read again, the same as a version stored before
                ids[(path, blob)] = row[0]
                continue
            cursor = self.conn.execute(
                "INSERT INTO files(source, path, blob, payload, made, made_date, added, added_date, born, context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.name, path, blob, payload, *self._origin(path, blob, first), context),
            )
            ids[(path, blob)] = file_id = cursor.lastrowid
            self.conn.executemany("INSERT INTO tokens VALUES (?, ?)", [(t, file_id) for t in tokens])
            self.file_tokens[file_id] = [t for t in tokens if t[0] in "bxpqu"]
        return ids

    def _context(self, tokens: list[str]) -> str:
        """The blobs of the shared files a version read (`d:` tokens), "" where it read none."""
        depends = {t[2:]: self._state(t[2:]) for t in tokens if t.startswith("d:")}
        return json.dumps(depends, sort_keys=True) if depends else ""

    def _read_shared(self, paths: list[str]) -> None:
        """The content of these shared files at their blobs now (Source.share's, as a refresh
        hands them: files over the size limit left out)."""
        for path in paths:
            self.shared_raw.pop(path, None)
        present = [p for p in paths if p in self.shared]
        for path, raw in zip(present, self.repo.read_many([self.shared[p] for p in present])):
            if len(raw) <= self.max_bytes:
                self.shared_raw[path] = raw

    def _run_shared(self, batch: list[_Commit]) -> None:
        """A batch of a source with shared files: each run of commits that changes none is read
        with them as the run's first commit left them; the live files that read a shared file it
        changed are read again there, a new version where their mentions changed."""
        runs: list[list[_Commit]] = []
        for commit in batch:
            if not runs or self._shared_changes(commit):
                runs.append([])
            runs[-1].append(commit)
        for run in runs:
            changed = self._shared_changes(run[0])
            touched = {new or path for _, path, new, _, _ in run[0].changes} | {p for _, p, _, _, _ in run[0].changes}
            keys = changed | self._provided(changed)  # what they answered for before (a macro's name) ...
            for path in changed:  # the shared files as the run's first commit leaves them
                self.shared.pop(path, None)
            for status, path, new, blob, _ in run[0].changes:
                target = new or path
                if status != "D" and self.source.shared(target) and run[0].modes[target].startswith("100"):
                    self.shared[target] = blob
            self._read_shared(sorted(changed))
            again = self._dependents(keys | self._provided(changed), touched)  # ... and after
            self._share()
            self.pool = _pool(self.jobs, len(again) + sum(len(c.changes) for c in run))  # forked after share
            try:
                files = self._extract(run, {path: blob for path, (_, blob) in again.items()})
            finally:
                if self.pool is not None:
                    self.pool.terminate()
                    self.pool.join()
                    self.pool = None
            same = {}  # read again with the same outcome: the version stays, no new interval
            for path, (file_id, blob) in again.items():
                old = self.conn.execute("SELECT payload FROM files WHERE id = ?", (file_id,)).fetchone()[0]
                if files[(path, blob)][1] == old:
                    del files[(path, blob)]
                    same[(path, blob)] = file_id
            ids = self._store_files(files) | same
            reread = {
                path: ids[(path, blob)] for path, (file_id, blob) in again.items() if ids[(path, blob)] != file_id
            }
            for i, commit in enumerate(run):
                self._apply(commit, ids, reread if i == 0 else {})

    def _state(self, depend: str) -> str:
        """What a file that read `depend` read: the blob at that path, and the file that answers
        for it now if another does (the file defining the macro named so)."""
        blob = self.shared.get(depend, "")
        provider = self.providers.get(depend, depend)
        return blob if provider == depend else f"{blob} {provider}:{self.shared.get(provider, '')}"

    def _share(self) -> None:
        """Hand the source its shared files as they are now; who answers for what (the first
        file in path order, as splunk.load_macros resolves a name)."""
        self.source.share(dict(self.shared_raw))
        self.providers = {}
        for path in sorted(self.shared_raw):
            version = (path, self.shared.get(path, ""))
            if version not in self.provides:
                self.provides[version] = self.source.provides(path, self.shared_raw[path])
            for key in self.provides[version]:
                self.providers.setdefault(key, path)

    def _provided(self, paths: set[str]) -> set[str]:
        """What these shared files answer for as they are now (Source.provides: the names of the
        Splunk macros they define)."""
        return {
            key
            for path in paths
            if path in self.shared_raw
            for key in self.source.provides(path, self.shared_raw[path])
        }

    def _shared_changes(self, commit: _Commit) -> set[str]:
        """The shared files a commit adds, changes, renames or deletes."""
        return {p for _, path, new, _, _ in commit.changes for p in (path, new) if p and self.source.shared(p)}

    def _dependents(self, changed: set[str], touched: set[str]) -> dict[str, tuple[int, str]]:
        """Live files the commit leaves as they were that read one of the `changed` shared
        files, or what they answer for: path -> (their file id, blob)."""
        if not changed:
            return {}
        tokens = sorted("d:" + p for p in changed)
        readers = {
            r[0]
            for r in self.conn.execute(
                f"SELECT file FROM tokens WHERE token IN ({','.join('?' * len(tokens))})", tokens
            )
        }
        out = {}
        for path, (_, file_id) in self.live.items():
            if file_id in readers and path not in touched:
                blob = self.conn.execute("SELECT blob FROM files WHERE id = ?", (file_id,)).fetchone()[0]
                out[path] = (file_id, blob)
        return out

    def _tokens_of(self, file_id: int) -> list[str]:
        if file_id not in self.file_tokens:
            self.file_tokens[file_id] = [
                r[0]
                for r in self.conn.execute(
                    "SELECT token FROM tokens WHERE file = ? AND substr(token, 1, 1) IN ('b', 'x', 'p', 'q', 'u')",
                    (file_id,),
                )
            ]
        return self.file_tokens[file_id]

    def _apply(self, commit: _Commit, ids: dict[tuple[str, str], int], reread: dict[str, int] | None = None) -> None:
        """One commit: spans closed and opened, name counts moved, renames, the license;
        `reread`: unchanged paths -> the new version their changed shared files made."""
        self.seq += 1
        seq = self.seq
        self.conn.execute(
            "INSERT INTO commits VALUES (?, ?, ?, ?, ?, ?)",
            (self.name, seq, commit.sha, commit.ctime, commit.atime, commit.adate),
        )
        delta: dict[str, int] = {}
        license_changed = False

        def close(path: str) -> None:
            span = self.live.pop(path, None)
            if span is not None:
                self.conn.execute("UPDATE spans SET stop = ? WHERE id = ?", (seq, span[0]))
                for token in self._tokens_of(span[1]):
                    delta[token] = delta.get(token, 0) - 1

        for status, path, new, blob, _ in commit.changes:
            target = new or path
            close(path)
            if status == "R":
                self.conn.execute("INSERT INTO renames VALUES (?, ?, ?, ?)", (self.name, seq, path, new))
            for name in (path, target):
                if "/" not in name and name in _license_files():
                    license_changed = True
                    self.licenses.pop(name, None)
            if status == "D":
                continue
            if "/" not in target and target in _license_files() and commit.modes[target].startswith("100"):
                self.licenses[target] = blob
            if _skip(self.source, target, commit.modes[target]):
                continue
            close(target)
            file_id = ids.get((target, blob)) or self._known(target, blob)
            if file_id is None:  # cannot happen: every new (path, blob) was extracted first
                raise HistoryError(f"{self.name}: {target} at {commit.sha} was not read")
            span = self.conn.execute(
                "INSERT INTO spans(source, path, file, start) VALUES (?, ?, ?, ?)", (self.name, target, file_id, seq)
            ).lastrowid
            self.live[target] = (span, file_id)
            for token in self._tokens_of(file_id):
                delta[token] = delta.get(token, 0) + 1
        for path, file_id in (reread or {}).items():
            close(path)
            span = self.conn.execute(
                "INSERT INTO spans(source, path, file, start) VALUES (?, ?, ?, ?)", (self.name, path, file_id, seq)
            ).lastrowid
            self.live[path] = (span, file_id)
            for token in self._tokens_of(file_id):
                delta[token] = delta.get(token, 0) + 1
        for token, change in delta.items():
            if not change:
                continue
            before = self.counts.get(token, 0)
            after = before + change
            self.counts[token] = after
            threshold = _threshold(token)
            if before < threshold <= after:
                self.open_names[token] = self.conn.execute(
                    "INSERT INTO names(source, token, start) VALUES (?, ?, ?)", (self.name, token, seq)
                ).lastrowid
            elif after < threshold <= before:
                self.conn.execute("UPDATE names SET stop = ? WHERE id = ?", (seq, self.open_names.pop(token)))
            if not after:
                del self.counts[token]
        if license_changed or seq == 0:
            self._license(seq)

    def _license(self, seq: int) -> None:
        """The license as the refresh reads it (Repository.license: the first license file)."""
        from .repository import license_name

        name = ""
        for path in _license_files():
            blob = self.licenses.get(path)
            if blob:
                text = self.repo.read(blob)
                if len(text) < 1_000_000:
                    name = license_name(text.decode("utf-8", "replace"))
                    break
        if name != self.license or seq == 0:
            self.license = name
            self.conn.execute("INSERT INTO licenses VALUES (?, ?, ?)", (self.name, seq, name))


def _license_files() -> tuple[str, ...]:
    from .repository import LICENSE_FILES

    return LICENSE_FILES


@dataclass
class BuildOutcome:
    """What a history build did."""

    commits: int = 0
    files: int = 0
    seconds: float = 0.0
    size: int = 0
    complete: bool = False


def build(
    data_dir: Path,
    repos: dict[str, Repository],
    tips: dict[str, str],
    since: str | None = None,
    progress: Progress | None = None,
    jobs: int = 0,
    max_bytes: int = 0,
) -> BuildOutcome:
    """Bring the history store up to `tips` (one per source), building it the first time.

    since: how far back it goes ("2019-01-01"; None: the whole history, or as before). The first
    build writes `chronicle.partial.sqlite`, a batch of commits per transaction, and renames it
    to `chronicle.sqlite` once every source is in: interrupted, the next call resumes it. A store
    made by other extraction code, another checker (pySigma's version: the warnings it keeps) or
    from another `since` is made again beside and swapped.
    """
    from .parse import MAX_FILE_BYTES
    from .sources import SOURCES

    progress = progress or Progress()
    started = time.time()
    folder = Path(data_dir) / "history"
    folder.mkdir(parents=True, exist_ok=True)
    final, partial = folder / STORE, folder / PARTIAL
    current, resumed = _meta(final), _meta(partial)
    if since is None:  # as before: the partial build's depth, else the store's, else the whole history
        since = resumed.get("since", current.get("since", ""))
    since_ts = parse_date(since, "--history-since") if since else None
    made = {"fingerprint": fingerprint(), "since": since or "", "checkers": _checkers(SOURCES)}
    target = final
    if any(current.get(key) != value for key, value in made.items()):
        target = partial  # built beside, swapped in whole
        if any(resumed.get(key) != value for key, value in made.items()):
            for stale in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
                stale.unlink(missing_ok=True)
    outcome = BuildOutcome()
    with closing(connect(target, write=True)) as conn:
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", made.items())
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('max_bytes', ?)", (str(max_bytes or MAX_FILE_BYTES),))
        builds = [
            _SourceBuild(conn, repo, tips[name], since_ts, max_bytes or MAX_FILE_BYTES, None)
            for name, repo in sorted(repos.items())
        ]
        conn.execute("BEGIN IMMEDIATE")
        try:
            pending = [(b, b.pending()) for b in builds]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        total = sum(len(c) for _, c in pending)
        outcome.commits = total
        if total:
            progress.stage("history", total)
            for source_build, commits in pending:
                # a source with shared files forks its own, after handing them (Source.share)
                work = sum(len(commit.changes) for commit in commits)
                pool = None if source_build.sharing else _pool(jobs, work)
                source_build.pool, source_build.jobs = pool, jobs
                try:
                    source_build.run(commits, progress)
                finally:
                    if pool is not None:
                        pool.terminate()
                        pool.join()
        outcome.files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if target == partial:
        os.replace(partial, final)
        for stale in (Path(f"{final}-wal"), Path(f"{final}-shm")):
            stale.unlink(missing_ok=True)
    outcome.complete = True
    outcome.seconds = round(time.time() - started, 3)
    outcome.size = final.stat().st_size
    return outcome


def _checkers(sources: dict[str, Any]) -> str:
    """What checks the registered sources' files (Source.checker: "pySigma 2.0.1"), as stored in `meta`."""
    return json.dumps({name: source.checker for name, source in sorted(sources.items()) if source.checker})


def _pool(jobs: int, work: int) -> Any:
    """Forked extraction processes (None: in this process, for little work or one core)."""
    import multiprocessing

    jobs = jobs or (os.cpu_count() or 1)
    if jobs <= 1 or work < 200:
        return None
    return multiprocessing.get_context("fork").Pool(jobs)


def _meta(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        with closing(connect(path)) as conn:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error:
        return {}


def history_since(data_dir: Path) -> str | None:
    """The depth the data directory's history was built with ("" whole; None: no history kept)."""
    folder = Path(data_dir) / "history"
    for path in (folder / STORE, folder / PARTIAL):
        meta = _meta(path)
        if "since" in meta:
            return meta["since"]
    return None
