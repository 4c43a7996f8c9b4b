"""A refresh: fetch every source, read what changed, extract, write a new index generation.

The stages run in order (sources -> parse -> extract -> index); the previous generation stays
readable throughout and is replaced only when the new one is complete. A refresh that fails
for one source keeps that source's files as they were indexed before.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ExitCode, LockHeld
from .extract import FileContext
from . import xref
from .history import PathHistory, update_history
from .index import MANIFEST_FILE, IndexMissing, IndexReader, IndexWriter, current_generation, fileref, verify
from .model import FileReport
from .extract import derive_aliases
from .names import known_stems
from .parse import MAX_FILE_BYTES
from .parsers import Batch, FileMentions, InlineReader, ParserPool
from .repository import Repository, SourceError, SourceSpec, TreeEntry, clone_path
from .sources import SOURCES, get
from .state import SourceState, State
from .text import redact
from .verdicts import RuleVerdict, rule_verdicts

KEEP_MANIFESTS = 1000
# what checked the files (pySigma for Sigma): files checked by another version are read again
CHECKER = " ".join(source.checker for source in SOURCES.values() if source.checker)
SHRINK_LIMIT = 0.5  # a source left with fewer rule files than this share of before is not published


class Locked(LockHeld):
    """Another refresh holds the data directory's lock."""


class Progress:
    """Receives progress; the CLI shows it as bars or log lines. The default ignores it."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...

    def log(self, message: str) -> None: ...


@dataclass
class SourceOutcome:
    name: str
    url: str
    branch: str
    before: str = ""
    after: str = ""
    mode: str = ""                 # "full" | "incremental" | "unchanged" | "failed"
    error: str = ""
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)   # (old, new)


@dataclass
class Manifest:
    """What one refresh did and what changed: printed by `refresh --json`, kept as history."""

    started: str
    finished: str = ""
    duration_s: float = 0.0
    exit_code: int = 0
    full: bool = False
    reason: str = ""
    sources: dict[str, SourceOutcome] = field(default_factory=dict)
    files_parsed: int = 0
    file_errors: list[dict[str, str]] = field(default_factory=list)
    mentions_added: int = 0
    mentions_removed: int = 0
    mentions_total: int = 0
    binaries: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> rules before/after
    rules_added: list[str] = field(default_factory=list)
    rules_removed: list[str] = field(default_factory=list)
    rules_renamed: list[dict[str, str]] = field(default_factory=list)
    # binary -> Sigma rules (not deprecated or unsupported) that detect it, before and after:
    # counts, and the rules gained, lost, or detecting it differently (verdicts.DETECTING)
    detections: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules_added_detail: list[dict[str, str]] = field(default_factory=list)    # id, path, title
    rules_removed_detail: list[dict[str, str]] = field(default_factory=list)  # id, path, title (before)
    generation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def up_to_date(self) -> bool:
        return all(s.mode == "unchanged" for s in self.sources.values()) and not self.file_errors


# --- the lock --------------------------------------------------------------------------------

class RefreshLock:
    """An exclusive lock on the data directory.

    A POSIX record lock (lockf): the kernel releases it when this process dies, and, unlike
    flock, parser processes forked from it do not hold it too.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "refresh.lock"
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (BlockingIOError, PermissionError):
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise Locked(f"a refresh is already running (pid {holder})", str(self.path)) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RefreshLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- which files are rules -------------------------------------------------------------------

def skip_reason(source: str, entry: TreeEntry, max_bytes: int) -> str:
    """Why a file of the tree is not read as a rule ('' if it is one)."""
    if entry.mode == "120000":
        return "symbolic link: not followed"
    if entry.mode == "160000":
        return "submodule: not followed"
    if not get(source).wants(entry.path):
        if entry.path.rsplit("/", 1)[-1].upper().startswith(("LICENSE", "COPYING")):
            return "license file (read for the license, not a rule)"
        if entry.path.endswith(("Template.yml", "template.yml")):
            return "template, not an entry"
        return "outside the rule folders"
    if not entry.mode.startswith("100"):
        return f"not a regular file (mode {entry.mode})"
    if entry.size > max_bytes:
        return f"file is {entry.size:,} bytes, over the {max_bytes:,}-byte limit"
    return ""


