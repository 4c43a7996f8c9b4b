"""The records the query layer answers with: links, coverage, `show` and `stats` results.

Each is a frozen dataclass with `to_dict`/`from_dict` (shape.Record): the CLI's JSON, the
API's schema (web/models.py) and the exports' columns are derived from their fields. What the
index stores of them (xref.json, declared.json) is read back through `from_dict`, which
refuses a damaged value. Standard library only: the search path uses these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Literal, get_args

from .model import Context, FileReport, FileStatus, Mention, Platform, Role
from .shape import Record
from .verdicts import RuleVerdict, Verdict

LinkStatus = Literal["ok", "moved", "deprecated", "deleted", "unresolvable"]
LINK_STATUSES: tuple[str, ...] = get_args(LinkStatus)
ReferenceStatus = Literal["ok", "unknown", "unresolvable"]
# Coverage tiers of a LOLBAS entry, best first: a rule that runs it; one that sees it as parent,
# target, loaded module or in a command line; rules that only name it; nothing.
Tier = Literal["running", "other", "mentioned", "none"]
TIERS: tuple[str, ...] = get_args(Tier)
# What a source says of a binary, as `show NAME` groups it: its rules detect it (a detection
# source: Source.detects, whose files get the rule verdicts runs ... mentioned), it documents
# its abuse (LOLBAS, GTFOBins, LOOBins), a test runs it (atomic), it is a known vulnerable or
# malicious driver (LOLDrivers), it side-loads or is side-loaded (HijackLibs).
Kind = Literal["detection", "abuse", "tests", "drivers", "sideloading"]
KINDS: tuple[str, ...] = get_args(Kind)
_TECHNIQUE = re.compile(r"^(?:attack\.)?(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


def technique_ids(tags: Iterable[str]) -> list[str]:
    """ATT&CK technique ids in one form: `attack.t1218.011` and `T1218.011` -> `T1218.011`
    (tactics, groups and other tags left out)."""
    found = (_TECHNIQUE.match(tag.strip()) for tag in tags)
    return sorted({m.group(1).upper() for m in found if m})


@dataclass(frozen=True)
class Link(Record):
    """A LOLBAS entry's link to a Sigma, Elastic or Splunk rule, resolved through that rule set's
    history. The optional fields are left out of `to_dict` when None: which ones a link has
    depends on its status."""

    lolbas_path: str
    entry: str
    line: int
    url: str
    status: LinkStatus
    rule_set: str = "sigma"  # the source whose rule is linked: "sigma", "elastic", "splunk"
    reason: str | None = None  # why it is unresolvable or deleted
    current_path: str | None = None  # where the rule is at the tip (ok, moved, deprecated)
    linked_ref: str | None = None  # the branch or commit the URL names
    linked_path: str | None = None  # the path the URL names
    rule_id: str | None = None  # the id the linked file held
    basis: str | None = None  # what the id was read from


@dataclass(frozen=True)
class Reference(Record):
    """A Sigma rule's reference to a LOLBAS page, resolved to the entry it names."""

    sigma_path: str
    rule_ids: tuple[str, ...]
    line: int
    url: str
    status: ReferenceStatus
    entry_path: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class FormerPath(Record):
    """A path a rule file had before, and the commit that moved it."""

    path: str
    moved_in: str
    date: str


@dataclass(frozen=True)
class LinkState(Record):
    """A link as a coverage row shows it (every key present, None when not known)."""

    KEEP_NONE: ClassVar[bool] = True
    url: str
    status: LinkStatus
    current_path: str | None
    reason: str | None


@dataclass(frozen=True)
class CoverageRule(Record):
    """A Sigma rule's strongest verdict on a LOLBAS entry's names (a RuleVerdict without source)."""

    path: str
    binary: str
    verdict: Verdict
    verdicts: tuple[Verdict, ...]
    rule_id: str
    title: str
    level: str
    status: str
    retired: bool

    @classmethod
    def of(cls, rule: RuleVerdict) -> "CoverageRule":
        return cls(
            path=rule.path,
            binary=rule.binary,
            verdict=rule.verdict,
            verdicts=rule.verdicts,
            rule_id=rule.rule_id,
            title=rule.title,
            level=rule.level,
            status=rule.status,
            retired=rule.retired,
        )


