"""How the index stores mentions and verdicts: rows that parser processes make and the index
writes, the stored fields of a mention, and the orders of a binary's document.

Shared by the parser processes (parsers.py) and the index (index.py); imports nothing heavy.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from .jsontext import dumps as encode
from .model import SAYS, Mention
from .verdicts import RuleVerdict

# Filled in at read time from the generation's sources: an unchanged file's mentions then
# point at the commit indexed now, whichever refresh last read the file.
PER_SOURCE = ("commit", "url", "license")
STORED = tuple(name for name in Mention.columns() if name not in PER_SOURCE)  # a mention's stored keys
STORED_KEYS = frozenset(STORED)
_SAYS = Mention.fields_of(SAYS)  # binary first

# A mention as the index stores it: (binary, its place in the binary's document, its JSON).
# Parser processes make rows, so the refresh only groups them into documents.
Row = tuple[str, tuple[Any, ...], str]


def stored(mention: Mention) -> dict[str, Any]:
    """The mention's stored fields (tuples are written as JSON lists)."""
    values = mention.__dict__
    return {name: values[name] for name in STORED}


def order(data: dict[str, Any]) -> tuple[Any, ...]:
    """A stored mention's place in its binary's document: Sigma first, then source, path, line."""
    return (
        data["source"] != "sigma",
        data["source"],
        data["path"],
        data["line"],
        data["role"],
        data["field"],
        data["detection"],
        data["context"],
    )


def mention_filter(
    *,
    source: str | None = None,
    role: Iterable[str] = (),
    field: str | None = None,
    context: str | None = None,
    platform: str | None = None,
    inferred: bool | None = None,
) -> Callable[[Mapping[str, Any]], bool]:
    """Search's filters (IndexReader.search, chronicle.AsOf.search) as one test of a mention's
    fields (a stored mention, or `Mention.__dict__`): its source, one of the roles, the field
    (case-insensitive), context, platform, inferred or not; None and () keep all."""
    roles = frozenset(role)
    wanted_field = field.lower() if field else None

    def keeps(data: Mapping[str, Any]) -> bool:
        return not (
            (source and data["source"] != source)
            or (roles and data["role"] not in roles)
            or (wanted_field and data["field"].lower() != wanted_field)
            or (context and data["context"] != context)
            or (platform and data["platform"] != platform)
            or (inferred is not None and data["inferred"] != inferred)
        )

    return keeps


def verdict_order(data: dict[str, Any]) -> tuple[Any, ...]:
    """A stored verdict's place in its binary's document: Sigma first, then source, path."""
    return (data["source"] != "sigma", data["source"], data["path"])


def mention_order(mention: Mention) -> tuple[Any, ...]:
    """The order of a search's mentions: Sigma first, then source, path, line, role, field."""
    return order(mention.__dict__) + (mention.binary,)


def file_order(mention: Mention) -> tuple[Any, ...]:
    """The order of one file's mentions: by line."""
    return (mention.line, mention.binary, mention.role, mention.field)


def mention_row(mention: Mention) -> Row:
    data = stored(mention)
    return mention.binary, order(data), encode(data)


def verdict_row(verdict: RuleVerdict) -> Row:
    """A rule file's verdict on a binary as the index stores it (in the binary's document)."""
    data = verdict.to_dict()
    return verdict.binary, verdict_order(data), encode(data)


def says(data: dict[str, Any]) -> tuple[Any, ...]:
    """What a stored mention says of its binary, not where (the change summary's key): the
    binary first, then the other fields of kind SAYS (snippet, field, modifiers, role, ...)."""
    return tuple(tuple(v) if type(v) is list else v for v in map(data.__getitem__, _SAYS))
