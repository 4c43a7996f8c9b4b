"""Questions no source answers alone: which binaries attackers use that no rule detects
(`indexer gaps`), and which rules should fire when an atomic test runs (`indexer tests NAME`).

Detection sources are told apart from the others by the verdicts their files get (a source
with `Source.detects` gives its rules the rule verdicts runs ... mentioned; the others give
`documented` or `tested`: query.is_detection), so Elastic and Splunk count as rule sets as soon
as they are registered, each on its own and together with Sigma.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import quote

from .index import IndexReader
from .model import PLATFORMS, Mention, Platform
from .query import parse_query, resolve, suggest
from .records import TIERS, Tier, technique_ids
from .shape import Record
from .verdicts import SIGMA_VERDICTS, Verdict, is_retired, mention_verdict, ordered

# Roles that say an attacker uses the binary itself: a LOLBAS entry's name, an atomic test's
# command, a GTFOBins or LOOBins entry, an executable HijackLibs says side-loads a DLL. (Drivers
# are loaded, not run: LOLDrivers is left out; a side-loaded DLL is not run either.)
ATTACK_ROLES = frozenset({"lolbas_entry", "tested_by", "gtfobin", "loobin", "sideload_host"})
# What counts as a rule detecting the binary for `gaps`: it runs, or another process names it.
SEEN = frozenset({"runs", "invoked"})


@dataclass(frozen=True)
class GapRow(Record):
    """A binary attackers use on one platform, what names it and what the rule sets do with it."""

    binary: str
    platform: Platform
    sources: tuple[str, ...]  # the sources saying attackers use it (on this platform)
    files: int  # their files naming it (an atomic test counts once)
    named_in: tuple[str, ...]  # the first of them, source:path (atomic: source:path#guid)
    techniques: tuple[str, ...]  # ATT&CK ids those files give
    detected_by: tuple[str, ...]  # rule sets with a rule (not retired) that detects it running or invoked
    verdicts: dict[str, tuple[Verdict, ...]]  # per rule set: its rules' verdicts on it, strongest first


@dataclass(frozen=True)
class GapSummary(Record):
    """One platform's binaries attackers use, by the rule sets that detect them (running or invoked)."""

    platform: Platform
    binaries: int
    detected: int  # by at least one rule set counted
    gaps: int  # by none
    by_rule_set: dict[str, int]  # detected by this rule set (whatever the others do)
    only: dict[str, int]  # detected by this rule set and no other
    by_all: int  # detected by every rule set counted


@dataclass(frozen=True)
class GapsReport(Record):
    """`indexer gaps`: per platform the binaries attackers use that no rule set counted detects
    (ranked: named by more sources first, then by more files), and the counts per rule set."""

    rule_sets: tuple[str, ...]  # the detection sources counted
    attack_sources: tuple[str, ...]  # the sources saying what attackers use, in the index
    summary: tuple[GapSummary, ...]
    rows: tuple[GapRow, ...]  # the gaps (every binary with `every`), by platform then rank


def _platform_order(platform: str) -> int:
    return PLATFORMS.index(platform) if platform in PLATFORMS else len(PLATFORMS)