@dataclass(frozen=True)
class CoverageEntry(Record):
    """A LOLBAS entry as xref.json stores it: names, the Sigma rules naming them, its links."""

    entry: str
    path: str
    names: tuple[str, ...]
    categories: tuple[str, ...]
    mitre: tuple[str, ...]
    rules: tuple[CoverageRule, ...]
    linked: tuple[LinkState, ...]
    citing_rules: tuple[str, ...]


@dataclass(frozen=True)
class CoverageRow(Record):
    """One LOLBAS entry: its tier, the Sigma rules by verdict, the rules LOLBAS links."""

    entry: str
    path: str
    names: tuple[str, ...]
    categories: tuple[str, ...]
    mitre: tuple[str, ...]
    tier: Tier
    verdicts: tuple[Verdict, ...]
    running_rules: tuple[str, ...]
    other_rules: tuple[str, ...]
    detecting_rules: tuple[str, ...]
    mentioning_rules: tuple[str, ...]
    retired_rules: tuple[str, ...]
    rules: tuple[CoverageRule, ...]
    linked: tuple[LinkState, ...]
    linked_and_detecting: tuple[str, ...]
    linked_not_detecting: tuple[str, ...]
    detecting_not_linked: int
    citing_rules: tuple[str, ...]
    agree: bool


@dataclass(frozen=True)
class Tally(Record):
    """Entries of one category or technique, by tier."""

    entries: int = 0
    detected: int = 0
    undetected: int = 0
    running: int = 0
    other: int = 0
    mentioned: int = 0
    none: int = 0


@dataclass(frozen=True)
class CoverageSummary(Record):
    """Coverage figures: entries per tier, category and ATT&CK technique."""

    entries: int
    include_retired: bool
    tiers: dict[Tier, int]
    detected: int
    undetected: int
    entries_by_tier: dict[Tier, tuple[str, ...]]
    links_disagree: int
    by_category: dict[str, Tally]
    by_mitre: dict[str, Tally]


@dataclass(frozen=True)
class XrefData(Record):
    """What xref.json holds: links, references, coverage entries, former paths."""

    links: tuple[Link, ...]
    references: tuple[Reference, ...]
    coverage: dict[str, tuple[CoverageEntry, ...]]  # {"entries": [...]}
    former_paths: dict[str, tuple[FormerPath, ...]]


@dataclass(frozen=True)
class MentionRow(Record):
    """A mention as answers carry it: its fields and `alias_of`, the name searched for when
    the mention's binary is one of its aliases ("" otherwise)."""

    mention: Mention
    alias_of: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.mention.row(self.alias_of)

    @classmethod
    def from_dict(cls, data: Any) -> "MentionRow":
        alias_of = data.get("alias_of", "") if isinstance(data, dict) else ""
        if not isinstance(alias_of, str):
            raise ValueError("not a MentionRow: alias_of: not a string")
        return cls(Mention.from_dict(data), alias_of)


@dataclass(frozen=True)
class DetectionItem(Record):
    """A detection item of a rule that names an executable; `context` filter: used under not."""

    name: str
    context: Context
    binaries: tuple[str, ...]


@dataclass(frozen=True)
class RuleRecord(Record):
    """One rule file as `show RULE` answers: its report, metadata, verdicts, detection items,
    mentions and cross-references."""

    kind: Literal["rule"]
    source: str
    path: str
    status: FileStatus
    reason: str
    warnings: tuple[str, ...]
    rule_ids: tuple[str, ...]
    title: str
    level: str
    tags: tuple[str, ...]
    logsource: str
    url: str
    binaries: tuple[str, ...]
    verdicts: tuple[RuleVerdict, ...]
    detection_items: tuple[DetectionItem, ...]
    mentions: tuple[MentionRow, ...]
    former_paths: tuple[FormerPath, ...]
    linked_from_lolbas: tuple[Link, ...]
    links: tuple[Link | Reference, ...]  # a LOLBAS entry's links, a Sigma rule's references

    @classmethod
    def report_fields(cls) -> tuple[str, ...]:
        """The fields that come from the file's report."""
        return tuple(name for name in cls.columns() if name in FileReport.columns())


