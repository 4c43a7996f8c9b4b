"""Cross-references: LOLBAS -> Sigma, Elastic and Splunk rule links resolved through each rule set's
history, Sigma -> LOLBAS pages, coverage.

`build` runs at refresh time (it needs git) and its result is stored in the index generation
as `xref.json`; `links`, `coverage` and `former_paths` read it back for the CLI and the server.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from .index import DECLARED_FILE, IndexReader
from .jsontext import dumps
from .state import State
from .model import FileReport
from .records import (
    LINK_STATUSES,
    TIERS,
    CoverageEntry,
    CoverageRow,
    CoverageRule,
    CoverageSummary,
    FormerPath,
    Link,
    LinkState,
    Reference,
    Tally,
    XrefData,
)
from .verdicts import DETECTING, RuleVerdict, ordered, rank

__all__ = ["LINK_STATUSES", "TIERS"]  # the vocabularies, defined with their records
XREF_FILE = "xref.json"
_SIGMA_URL = re.compile(r"^https?://github\.com/([^/]+)/([^/]+)/(blob|tree|raw)/([^/]+)/(.*?)/?(?:[?#].*)?$")
_LOLBAS_PAGE = re.compile(r"lolbas-project\.github\.io/lolbas/([^/]+)/([^/#?]+)", re.IGNORECASE)
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


# --- LOLBAS -> rule sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkTarget:
    """A rule set LOLBAS links to, as resolving a link needs it: the source's name, the GitHub
    repositories ("owner/name", lower case) its rules live in, which paths are its rule files.
    The refresh makes one per source whose history is kept (`Source.repositories`, `Source.wants`)."""

    source: str
    repositories: frozenset[str]
    wants: Callable[[str], bool]


def is_retired_path(path: str) -> bool:
    """A rule file kept under a `deprecated/` folder (Sigma's, Splunk's `detections/deprecated/`,
    Elastic's `rules/_deprecated/`)."""
    return any(part in ("deprecated", "_deprecated") for part in path.split("/")[:-1])


def resolve_link(
    url: str, target: LinkTarget, repo: Any, history: Any, rules_at_tip: dict[str, str], tip_paths: set[str]
) -> dict[str, Any]:
    """The status of one link to a rule: ok, moved, deprecated, deleted or unresolvable (with why).

    target: the rule set linked; repo: its `Repository` (to read a pinned commit when the clone
    has it); history: its `PathHistory`; rules_at_tip: rule id -> path; tip_paths: rule paths at the tip.
    """
    match = _SIGMA_URL.match(url.strip())
    if not match:
        why = "a pull request, not a rule file" if "/pull/" in url else "not a link to a file in a GitHub repository"
        return {"status": "unresolvable", "reason": why}
    owner, name, kind, ref, path = match.groups()
    if f"{owner}/{name}".lower() not in target.repositories:
        return {"status": "unresolvable", "reason": f"a rule in another repository ({owner}/{name})"}
    result: dict[str, Any] = {"linked_ref": ref, "linked_path": path}
    if kind == "tree" or not target.wants(path):
        now = sum(1 for p in tip_paths if p.startswith(path.rstrip("/") + "/"))
        return {
            **result,
            "status": "unresolvable",
            "reason": f"a folder, not a rule file ({now} rules under it at the tip)" if now else "not a rule file",
        }
    rule_id, basis = "", ""
    if _HEX40.match(ref) and repo.has_commit(ref):
        try:
            rule_id = rule_id_at(repo, ref, path)
            basis = f"the linked commit {ref[:12]}"
        except Exception:  # path not in that commit: fall back to history
            rule_id = ""
    if not rule_id and path in tip_paths and not _HEX40.match(ref):
        basis = f"the branch '{ref}' at the tip"
    if not rule_id:
        last = history.last.get(path)
        if last is None:
            if path in tip_paths:
                return {**result, "status": "ok", "current_path": path, "basis": "the path at the tip"}
            return {
                **result,
                "status": "unresolvable",
                "reason": "the path never held a file in the repository's history",
            }
        from .history import rule_id_of

        rule_id = rule_id_of(repo.read(last.blob))
        if last.status == "present":
            basis = basis or f"the path's content at {last.commit[:12]} ({last.date[:10]})"
        else:
            basis = basis or (
                f"the path's last content, before {last.commit[:12]} {last.status} it away ({last.date[:10]})"
            ).replace("deleted it away", "deleted it")
    result.update(rule_id=rule_id, basis=basis)
    if path in tip_paths:
        return {**result, "status": "ok", "current_path": path}
    current = rules_at_tip.get(rule_id)
    if not rule_id or current is None:
        return {
            **result,
            "status": "deleted",
            "reason": "no rule with this id at the tip" if rule_id else "the file held no rule id",
        }
    return {**result, "status": "deprecated" if is_retired_path(current) else "moved", "current_path": current}


def rule_id_at(repo: Any, commit: str, path: str) -> str:
    from .history import rule_id_of

    return rule_id_of(repo.read_at(commit, path))


# --- Sigma -> LOLBAS ---------------------------------------------------------------------------

_PAGE_FOLDERS = {"binaries": "OSBinaries", "libraries": "OSLibraries", "scripts": "OSScripts"}


def resolve_lolbas_page(url: str, entries: dict[str, str]) -> dict[str, Any]:
    """The LOLBAS entry a lolbas-project.github.io page names.

    entries maps "folder/stem" and "stem" (lower case) to entry paths; the page's category
    (Binaries, Libraries, Scripts, OtherMSBinaries) picks between entries of the same name.
    """
    match = _LOLBAS_PAGE.search(url)
    if not match:
        return {"status": "unresolvable", "reason": "not a LOLBAS entry page"}
    category, stem = match.group(1).lower(), match.group(2).lower()
    folder = _PAGE_FOLDERS.get(category, match.group(1)).lower()
    path = entries.get(f"{folder}/{stem}") or entries.get(stem)
    return (
        {"status": "ok", "entry_path": path}
        if path
        else {"status": "unknown", "reason": f"no LOLBAS entry '{match.group(2)}'"}
    )


# --- building and reading ------------------------------------------------------------------------


class RuleSource(Protocol):
    """Where coverage reads each binary's rule verdicts: an IndexReader, the IndexWriter of the
    generation being written, the history as of a date."""

    def rules(self, binaries: Iterable[str]) -> list[RuleVerdict]: ...


_RULE_SETS = {"sigma": "Sigma", "elastic": "Elastic", "splunk": "Splunk"}  # LOLBAS's Detection keys


def build(
    reader: RuleSource,
    state: State,
    repos: dict[str, Any],
    histories: dict[str, Any],
    targets: dict[str, LinkTarget] | None = None,
) -> XrefData:
    """Every link's status, every Sigma rule's LOLBAS references, coverage, former paths.

    repos, histories: the `Repository` and `PathHistory` of each source whose history is kept;
    targets: those sources as rule sets LOLBAS may link to (a link to another is unresolvable).
    """
    targets = targets or {}
    rule_sets = {
        name: RuleSet(targets[name], repos[name], histories[name], *_tip(state, name))
        for name in targets
        if name in repos and name in histories
    }
    sigma = [r for r in state.files.values() if r.source == "sigma" and r.status == "indexed"]
    tip_paths = rule_sets["sigma"].paths if "sigma" in rule_sets else set()
    entries = [r for r in state.files.values() if r.source == "lolbas" and r.entry and r.path.startswith("yml/")]
    history = histories.get("sigma")
    former = {p: history.former_paths(p) for p in sorted(tip_paths)} if history else {}
    return assemble(
        reader, entries, sigma, rule_sets, {p: tuple(map(FormerPath.from_dict, f)) for p, f in former.items() if f}
    )


@dataclass(frozen=True)
class RuleSet:
    """A rule set as its links are resolved at one commit: `repo` (has_commit, read_at, read: a
    `Repository`, or what stands for it), `history` (its `last` paths: a `PathHistory`), its rule
    ids (id -> path) and the paths of its rule files then."""

    target: LinkTarget
    repo: Any
    history: Any
    rules: Any  # Mapping[str, str]
    paths: Any  # Collection[str]


def entry_links(entries: Iterable[FileReport], rule_sets: dict[str, RuleSet]) -> list[Link]:
    """The links of these LOLBAS entries to rule sets, resolved, by entry path and line."""
    links: list[Link] = []
    for report in sorted(entries, key=lambda r: r.path):
        for link in report.links:
            kind = link["kind"]
            if kind not in _RULE_SETS:
                continue
            rules = rule_sets.get(kind)
            resolved = (
                resolve_link(link["url"], rules.target, rules.repo, rules.history, rules.rules, rules.paths)
                if rules is not None
                else {
                    "status": "unresolvable",
                    "reason": f"the {_RULE_SETS[kind]} rules and their history are not indexed",
                }
            )
            links.append(
                Link.from_dict(
                    {
                        "rule_set": kind,
                        "lolbas_path": report.path,
                        "entry": report.entry.get("name", ""),
                        "line": link["line"],
                        "url": link["url"],
                        **resolved,
                    }
                )
            )
    return links


def assemble(
    reader: RuleSource,
    entries: list[FileReport],
    sigma: list[FileReport],
    rule_sets: dict[str, RuleSet],
    former: dict[str, tuple[FormerPath, ...]],
) -> XrefData:
    """The cross-references of these LOLBAS entries and Sigma rules (their reports: entry, links,
    rule ids), the links resolved against `rule_sets`; `former`: former paths, as given."""
    by_stem = {Path(r.path).stem.lower(): r.path for r in entries}
    by_stem.update({f"{Path(r.path).parent.name}/{Path(r.path).stem}".lower(): r.path for r in entries})
    links = entry_links(entries, rule_sets)
    references = []
    for report in sorted(sigma, key=lambda r: r.path):
        for link in report.links:
            if link["kind"] == "lolbas":
                references.append(
                    Reference.from_dict(
                        {
                            "sigma_path": report.path,
                            "rule_ids": report.rule_ids,
                            "line": link["line"],
                            "url": link["url"],
                            **resolve_lolbas_page(link["url"], by_stem),
                        }
                    )
                )
    return XrefData(
        tuple(links),
        tuple(references),
        {"entries": _coverage(reader, entries, [l for l in links if l.rule_set == "sigma"], references)},
        former,
    )


def entry_names(entry: dict[str, Any]) -> tuple[str, ...]:
    """A LOLBAS entry's names as coverage and `declared_links` key it: its name and aliases, lower case."""
    return tuple(sorted({n.lower() for n in [entry.get("name", "")] + entry.get("aliases", []) if n}))


def _tip(state: State, source: str) -> tuple[dict[str, str], set[str]]:
    """A source's rules at the tip: rule id -> path, and the paths of its rule files (a file
    present but unreadable is still there: links to it are not "deleted")."""
    indexed = sorted(
        (r for r in state.files.values() if r.source == source and r.status == "indexed"), key=lambda r: r.path
    )
    paths = {r.path for r in state.files.values() if r.source == source and r.status != "skipped"}
    return {rid: r.path for r in indexed for rid in r.rule_ids}, paths


def _coverage(
    reader: RuleSource, entries: list[FileReport], links: list[Link], references: list[Reference]
) -> tuple[CoverageEntry, ...]:
    """Per LOLBAS entry, the verdict of every Sigma rule naming it (or an alias): stored as is,
    tiers are computed when read (deprecated and unsupported rules count only when asked)."""
    linked: dict[str, list[Link]] = defaultdict(list)
    for link in links:
        linked[link.lolbas_path].append(link)
    cited: dict[str, set[str]] = defaultdict(set)
    for ref in references:
        if ref.entry_path:
            cited[ref.entry_path].add(ref.sigma_path)
    rows = []
    for report in sorted(entries, key=lambda r: r.path):
        names = entry_names(report.entry)
        rules: dict[str, RuleVerdict] = {}  # path -> its strongest verdict on any of the names
        for rule in reader.rules(names):
            if rule.source == "sigma" and (
                rule.path not in rules or rank(rule.verdict) < rank(rules[rule.path].verdict)
            ):
                rules[rule.path] = rule
        rows.append(
            CoverageEntry(
                entry=report.entry.get("name", ""),
                path=report.path,
                names=names,
                categories=tuple(report.entry.get("categories", [])),
                mitre=tuple(report.entry.get("mitre", [])),
                rules=tuple(CoverageRule.of(r) for r in sorted(rules.values(), key=RuleVerdict.sort_key)),
                linked=tuple(LinkState(l.url, l.status, l.current_path, l.reason) for l in linked[report.path]),
                citing_rules=tuple(sorted(cited[report.path])),
            )
        )
    return tuple(rows)


def tier_of(rules: Iterable[CoverageRule], include_retired: bool = False) -> str:
    """The coverage tier given the Sigma rules' verdicts on an entry."""
    counted = [r.verdict for r in rules if include_retired or not r.retired]
    if "runs" in counted:
        return "running"
    if DETECTING.intersection(counted):
        return "other"
    return "mentioned" if counted else "none"


def _coverage_row(row: CoverageEntry, include_retired: bool) -> CoverageRow:
    counted = [r for r in row.rules if include_retired or not r.retired]
    running = sorted(r.path for r in counted if r.verdict == "runs")
    other = sorted(r.path for r in counted if r.verdict in DETECTING and r.verdict != "runs")
    detecting = set(running) | set(other)
    declared = {l.current_path for l in row.linked if l.current_path}
    return CoverageRow(
        entry=row.entry,
        path=row.path,
        names=row.names,
        categories=row.categories,
        mitre=row.mitre,
        tier=tier_of(row.rules, include_retired),  # type: ignore[arg-type]
        verdicts=ordered(r.verdict for r in counted),  # type: ignore[arg-type]
        running_rules=tuple(running),
        other_rules=tuple(other),
        detecting_rules=tuple(sorted(detecting)),
        mentioning_rules=tuple(sorted(r.path for r in counted if r.path not in detecting)),
        retired_rules=tuple(sorted(r.path for r in row.rules if r.retired)),
        rules=row.rules,
        linked=row.linked,
        linked_and_detecting=tuple(sorted(declared & detecting)),
        linked_not_detecting=tuple(sorted(declared - detecting)),
        detecting_not_linked=len(detecting - declared),
        citing_rules=row.citing_rules,
        agree=declared <= detecting,
    )


def _summary(rows: list[CoverageRow], include_retired: bool) -> CoverageSummary:
    def tally(key: str) -> dict[str, Tally]:
        out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(Tally.columns(), 0))
        for row in rows:
            for value in getattr(row, key) or ["(none)"]:
                out[value]["entries"] += 1
                out[value][row.tier] += 1
                out[value]["detected" if row.tier in ("running", "other") else "undetected"] += 1
        return {value: Tally(**counts) for value, counts in sorted(out.items())}

    by_tier = {t: tuple(r.entry for r in rows if r.tier == t) for t in TIERS}
    return CoverageSummary(
        entries=len(rows),
        include_retired=include_retired,
        tiers={t: len(names) for t, names in by_tier.items()},  # type: ignore[misc]
        detected=len(by_tier["running"]) + len(by_tier["other"]),
        undetected=len(by_tier["mentioned"]) + len(by_tier["none"]),
        entries_by_tier=by_tier,  # type: ignore[arg-type]
        links_disagree=sum(1 for r in rows if not r.agree),
        by_category=tally("categories"),
        by_mitre=tally("mitre"),
    )


