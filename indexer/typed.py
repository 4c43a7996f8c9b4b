"""Pydantic models derived from the records, shared by the web API (`web/models.py`) and the
MCP tools (`mcp_server.py`): every field required (but a record's optional ones, None when left
out), roles, sources, verdicts, statuses and tiers as enums, item types on every list, unknown
keys refused.

Pydantic takes stdlib dataclasses as field types, but it would then validate answers into
dataclass instances and describe tuples as tuples; a model built from each record's fields
(`model_of`) keeps the answers as the dicts `to_dict` gives, JSON arrays as lists.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

from .model import ROLES, Mention
from .records import MentionRow
from .shape import Record
from .sources import SOURCES

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