@dataclass(frozen=True)
class RuleSet(Record):
    """One detection source's rule files naming a binary: strongest first, retired last."""

    source: str
    rules: tuple[RuleVerdict, ...]
    running: int  # not retired, verdict runs
    detecting: int  # not retired, a detecting verdict (runs, parent, target, loads, invoked)
    retired: int  # deprecated or unsupported


@dataclass(frozen=True)
class AtlasItem(Record):
    """One entry, test, driver or library of a source that is not a detection, naming a binary:
    a LOLBAS, GTFOBins or LOOBins entry (abuse), an atomic test (tests: `id` its guid), a
    LOLDrivers driver (drivers: with the samples' hashes), a HijackLibs DLL (side-loading: the
    DLL's `hosts`, or the `dlls` an executable side-loads)."""

    kind: Kind
    source: str
    path: str
    binary: str
    id: str  # an atomic test's guid, a LOLDrivers entry's id ("" when the file has none)
    title: str  # the test's name, the entry's name, the DLL a host side-loads
    url: str  # the file at the indexed commit, anchored at its first line naming the binary
    platform: Platform
    roles: tuple[Role, ...]
    lines: tuple[int, ...]
    techniques: tuple[str, ...]  # ATT&CK ids (T1218.011)
    functions: tuple[str, ...]  # LOLBAS categories, GTFOBins functions, LOOBins tactics, driver category
    executor: str  # an atomic test's (command_prompt, powershell, sh, bash, manual)
    hashes: tuple[str, ...]  # a driver's samples naming the binary: md5:..., sha1:..., sha256:...
    hosts: tuple[str, ...]  # a DLL's: the executables that side-load it
    dlls: tuple[str, ...]  # an executable's: the DLLs it side-loads


@dataclass(frozen=True)
class BinarySections(Record):
    """`show NAME` grouped by what each source says: detection rule sets, then abuse, tests,
    drivers and side-loading (each an AtlasItem list, in source and path order)."""

    detection: tuple[RuleSet, ...]
    abuse: tuple[AtlasItem, ...]
    tests: tuple[AtlasItem, ...]
    drivers: tuple[AtlasItem, ...]
    sideloading: tuple[AtlasItem, ...]


@dataclass(frozen=True)
class BinaryRecord(Record):
    """One binary (or the names a query resolved to) as `show NAME` answers."""

    kind: Literal["binary"]
    query: str
    binaries: tuple[str, ...]
    rules: tuple[RuleVerdict, ...]
    sigma_rules: tuple[str, ...]
    running_rules: tuple[str, ...]
    detecting_rules: tuple[str, ...]
    retired_rules: tuple[str, ...]
    lolbas_entries: tuple[str, ...]
    roles: tuple[Role, ...]
    mentions: tuple[MentionRow, ...]
    lolbas_declared_detections: tuple[Link, ...]
    sections: BinarySections
    counterparts: tuple[str, ...]  # the same program on another platform: curl.exe for curl, and back


@dataclass(frozen=True)
class FileCounts(Record):
    """Files of one source by status."""

    seen: int = 0
    indexed: int = 0
    error: int = 0
    skipped: int = 0
    with_warnings: int = 0


@dataclass(frozen=True)
class Problem(Record):
    """A file not indexed, or indexed with warnings."""

    source: str
    path: str
    status: FileStatus
    reason: str


@dataclass(frozen=True)
class IndexStats(Record):
    """`indexer stats`: files by status and source, failures with reasons, mentions."""

    generation: str
    sources: dict[str, dict[str, Any]]
    files: dict[str, FileCounts]
    rule_ids: int
    mentions: int
    mentions_by_source: dict[str, int]
    mentions_by_role: dict[str, int]
    inferred_mentions: int
    binaries: int
    problems: tuple[Problem, ...]
