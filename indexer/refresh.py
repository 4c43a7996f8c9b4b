"""A refresh: fetch every source, plan, read what the plan says, write a new index generation.

The stages run in order (sources -> parse -> extract -> index); the previous generation stays
readable throughout and is replaced only when the new one is complete. A refresh that fails
for one source keeps that source's files as they were indexed before. What to read is decided
by `plan` (pure), what changed is told by `manifest`, one refresh at a time by `lock`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from . import plan, xref
from .errors import ExitCode
from .extract import FileContext, derive_aliases
from .history import PathHistory, update_history
from .index import IndexMissing, IndexReader, IndexWriter, current_generation, fileref, read_digests, verify
from .lock import RefreshLock
from .manifest import Manifest, SourceOutcome, save_manifest, summarise
from .model import FileReport
from .names import known_stems
from .parse import MAX_FILE_BYTES
from .parsers import Batch, FileMentions, InlineReader, ParserPool, Stems
from .plan import SourcePlan
from .repository import Change, Repository, SourceError, SourceSpec, TreeEntry, clone_path
from .sources import SOURCES, get
from .sources.base import Source
from .state import SourceState, State
from .text import redact

# what checked the files (pySigma for Sigma): files checked by another version are read again
CHECKER = " ".join(source.checker for source in SOURCES.values() if source.checker)


class Progress:
    """Receives progress; the CLI shows it as bars or log lines. The default ignores it."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...

    def log(self, message: str) -> None: ...


@dataclass
class RefreshOptions:
    data_dir: Path
    specs: list[SourceSpec]
    full: bool = False
    wait: float = 0.0
    jobs: int = 0  # worker processes for parsing; 0: one per core
    max_file_bytes: int = MAX_FILE_BYTES
    fetch: bool = True
    allow_shrink: bool = False  # publish a source that lost most of its rule files
    history_since: str | None = None  # keep the history store from this date ("": all of it); None: as before


def refresh(options: RefreshOptions, progress: Progress | None = None) -> Manifest:
    """Fetch the sources, reindex what changed (or everything), publish, record a manifest."""
    progress = progress or Progress()
    with RefreshLock(options.data_dir) as lock, collector_paused():
        lock.acquire(options.wait)
        manifest = _Refresh(options, progress).run()
        _extend_history(options, progress)
        return manifest


def _extend_history(options: RefreshOptions, progress: Progress) -> None:
    """Bring the history store (chronicle.py) up to the commits now indexed: built the first
    time `history_since` is given, extended by every later refresh. A failure is logged and
    leaves the store as it was after its last complete batch (the index is published already);
    an interrupted first build resumes at the next refresh."""
    from . import chronicle

    if options.history_since is None and chronicle.history_since(options.data_dir) is None:
        return
    try:
        with IndexReader(options.data_dir) as reader:
            state = reader.state
    except IndexMissing:
        return
    names = [name for name in state.sources if name in SOURCES]
    repos = {
        name: Repository(
            SourceSpec(name, info.url, info.branch or "master", info.web_url), clone_path(options.data_dir, name)
        )
        for name, info in state.sources.items()
        if name in names
    }
    try:
        outcome = chronicle.build(
            options.data_dir,
            repos,
            {name: state.sources[name].commit for name in names},
            options.history_since,
            progress,
            options.jobs,
            options.max_file_bytes,
        )
        progress.log(f"history: {outcome.commits} commits added in {outcome.seconds} s, {outcome.size:,} bytes")
    except (SourceError, chronicle.HistoryError, OSError, sqlite3.Error) as exc:
        progress.log(f"error: history not extended: {exc}")
    finally:
        for repo in repos.values():
            repo.close()


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


Work = list[tuple[FileContext, TreeEntry]]  # files to read: which, and their blob


