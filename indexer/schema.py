"""JSON Schemas of the exports, derived from the records that describe them.

`json_schema(Record)` reads a dataclass's type hints: `str`, `int`, `bool`, `Literal` (an enum),
`tuple[X, ...]` and `list[X]` (arrays of X), `dict[str, X]` (objects of X), `X | None`, nested
dataclasses (under `$defs`), and `Annotated[Record, Without("a", "b")]` (the record less some
fields). Every field is required (`to_dict` writes them all) but one whose default is None
(a record may leave it out), and no other is allowed.

It imports nothing of the package: the records' modules use `Without`, and `indexer.schemas`
(the shipped schema files and `python -m indexer.schemas`, run by `make schemas`) lists the
exports' records and writes their schemas.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "urn:indexer:schema:"  # an id names the schema; the files ship in indexer/schemas/
_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    float: {"type": "number"},
    type(None): {"type": "null"},
    Any: {},
}
_JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}


@dataclasses.dataclass(frozen=True, init=False)
class Without:
    """`Annotated[Record, Without("binary", "path")]`: the schema of Record less these fields."""

    fields: tuple[str, ...]

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "fields", names)


def json_schema(record: type, schema_id: str, title: str, *, array: bool = False) -> dict[str, Any]:
    """A whole schema document: the record (or an array of it), its nested records under `$defs`."""
    defs: dict[str, Any] = {}
    root = _schema(record, defs)
    if array:
        root = {"type": "array", "items": root}
    return {
        "$schema": DIALECT,
        "$id": SCHEMA_BASE + schema_id,
        "title": title,
        **root,
        **({"$defs": dict(sorted(defs.items()))} if defs else {}),
    }


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one type (records go to `defs` and are referenced)."""
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Annotated:
        record, *extras = args
        without = next((e for e in extras if isinstance(e, Without)), None)
        return _record(record, defs, without.fields if without else ())
    if origin is Literal:
        kinds = {_JSON_TYPES[type(a)] for a in args}
        return {"type": kinds.pop(), "enum": list(args)} if len(kinds) == 1 else {"enum": list(args)}
    if origin in (tuple, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return {
                "type": "array",
                "prefixItems": [_schema(a, defs) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        return {"type": "array", "items": _schema(args[0], defs) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1], defs)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema(a, defs) for a in args]}
    if dataclasses.is_dataclass(tp):
        return _record(tp, defs, ())
    raise TypeError(f"no JSON Schema for {tp!r}")


def _record(record: type, defs: dict[str, Any], without: tuple[str, ...]) -> dict[str, Any]:
    name = record.__name__ + "".join("-" + f for f in without)
    if name not in defs:
        defs[name] = {}  # placeholder: a record may refer to itself
        hints = get_type_hints(record, include_extras=True)
        kept = [f for f in dataclasses.fields(record) if f.name not in without]
        defs[name] = {
            "type": "object",
            "description": (record.__doc__ or "").strip().split("\n\n", 1)[0].replace("\n", " "),
            "properties": {f.name: _schema(hints[f.name], defs) for f in kept},
            "required": [f.name for f in kept if f.default is not None],
            "additionalProperties": False,
        }
    return {"$ref": f"#/$defs/{name}"}