# --- the refresh ---------------------------------------------------------------------------------

@dataclass
class RefreshOptions:
    data_dir: Path
    specs: list[SourceSpec]
    full: bool = False
    wait: float = 0.0
    jobs: int = 0                  # worker processes for parsing; 0: one per core
    max_file_bytes: int = MAX_FILE_BYTES
    fetch: bool = True
    allow_shrink: bool = False     # publish a source that lost most of its rule files


def refresh(options: RefreshOptions, progress: Progress | None = None) -> Manifest:
    """Fetch the sources, reindex what changed (or everything), publish, record a manifest."""
    progress = progress or Progress()
    with RefreshLock(options.data_dir) as lock, collector_paused():
        lock.acquire(options.wait)
        return _Refresh(options, progress).run()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: a refresh makes a few hundred thousand objects
    and hardly any cycles, and the collector's passes over them cost a quarter of a build."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Refresh:
    def __init__(self, options: RefreshOptions, progress: Progress) -> None:
        self.opt = options
        self.progress = progress
        self.data_dir = Path(options.data_dir)
        self.started = time.time()
        self.manifest = Manifest(started=_iso(self.started))
        self._checked: dict[str, FileReport] = {}  # previous reports whose pySigma verdict still holds
        self._readers: list[InlineReader | ParserPool] = []
        self._history: Future[dict[str, PathHistory]] | None = None
        self._damaged = False  # the current generation cannot be trusted: publish even with nothing new

    def run(self) -> Manifest:
        previous = self._previous_state()
        if previous is not None and previous.checker == CHECKER:
            self._checked = previous.files
        repos = {spec.name: Repository(spec, clone_path(self.data_dir, spec.name)) for spec in self.opt.specs}
        try:
            tips = self._fetch(repos, previous)
            plan = self._plan(repos, tips, previous)
            modes = {o.mode for o in self.manifest.sources.values()}
            if modes <= {"failed"} or (modes <= {"unchanged", "failed"} and not self._damaged):
                return self._finish(None)  # nothing new: the current index (if any) stays
            writer = self._write(repos, tips, plan, previous)
        finally:
            for reader in self._readers:
                reader.close()
            if self._history is not None:  # its git log and history file must not outlive the lock
                wait([self._history])
            for repo in repos.values():
                repo.close()
        return self._finish(writer)

    # -- stages --

    def _previous_state(self) -> State | None:
        """The current generation's state; None (a full build) if there is none, or it is of
        another format, or any of its files is damaged: a refresh always recovers."""
        try:
            generation = current_generation(self.data_dir, strict=True)
            if generation is None:
                return None
            damage = verify(generation)
            if damage:
                raise IndexMissing(f"the index in {self.data_dir} is damaged ({generation.name}/{damage})")
            with IndexReader(self.data_dir, generation) as reader:
                return reader.state
        except IndexMissing as exc:  # another format, or damaged: build anew, as if there were none
            self.progress.log(f"{exc}: rebuilding")
            self.manifest.reason = f"{exc}: rebuilt"
            self._damaged = True
            return None

    def _fetch(self, repos: dict[str, Repository], previous: State | None) -> dict[str, str]:
        tips: dict[str, str] = {}
        self.progress.stage("fetch", len(repos))
        for name, repo in repos.items():
            spec = repo.spec
            indexed = previous.sources.get(name) if previous else None
            before = indexed.commit if indexed else ""
            outcome = SourceOutcome(name, redact(spec.url), spec.branch, before=before)
            self.manifest.sources[name] = outcome
            try:
                tips[name] = repo.fetch() if self.opt.fetch else repo.tip()
                outcome.after = tips[name]
                self.progress.log(f"{name}: {redact(spec.url)} {spec.branch} at {tips[name][:12]}")
            except SourceError as exc:
                outcome.mode, outcome.error, outcome.after = "failed", exc.reason, before
                self.progress.log(f"error: {exc}")
            self.progress.advance()
        return tips

    def _plan(self, repos: dict[str, Repository], tips: dict[str, str],
              previous: State | None) -> dict[str, list[TreeEntry] | None]:
        """Per source, the tree entries to read; None for a source whose files stay as they are."""
        plan: dict[str, list[TreeEntry] | None] = {}
        if previous is not None and previous.checker != CHECKER:
            self.manifest.reason = f"rules checked by {previous.checker or 'another checker'} before, {CHECKER} now"
            self.progress.log(f"{self.manifest.reason}: every file read again")
        for name, outcome in self.manifest.sources.items():
            if outcome.mode == "failed":
                plan[name] = None
                continue
            repo, tip = repos[name], tips[name]
            prev = previous.sources.get(name) if previous else None
            limit_changed = previous is not None and previous.max_file_bytes != self.opt.max_file_bytes
            full = (self.opt.full or prev is None or prev.url != redact(repo.spec.url)
                    or not repo.has_commit(prev.commit) or previous.checker != CHECKER
                    or limit_changed)  # files skipped (or read) for their size are judged again
            if limit_changed and not self.manifest.reason:
                self.manifest.reason = (f"file size limit {previous.max_file_bytes:,} bytes before, "
                                        f"{self.opt.max_file_bytes:,} now: every file read again")
            if not full and prev.commit == tip:
                outcome.mode = "unchanged"
                plan[name] = None
                continue
            tree = repo.tree(tip)
            shrunk = self._shrunk(name, tree, previous)
            if shrunk:
                outcome.mode, outcome.error, outcome.after = "failed", shrunk, outcome.before
                self.progress.log(f"error: {name}: {shrunk}")
                plan[name] = None
                continue
            known = prev is not None and repo.has_commit(prev.commit)
            if full:
                outcome.mode = "full"
                self.manifest.full = True
                outcome.added = [e.path for e in tree] if prev is None else []
                plan[name] = tree
                if not known or prev.commit == tip:
                    continue
            else:
                outcome.mode = "incremental"
            # what moved between the two commits: an incremental refresh reads it, and a full
            # one records it too, so both summarise a renamed file as the same rule
            wanted: set[str] = set()
            for change in repo.changes(prev.commit, tip):
                if change.status == "A":
                    outcome.added.append(change.path)
                elif change.status == "D":
                    outcome.deleted.append(change.path)
                elif change.status == "R":
                    outcome.renamed.append((change.old_path, change.path))
                else:
                    outcome.modified.append(change.path)
                wanted.add(change.path)
            if outcome.mode == "incremental":
                plan[name] = [e for e in tree if e.path in wanted]
        return plan

    def _shrunk(self, name: str, tree: list[TreeEntry], previous: State | None) -> str:
        """Why the source's new tree is not published: it lost most of its rule files ('' if not)."""
        if self.opt.allow_shrink or previous is None:
            return ""
        before = sum(1 for r in previous.files.values() if r.source == name and r.status != "skipped")
        now = sum(1 for e in tree if not skip_reason(name, e, self.opt.max_file_bytes))
        if before >= 10 and now < before * SHRINK_LIMIT:
            return (f"{now} rule files at the new commit, {before} indexed before: not published, "
                    "the previous index is kept (--allow-shrink publishes it)")
        return ""

    def _write(self, repos: dict[str, Repository], tips: dict[str, str],
               plan: dict[str, list[TreeEntry] | None], previous: State | None) -> IndexWriter:
        state = State(sources=dict(previous.sources) if previous else {},
                      files=dict(previous.files) if previous else {}, checker=self._checker(previous),
                      max_file_bytes=self.opt.max_file_bytes)
        for name, entries in plan.items():
            if entries is None:
                continue
            repo, tip = repos[name], tips[name]
            tree = repo.tree(tip)
            license_name, license_path = repo.license(tree)
            state.sources[name] = SourceState(tip, redact(repo.spec.url), repo.spec.branch, repo.spec.web_url,
                                              license_name, license_path, repo.committed(tip))


        # Which files leave the index, which are read again.
        removed_refs: set[str] = set()
        for name, entries in plan.items():
            if entries is None:
                continue
            outcome = self.manifest.sources[name]
            if outcome.mode == "full":
                removed_refs.update(k for k in state.files if k.startswith(name + ":"))
            else:
                removed_refs.update(fileref(name, p) for p in outcome.deleted + outcome.modified)
                removed_refs.update(fileref(name, old) for old, _ in outcome.renamed)
                removed_refs.update(fileref(name, p) for p in outcome.added)
        for ref in removed_refs:
            state.files.pop(ref, None)

        to_read: list[tuple[FileContext, TreeEntry]] = []
        for name, entries in plan.items():
            for entry in entries or []:
                reason = skip_reason(name, entry, self.opt.max_file_bytes)
                if reason:
                    state.files[fileref(name, entry.path)] = FileReport(name, entry.path, "skipped", reason)
                else:
                    to_read.append((FileContext(name, entry.path), entry))
        reader = self._reader(len(to_read))
        # git log over Sigma's history in a thread, beside the parse: started after the parser
        # processes are forked (a process forked while other threads run may inherit held locks)
        history = self._start_history(state)
        reports = self._read(reader, repos, to_read)
        for report in reports:
            state.files[fileref(report.source, report.path)] = report

        # Bare names resolve against the executables the whole index knows. Where that changed,
        # files not read this time that contain an affected stem are read again, so an
        # incremental refresh gives exactly what a full build gives.
        executables = sorted({n for r in state.files.values() for n in r.executables})
        if previous is not None:
            changed = _changed_stems(previous.executables, executables)
            if changed:
                done = {fileref(r.source, r.path) for r in reports}
                extra = self._files_containing(repos, state, changed, done)
                self.manifest.reason = (f"{len(changed)} bare names changed meaning: "
                                        f"{len(extra)} more files read again")
                self.progress.log(self.manifest.reason)
                if history is not None:
                    history.result()  # no thread running when parser processes are forked
                again = self._read(self._reader(len(extra)), repos, extra)
                for report in again:
                    state.files[fileref(report.source, report.path)] = report
                removed_refs.update(fileref(ctx.source, ctx.path) for ctx, _ in extra)
                reports += again
        state.executables = executables
        state.built_at = time.time()
        stems = known_stems(executables)
        fresh = previous is None or all(
            self.manifest.sources.get(name, SourceOutcome(name, "", "")).mode == "full" for name in previous.sources)
        for reader in self._readers:
            reader.resolve(stems)  # parser processes resolve bare names while this process reads the old documents
        # what changed: a full build compares every document, an incremental one those it rewrites
        old_docs = self._old_documents() if previous and fresh else {}
        found = self._mentions()
        mention_count = sum(len(f.rows) for f in found.values())

        base = None if fresh else current_generation(self.data_dir)
        self.progress.stage("index", mention_count)
        writer = IndexWriter(self.data_dir, base)
        try:
            removed = {ref: previous.files[ref].binaries if previous and ref in previous.files else []
                       for ref in removed_refs}
            written = writer.replace_files(removed, (row for ref in sorted(found) for row in found[ref].rows),
                                           (row for ref in sorted(found) for row in found[ref].verdicts))
            self.progress.advance(mention_count)
            writer.commit(state.source_dicts(), optimize=fresh, aliases=derive_aliases(state.files.values()))
            self._cross_reference(repos, state, writer.path, history)
            self._await_verdicts()
            writer.write_state(state)
        except BaseException:
            writer.abort()
            raise
        if fresh:  # a binary no file names any more has no new document: all its mentions went
            written = {**{binary: "[]" for binary in old_docs}, **written}
        elif previous:
            old_docs = self._old_documents(written)
        self._summarise(old_docs, written, previous, state)
        return writer

    def _checker(self, previous: State | None) -> str:
        """What judged the new state's Sigma rules: this pySigma, unless they are kept from an
        index another version checked (Sigma not read again: its fetch failed, or not asked)."""
        checked = [o for name, o in self.manifest.sources.items() if name in SOURCES and get(name).checker]
        if previous is None or previous.checker == CHECKER or any(o.mode == "full" for o in checked):
            return CHECKER
        return previous.checker

    def _await_verdicts(self) -> None:
        """pySigma's verdicts from the parser processes, into the file reports."""
        for reader in self._readers:
            reader.finish()

    def _start_history(self, state: State) -> Future[dict[str, PathHistory]] | None:
        """Bring the path history of each source that keeps one up to the commit being indexed,
        in a thread while the files are parsed: git does that work in its own process."""
        kept = [name for name in state.sources if name in SOURCES and get(name).history]
        if not kept:
            return None
        repos = {name: self._indexed_repository(state, name) for name in kept}

        def update() -> dict[str, PathHistory]:
            try:
                return {name: update_history(repo, state.sources[name].commit,
                                             self.data_dir / "history" / f"{name}.json")
                        for name, repo in repos.items()}
            finally:
                for repo in repos.values():
                    repo.close()

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        try:
            self._history = pool.submit(update)
        finally:
            pool.shutdown(wait=False)
        return self._history

    def _indexed_repository(self, state: State, name: str) -> Repository:
        """The clone of a source as the index records it (for a source not fetched this time)."""
        info = state.sources[name]
        return Repository(SourceSpec(name, info.url, info.branch or "master", info.web_url),
                          clone_path(self.data_dir, name))

    def _repository(self, repos: dict[str, Repository], state: State, name: str) -> Repository:
        """The source's open repository, opened at its indexed clone if this refresh did not fetch it."""
        if name not in repos:
            repos[name] = self._indexed_repository(state, name)
        return repos[name]

    def _cross_reference(self, repos: dict[str, Repository], state: State, generation: Path,
                         history: Future[dict[str, PathHistory]] | None) -> None:
        """Resolve LOLBAS <-> Sigma links through Sigma's history; coverage; into the generation."""
        self.progress.stage("links", 1)
        histories = history.result() if history is not None else {}
        kept = {name: self._repository(repos, state, name) for name in histories}
        with IndexReader(self.data_dir, generation) as reader:
            xref.write(generation, xref.build(reader, state, kept, histories))
        self.progress.advance()

    def _files_containing(self, repos: dict[str, Repository], state: State, stems: set[str],
                          done: set[str]) -> list[tuple[FileContext, TreeEntry]]:
        """Indexed files not in `done` whose text contains any of `stems` (case-insensitive)."""
        found: list[tuple[FileContext, TreeEntry]] = []
        for name, info in state.sources.items():
            # a source not refreshed this time is read at its indexed commit
            repo = self._repository(repos, state, name)
            containing = repo.grep(info.commit, stems)
            for entry in repo.tree(info.commit):
                ref = fileref(name, entry.path)
                report = state.files.get(ref)
                if entry.path in containing and ref not in done and report is not None and report.status == "indexed":
                    found.append((FileContext(name, entry.path), entry))
        return found

    def _reader(self, files: int) -> InlineReader | ParserPool:
        """Parser processes for many files, this process for a few; closed by `run`."""
        jobs = self.opt.jobs or (os.cpu_count() or 1)
        reader: InlineReader | ParserPool
        if jobs <= 1 or files < 400:
            reader = InlineReader(self.opt.max_file_bytes)
        else:
            reader = ParserPool(jobs, self.opt.max_file_bytes)
        self._readers.append(reader)
        return reader

    def _read(self, reader: InlineReader | ParserPool, repos: dict[str, Repository],
              to_read: list[tuple[FileContext, TreeEntry]]) -> list[FileReport]:
        """Parse and extract files (blobs are read while parser processes parse the batches sent)."""
        self.progress.stage("parse", len(to_read))
        self.manifest.files_parsed += len(to_read)
        reports = reader.read(self._batches(repos, to_read), self.progress)
        for report, (_, entry) in zip(reports, to_read):
            report.blob = entry.sha
            if report.status == "error":
                self.manifest.file_errors.append({"source": report.source, "path": report.path,
                                                  "reason": report.reason})
                self.progress.log(f"error: {report.source}:{report.path}: {report.reason}")
        return reports

    def _batches(self, repos: dict[str, Repository], to_read: list[tuple[FileContext, TreeEntry]],
                 size: int = 100) -> Iterator[Batch]:
        contents = {name: repos[name].read_many([e.sha for c, e in to_read if c.source == name])
                    for name in {ctx.source for ctx, _ in to_read}}
        for start in range(0, len(to_read), size):
            yield [(ctx, next(contents[ctx.source]), self._known_warnings(ctx, entry))
                   for ctx, entry in to_read[start:start + size]]

    def _known_warnings(self, ctx: FileContext, entry: TreeEntry) -> list[str] | None:
        """pySigma's earlier verdict on the same blob, if the previous index has it (not for --full)."""
        if self.opt.full:
            return None
        report = self._checked.get(fileref(ctx.source, ctx.path))
        if report is not None and report.blob == entry.sha and report.status == "indexed":
            return report.warnings
        return None

    def _mentions(self) -> dict[str, FileMentions]:
        """Every file read: its mentions as index rows (after `resolve`); counts in the reports."""
        found: dict[str, FileMentions] = {}
        for reader in self._readers:
            for report, mentions in zip(reader.reports, reader.mentions()):
                found[fileref(report.source, report.path)] = mentions
                report.mentions, report.binaries = len(mentions.rows), mentions.binaries
        return found

    def _old_documents(self, binaries: Iterable[str] | None = None) -> dict[str, str]:
        """The published generation's documents (of `binaries`, or all), before this refresh's publish."""
        with IndexReader(self.data_dir) as reader:
            return reader.raw_documents(binaries)

    def _summarise(self, old_docs: dict[str, str], written: dict[str, str],
                   previous: State | None, state: State) -> None:
        """What changed, from each binary's document before and after (equal ones are skipped)."""
        m = self.manifest
        renames = {fileref(name, old_p): fileref(name, new_p)
                   for name, o in m.sources.items() for old_p, new_p in o.renamed}

        def keyed(items: list[dict[str, Any]], ref_map: dict[str, str]) -> Counter[tuple[Any, ...]]:
            # what a mention says, not where: a line moving down is no change; a selection
            # becoming a filter is one
            refs = ((fileref(d["source"], d["path"]), d) for d in items)
            return Counter((ref_map.get(ref, ref), d["binary"], d["role"], d["field"], tuple(d["modifiers"]),
                            d["context"], d["detection"], d["inferred"], d["snippet"]) for ref, d in refs)

        before: Counter[tuple[Any, ...]] = Counter()
        after: Counter[tuple[Any, ...]] = Counter()
        for binary, document in written.items():
            old_document = old_docs.get(binary, "[]")
            if document != old_document:  # update(), not +=: += rescans the whole counter each time
                old_items, new_items = json.loads(old_document), json.loads(document)
                before.update(keyed(old_items, renames))
                after.update(keyed(new_items, {}))
                if previous is not None:  # a first build gains everything: nothing to list
                    _detection_change(m, binary, rule_verdicts(old_items), rule_verdicts(new_items), renames)
        m.mentions_added = sum((after - before).values())
        m.mentions_removed = sum((before - after).values())
        rules_before: dict[str, set[str]] = defaultdict(set)
        rules_after: dict[str, set[str]] = defaultdict(set)
        for ref, binary, *_ in before:
            rules_before[binary].add(ref)
        for ref, binary, *_ in after:
            rules_after[binary].add(ref)
        for binary in sorted(set(rules_before) | set(rules_after)):
            b, a = len(rules_before[binary]), len(rules_after[binary])
            if rules_before[binary] != rules_after[binary]:
                m.binaries[binary] = {"rules_before": b, "rules_after": a,
                                      "gained": len(rules_after[binary] - rules_before[binary]),
                                      "lost": len(rules_before[binary] - rules_after[binary])}
        old_ids = _rule_paths(previous.files.values()) if previous else {}
        new_ids = _rule_paths(state.files.values())
        m.rules_added = sorted(set(new_ids) - set(old_ids))
        m.rules_removed = sorted(set(old_ids) - set(new_ids))
        m.rules_renamed = [{"id": rid, "from": old_ids[rid], "to": new_ids[rid]}
                           for rid in sorted(set(old_ids) & set(new_ids)) if old_ids[rid] != new_ids[rid]]
        if previous is not None:
            m.rules_added_detail = [_rule_detail(rid, new_ids[rid], state) for rid in m.rules_added]
            m.rules_removed_detail = [_rule_detail(rid, old_ids[rid], previous) for rid in m.rules_removed]

    def _finish(self, writer: IndexWriter | None) -> Manifest:
        m = self.manifest
        if writer is None:
            try:
                with IndexReader(self.data_dir) as reader:
                    m.mentions_total = reader.mention_count
                    m.generation = reader.generation.name
            except IndexMissing:
                pass
        else:
            m.mentions_total = writer.mentions
            m.generation = writer.path.name
        m.finished = _iso(time.time())
        m.duration_s = round(time.time() - self.started, 3)
        if any(o.mode == "failed" for o in m.sources.values()):
            m.exit_code = ExitCode.SOURCE_FAILED
        elif m.file_errors:
            m.exit_code = ExitCode.FILE_ERRORS
        if writer is not None:
            # the manifest travels with the generation: a refresh killed between the publish and
            # saving it in manifests/ still shows in `indexer changes`
            writer.write_manifest(json.dumps(m.to_dict(), indent=1))
            writer.publish()
        _save_manifest(self.data_dir, m)
        return m




