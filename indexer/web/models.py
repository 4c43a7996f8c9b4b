"""The API's response models, derived from the records (`records.py`, `model.Mention`,
`verdicts.RuleVerdict`) so that the OpenAPI description and the answers cannot drift apart:
every field required (but a record's optional ones, None when left out), roles, verdicts,
statuses and tiers as enums, item types on every list, unknown keys refused.

Pydantic takes stdlib dataclasses as field types, but it would then validate answers into
dataclass instances and describe tuples as tuples; a model built from each record's fields
(`model_of`) keeps the answers as the dicts `to_dict` gives, JSON arrays as lists.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, create_model

from ..model import ROLES, Context, Mention
from ..records import BinaryRecord, CoverageRow, CoverageSummary, Link, LinkStatus, MentionRow, RuleRecord, Tier
from ..shape import Record
from ..sources import SOURCES
from ..verdicts import RuleVerdict, Verdict

__all__ = ["Context", "LinkStatus", "Tier", "Verdict", "Role"]
Role = Literal[ROLES]  # type: ignore[valid-type]
Source = Literal[tuple(SOURCES)]  # type: ignore[valid-type]
STRICT = ConfigDict(extra="forbid", strict=True)
_FIELD_ENUMS: dict[str, Any] = {"source": Source}  # a record's `source` is any registered source's name
_MODELS: dict[type, type[BaseModel]] = {}


def api_type(hint: Any) -> Any:
    """A record field's type as the API describes it: records as their models, tuples as lists."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Record):
        return model_of(hint)
    if origin in (tuple, list):
        return list[api_type(args[0])]  # type: ignore[misc]
    if origin is dict:
        return dict[api_type(args[0]), api_type(args[1])]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(api_type(a) for a in args)]
    return hint


def model_of(record: type, name: str = "", **extra: Any) -> type[BaseModel]:
    """A strict pydantic model with the fields of a dataclass record, each required unless its
    default is None, and the keys its to_dict adds (`COMPUTED`) and `extra` ones (name -> type)."""
    if not name and not extra and record in _MODELS:
        return _MODELS[record]
    if record is MentionRow:  # a mention's fields and alias_of, flat
        return model_of(Mention, "Mention", alias_of=str)
    hints = typing.get_type_hints(record)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        kind = _FIELD_ENUMS.get(f.name) if hints[f.name] is str else None
        fields[f.name] = (kind or api_type(hints[f.name]), None if f.default is None else ...)
    fields.update({k: (v, ...) for k, v in {**getattr(record, "COMPUTED", {}), **extra}.items()})
    model = create_model(name or record.__name__, __config__=STRICT, __doc__=record.__doc__, **fields)
    if not name and not extra:
        _MODELS[record] = model
    return model


MentionModel = model_of(MentionRow)
VerdictModel = model_of(RuleVerdict)
LinkModel = model_of(Link)
CoverageRowModel = model_of(CoverageRow)
CoverageSummaryModel = model_of(CoverageSummary)


class Page(BaseModel):
    """Where this answer's list starts, how long it may be, how many items there are in all."""

    model_config = STRICT
    offset: int
    limit: int
    total: int


class SearchAnswer(BaseModel):
    """What `indexer search --json` prints, one page of its rule files."""

    model_config = STRICT
    query: str
    binaries: list[str]
    aliases: dict[str, str]
    mentions: list[MentionModel]  # type: ignore[valid-type]
    rules: list[VerdictModel]  # type: ignore[valid-type]
    suggestions: list[str]
    lolbas_declared_detections: list[LinkModel]  # type: ignore[valid-type]
    page: Page


BinaryAnswer = model_of(BinaryRecord, "BinaryAnswer", page=Page)
BinaryAnswer.__doc__ = "What `indexer show NAME --json` prints; `mentions` holds one page of the rule files."
RuleAnswer = model_of(RuleRecord, "RuleAnswer", page=Page)
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
    page: Page


class LinksAnswer(BaseModel):
    """`indexer links --json`, one page."""

    model_config = STRICT
    links: list[LinkModel]  # type: ignore[valid-type]
    page: Page


class ErrorAnswer(BaseModel):
    """Bad input (4xx), nothing found (404, with close names), no index yet (503)."""

    model_config = ConfigDict(extra="allow", strict=True)
    error: str
    suggestions: list[str] = []
