"""What a refresh did: the `Manifest` record, the change summary (a pure function), manifest files.

A manifest is printed by `refresh --json`, kept with the generation it published and in
`<data dir>/manifests/`, and read back by `indexer changes` and the MCP tools.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from .atomic import write_atomic
from .codec import says
from .errors import ExitCode
from .index import MANIFEST_FILE, current_generation, fileref
from .model import FileReport
from .state import State
from .verdicts import RuleVerdict, rule_verdicts

KEEP_MANIFESTS = 1000  # a nightly job: about three years


@dataclass
class SourceOutcome:
    """What happened to one source: the commits before and after, how it was read, what moved."""

    name: str
    url: str
    branch: str
    before: str = ""
    after: str = ""
    mode: str = ""  # "full" | "incremental" | "unchanged" | "failed"
    error: str = ""
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceOutcome":
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["renamed"] = [tuple(pair) for pair in values.get("renamed", [])]
        return cls(**values)


@dataclass
class Manifest:
    """What one refresh did and what changed: printed by `refresh --json`, kept as history."""

    started: str
    finished: str = ""
    duration_s: float = 0.0
    exit_code: int = ExitCode.OK.value  # a plain int: _MANIFEST_FIELDS checks manifests read back by type
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
    # binary -> detection rules (not deprecated or unsupported) that detect it, before and after:
    # counts, and the rules gained, lost, or detecting it differently (verdicts.DETECTING)
    detections: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules_added_detail: list[dict[str, str]] = field(default_factory=list)  # id, path, title
    rules_removed_detail: list[dict[str, str]] = field(default_factory=list)  # id, path, title (before)
    generation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """A manifest as `to_dict` wrote it (keys it does not know are left out)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["sources"] = {name: SourceOutcome.from_dict(s) for name, s in values.get("sources", {}).items()}
        return cls(**values)

    @property
    def up_to_date(self) -> bool:
        return all(s.mode == "unchanged" for s in self.sources.values()) and not self.file_errors


# --- what changed ----------------------------------------------------------------------------------


def mention_key(mention: dict[str, Any], ref_map: dict[str, str]) -> tuple[Any, ...]:
    """What a stored mention says, not where: a line moving down is no change, a selection
    becoming a filter is one. Its file is `ref_map`'s name for it (a renamed file: its new one)."""
    ref = fileref(mention["source"], mention["path"])
    return (ref_map.get(ref, ref), *says(mention))  # says: the binary first


def summarise(
    old_docs: dict[str, str],
    written: dict[str, str],
    previous: State | None,
    state: State,
    renamed: dict[str, list[tuple[str, str]]],
    detecting: Iterable[str],
) -> dict[str, Any]:
    """The manifest's account of what changed (its fields mentions_added ... rules_removed_detail).

    old_docs, written: each binary's stored document (JSON) before and after, for the binaries
    written (equal ones are skipped); renamed: per source, the files moved (old, new);
    detecting: the sources whose rules detect (their verdicts make `detections`).
    """
    renames = {fileref(name, old): fileref(name, new) for name, pairs in renamed.items() for old, new in pairs}
    detecting = set(detecting)
    before: Counter[tuple[Any, ...]] = Counter()
    after: Counter[tuple[Any, ...]] = Counter()
    detections: dict[str, dict[str, Any]] = {}
    for binary, document in written.items():
        old_document = old_docs.get(binary, "[]")
        if document != old_document:  # update(), not +=: += rescans the whole counter each time
            old_items, new_items = json.loads(old_document), json.loads(document)
            before.update(mention_key(d, renames) for d in old_items)
            after.update(mention_key(d, {}) for d in new_items)
            if previous is not None:  # a first build gains everything: nothing to list
                change = detection_change(rule_verdicts(old_items), rule_verdicts(new_items), renames, detecting)
                if change:
                    detections[binary] = change
    rules_before: dict[str, set[str]] = defaultdict(set)
    rules_after: dict[str, set[str]] = defaultdict(set)
    for ref, binary, *_ in before:
        rules_before[binary].add(ref)
    for ref, binary, *_ in after:
        rules_after[binary].add(ref)
    binaries = {}
    for binary in sorted(set(rules_before) | set(rules_after)):
        if rules_before[binary] != rules_after[binary]:
            binaries[binary] = {
                "rules_before": len(rules_before[binary]),
                "rules_after": len(rules_after[binary]),
                "gained": len(rules_after[binary] - rules_before[binary]),
                "lost": len(rules_before[binary] - rules_after[binary]),
            }
    old_ids = rule_paths(previous.files.values()) if previous else {}
    new_ids = rule_paths(state.files.values())
    added, removed = sorted(set(new_ids) - set(old_ids)), sorted(set(old_ids) - set(new_ids))
    return {
        "mentions_added": sum((after - before).values()),
        "mentions_removed": sum((before - after).values()),
        "binaries": binaries,
        "rules_added": added,
        "rules_removed": removed,
        "rules_renamed": [
            {"id": rid, "from": old_ids[rid], "to": new_ids[rid]}
            for rid in sorted(set(old_ids) & set(new_ids))
            if old_ids[rid] != new_ids[rid]
        ],
        "detections": detections,
        "rules_added_detail": [_rule_detail(rid, new_ids[rid], state) for rid in added] if previous else [],
        "rules_removed_detail": [_rule_detail(rid, old_ids[rid], previous) for rid in removed] if previous else [],
    }