def _changed_stems(before: list[str], after: list[str]) -> set[str]:
    """Bare stems that resolve differently (or only on one side) between two name lists."""
    def stems(names: list[str]) -> dict[str, str]:
        return {f"{k} ({kind})": v for kind, found in zip(("windows", "unix", "module"), known_stems(names))
                for k, v in found.items()}
    old, new = stems(before), stems(after)
    return {key.split(" ")[0] for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def _detection_change(m: Manifest, binary: str, old: list[RuleVerdict], new: list[RuleVerdict],
                      renames: dict[str, str]) -> None:
    """Record in the manifest the Sigma rules that started or stopped detecting `binary`, or
    detect it differently (deprecated and unsupported rules never detect)."""
    def detecting(rules: list[RuleVerdict], ref_map: dict[str, str]) -> dict[str, RuleVerdict]:
        return {ref_map.get(ref, ref): r for r in rules if r.source == "sigma" and r.detects and not r.retired
                for ref in [fileref(r.source, r.path)]}

    was, now = detecting(old, renames), detecting(new, {})
    if {ref: r.verdict for ref, r in was.items()} == {ref: r.verdict for ref, r in now.items()}:
        return
    after = {fileref(r.source, r.path): r for r in new if r.source == "sigma"}

    def rule(ref: str, r: RuleVerdict, **extra: str) -> dict[str, str]:
        return {"path": ref.split(":", 1)[1], "title": r.title, **extra}  # a renamed rule: its new path

    def status(ref: str) -> str:
        r = after.get(ref)
        return "" if r is None else r.verdict + (" (deprecated or unsupported)" if r.retired else "")

    m.detections[binary] = {
        "before": len(was), "after": len(now),
        "gained": [rule(ref, now[ref], verdict=now[ref].verdict) for ref in sorted(set(now) - set(was))],
        "lost": [rule(ref, was[ref], verdict=was[ref].verdict, now=status(ref)) for ref in sorted(set(was) - set(now))],
        "changed": [rule(ref, now[ref], before=was[ref].verdict, after=now[ref].verdict)
                    for ref in sorted(set(was) & set(now)) if was[ref].verdict != now[ref].verdict],
    }


def _rule_detail(rule_id: str, ref: str, state: State) -> dict[str, str]:
    report = state.files.get(ref)
    return {"id": rule_id, "path": ref.split(":", 1)[1], "title": report.title if report else ""}


def _rule_paths(reports: Iterable[FileReport]) -> dict[str, str]:
    return {rid: f"{r.source}:{r.path}" for r in reports for rid in r.rule_ids}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _save_manifest(data_dir: Path, manifest: Manifest) -> None:
    folder = Path(data_dir) / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    name = manifest.started.replace(":", "") + f"-{os.getpid()}.json"
    tmp = folder / ("." + name)
    tmp.write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, folder / name)
    for old in sorted(folder.glob("*.json"))[:-KEEP_MANIFESTS]:  # a nightly job: about three years
        old.unlink(missing_ok=True)


