"""What a user typed, turned into binary names; search with filters; suggestions for misses;
`show` and `stats` answers.

`search` needs only the index: the cross-references and the record classes (records.py, ~8 ms
to define) are imported by the functions that answer with them, so `indexer search` starts as
fast as before.
"""

from __future__ import annotations

import bisect
import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .index import IndexReader, stem_of
from .model import FileReport, Mention
from .verdicts import SIGMA_VERDICTS, RuleVerdict, rule_verdicts, select

if TYPE_CHECKING:
    from .records import AtlasItem, BinaryRecord, BinarySections, RuleRecord

_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ParsedQuery:
    """A query reduced to a lower-case file name: `exact`, `bare` (no extension) or `pattern`."""

    text: str
    kind: str
    name: str


def parse_query(text: str) -> ParsedQuery:
    """`PSR.EXE`, `psr`, `C:\\Windows\\System32\\psr.exe`, `/usr/bin/curl`, `cert*.exe`."""
    cleaned = text.strip().strip("'\"`").strip()
    name = re.split(r"[\\/]", cleaned)[-1].strip().lower()
    if not name:
        raise ValueError(f"query {text!r} names no file")
    if _WILDCARD.search(name):
        return ParsedQuery(text, "pattern", name)
    if "." in name.strip("."):
        return ParsedQuery(text, "exact", name)
    return ParsedQuery(text, "bare", name)


def resolve(query: ParsedQuery, binaries: list[str]) -> list[str]:
    """The indexed binary names a query stands for."""
    if query.kind == "pattern":
        return fnmatch.filter(binaries, query.name)
    if query.kind == "bare":
        return [b for b in binaries if b == query.name or stem_of(b) == query.name]
    return [query.name] if _contains(binaries, query.name) else []


def counterparts(name: str, binaries: list[str]) -> list[str]:
    """The same program's name on the other platforms, when indexed: `curl.exe` for the Unix
    `curl`, `curl` for `curl.exe` (a Windows executable and a Unix name without extension)."""
    if name.endswith(".exe"):
        other = name[: -len(".exe")]
        return [other] if other and "." not in other and _contains(binaries, other) else []
    return [f"{name}.exe"] if "." not in name and _contains(binaries, f"{name}.exe") else []


def _contains(sorted_names: list[str], name: str) -> bool:
    i = bisect.bisect_left(sorted_names, name)
    return i < len(sorted_names) and sorted_names[i] == name


def suggest(query: ParsedQuery, binaries: list[str], limit: int = 5) -> list[str]:
    """Close names for a query with no hit ("did you mean ...?")."""
    name = query.name.replace("*", "").replace("?", "")
    close = difflib.get_close_matches(name, binaries, n=limit, cutoff=0.75)
    stems = difflib.get_close_matches(stem_of(name), sorted({stem_of(b) for b in binaries}), n=limit, cutoff=0.8)
    extra = [b for s in stems for b in binaries if stem_of(b) == s]
    prefix = [b for b in binaries if b.startswith(stem_of(name)) and len(stem_of(name)) >= 4][:limit]
    return list(dict.fromkeys(close + extra + prefix))[:limit]


@dataclass
class SearchResult:
    query: str
    binaries: list[str]
    mentions: list[Mention]
    suggestions: list[str] = field(default_factory=list)
    declared_detections: list[dict[str, object]] = field(default_factory=list)  # LOLBAS -> Sigma links
    rules: list[RuleVerdict] = field(default_factory=list)  # one per (rule file, binary), strongest first
    aliases: dict[str, str] = field(default_factory=dict)  # alias found -> the name it stands for
    # binary -> the same program's name on another platform, when indexed (curl -> curl.exe)
    counterparts: dict[str, list[str]] = field(default_factory=dict)
    # each name of a pair (found or not) -> the platforms of its mentions in the index, whatever the filters
    platforms: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "query": self.query,
            "binaries": self.binaries,
            "aliases": self.aliases,
            "counterparts": self.counterparts,
            "platforms": self.platforms,
            "mentions": mention_rows(self.mentions, self.aliases),
            "rules": [r.to_dict() for r in self.rules],
            "suggestions": self.suggestions,
            "lolbas_declared_detections": self.declared_detections,
        }