def detection_change(
    old: list[RuleVerdict], new: list[RuleVerdict], renames: dict[str, str], detecting: set[str]
) -> dict[str, Any] | None:
    """The rules of the `detecting` sources that started or stopped detecting a binary, or detect
    it differently (deprecated and unsupported rules never detect); None if none did."""

    def detected_by(rules: list[RuleVerdict], ref_map: dict[str, str]) -> dict[str, RuleVerdict]:
        return {
            ref_map.get(ref, ref): r
            for r in rules
            if r.source in detecting and r.detects and not r.retired
            for ref in [fileref(r.source, r.path)]
        }

    was, now = detected_by(old, renames), detected_by(new, {})
    if {ref: r.verdict for ref, r in was.items()} == {ref: r.verdict for ref, r in now.items()}:
        return None
    after = {fileref(r.source, r.path): r for r in new if r.source in detecting}

    def rule(ref: str, r: RuleVerdict, **extra: str) -> dict[str, str]:
        return {"path": ref.split(":", 1)[1], "title": r.title, **extra}  # a renamed rule: its new path

    def status(ref: str) -> str:
        r = after.get(ref)
        return "" if r is None else r.verdict + (" (deprecated or unsupported)" if r.retired else "")

    return {
        "before": len(was),
        "after": len(now),
        "gained": [rule(ref, now[ref], verdict=now[ref].verdict) for ref in sorted(set(now) - set(was))],
        "lost": [rule(ref, was[ref], verdict=was[ref].verdict, now=status(ref)) for ref in sorted(set(was) - set(now))],
        "changed": [
            rule(ref, now[ref], before=was[ref].verdict, after=now[ref].verdict)
            for ref in sorted(set(was) & set(now))
            if was[ref].verdict != now[ref].verdict
        ],
    }


def rule_paths(reports: Iterable[FileReport]) -> dict[str, str]:
    """Rule id -> the file ("source:path") holding it."""
    return {rid: f"{r.source}:{r.path}" for r in reports for rid in r.rule_ids}


def _rule_detail(rule_id: str, ref: str, state: State) -> dict[str, str]:
    report = state.files.get(ref)
    return {"id": rule_id, "path": ref.split(":", 1)[1], "title": report.title if report else ""}


# --- manifest files --------------------------------------------------------------------------------


def save_manifest(data_dir: Path, manifest: Manifest) -> None:
    """Keep the manifest in <data dir>/manifests/ (the KEEP_MANIFESTS newest are kept)."""
    folder = Path(data_dir) / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(
        folder / (manifest.started.replace(":", "") + f"-{os.getpid()}.json"), json.dumps(manifest.to_dict(), indent=1)
    )
    for old in sorted(folder.glob("*.json"))[:-KEEP_MANIFESTS]:
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
    if (
        isinstance(data, dict)
        and _typed(data, _MANIFEST_FIELDS)
        and isinstance(data.get("sources"), dict)
        and all(isinstance(s, dict) and _typed(s, _SOURCE_FIELDS) for s in data["sources"].values())
        and all(isinstance(e, dict) and all(isinstance(v, str) for v in e.values()) for e in data["file_errors"])
        and all(
            isinstance(c, dict)
            and all(isinstance(c.get(k), int) for k in ("rules_before", "rules_after", "gained", "lost"))
            for c in data["binaries"].values()
        )
        and _detections_shown(data.get("detections", {}))
        and all(_records(data.get(f"{key}_detail", []), "title", "path") for key in ("rules_added", "rules_removed"))
    ):
        return data
    return None


def _records(value: Any, *keys: str) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and all(k in v for k in keys) for v in value)


def _detections_shown(value: Any) -> bool:
    """Whether a manifest's `detections` has the shape `indexer changes` prints."""
    return isinstance(value, dict) and all(
        isinstance(d, dict)
        and "before" in d
        and "after" in d
        and _records(d.get("lost"), "verdict", "title", "path", "now")
        and _records(d.get("gained"), "verdict", "title", "path")
        and _records(d.get("changed"), "before", "after", "title", "path")
        for d in value.values()
    )


def _typed(data: dict[str, Any], kinds: dict[str, type]) -> bool:
    return all(isinstance(data.get(k), (float, int) if t is float else t) for k, t in kinds.items())


# what a manifest holds (what `indexer changes` shows): a manifest file of another shape is damaged
_MANIFEST_FIELDS = {
    name: type(value)
    for name, value in Manifest(started="").to_dict().items()
    if name
    in (
        "started",
        "duration_s",
        "exit_code",
        "generation",
        "files_parsed",
        "file_errors",
        "mentions_added",
        "mentions_removed",
        "mentions_total",
        "binaries",
        "rules_added",
        "rules_removed",
        "rules_renamed",
    )
}
_SOURCE_FIELDS = {
    name: type(value)
    for name, value in asdict(SourceOutcome("", "", "")).items()
    if name in ("mode", "before", "after", "error", "added", "modified", "deleted", "renamed")
}


def changed_anything(manifest: dict[str, Any]) -> bool:
    """Whether a refresh changed something for people: a failure, or a source not up to date."""
    return bool(manifest.get("exit_code")) or any(s.get("mode") != "unchanged" for s in manifest["sources"].values())


def recent_manifests(
    data_dir: Path, last: int, since: str | None = None, include_unchanged: bool = False
) -> list[dict[str, Any]]:
    """The `last` newest manifests started on or after `since` (YYYY-MM-DD...), as `changes` lists them."""
    items = (
        m
        for m in manifests(data_dir)
        if (not since or m["started"] >= since) and (include_unchanged or changed_anything(m))
    )
    return [m for _, m in zip(range(last), items)]
