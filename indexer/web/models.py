"""The API's response models, derived from the records (`model.Mention`, `model.FileReport`)
so that the OpenAPI description and the answers cannot drift apart: every field required,
roles, sources and contexts as enums, item types on every list, unknown keys refused."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, create_model

from ..model import ROLES, FileReport, Mention
from ..sources import SOURCES
from ..verdicts import VERDICTS, RuleVerdict
from ..xref import TIERS

Role = Literal[ROLES]                         # type: ignore[valid-type]
Source = Literal[tuple(SOURCES)]              # type: ignore[valid-type]
Context = Literal["selection", "filter", ""]
LinkStatus = Literal["ok", "moved", "deprecated", "deleted", "unresolvable"]
Verdict = Literal[VERDICTS]                   # type: ignore[valid-type]
Tier = Literal[TIERS]                         # type: ignore[valid-type]
STRICT = ConfigDict(extra="forbid", strict=True)

# A record field whose values are one of a few: its enum in the schema.
_ENUMS: dict[str, Any] = {"role": Role, "source": Source, "context": Context,
                          "status": Literal["indexed", "error", "skipped"]}


def _api_type(hint: Any) -> Any:
    """tuple[str, ...] -> list[str] (JSON has no tuples); other types as they are."""
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]  # type: ignore[misc]
    return hint


def from_record(record: type, name: str, *, enums: dict[str, Any] | None = None,
                only: tuple[str, ...] | None = None, doc: str = "", **computed: Any) -> type[BaseModel]:
    """A strict pydantic model with the fields of a dataclass record, all required (and the
    `computed` ones its to_dict adds)."""
    hints = typing.get_type_hints(record)
    fields: dict[str, Any] = {k: (v, ...) for k, v in computed.items()}
    for f in dataclasses.fields(record):
        if only is not None and f.name not in only:
            continue
        fields[f.name] = ((enums or {}).get(f.name) or _api_type(hints[f.name]), ...)
    return create_model(name, __config__=STRICT, __doc__=doc or record.__doc__, **fields)


MentionModel = from_record(Mention, "Mention", enums={k: _ENUMS[k] for k in ("role", "source", "context")},
                           alias_of=str)
VerdictModel = from_record(RuleVerdict, "RuleVerdict", enums={"source": Source, "verdict": Verdict,
                                                               "verdicts": list[Verdict]},  # type: ignore[valid-type]
                           retired=bool)


class Page(BaseModel):
    """Where this answer's list starts, how long it may be, how many items there are in all."""

    model_config = STRICT
    offset: int
    limit: int
    total: int


class Link(BaseModel):
    """A LOLBAS entry's link to a Sigma rule, resolved through Sigma's history."""

    model_config = STRICT
    lolbas_path: str
    entry: str
    line: int
    url: str
    status: LinkStatus
    reason: Optional[str] = None
    current_path: Optional[str] = None
    linked_ref: Optional[str] = None
    linked_path: Optional[str] = None
    rule_id: Optional[str] = None
    basis: Optional[str] = None


class Reference(BaseModel):
    """A Sigma rule's reference to a LOLBAS page, resolved to the entry it names."""

    model_config = STRICT
    sigma_path: str
    rule_ids: list[str]
    line: int
    url: str
    status: Literal["ok", "unknown"]
    entry_path: Optional[str] = None
    reason: Optional[str] = None


class SearchAnswer(BaseModel):
    """What `indexer search --json` prints, one page of its rule files."""

    model_config = STRICT
    query: str
    binaries: list[str]
    aliases: dict[str, str]
    mentions: list[MentionModel]  # type: ignore[valid-type]
    rules: list[VerdictModel]  # type: ignore[valid-type]
    suggestions: list[str]
    lolbas_declared_detections: list[Link]
    page: Page


class BinaryAnswer(BaseModel):
    """What `indexer show NAME --json` prints; `mentions` holds one page of the rule files."""

    model_config = STRICT
    kind: Literal["binary"]
    query: str
    binaries: list[str]
    sigma_rules: list[str]
    running_rules: list[str]
    detecting_rules: list[str]
    retired_rules: list[str]
    lolbas_entries: list[str]
    roles: list[Role]  # type: ignore[valid-type]
    mentions: list[MentionModel]  # type: ignore[valid-type]
    rules: list[VerdictModel]  # type: ignore[valid-type]
    lolbas_declared_detections: list[Link]
    page: Page