def manifests(data_dir: Path) -> Iterator[dict[str, Any]]:
    """Refresh manifests, newest first; the current generation's own among them if the refresh
    that published it died before saving it (damaged manifest files are left out)."""
    folder = Path(data_dir) / "manifests"
    found = [m for m in map(_read_manifest, sorted(folder.glob("*.json"), reverse=True)) if m is not None]
    generation = current_generation(data_dir)
    if generation is not None and not any(m.get("generation") == generation.name for m in found):
        own = _read_manifest(generation / MANIFEST_FILE)
        if own is not None:
            found = sorted([*found, own], key=lambda m: m["started"], reverse=True)
    yield from found


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if (isinstance(data, dict) and _typed(data, _MANIFEST_FIELDS) and isinstance(data.get("sources"), dict)
            and all(isinstance(s, dict) and _typed(s, _SOURCE_FIELDS) for s in data["sources"].values())
            and all(isinstance(e, dict) and all(isinstance(v, str) for v in e.values()) for e in data["file_errors"])
            and all(isinstance(c, dict) and all(isinstance(c.get(k), int) for k in ("rules_before", "rules_after",
                                                                                    "gained", "lost"))
                    for c in data["binaries"].values())
            and _detections_shown(data.get("detections", {}))
            and all(_records(data.get(f"{key}_detail", []), "title", "path") for key in ("rules_added", "rules_removed"))):
        return data
    return None