def search(
    reader: IndexReader,
    text: str,
    *,
    source: str | None = None,
    roles: Iterable[str] = (),
    field: str | None = None,
    context: str | None = None,
    platform: str | None = None,
    include_inferred: bool = True,
    include_comments: bool = True,
    detects: bool = False,
    verdicts: Iterable[str] = (),
) -> SearchResult:
    """Every mention of what `text` names, the verdict of every rule file that names it, and
    suggestions when nothing matches.

    detects: only rule files that detect the binary (runs, parent, target, loads, invoked);
    verdicts: only rule files whose verdict is one of these. Mentions are those of the rule
    files kept, and rule files those whose mentions pass the other filters. include_comments:
    False leaves out names in YAML comments (role `comment`); platform: only mentions of rules
    for that platform (Mention.platform).
    """
    query = parse_query(text)
    binaries = reader.binaries()
    names = resolve(query, binaries)
    known = reader.aliases()
    aliases = {alias: name for name in names for alias in known.get(name, ()) if alias not in names}
    names_and_aliases = names + sorted(aliases)
    mentions = reader.search(
        names_and_aliases,
        source=source,
        role=roles,
        field=field,
        context=context,
        platform=platform,
        inferred=None if include_inferred else False,
    )
    if not include_comments:
        mentions = [m for m in mentions if m.role != "comment"]
    shown = {(m.source, m.path, m.binary) for m in mentions}
    rules = select(
        (r for r in reader.rules(names_and_aliases) if (r.source, r.path, r.binary) in shown),
        detects=detects,
        verdicts=verdicts,
    )
    if detects or verdicts:
        kept = {(r.source, r.path, r.binary) for r in rules}
        mentions = [m for m in mentions if (m.source, m.path, m.binary) in kept]
    suggestions = [] if names else suggest(query, binaries)
    declared = reader.declared_links(names) if names and source != "sigma" else []
    pairs = {name: found for name in names if (found := counterparts(name, binaries))}
    paired = sorted({*pairs, *(o for found in pairs.values() for o in found)})
    platforms = {name: sorted({d.get("platform", "") for d in reader.stored(name)}) for name in paired}
    return SearchResult(
        text,
        names,
        mentions,
        suggestions,
        declared,
        rules,
        aliases,
        pairs,
        platforms,
    )