def gaps(
    reader: IndexReader,
    *,
    rule_sets: Iterable[str] = (),
    platform: str | None = None,
    every: bool = False,
    min_sources: int = 1,
    limit: int | None = None,
) -> GapsReport:
    """Binaries attackers use (ATTACK_ROLES) that no rule detects running or invoked, per platform.

    A rule counts on a platform when its own is that one or unknown (""); deprecated and
    unsupported rules never count. rule_sets: the detection sources that count (default: every
    one the index holds; ValueError for another); every: list the detected binaries too;
    min_sources: only binaries named by at least this many sources (summary and rows);
    limit: rows kept per platform (the summary counts them all).
    """
    attack: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[str, dict[str, dict[str, set[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    detection_sources: set[str] = set()
    for m in reader.all_mentions():
        verdict = mention_verdict(m.__dict__)
        if verdict in SIGMA_VERDICTS:
            detection_sources.add(m.source)
            if not is_retired(m.path, m.status):
                seen[m.binary][m.source][m.platform].add(verdict)
        elif m.role in ATTACK_ROLES:
            for where in _test_platforms(reader, m) if m.role == "tested_by" else (m.platform,):
                _named(attack, m, where)
    counted = _rule_sets(rule_sets, detection_sources)
    aliases = reader.aliases()
    rows = []
    for (binary, where), named in attack.items():
        if (platform is not None and where != platform) or len(named["sources"]) < min_sources:
            continue
        verdicts: dict[str, set[str]] = defaultdict(set)
        for name in (binary, *aliases.get(binary, ())):
            for source, by_platform in seen.get(name, {}).items():
                for rule_platform, found in by_platform.items():
                    if rule_platform in (where, ""):
                        verdicts[source] |= found
        rows.append(
            GapRow(
                binary=binary,
                platform=where,  # type: ignore[arg-type]
                sources=tuple(sorted(named["sources"])),
                files=len(named["files"]),
                named_in=tuple(sorted(named["files"]))[:5],
                techniques=tuple(technique_ids(named["tags"])),
                detected_by=tuple(s for s in counted if verdicts[s] & SEEN),
                verdicts={s: ordered(verdicts[s]) for s in counted if verdicts[s]},  # type: ignore[misc]
            )
        )
    rows.sort(key=lambda r: (_platform_order(r.platform), -len(r.sources), -r.files, r.binary))
    summary = [_summary(p, [r for r in rows if r.platform == p], counted) for p in _platforms(rows)]
    kept: list[GapRow] = []
    for p in _platforms(rows):
        listed = [r for r in rows if r.platform == p and (every or not r.detected_by)]
        kept += listed[:limit] if limit is not None else listed
    return GapsReport(
        rule_sets=counted,
        attack_sources=tuple(sorted({s for named in attack.values() for s in named["sources"]})),
        summary=tuple(summary),
        rows=tuple(kept),
    )


def _test_platforms(reader: IndexReader, m: Mention) -> tuple[str, ...]:
    """Every platform an atomic test supports (its mention carries the first), "" for none of ours."""
    report = reader.state.files.get(f"{m.source}:{m.path}")
    test = next((t for t in (report.entry.get("tests", []) if report else []) if t.get("guid") == m.rule_id), {})
    found = tuple(p for p in PLATFORMS if p in test.get("platforms", ()))
    return found or (m.platform,)


def _named(attack: dict[tuple[str, str], dict[str, Any]], m: Mention, platform: str) -> None:
    named = attack.setdefault((m.binary, platform), {"sources": set(), "files": set(), "tags": set()})
    named["sources"].add(m.source)
    named["files"].add(f"{m.source}:{m.path}" + (f"#{m.rule_id}" if m.role == "tested_by" and m.rule_id else ""))
    named["tags"].update(m.tags)


def detection_sources(reader: IndexReader) -> set[str]:
    """The sources of the index whose files are detection rules (rule verdicts), read once per reader."""
    if "detection-sources" not in reader.cache:
        reader.cache["detection-sources"] = {r.source for r in reader.all_rules() if r.verdict in SIGMA_VERDICTS}
    return reader.cache["detection-sources"]


def _rule_sets(wanted: Iterable[str], available: set[str]) -> tuple[str, ...]:
    wanted = list(dict.fromkeys(wanted))
    for name in wanted:
        if name not in available:
            raise ValueError(
                f"{name!r} is not a detection source of the index (choose from {', '.join(sorted(available))})"
            )
    return tuple(wanted) if wanted else tuple(sorted(available))


def _platforms(rows: list[GapRow]) -> list[str]:
    return sorted({r.platform for r in rows}, key=_platform_order)


def _summary(platform: str, rows: list[GapRow], counted: tuple[str, ...]) -> GapSummary:
    return GapSummary(
        platform=platform,  # type: ignore[arg-type]
        binaries=len(rows),
        detected=sum(1 for r in rows if r.detected_by),
        gaps=sum(1 for r in rows if not r.detected_by),
        by_rule_set={s: sum(1 for r in rows if s in r.detected_by) for s in counted},
        only={s: sum(1 for r in rows if r.detected_by == (s,)) for s in counted},
        by_all=sum(1 for r in rows if counted and len(r.detected_by) == len(counted)),
    )


def gaps_markdown(report: GapsReport) -> str:
    """The gaps as a Markdown report: the counts per platform and rule set, a ranked table per platform."""
    from .export import md_code, md_text

    sets = ", ".join(report.rule_sets) or "none"
    out = [
        "# Binaries attackers use that no rule detects",
        "",
        f"Named by {', '.join(report.attack_sources)} (LOLBAS entries, atomic tests, GTFOBins, LOOBins, "
        f"HijackLibs hosts); detected: a rule of {sets} (not deprecated or unsupported) detects it running "
        "or invoked by another process (verdict `runs` or `invoked`) on its platform.",
        "",
        "Platform | Binaries | Detected | Gaps | " + " | ".join(f"By {s} | By {s} only" for s in report.rule_sets),
        " | ".join(["--"] * (4 + 2 * len(report.rule_sets))),
    ]
    for s in report.summary:
        cells = [s.platform or "(none)", str(s.binaries), str(s.detected), str(s.gaps)]
        cells += [c for r in report.rule_sets for c in (str(s.by_rule_set[r]), str(s.only[r]))]
        out.append(" | ".join(cells))
    for s in report.summary:
        rows = [r for r in report.rows if r.platform == s.platform]
        if not rows:
            continue
        out += [
            "",
            f"## {s.platform or '(no platform)'}",
            "",
            "Rank | Binary | Sources | Files | Rules' verdicts | Techniques",
        ]
        out.append("-- | -- | -- | -- | -- | --")
        for rank, r in enumerate(rows, 1):
            why = "; ".join(f"{k}: {', '.join(v)}" for k, v in r.verdicts.items()) or "named by no rule"
            out.append(
                " | ".join(
                    [
                        str(rank),
                        md_code(r.binary),
                        md_text(", ".join(r.sources)),
                        str(r.files),
                        md_text(why),
                        md_text(", ".join(r.techniques)),
                    ]
                )
            )
    return "\n".join(out) + "\n"


# --- coverage per rule set --------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryTiers(Record):
    """A LOLBAS entry's coverage tier by each rule set (the tiers of `indexer coverage`)."""

    entry: str
    path: str
    tiers: dict[str, Tier]


@dataclass(frozen=True)
class RuleSetCoverage(Record):
    """LOLBAS coverage by each detection source alone and together: entries per tier per rule
    set; entries detected running (tier running) or at all (running or other) by one rule set
    only, by every one, by none."""

    rule_sets: tuple[str, ...]
    tiers: dict[str, dict[Tier, int]]
    running_only: dict[str, int]
    running_by_all: int
    running_by_none: int
    detected_only: dict[str, int]
    detected_by_all: int
    detected_by_none: int
    entries: tuple[EntryTiers, ...]


def rule_set_coverage(reader: IndexReader, include_retired: bool = False) -> RuleSetCoverage:
    """Each LOLBAS entry's tier (xref.tier_of) by each detection source's rules on its names."""
    from .xref import load, tier_of

    counted = tuple(sorted(detection_sources(reader)))
    entries = []
    for row in load(reader).coverage["entries"]:
        rules = reader.rules(row.names)
        tiers = {s: tier_of([r for r in rules if r.source == s], include_retired) for s in counted}
        entries.append(EntryTiers(row.entry, row.path, tiers))  # type: ignore[arg-type]

    def by(tiers: tuple[str, ...], how: str) -> Any:
        hits = [{s for s, t in e.tiers.items() if t in tiers} for e in entries]
        if how == "only":
            return {s: sum(1 for h in hits if h == {s}) for s in counted}
        if how == "all":
            return sum(1 for h in hits if counted and len(h) == len(counted))
        return sum(1 for h in hits if not h)

    running, detected = ("running",), ("running", "other")
    return RuleSetCoverage(
        rule_sets=counted,
        tiers={s: {t: sum(1 for e in entries if e.tiers[s] == t) for t in TIERS} for s in counted},  # type: ignore[misc]
        running_only=by(running, "only"),
        running_by_all=by(running, "all"),
        running_by_none=by(running, "none"),
        detected_only=by(detected, "only"),
        detected_by_all=by(detected, "all"),
        detected_by_none=by(detected, "none"),
        entries=tuple(entries),
    )


def coverage(reader: IndexReader, include_retired: bool = False) -> dict[str, Any]:
    """`indexer coverage`: xref.coverage (Sigma's tiers per LOLBAS entry) and `rule_sets`, the
    tiers by each detection source alone and together."""
    from .xref import coverage as sigma_coverage

    data = sigma_coverage(reader, include_retired)
    data["rule_sets"] = rule_set_coverage(reader, include_retired).to_dict() if data["entries"] else None
    return data


# --- tests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedRule(Record):
    """A detection rule that should fire when a test runs: it detects one of the test's binaries
    (verdict `runs`, `parent`, `target`, `loads` or `invoked`) and shares one of its techniques."""

    source: str
    path: str
    rule_id: str
    title: str
    level: str
    binary: str
    verdict: Verdict
    techniques: tuple[str, ...]  # the techniques it shares with the test
    url: str


@dataclass(frozen=True)
class ProvenRule(Record):
    """A detection that says it was validated with the test (Splunk's `tags.atomic_guid`)."""

    source: str
    path: str
    rule_id: str
    title: str
    url: str


@dataclass(frozen=True)
class AtomicTest(Record):
    """One atomic test naming the binary: its binaries, the rules that should fire, and the
    detections proven against it."""

    guid: str
    name: str
    path: str
    technique: str
    platforms: tuple[str, ...]
    executor: str
    url: str
    binaries: tuple[str, ...]  # every binary its command, cleanup or steps name
    expected: tuple[ExpectedRule, ...]
    proven: tuple[ProvenRule, ...]


@dataclass(frozen=True)
class TestsReport(Record):
    """`indexer tests NAME`."""

    query: str
    binaries: tuple[str, ...]
    tests: tuple[AtomicTest, ...]
    suggestions: tuple[str, ...]


TestsReport.__test__ = False  # type: ignore[attr-defined]  # not a pytest class, whatever its name
AtomicTest.__test__ = False  # type: ignore[attr-defined]


def tests(reader: IndexReader, text: str, *, rule_sets: Iterable[str] = ()) -> TestsReport:
    """The atomic tests that run or name what `text` names (as `search` reads it), each with
    the detection rules that detect one of its binaries and share a technique with it (retired
    rules left out), and the detections that name the test's guid (`atomic:<guid>` tags).

    rule_sets: only these detection sources' rules (default: every one).
    """
    wanted = set(_rule_sets(rule_sets, detection_sources(reader)))
    query = parse_query(text)
    binaries = reader.binaries()
    names = resolve(query, binaries)
    test_mentions = reader.search(names, role=["tested_by"])
    guids = list(dict.fromkeys(m.rule_id for m in test_mentions if m.rule_id))
    files: dict[tuple[str, str], list[Mention]] = {}
    for m in test_mentions:
        if (m.source, m.path) not in files:
            files[(m.source, m.path)] = reader.file_mentions(m.source, m.path)
    own = {guid: [m for found in files.values() for m in found if m.rule_id == guid] for guid in guids}
    named = sorted({m.binary for found in own.values() for m in found if m.role == "tested_by"})
    rules = _detecting_rules(reader, named, wanted)
    out = []
    for guid in guids:
        first = next(m for m in test_mentions if m.rule_id == guid)
        report = reader.state.files.get(f"{first.source}:{first.path}")
        meta = next((t for t in (report.entry.get("tests", []) if report else []) if t.get("guid") == guid), {})
        test_binaries = tuple(sorted({m.binary for m in own[guid] if m.role == "tested_by"}))
        techniques = set(technique_ids(first.tags))
        expected: dict[tuple[str, str], ExpectedRule] = {}
        for rule, tags in rules:
            shared = tuple(sorted(techniques & tags))
            if rule.binary in test_binaries and shared and (rule.source, rule.path) not in expected:
                expected[(rule.source, rule.path)] = ExpectedRule(
                    rule.source,
                    rule.path,
                    rule.rule_id,
                    rule.title,
                    rule.level,
                    rule.binary,
                    rule.verdict,
                    shared,
                    _file_url(reader, rule.source, rule.path),
                )
        out.append(
            AtomicTest(
                guid=guid,
                name=first.title,
                path=first.path,
                technique=", ".join(sorted(techniques)),
                platforms=tuple(meta.get("platforms", []) or ([first.platform] if first.platform else [])),
                executor=first.detection,
                url=f"{first.url.split('#', 1)[0]}#L{min(m.line for m in own[guid])}",
                binaries=test_binaries,
                expected=tuple(expected.values()),
                proven=tuple(_proven(reader, guid, wanted)),
            )
        )
    return TestsReport(
        query=text,
        binaries=tuple(names),
        tests=tuple(out),
        suggestions=tuple(suggest(query, binaries)) if not names else (),
    )


def _detecting_rules(reader: IndexReader, binaries: list[str], wanted: set[str]) -> list[tuple[Any, set[str]]]:
    """The rules (not retired) that detect any of `binaries`, strongest first, each with the
    ATT&CK techniques of its tags."""
    tags: dict[tuple[str, str], set[str]] = {}
    for m in reader.search(binaries):
        tags.setdefault((m.source, m.path), set()).update(technique_ids(m.tags))
    return [
        (rule, tags.get((rule.source, rule.path), set()))
        for rule in reader.rules(binaries)
        if rule.detects and not is_retired(rule.path, rule.status) and rule.source in wanted
    ]


def _file_url(reader: IndexReader, source: str, path: str) -> str:
    info = reader.sources.get(source, {})
    web, commit = info.get("web_url", ""), info.get("commit", "")
    return f"{web}/blob/{commit}/{quote(path)}" if web else ""


def _proven(reader: IndexReader, guid: str, wanted: set[str]) -> list[ProvenRule]:
    """Detections whose mentions carry the tag `atomic:<guid>` (Splunk's tags.atomic_guid)."""
    index = reader.cache.get("atomic-guids")
    if index is None:
        index = defaultdict(dict)
        for m in reader.all_mentions():
            for tag in m.tags:
                if tag.startswith("atomic:") and mention_verdict(m.__dict__) in SIGMA_VERDICTS:
                    index[tag[len("atomic:") :].lower()].setdefault(
                        (m.source, m.path), ProvenRule(m.source, m.path, m.rule_id, m.title, m.url.split("#", 1)[0])
                    )
        reader.cache["atomic-guids"] = index
    return [r for r in index.get(guid.lower(), {}).values() if r.source in wanted]