def write(generation: Path, data: XrefData) -> None:
    """Store the cross-references, and beside them the small table a search needs:
    binary name -> the Sigma links its LOLBAS entries declare."""
    (generation / XREF_FILE).write_text(dumps(data.to_dict()), encoding="utf-8")
    by_entry: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for link in data.links:
        if link.rule_set == "sigma":  # `search` and `show` say "LOLBAS links a Sigma rule"
            by_entry[link.lolbas_path].append(link.to_dict())
    declared: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in data.coverage["entries"]:
        for name in row.names:
            declared[name].extend(by_entry[row.path])
    (generation / DECLARED_FILE).write_text(dumps(declared), encoding="utf-8")


def load(reader: IndexReader) -> XrefData:
    """The generation's cross-references, read once per reader; IndexMissing if damaged."""
    if XREF_FILE not in reader.cache:
        reader.cache[XREF_FILE] = reader.read_json(XREF_FILE, _read_xref)
    return reader.cache[XREF_FILE]


def _read_xref(data: Any) -> XrefData | None:
    """xref.json as written (a damaged file is an error, not "no links"); None if it is not."""
    try:
        xref = XrefData.from_dict(data)
    except ValueError:
        return None
    return xref if set(xref.coverage) == {"entries"} else None


def links(
    reader: IndexReader, status: list[str] | None = None, sources: list[str] | None = None
) -> list[dict[str, Any]]:
    """LOLBAS -> Sigma, Elastic and Splunk rule links with their status, optionally only some
    statuses or rule sets (sources)."""
    return [
        l.to_dict()
        for l in load(reader).links
        if (not status or l.status in status) and (not sources or l.rule_set in sources)
    ]


def coverage(reader: IndexReader, include_retired: bool = False) -> dict[str, Any]:
    """Per LOLBAS entry: its tier, the Sigma rules by verdict, the rules LOLBAS links; summary
    figures per tier, category and ATT&CK technique.

    Tiers: `running` (a rule with verdict runs), `other` (parent, target, loads or invoked),
    `mentioned` (rules name it, none detects it), `none`. Deprecated and unsupported rules
    count only with include_retired (they are listed in `retired_rules` either way).
    """
    rows = [_coverage_row(row, include_retired) for row in load(reader).coverage["entries"]]
    return {
        "entries": [r.to_dict() for r in rows],
        "summary": _summary(rows, include_retired).to_dict() if rows else {},
    }


def references(reader: IndexReader) -> list[dict[str, Any]]:
    """Sigma rules' references to LOLBAS pages, resolved to entries."""
    return [r.to_dict() for r in load(reader).references]


def former_paths(reader: IndexReader, path: str) -> list[dict[str, str]]:
    return [f.to_dict() for f in load(reader).former_paths.get(path, ())]