_Report = from_record(FileReport, "_Report", enums={"status": _ENUMS["status"], "source": Source},
                      only=("source", "path", "status", "reason", "warnings", "rule_ids"))


class DetectionItem(BaseModel):
    """A detection item of a rule that names an executable; `context` filter: used under not."""

    model_config = STRICT
    name: str
    context: Context
    binaries: list[str]


class RuleAnswer(_Report):  # type: ignore[valid-type,misc]
    """What `indexer show RULE --json` prints; `binaries` and their `mentions` are one page."""

    kind: Literal["rule"]
    title: str
    level: str
    tags: list[str]
    logsource: str
    url: str
    binaries: list[str]
    verdicts: list[VerdictModel]  # type: ignore[valid-type]
    detection_items: list[DetectionItem]
    mentions: list[MentionModel]  # type: ignore[valid-type]
    former_paths: list[dict[str, str]]
    linked_from_lolbas: list[Link]
    links: list[Link | Reference]
    page: Page


class SourceStatus(BaseModel):
    model_config = STRICT
    commit: str
    branch: str
    web_url: str
    license: str
    license_path: str
    committed: Any


class StatusAnswer(BaseModel):
    """Commits indexed per source, the generation, when it was built, counts."""

    model_config = STRICT
    generation: str
    built_at: float
    built_at_iso: str
    sources: dict[str, SourceStatus]
    counts: dict[str, Any]


class SuggestAnswer(BaseModel):
    model_config = STRICT
    query: str
    suggestions: list[str]


class CoverageRule(BaseModel):
    """A Sigma rule's strongest verdict on a LOLBAS entry's names."""

    model_config = STRICT
    path: str
    binary: str
    verdict: Verdict  # type: ignore[valid-type]
    verdicts: list[Verdict]  # type: ignore[valid-type]
    rule_id: str
    title: str
    level: str
    status: str
    retired: bool


class CoverageRow(BaseModel):
    """One LOLBAS entry: its tier, the Sigma rules by verdict, the rules LOLBAS links."""

    model_config = STRICT
    entry: str
    path: str
    names: list[str]
    categories: list[str]
    mitre: list[str]
    tier: Tier
    verdicts: list[Verdict]  # type: ignore[valid-type]
    running_rules: list[str]
    other_rules: list[str]
    detecting_rules: list[str]
    mentioning_rules: list[str]
    retired_rules: list[str]
    rules: list[CoverageRule]
    linked: list[dict[str, Optional[str]]]
    linked_and_detecting: list[str]
    linked_not_detecting: list[str]
    detecting_not_linked: int
    citing_rules: list[str]
    agree: bool


class Tally(BaseModel):
    """Entries of one category or technique, by tier."""

    model_config = STRICT
    entries: int
    detected: int
    undetected: int
    running: int
    other: int
    mentioned: int
    none: int


class CoverageSummary(BaseModel):
    model_config = STRICT
    entries: int
    include_retired: bool
    tiers: dict[Tier, int]
    detected: int
    undetected: int
    entries_by_tier: dict[Tier, list[str]]
    links_disagree: int
    by_category: dict[str, Tally]
    by_mitre: dict[str, Tally]


class CoverageAnswer(BaseModel):
    """`indexer coverage --json`: one page of the entries, and the summary of all (none
    without an index of LOLBAS)."""

    model_config = STRICT
    entries: list[CoverageRow]
    summary: Optional[CoverageSummary]
    page: Page


class LinksAnswer(BaseModel):
    """`indexer links --json`, one page."""

    model_config = STRICT
    links: list[Link]
    page: Page


class ErrorAnswer(BaseModel):
    """Bad input (4xx), nothing found (404, with close names), no index yet (503)."""

    model_config = ConfigDict(extra="allow", strict=True)
    error: str
    suggestions: list[str] = []