class _Refresh:
    def __init__(self, options: RefreshOptions, progress: Progress) -> None:
        self.opt = options
        self.progress = progress
        self.data_dir = Path(options.data_dir)
        self.started = time.time()
        self.manifest = Manifest(started=_iso(self.started))
        self._checked: dict[str, FileReport] = {}  # previous reports whose check (pySigma) still holds
        self._readers: list[InlineReader | ParserPool] = []
        self._history: Future[dict[str, PathHistory]] | None = None
        self._damaged = False  # the current generation cannot be trusted: publish even with nothing new
        self._trees: dict[str, list[TreeEntry]] = {}  # each planned source's tree at its tip
        self._shared: set[str] = set()  # sources handed their shared files (Source.share)
        self._stems_before: Stems | None = None  # bare stems of the index replaced (known_stems)
        self._stems: Stems = ({}, {}, {})  # bare stems of the generation written

    def run(self) -> Manifest:
        """The phases of a refresh, in order."""
        repos = {spec.name: Repository(spec, clone_path(self.data_dir, spec.name)) for spec in self.opt.specs}
        try:
            # git works in its own processes, a thread waiting on each source, while this one reads
            # the published generation; the threads end before any parser process is forked
            with ThreadPoolExecutor(max(1, min(8, len(repos))), thread_name_prefix="git") as pool:
                fetching = {name: pool.submit(r.fetch if self.opt.fetch else r.tip) for name, r in repos.items()}
                previous = self._previous_state()  # the published generation, if sound
                if previous is not None and previous.checker == CHECKER:
                    self._checked = previous.files
                tips = self._fetch(repos, previous, fetching)  # git fetch, each source
                known = {  # whether each clone holds the commit indexed (else: read it all again)
                    name: pool.submit(repos[name].has_commit, previous.sources[name].commit)
                    for name in tips
                    if previous is not None and name in previous.sources
                }
                known_now = {name: future.result() for name, future in known.items()}
            plans = self._plan(repos, tips, previous, known_now)  # what to read (plan.py, on git's answers)
            if plan.nothing_new(plans, self._damaged):
                return self._finish(None)  # the current index (if any) stays
            state = self._next_state(repos, tips, plans, previous)
            removed = plan.removed(plans, state.files)  # files that leave the index
            for ref in removed:
                state.files.pop(ref, None)
            work = self._work(plans, state)
            self._share(repos, state, work)  # before the parser processes are forked
            reader = self._reader(len(work))  # parser processes are forked first,
            if previous is not None:  # bare names most likely resolve as in the index replaced
                self._stems_before = known_stems(previous.executables)
                reader.guess(self._stems_before)
            self._start_history(state)  # then the history thread starts
            reports = self._read(reader, repos, work)  # parse, extract
            again = self._read_again(repos, state, reports)  # bare names that changed meaning
            removed.update(fileref(ctx.source, ctx.path) for ctx, _ in again)
            fresh = plan.rebuilds_all(previous, plans)  # else: the previous generation, files replaced
            writer = self._write(repos, state, previous, removed, fresh)  # index, links, verdicts, state
        finally:
            for reader in self._readers:
                reader.close()
            if self._history is not None:  # its git log and history file must not outlive the lock
                wait([self._history])
            for repo in repos.values():
                repo.close()
        return self._finish(writer)  # manifest, publish

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

    def _fetch(
        self, repos: dict[str, Repository], previous: State | None, fetching: dict[str, Future[str]]
    ) -> dict[str, str]:
        """Each source's tip, as its fetch (running) gives it, recorded in order; failed ones left out."""
        tips: dict[str, str] = {}
        self.progress.stage("fetch", len(repos))
        for name, repo in repos.items():
            spec = repo.spec
            indexed = previous.sources.get(name) if previous else None
            before = indexed.commit if indexed else ""
            outcome = SourceOutcome(name, redact(spec.url), spec.branch, before=before)
            self.manifest.sources[name] = outcome
            try:
                tips[name] = fetching[name].result()
                outcome.after = tips[name]
                self.progress.log(f"{name}: {redact(spec.url)} {spec.branch} at {tips[name][:12]}")
            except SourceError as exc:
                outcome.mode, outcome.error, outcome.after = "failed", exc.reason, before
                self.progress.log(f"error: {exc}")
            self.progress.advance()
        return tips

    def _plan(
        self, repos: dict[str, Repository], tips: dict[str, str], previous: State | None, known: dict[str, bool]
    ) -> dict[str, SourcePlan]:
        """Each source's plan: git answers (`known`: whether the clone holds the commit indexed;
        the tree, the changes), plan.py decides; the manifest records it."""
        options = plan.Options(self.opt.full, self.opt.max_file_bytes, self.opt.allow_shrink, CHECKER)
        reason = plan.read_again_reason(previous, options)
        if reason:
            if previous is not None and previous.checker != CHECKER:
                self.progress.log(f"{reason}: every file read again")
            self.manifest.reason = self.manifest.reason or reason
        plans: dict[str, SourcePlan] = {}
        for name, outcome in self.manifest.sources.items():
            if outcome.mode == "failed":
                plans[name] = SourcePlan("failed")
                continue
            repo, tip = repos[name], tips[name]
            indexed = previous.sources.get(name) if previous else None
            how = plan.mode(indexed, redact(repo.spec.url), tip, known.get(name, False), bool(reason) or self.opt.full)
            if how == "unchanged":
                plans[name] = SourcePlan(how)
            else:
                tree = self._trees[name] = repo.tree(tip)
                shrunk = plan.shrink_error(name, tree, previous, options)
                if shrunk:
                    plans[name] = SourcePlan("failed", error=shrunk)
                    self.progress.log(f"error: {name}: {shrunk}")
                else:
                    moved = repo.changes(indexed.commit, tip) if known and indexed and indexed.commit != tip else []
                    files = previous.files if previous else None
                    provided = self._provided(repo, indexed.commit, tip, moved) if moved and indexed else []
                    plans[name] = plan.plan_source(name, how, tree, moved, indexed is None, files, provided)
            self._record(outcome, plans[name])
        return plans

    def _provided(self, repo: Repository, before: str, tip: str, changes: list[Change]) -> list[str]:
        """What the changed shared files answer for before and after (Source.provides: the names
        of the Splunk macros they define): their callers are read again."""
        source, out = get(repo.spec.name), set()
        for change in changes:
            versions = [(before, change.old_path or change.path)] if change.status != "A" else []
            versions += [(tip, change.path)] if change.status != "D" else []
            for commit, path in versions:
                if source.shared(path):
                    out.update(source.provides(path, repo.read_at(commit, path)))
        return sorted(out)

    def _record(self, outcome: SourceOutcome, planned: SourcePlan) -> None:
        outcome.mode = planned.mode
        if planned.mode == "failed":
            outcome.error, outcome.after = planned.error, outcome.before
            return
        self.manifest.full |= planned.mode == "full"
        outcome.added, outcome.modified = planned.added, planned.modified
        outcome.deleted, outcome.renamed = planned.deleted, planned.renamed

    def _next_state(
        self, repos: dict[str, Repository], tips: dict[str, str], plans: dict[str, SourcePlan], previous: State | None
    ) -> State:
        """The previous state with each source read at its new commit (files: still the old ones)."""
        state = State(
            sources=dict(previous.sources) if previous else {},
            files=dict(previous.files) if previous else {},
            checker=self._checker(previous, plans),
            max_file_bytes=self.opt.max_file_bytes,
        )
        for name, planned in plans.items():
            if planned.mode in ("full", "incremental"):
                repo, tip = repos[name], tips[name]
                license_name, license_path = repo.license(self._trees[name])
                state.sources[name] = SourceState(
                    tip,
                    redact(repo.spec.url),
                    repo.spec.branch,
                    repo.spec.web_url,
                    license_name,
                    license_path,
                    repo.committed(tip),
                )
        return state

    def _checker(self, previous: State | None, plans: dict[str, SourcePlan]) -> str:
        """What checked the new state's files: this checker, unless they are kept from an index
        another version checked (the checked sources not read again: fetch failed, not asked)."""
        if (
            previous is None
            or previous.checker == CHECKER
            or any(p.mode == "full" for name, p in plans.items() if name in SOURCES and get(name).checker)
        ):
            return CHECKER
        return previous.checker

    def _work(self, plans: dict[str, SourcePlan], state: State) -> Work:
        """The files to read; the reports of those skipped go into the state."""
        entries, skipped = plan.to_read(plans, self.opt.max_file_bytes)
        for report in skipped:
            state.files[fileref(report.source, report.path)] = report
        return [(FileContext(name, entry.path), entry) for name, entry in entries]

    def _share(self, repos: dict[str, Repository], state: State, work: Work) -> None:
        """Hand each source about to be read its shared files (Source.shared: Splunk's macros) at
        the commit read, once per refresh; parser processes forked later inherit them."""
        for name in sorted({ctx.source for ctx, _ in work} - self._shared):
            self._shared.add(name)
            source = get(name)
            if type(source).shared is Source.shared:  # shares nothing
                continue
            repo = self._repository(repos, state, name)
            tree = self._trees.get(name) or repo.tree(state.sources[name].commit)
            entries = [
                e
                for e in tree
                if source.shared(e.path) and e.mode.startswith("100") and e.size <= self.opt.max_file_bytes
            ]
            contents = list(repo.read_many([e.sha for e in entries]))  # to the end: its thread is joined
            source.share({e.path: content for e, content in zip(entries, contents)})

    def _reader(self, files: int) -> InlineReader | ParserPool:
        """Parser processes for many files, this process for a few; closed by `run`.

        No thread may run while processes are forked (a forked process may inherit a lock a
        thread holds): the history thread, if started, is waited for first.
        """
        if self._history is not None:
            self._history.result()
        jobs = self.opt.jobs or (os.cpu_count() or 1)
        reader: InlineReader | ParserPool
        if jobs <= 1 or files < 400:
            reader = InlineReader(self.opt.max_file_bytes)
        else:
            reader = ParserPool(jobs, self.opt.max_file_bytes)
        self._readers.append(reader)
        return reader

    def _start_history(self, state: State) -> None:
        """Bring the path history of each source that keeps one up to the commit being indexed,
        in a thread while the files are parsed (git does that work in its own process); after
        the parser processes are forked (`_reader` waits for it before forking others)."""
        kept = [name for name in state.sources if name in SOURCES and get(name).history]
        if not kept:
            return
        repos = {name: self._indexed_repository(state, name) for name in kept}

        def update() -> dict[str, PathHistory]:
            try:
                return {
                    name: update_history(repo, state.sources[name].commit, self.data_dir / "history" / f"{name}.json")
                    for name, repo in repos.items()
                }
            finally:
                for repo in repos.values():
                    repo.close()

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        try:
            self._history = pool.submit(update)
        finally:
            pool.shutdown(wait=False)

    def _read(self, reader: InlineReader | ParserPool, repos: dict[str, Repository], work: Work) -> list[FileReport]:
        """Parse and extract files (blobs are read while parser processes parse the batches sent)."""
        self.progress.stage("parse", len(work))
        self.manifest.files_parsed += len(work)
        reports = reader.read(self._batches(repos, work), self.progress)
        for report, (_, entry) in zip(reports, work):
            report.blob = entry.sha
            if report.status == "error":
                self.manifest.file_errors.append(
                    {"source": report.source, "path": report.path, "reason": report.reason}
                )
                self.progress.log(f"error: {report.source}:{report.path}: {report.reason}")
        return reports

    def _read_again(self, repos: dict[str, Repository], state: State, reports: list[FileReport]) -> Work:
        """Bare names resolve against the executables the whole index knows. Where that changed,
        files not read this time that contain an affected stem are read again, so an incremental
        refresh gives exactly what a full build gives. The reports go into the state; returns
        the files read again."""
        for report in reports:
            state.files[fileref(report.source, report.path)] = report
        executables = sorted({n for r in state.files.values() for n in r.executables})
        self._stems = known_stems(executables)
        extra: Work = []
        if self._stems_before is not None:  # set with the previous generation, before reading
            changed = _changed_stems(self._stems_before, self._stems)
            if changed:
                done = {fileref(r.source, r.path) for r in reports}
                extra = self._files_containing(repos, state, changed, done)
                self.manifest.reason = f"{len(changed)} bare names changed meaning: {len(extra)} more files read again"
                self.progress.log(self.manifest.reason)
                self._share(repos, state, extra)
                for report in self._read(self._reader(len(extra)), repos, extra):
                    state.files[fileref(report.source, report.path)] = report
        state.executables = executables
        state.built_at = time.time()
        return extra

    def _write(
        self, repos: dict[str, Repository], state: State, previous: State | None, removed: set[str], fresh: bool
    ) -> IndexWriter:
        """The new generation (from nothing if `fresh`): documents, sources, cross-references,
        verdicts, state; what changed."""
        for reader in self._readers:
            reader.resolve(self._stems)  # processes resolve bare names meanwhile
        found = self._mentions()
        mention_count = sum(len(f.rows) for f in found.values())
        self.progress.stage("index", mention_count)
        writer = IndexWriter(self.data_dir, None if fresh else current_generation(self.data_dir))
        try:
            gone = {ref: previous.files[ref].binaries if previous and ref in previous.files else [] for ref in removed}
            written = writer.replace_files(
                gone,
                (row for ref in sorted(found) for row in found[ref].rows),
                (row for ref in sorted(found) for row in found[ref].verdicts),
            )
            self.progress.advance(mention_count)
            self._cross_reference(repos, state, writer)
            # the parser processes are still asking pySigma: what needs no verdict is done first
            writer.commit(state.source_dicts(), aliases=derive_aliases(state.files.values()))
            self._await_verdicts()
            writer.write_state(state)
        except BaseException:
            writer.abort()
            raise
        if previous is None:
            self._summarise({}, written, previous, state)
        else:
            self._summarise(*self._changed_documents(written, writer.digests, fresh), previous, state)
        return writer

    def _changed_documents(
        self, written: dict[str, str], digests: dict[str, str] | None, fresh: bool
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The published generation's documents this refresh changed, and what they are now
        ("[]": gone). Only documents whose digests differ are read (all of them, for a full
        build replacing a generation that has no digests)."""
        old_digests = read_digests(current) if (current := current_generation(self.data_dir)) else None
        if old_digests is None or digests is None:
            old_docs = self._old_documents(None if fresh else written)
            if fresh:  # a binary no file names any more has no new document: all its mentions went
                written = {**{binary: "[]" for binary in old_docs}, **written}
            return old_docs, written
        if fresh:
            written = {**{binary: "[]" for binary in old_digests}, **written}
        changed = {binary: doc for binary, doc in written.items() if old_digests.get(binary) != digests.get(binary)}
        return self._old_documents(changed), changed

    def _await_verdicts(self) -> None:
        """The checks' verdicts (pySigma's) from the parser processes, into the file reports."""
        for reader in self._readers:
            reader.finish()

    def _indexed_repository(self, state: State, name: str) -> Repository:
        """The clone of a source as the index records it (for a source not fetched this time)."""
        info = state.sources[name]
        return Repository(
            SourceSpec(name, info.url, info.branch or "master", info.web_url), clone_path(self.data_dir, name)
        )

    def _repository(self, repos: dict[str, Repository], state: State, name: str) -> Repository:
        """The source's open repository, opened at its indexed clone if this refresh did not fetch it."""
        if name not in repos:
            repos[name] = self._indexed_repository(state, name)
        return repos[name]

    def _cross_reference(self, repos: dict[str, Repository], state: State, writer: IndexWriter) -> None:
        """Resolve LOLBAS <-> Sigma links through Sigma's history; coverage; into the generation."""
        self.progress.stage("links", 1)
        histories = self._history.result() if self._history is not None else {}
        kept = {name: self._repository(repos, state, name) for name in histories}
        targets = {name: xref.LinkTarget(name, get(name).repositories(), get(name).wants) for name in histories}
        xref.write(writer.path, xref.build(writer, state, kept, histories, targets))
        self.progress.advance()

    def _files_containing(self, repos: dict[str, Repository], state: State, stems: set[str], done: set[str]) -> Work:
        """Indexed files not in `done` whose text contains any of `stems` (case-insensitive)."""
        found: Work = []
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

    def _batches(self, repos: dict[str, Repository], work: Work, size: int = 100) -> Iterator[Batch]:
        contents = {
            name: repos[name].read_many([e.sha for c, e in work if c.source == name])
            for name in {ctx.source for ctx, _ in work}
        }
        for start in range(0, len(work), size):
            yield [
                (ctx, next(contents[ctx.source]), self._known_warnings(ctx, entry))
                for ctx, entry in work[start : start + size]
            ]

    def _known_warnings(self, ctx: FileContext, entry: TreeEntry) -> list[str] | None:
        """The check's earlier verdict on the same blob, if the previous index has it (not for --full)."""
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

    def _summarise(
        self, old_docs: dict[str, str], written: dict[str, str], previous: State | None, state: State
    ) -> None:
        """What changed (manifest.summarise, pure), into the manifest."""
        renamed = {name: o.renamed for name, o in self.manifest.sources.items()}
        detecting = [name for name in SOURCES if get(name).detects]
        self.manifest = dataclasses.replace(
            self.manifest, **summarise(old_docs, written, previous, state, renamed, detecting)
        )

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
        save_manifest(self.data_dir, m)
        return m


def _changed_stems(before: Stems, after: Stems) -> set[str]:
    """Bare stems that resolve differently (or only on one side) between two stem maps (known_stems)."""

    def stems(maps: Stems) -> dict[str, str]:
        return {
            f"{k} ({kind})": v for kind, found in zip(("windows", "unix", "module"), maps) for k, v in found.items()
        }

    old, new = stems(before), stems(after)
    return {key.split(" ")[0] for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
