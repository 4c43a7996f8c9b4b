"""The API's response models, derived from the records (`records.py`, `model.Mention`,
`verdicts.RuleVerdict`, `joins`) by `typed.model_of`, so that the OpenAPI description and the
answers cannot drift apart."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..joins import GapsReport, RuleSetCoverage, TestsReport
from ..model import PLATFORMS, Context
from ..records import BinaryRecord, CoverageRow, CoverageSummary, Link, LinkStatus, MentionRow, RuleRecord, Tier
from ..typed import STRICT, Role, Source, api_type, model_of
from ..verdicts import RuleVerdict, Verdict

__all__ = ["Context", "LinkStatus", "Tier", "Verdict", "Role", "Source", "api_type", "model_of"]
PlatformName = Literal[PLATFORMS]  # type: ignore[valid-type]

MentionModel = model_of(MentionRow)
VerdictModel = model_of(RuleVerdict)
LinkModel = model_of(Link)
CoverageRowModel = model_of(CoverageRow)
CoverageSummaryModel = model_of(CoverageSummary)
RuleSetCoverageModel = model_of(RuleSetCoverage)


class Page(BaseModel):
    """Where this answer's list starts, how long it may be, how many items there are in all."""

    model_config = STRICT
    offset: int
    limit: int
    total: int


class AsOf(BaseModel):
    """With ?at=DATE: the date asked and each source's commit then (read from the history)."""

    model_config = STRICT
    at: str
    sources: dict[str, dict[str, str]]


class SearchAnswer(BaseModel):
    """What `indexer search --json` prints, one page of its rule files."""

    model_config = STRICT
    query: str
    binaries: list[str]
    aliases: dict[str, str]
    counterparts: dict[str, list[str]]
    platforms: dict[str, list[str]]
    mentions: list[MentionModel]  # type: ignore[valid-type]
    rules: list[VerdictModel]  # type: ignore[valid-type]
    suggestions: list[str]
    lolbas_declared_detections: list[LinkModel]  # type: ignore[valid-type]
    page: Page
    as_of: Optional[AsOf] = None


class BinaryAnswer(model_of(BinaryRecord, "BinaryAnswer", page=Page)):  # type: ignore[misc]
    as_of: Optional[AsOf] = None


BinaryAnswer.__doc__ = "What `indexer show NAME --json` prints; `mentions` holds one page of the rule files."
RuleAnswer = model_of(RuleRecord, "RuleAnswer", page=Page)


class GapsAnswer(model_of(GapsReport, "GapsAnswer", page=Page)):  # type: ignore[misc]
    as_of: Optional[AsOf] = None


GapsAnswer.__doc__ = "What `indexer gaps --json` prints; `rows` is one page of them."
TestsAnswer = model_of(TestsReport, "TestsAnswer", page=Page)
TestsAnswer.__doc__ = "What `indexer tests NAME --json` prints; `tests` is one page of them."
RuleAnswer.__doc__ = "What `indexer show RULE --json` prints; `binaries` and their `mentions` are one page."


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


class CoverageAnswer(BaseModel):
    """`indexer coverage --json`: one page of the entries, and the summary of all (none
    without an index of LOLBAS)."""

    model_config = STRICT
    entries: list[CoverageRowModel]  # type: ignore[valid-type]
    summary: Optional[CoverageSummaryModel]  # type: ignore[valid-type]
    rule_sets: Optional[RuleSetCoverageModel]  # type: ignore[valid-type]
    page: Page
    as_of: Optional[AsOf] = None


class LinksAnswer(BaseModel):
    """`indexer links --json`, one page."""

    model_config = STRICT
    links: list[LinkModel]  # type: ignore[valid-type]
    page: Page
    as_of: Optional[AsOf] = None


class ErrorAnswer(BaseModel):
    """Bad input (4xx), nothing found (404, with close names), no index yet (503)."""

    model_config = ConfigDict(extra="allow", strict=True)
    error: str
    suggestions: list[str] = []
