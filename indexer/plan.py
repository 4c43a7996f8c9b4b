"""The refresh's plan: from the previous state, each source's new commit and what changed in it,
what to read, what to keep and what to remove.

Pure: no git, no I/O. The refresh asks git (has the clone the commit indexed before? the tree at
the tip, the changes between the two commits) and hands the answers in, so every rule of
planning is tested on hand-built states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from .index import fileref
from .model import FileReport
from .sources import get
from .state import SourceState, State

if TYPE_CHECKING:  # data only: the plan runs no git
    from .repository import Change, TreeEntry

SHRINK_LIMIT = 0.5  # a source left with fewer files than this share of before is not published


@dataclass(frozen=True)
class Options:
    """What planning needs of the refresh's options."""

    full: bool = False
    max_file_bytes: int = 0
    allow_shrink: bool = False
    checker: str = ""  # what checks the files now ("pySigma 2.0.1")


@dataclass
class SourcePlan:
    """One source's plan: how it is read (mode), the tree entries to read, what moved."""

    mode: str  # "full" | "incremental" | "unchanged" | "failed"
    read: list[TreeEntry] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    dependents: list[str] = field(default_factory=list)  # unchanged files read again: a shared file they read changed
    error: str = ""  # why it failed (it lost most of its files)


def read_again_reason(previous: State | None, options: Options) -> str:
    """Why every file of every source is read again ('' if not): other checker, other size limit."""
    if previous is None:
        return ""
    if previous.checker != options.checker:
        return f"rules checked by {previous.checker or 'another checker'} before, {options.checker} now"
    if previous.max_file_bytes != options.max_file_bytes:  # files skipped (or read) for their size judged again
        return (
            f"file size limit {previous.max_file_bytes:,} bytes before, "
            f"{options.max_file_bytes:,} now: every file read again"
        )
    return ""


def mode(indexed: SourceState | None, url: str, tip: str, known: bool, read_again: bool) -> str:
    """How a source is read: "unchanged", "incremental" (the changes since the commit indexed)
    or "full" (first time, another URL, the indexed commit not in the clone, `read_again`).

    known: whether the clone holds the commit indexed before.
    """
    full = read_again or indexed is None or indexed.url != url or not known
    if not full and indexed is not None and indexed.commit == tip:
        return "unchanged"
    return "full" if full else "incremental"


def plan_source(
    name: str,
    how: str,
    tree: list[TreeEntry],
    changes: list[Change],
    first: bool,
    files: dict[str, FileReport] | None = None,
    provided: Iterable[str] = (),
) -> SourcePlan:
    """What to read of a source read `how` ("full" or "incremental") at the tree of its tip.

    changes: the files changed since the commit indexed (none if it is not known); a full read
    records them too, so both summarise a renamed file as the same rule. first: never indexed.
    files: the previous reports; an incremental read also reads again the files whose report
    `depends` on a changed file (a Splunk detection calling a macro that changed), or on what
    a changed shared file answers for before or after the change (`provided`: Source.provides,
    a macro's name defined in another file).
    """
    plan = SourcePlan(how, added=[e.path for e in tree] if how == "full" and first else [])
    for change in changes:
        if change.status == "A":
            plan.added.append(change.path)
        elif change.status == "D":
            plan.deleted.append(change.path)
        elif change.status == "R":
            plan.renamed.append((change.old_path, change.path))
        else:
            plan.modified.append(change.path)
    wanted = {change.path for change in changes}
    if how == "incremental" and files:
        plan.dependents = dependents(name, wanted | {c.old_path for c in changes if c.old_path}, files, provided)
        wanted.update(plan.dependents)
    plan.read = list(tree) if how == "full" else [e for e in tree if e.path in wanted]
    return plan


def dependents(name: str, changed: set[str], files: dict[str, FileReport], provided: Iterable[str] = ()) -> list[str]:
    """The indexed files of source `name`, not themselves changed, that depend on a changed path
    or on what a changed shared file answers for (`provided`)."""
    keys = changed | set(provided)
    return sorted(
        r.path
        for r in files.values()
        if r.source == name and r.depends and r.path not in changed and not keys.isdisjoint(r.depends)
    )


def shrink_error(name: str, tree: list[TreeEntry], previous: State | None, options: Options) -> str:
    """Why the source's new tree is not published: it lost most of its files ('' if not)."""
    if options.allow_shrink or previous is None:
        return ""
    before = sum(1 for r in previous.files.values() if r.source == name and r.status != "skipped")
    now = sum(1 for e in tree if not get(name).skip_reason(e, options.max_file_bytes))
    if before >= 10 and now < before * SHRINK_LIMIT:
        return (
            f"{now} rule files at the new commit, {before} indexed before: not published, "
            "the previous index is kept (--allow-shrink publishes it)"
        )
    return ""


def removed(plans: dict[str, SourcePlan], files: dict[str, FileReport]) -> set[str]:
    """The files ("source:path") that leave the index before the plan's files are read: all of a
    source read whole; those deleted, modified, renamed away or added in one read incrementally."""
    refs: set[str] = set()
    for name, plan in plans.items():
        if plan.mode == "full":
            refs.update(k for k in files if k.startswith(name + ":"))
        elif plan.mode == "incremental":
            refs.update(fileref(name, p) for p in plan.deleted + plan.modified + plan.added + plan.dependents)
            refs.update(fileref(name, old) for old, _ in plan.renamed)
    return refs


def to_read(plans: dict[str, SourcePlan], max_bytes: int) -> tuple[list[tuple[str, TreeEntry]], list[FileReport]]:
    """The entries the plan reads, as (source, entry); and the reports of those it skips."""
    read: list[tuple[str, TreeEntry]] = []
    skipped: list[FileReport] = []
    for name, plan in plans.items():
        for entry in plan.read:
            reason = get(name).skip_reason(entry, max_bytes)
            if reason:
                skipped.append(FileReport(name, entry.path, "skipped", reason))
            else:
                read.append((name, entry))
    return read, skipped


def rebuilds_all(previous: State | None, plans: dict[str, SourcePlan]) -> bool:
    """Whether the new generation is written from nothing: no previous one, or every source it
    held read whole (else it is the previous one with some files replaced)."""
    return previous is None or all(name in plans and plans[name].mode == "full" for name in previous.sources)


def nothing_new(plans: dict[str, SourcePlan], damaged: bool) -> bool:
    """Whether the current index stays as it is: every source failed, or none changed and the
    index is sound."""
    modes = {plan.mode for plan in plans.values()}
    return modes <= {"failed"} or (modes <= {"unchanged", "failed"} and not damaged)