def mention_rows(mentions: Iterable[Mention], aliases: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Mentions as answers carry them (records.MentionRow): with alias_of."""
    aliases = aliases or {}
    return [m.row(aliases.get(m.binary, "")) for m in mentions]


def group_by_rule(mentions: Iterable[Mention]) -> dict[tuple[str, str], list[Mention]]:
    """Mentions grouped by (source, path), in order of first appearance."""
    groups: dict[tuple[str, str], list[Mention]] = {}
    for mention in mentions:
        groups.setdefault((mention.source, mention.path), []).append(mention)
    return groups


def find_rule(reader: IndexReader, target: str) -> FileReport | None:
    """The rule file a rule id, a path in its repository or `source:path` names (the first
    file in the index's order when several share an id), or None."""
    keys = reader.cache.get("rule-keys")
    if keys is None:
        keys = {}
        for ref, report in reader.state.files.items():
            for key in (*report.rule_ids, report.path, ref):
                keys.setdefault(key, report)
        reader.cache["rule-keys"] = keys
    return keys.get(target.strip())


def show_target(reader: IndexReader, target: str, kind: str | None = None) -> dict[str, object] | None:
    """Everything about a rule (by id or path) or, failing that, a binary (as `search` reads it).

    kind: "rule" or "binary" to look for one kind only (a rule id may look like a binary name).
    `indexer show` uses `find_target`, which says what it found and what else the target names.
    """
    report = find_rule(reader, target) if kind != "binary" else None
    if report is not None:
        return rule_target(reader, report)
    if kind == "rule":
        return None
    try:
        result = search(reader, target.strip())
    except ValueError:
        return None
    if not result.mentions:
        return None
    return binary_target(reader, target, result.binaries, result.mentions, result.rules)


def rule_target(
    reader: IndexReader,
    report: FileReport,
    mentions: list[Mention] | None = None,
    binaries: Iterable[str] | None = None,
) -> dict[str, object]:
    """`show_target` for one rule file: its record and cross-references. `mentions`: the file's
    mentions in line order when already read (its verdicts are then computed from them, which
    gives the stored ones); `binaries`: read only these names' mentions and verdicts (one page
    of a file that names thousands)."""
    return rule_record(reader, report, mentions, binaries).to_dict()


def binary_target(
    reader: IndexReader,
    query: str,
    binaries: list[str],
    mentions: list[Mention],
    rules: Iterable[RuleVerdict] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """`show_target` for the executables a query resolved to, from their mentions (search order)
    and their rule verdicts (as stored; computed from the mentions when not given); `aliases`
    marks the mentions of an alias (alias -> the name it stands for)."""
    return binary_record(reader, query, binaries, mentions, rules, aliases).to_dict()


def find_target(reader: IndexReader, target: str, kind: str | None = None) -> dict[str, object] | None:
    """`show_target`, saying how the target was found (`matched_by`: path, name or id) and what
    else it names (`other_matches`: other rules with the same id, the rule or binary not shown).

    A rule path wins, then a binary name, then a rule id (ids are meant to be UUIDs: a rule
    whose id is `certutil.exe` does not hide the binary). kind: "rule" or "binary" only.
    """
    cleaned = target.strip()
    reports = sorted(reader.state.files.values(), key=lambda r: (r.source != "sigma", r.source, r.path))
    by_path = [r for r in reports if cleaned in (r.path, f"{r.source}:{r.path}")] if kind != "binary" else []
    by_id = [r for r in reports if cleaned in r.rule_ids] if kind != "binary" else []
    found = None
    if kind != "rule":
        try:
            found = search(reader, cleaned)
        except ValueError:
            found = None
        if found is not None and not found.mentions:
            found = None
    if by_path:
        record, matched_by, rules = rule_target(reader, by_path[0]), "path", by_path[1:] + by_id
    elif found is not None:
        record = binary_target(reader, target, found.binaries, found.mentions, found.rules, found.aliases)
        matched_by, rules = "name", by_id
    elif by_id:
        record, matched_by, rules = rule_target(reader, by_id[0]), "id", by_id[1:]
    else:
        return None
    others: list[dict[str, object]] = []
    shown = {(record.get("source"), record.get("path"))}
    for r in rules:
        if (r.source, r.path) not in shown:
            shown.add((r.source, r.path))
            others.append(
                {
                    "kind": "rule",
                    "source": r.source,
                    "path": r.path,
                    "matched_by": "id" if cleaned in r.rule_ids else "path",
                }
            )
    if record["kind"] == "rule" and found is not None:
        others.append({"kind": "binary", "binaries": found.binaries, "matched_by": "name"})
    return {**record, "matched_by": matched_by, "other_matches": others}


def rule_record(
    reader: IndexReader,
    report: FileReport,
    mentions: list[Mention] | None = None,
    binaries: Iterable[str] | None = None,
) -> RuleRecord:
    """One rule file as `show` prints it: its report, metadata, its verdict on each binary it
    names (as stored; computed from `mentions` when they are given, which gives the same), its
    detection items that name a binary (which are filters), its mentions and cross-references."""
    from . import xref
    from .records import DetectionItem, Link, MentionRow, Reference, RuleRecord

    if mentions is None:
        mentions = reader.file_mentions(report.source, report.path, binaries)
        names = report.binaries if binaries is None else binaries
        verdicts = [r for r in reader.rules(names) if (r.source, r.path) == (report.source, report.path)]
    else:
        verdicts = rule_verdicts(m.__dict__ for m in mentions)
    first = mentions[0] if mentions else None
    items: dict[str, tuple[str, list[str]]] = {}
    for m in mentions:
        if m.detection:
            context, names_in = items.setdefault(m.detection, (m.context, []))
            if m.binary not in names_in:
                names_in.append(m.binary)
    xrefs = xref.load(reader)
    sigma = report.source == "sigma"
    own: tuple[Link | Reference, ...] = xrefs.references if sigma else xrefs.links
    return RuleRecord(
        kind="rule",
        source=report.source,
        path=report.path,
        status=report.status,
        reason=report.reason,
        warnings=tuple(report.warnings),
        rule_ids=tuple(report.rule_ids),
        title=first.title if first else "",
        level=first.level if first else "",
        tags=first.tags if first else (),
        logsource=first.logsource if first else "",
        url=first.url.split("#", 1)[0] if first else "",
        binaries=tuple(sorted({m.binary for m in mentions})),
        verdicts=tuple(sorted(verdicts, key=RuleVerdict.sort_key)),
        detection_items=tuple(
            DetectionItem(name, context, tuple(names_in))  # type: ignore[arg-type]
            for name, (context, names_in) in sorted(items.items(), key=lambda i: (i[1][0] == "filter", i[0]))
        ),
        mentions=tuple(MentionRow(m) for m in mentions),
        former_paths=xrefs.former_paths.get(report.path, ()) if sigma else (),
        linked_from_lolbas=tuple(l for l in xrefs.links if l.current_path == report.path),
        links=tuple(l for l in own if (l.sigma_path if isinstance(l, Reference) else l.lolbas_path) == report.path),
    )


def binary_record(
    reader: IndexReader,
    query: str,
    binaries: list[str],
    mentions: list[Mention],
    rules: Iterable[RuleVerdict] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> BinaryRecord:
    """One binary (or the names a query resolved to) as `show` prints it: every rule file's
    verdict on it (strongest first, deprecated and unsupported rules last), the mentions and
    the Sigma links its LOLBAS entries declare.

    running_rules: Sigma rules (not retired) that run it; detecting_rules: those with any
    detecting verdict (runs, parent, target, loads, invoked); retired_rules: deprecated and
    unsupported rules naming it, whatever their verdict. `rules` as stored; by default
    computed from `mentions` (the same).
    """
    from .records import BinaryRecord, Link, MentionRow

    groups = group_by_rule(mentions)
    if rules is None:
        rules = rule_verdicts(m.__dict__ for m in mentions)
    ordered_rules = sorted(rules, key=RuleVerdict.sort_key)
    active = [r for r in ordered_rules if r.source == "sigma" and not r.retired]
    aliases = aliases or {}
    return BinaryRecord(
        kind="binary",
        query=query,
        binaries=tuple(binaries),
        rules=tuple(ordered_rules),
        sigma_rules=tuple(sorted({p for (s, p) in groups if s == "sigma"})),
        running_rules=tuple(sorted({r.path for r in active if r.verdict == "runs"})),
        detecting_rules=tuple(sorted({r.path for r in active if r.detects})),
        retired_rules=tuple(sorted({r.path for r in ordered_rules if r.retired})),
        lolbas_entries=tuple(sorted({p for (s, p) in groups if s == "lolbas"})),
        roles=tuple(sorted({m.role for m in mentions})),
        mentions=tuple(MentionRow(m, aliases.get(m.binary, "")) for m in mentions),
        lolbas_declared_detections=tuple(map(Link.from_dict, reader.declared_links(binaries))),
        sections=binary_sections(reader, ordered_rules, mentions),
        counterparts=tuple(sorted({o for b in binaries for o in counterparts(b, reader.binaries())} - set(binaries))),
    )


def is_detection(rule: RuleVerdict) -> bool:
    """Whether a rule file is a detection rule: its source detects (Source.detects: Sigma, and
    Elastic or Splunk when indexed), which gives its files the rule verdicts (runs ... mentioned)
    where the others' give `documented` or `tested`. Read from the verdict stored in the index,
    so the search path needs no source registry."""
    return rule.verdict in SIGMA_VERDICTS


_ROLE_KINDS = {
    "tested_by": "tests",
    "vulnerable_driver": "drivers",
    "malicious_driver": "drivers",
    "sideload_target": "sideloading",
    "sideload_host": "sideloading",
}


def binary_sections(
    reader: IndexReader,
    rules: list[RuleVerdict],
    mentions: list[Mention],
    files: Mapping[str, FileReport] | None = None,
) -> BinarySections:
    """`show NAME` grouped by kind of source: the detection sources' rule files (one RuleSet per
    source, strongest first, retired last), then every other source's entries by what they say
    (records.Kind: a role's kind, `abuse` for LOLBAS, GTFOBins and LOOBins). An atomic file is
    one item per test (its guid), any other file one item. files: the file reports (a LOLBAS
    entry's categories come from them): the index state's by default."""
    from .records import BinarySections, RuleSet

    detection: dict[str, list[RuleVerdict]] = {}
    for rule in rules:
        if is_detection(rule):
            detection.setdefault(rule.source, []).append(rule)
    detecting_files = {(r.source, r.path) for r in rules if is_detection(r)}
    items: dict[tuple[str, str, str, str], list[Mention]] = {}
    for m in mentions:
        if (m.source, m.path) not in detecting_files:
            items.setdefault((m.source, m.path, m.rule_id if m.role == "tested_by" else "", m.binary), []).append(m)
    kinds: dict[str, list[AtlasItem]] = {kind: [] for kind in ("abuse", "tests", "drivers", "sideloading")}
    for (source, path, _id, binary), found in sorted(items.items()):
        item = _atlas_item(reader.state.files if files is None else files, source, path, binary, found)
        kinds[item.kind].append(item)
    return BinarySections(
        detection=tuple(
            RuleSet(
                source=source,
                rules=tuple(found),
                running=sum(1 for r in found if r.verdict == "runs" and not r.retired),
                detecting=sum(1 for r in found if r.detects and not r.retired),
                retired=sum(1 for r in found if r.retired),
            )
            for source, found in sorted(detection.items())
        ),
        **{kind: tuple(found) for kind, found in kinds.items()},
    )


def _once(values: Iterable[str]) -> Iterable[str]:
    """Non-empty values once each, whatever their case (the first spelling kept), in order."""
    seen: dict[str, str] = {}
    for value in values:
        if value:
            seen.setdefault(value.lower(), value)
    return seen.values()


def _atlas_item(
    files: Mapping[str, FileReport], source: str, path: str, binary: str, found: list[Mention]
) -> AtlasItem:
    """One file (an atomic test) of a source that is not a detection, from its mentions of `binary`."""
    from .records import AtlasItem, technique_ids

    roles = tuple(dict.fromkeys(m.role for m in found))
    kind = next((_ROLE_KINDS[r] for r in roles if r in _ROLE_KINDS), "abuse")
    tags = [t for m in found for t in m.tags]
    report = files.get(f"{source}:{path}")
    entry = report.entry if report is not None else {}
    functions = [str(c) for c in entry.get("categories", [])]
    functions += [m.field for m in found if m.role == "gtfobin"]
    functions += [t.partition(".")[2] for t in tags if t.startswith(f"{source}.")]
    first = found[0]
    return AtlasItem(
        kind=kind,  # type: ignore[arg-type]
        source=source,
        path=path,
        binary=binary,
        id=first.rule_id,
        title=first.title,
        url=first.url,
        platform=first.platform,
        roles=roles,
        lines=tuple(sorted({m.line for m in found})),
        techniques=tuple(technique_ids(tags)),
        functions=tuple(_once(functions)),
        executor=first.detection if first.role == "tested_by" else "",
        hashes=tuple(dict.fromkeys(t for t in tags if t.split(":", 1)[0] in ("md5", "sha1", "sha256"))),
        hosts=tuple(dict.fromkeys(t[len("host:") :] for t in tags if t.startswith("host:"))),
        dlls=tuple(dict.fromkeys(m.title for m in found if m.role == "sideload_host" and m.title)),
    )


def index_stats(reader: IndexReader) -> dict[str, object]:
    """Counts for `indexer stats`: files by status and source, failures with reasons, mentions."""
    from .records import FileCounts, IndexStats, Problem

    state = reader.state
    files: dict[str, dict[str, int]] = {}
    problems = []
    rules = 0
    for report in state.files.values():
        per_source = files.setdefault(report.source, dict.fromkeys(FileCounts.columns(), 0))
        per_source["seen"] += 1
        per_source[report.status] += 1
        per_source["with_warnings"] += bool(report.warnings)
        rules += len(report.rule_ids)
        if report.status != "indexed" or report.warnings:
            problems.append(
                Problem(report.source, report.path, report.status, report.reason or "; ".join(report.warnings))
            )
    by_role: dict[str, int] = {}
    by_source: dict[str, int] = {}
    binaries: set[str] = set()
    inferred = 0
    for m in reader.all_mentions():
        by_role[m.role] = by_role.get(m.role, 0) + 1
        by_source[m.source] = by_source.get(m.source, 0) + 1
        binaries.add(m.binary)
        inferred += m.inferred
    return IndexStats(
        generation=reader.generation.name,
        sources=state.source_dicts(),
        files={source: FileCounts(**counts) for source, counts in files.items()},
        rule_ids=rules,
        mentions=sum(by_source.values()),
        mentions_by_source=by_source,
        mentions_by_role=dict(sorted(by_role.items(), key=lambda kv: -kv[1])),
        inferred_mentions=inferred,
        binaries=len(binaries),
        problems=tuple(sorted(problems, key=lambda p: (p.status, p.source, p.path))),
    ).to_dict()


def validated_by(reader: IndexReader, guid: str) -> list[FileReport]:
    """The detection files whose rule names the atomic test `guid` (its `auto_generated_guid`, the
    atomic source's rule id) as a test it was validated with (Splunk's `tags.atomic_guid`), by path."""
    wanted = guid.strip().lower()
    return sorted(
        (
            r
            for r in reader.state.files.values()
            if r.status == "indexed" and wanted in (r.entry.get("atomic_guids") or ())
        ),
        key=lambda r: (r.source, r.path),
    )