def _records(value: Any, *keys: str) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and all(k in v for k in keys) for v in value)


def _detections_shown(value: Any) -> bool:
    """Whether a manifest's `detections` has the shape `indexer changes` prints."""
    return isinstance(value, dict) and all(
        isinstance(d, dict) and "before" in d and "after" in d
        and _records(d.get("lost"), "verdict", "title", "path", "now") and _records(d.get("gained"), "verdict", "title", "path")
        and _records(d.get("changed"), "before", "after", "title", "path") for d in value.values())


def _typed(data: dict[str, Any], kinds: dict[str, type]) -> bool:
    return all(isinstance(data.get(k), (float, int) if t is float else t) for k, t in kinds.items())


# what a manifest holds (what `indexer changes` shows): a manifest file of another shape is damaged
_MANIFEST_FIELDS = {name: type(value) for name, value in Manifest(started="").to_dict().items()
                    if name in ("started", "duration_s", "exit_code", "generation", "files_parsed", "file_errors",
                                "mentions_added", "mentions_removed", "mentions_total", "binaries", "rules_added",
                                "rules_removed", "rules_renamed")}
_SOURCE_FIELDS = {name: type(value) for name, value in asdict(SourceOutcome("", "", "")).items()
                  if name in ("mode", "before", "after", "error", "added", "modified", "deleted", "renamed")}


def changed_anything(manifest: dict[str, Any]) -> bool:
    """Whether a refresh changed something for people: a failure, or a source not up to date."""
    return bool(manifest.get("exit_code")) or any(s.get("mode") != "unchanged" for s in manifest["sources"].values())


def recent_manifests(data_dir: Path, last: int, since: str | None = None,
                     include_unchanged: bool = False) -> list[dict[str, Any]]:
    """The `last` newest manifests started on or after `since` (YYYY-MM-DD...), as `changes` lists them."""
    items = (m for m in manifests(data_dir)
             if (not since or m["started"] >= since) and (include_unchanged or changed_anything(m)))
    return [m for _, m in zip(range(last), items)]
