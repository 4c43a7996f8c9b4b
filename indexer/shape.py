"""Records as plain values and back: `to_dict`/`from_dict` derived from a dataclass's fields.

A record (a frozen dataclass deriving from `Record`) is written as a dict of JSON values
(tuples as lists, nested records as dicts, a field that is None left out) and read back by
`from_dict`, which checks every value against the field's type (str, int, float, bool, a
`Literal`, tuple/list/dict of those, a nested record, `X | None`, `Any`) and raises
ValueError naming the field on a damaged value. Unknown keys are ignored (a computed key such
as a verdict's `retired`, or a newer field); a missing field takes its default, or is an error.

Standard library only: the search path uses it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, ClassVar, Mapping, TypeVar

R = TypeVar("R", bound="Record")
_Convert = Callable[[Any], Any]
_MISSING = dataclasses.MISSING


class Record:
    """Base of the dataclass records: `to_dict`, `from_dict` and `columns()` from the fields."""

    KEEP_NONE: ClassVar[bool] = False  # True: to_dict writes the None fields too (as null)
    COMPUTED: ClassVar[dict[str, type]] = {}  # keys a subclass's to_dict adds (from properties), with their types
    # from_dict's reader and to_dict's writer, compiled on first use per class
    _read: ClassVar[Callable[[Mapping[str, Any]], Any] | None] = None
    _write: ClassVar[Callable[[Any], dict[str, Any]] | None] = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON values: tuples as lists, records as dicts, None fields left out."""
        cls = type(self)
        write = cls.__dict__.get("_write")
        if write is None:
            write = _compile_writer(cls)
            cls._write = write
        return write(self)  # type: ignore[no-any-return]

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The field names, in order: the columns of every table of these records."""
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record a dict holds; ValueError naming the class and field if it is not one."""
        read = cls.__dict__.get("_read")
        if read is None:
            read = _compile(cls)
            cls._read = read  # type: ignore[attr-defined]
        return read(data)


def plain(value: Any) -> Any:
    """A value as JSON holds it: records as dicts, tuples as lists, the same otherwise."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _compile_writer(cls: type) -> Callable[[Any], dict[str, Any]]:
    """to_dict for one record class: what `plain` does to each field, decided once from its type
    (xref.json's thousands of records: a third of the time of the loop over the fields)."""
    hints = typing.get_type_hints(cls)
    env: dict[str, Any] = {"plain": plain}
    lines = ["def to_dict(self):", " v = self.__dict__", " out = {}"]
    for f in dataclasses.fields(cls):
        key, how = repr(f.name), _written_as(hints[f.name])
        value = {"same": "x", "list": "list(x)", "records": "[i.to_dict() for i in x]", "record": "x.to_dict()"}.get(
            how, "plain(x)"
        )
        lines.append(f" x = v[{key}]")
        if cls.KEEP_NONE:
            lines.append(f" out[{key}] = None if x is None else {value}")
        else:
            lines.append(f" if x is not None: out[{key}] = {value}")
    lines.append(" return out")
    exec(compile("\n".join(lines), f"<{cls.__name__}.to_dict>", "exec"), env)  # our own code, from the fields
    return env["to_dict"]  # type: ignore[no-any-return]


_SCALARS = (str, int, bool, float)


def _written_as(hint: Any) -> str:
    """How to_dict writes a field of this type: as it is ("same"), as a list of scalars
    ("list"), a list of records ("records"), a record ("record"), or through `plain`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = {_written_as(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 and kinds <= {"same", "record"} else "plain"
    if hint in _SCALARS or origin is typing.Literal:
        return "same"
    if isinstance(hint, type) and issubclass(hint, Record):
        return "record"
    items = [a for a in args if a is not Ellipsis] if origin in (tuple, list) else []
    if items and all(_written_as(item) == "same" for item in items):
        return "list"
    if items and all(_written_as(item) == "record" for item in items):
        return "records"
    return "plain"


def _compile(cls: type[R]) -> Callable[[Mapping[str, Any]], R]:
    """from_dict for one record class: straight-line code, as dataclasses writes __init__
    (a loop over the fields reads mentions 3x slower; `indexer stats` reads every one)."""
    hints = typing.get_type_hints(cls)
    env: dict[str, Any] = {
        "MISSING": _MISSING,
        "new": object.__new__,
        "cls": cls,
        "Mapping": Mapping,
        "fail": lambda name, why: _fail(cls, name, why),
    }
    lines = [
        "def from_dict(data):",
        " if type(data) is not dict and not isinstance(data, Mapping): fail('', type(data).__name__)",
        " get = data.get",
        " out = {}",
    ]
    for i, f in enumerate(dataclasses.fields(cls)):  # type: ignore[arg-type]
        hint, key = hints[f.name], repr(f.name)
        lines.append(f" v = get({key}, MISSING)")
        if f.default is not _MISSING:
            env[f"d{i}"] = f.default
            lines.append(f" if v is MISSING: out[{key}] = d{i}")
        elif f.default_factory is not _MISSING:
            env[f"d{i}"] = f.default_factory
            lines.append(f" if v is MISSING: out[{key}] = d{i}()")
        else:
            lines.append(f" if v is MISSING: fail({key}, 'missing')")
        if hint in (str, bool, int):  # the common case, without a call
            env[f"t{i}"] = hint
            lines.append(f" elif type(v) is t{i}: out[{key}] = v")
        elif typing.get_origin(hint) is typing.Literal:
            env[f"t{i}"] = frozenset(typing.get_args(hint))
            lines.append(f" elif type(v) is str and v in t{i}: out[{key}] = v")
        elif _plain_items(hint):  # list[str], tuple[str, ...], dict[str, Any]: checked by C loops
            origin, args = typing.get_origin(hint), typing.get_args(hint)
            env[f"t{i}"], env[f"k{i}"] = origin, {args[0]}
            kind = "dict" if origin is dict else "list"
            lines.append(f" elif type(v) is {kind} and (not v or set(map(type, v)) == k{i}): out[{key}] = t{i}(v)")
        env[f"c{i}"] = _named(cls, f.name, converter(hint))
        lines.append(f" else: out[{key}] = c{i}(v)")
    lines += [" record = new(cls)", " record.__dict__.update(out)", " return record"]
    exec(compile("\n".join(lines), f"<{cls.__name__}.from_dict>", "exec"), env)  # our own code, from the fields
    return env["from_dict"]  # type: ignore[no-any-return]


def _plain_items(hint: Any) -> bool:
    """A list or tuple of one scalar type, or a dict from strings to anything: its JSON value
    needs only its items' (or keys') types checked (its `converter` checks them one by one)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list and len(args) == 1 or origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0] in (str, int, bool)
    return origin is dict and args == (str, Any)


def _named(cls: type, name: str, convert: _Convert) -> _Convert:
    def named(value: Any) -> Any:
        try:
            return convert(value)
        except ValueError as exc:
            _fail(cls, name, str(exc))

    return named


def _fail(cls: type, name: str, why: str) -> None:
    raise ValueError(f"not a {cls.__name__}: {name + ': ' if name else ''}{why}")


def converter(hint: Any) -> _Convert:
    """A function that returns a JSON value as `hint` types it, or raises ValueError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return lambda v: v
    if hint in (str, bool):
        return _exact(hint)
    if hint is int:
        return lambda v: v if type(v) is int else _bad(v, "an integer")
    if hint is float:
        return lambda v: float(v) if type(v) in (int, float) else _bad(v, "a number")
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict
    if origin is typing.Literal:
        allowed = frozenset(args)
        return lambda v: v if type(v) is str and v in allowed else _bad(v, f"one of {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        options = [converter(a) for a in args if a is not type(None)]
        inner = options[0] if len(options) == 1 else _first(options)
        if type(None) in args:
            return lambda v: None if v is None else inner(v)
        return inner
    if origin is tuple:
        item = converter(args[0])
        return lambda v: tuple(map(item, v)) if type(v) in (list, tuple) else _bad(v, "a list")
    if origin is list:
        item = converter(args[0])
        return lambda v: list(map(item, v)) if type(v) in (list, tuple) else _bad(v, "a list")
    if origin is dict:
        key, value = converter(args[0]), converter(args[1])
        return lambda v: {key(k): value(x) for k, x in v.items()} if type(v) is dict else _bad(v, "an object")
    raise TypeError(f"no converter for {hint}")


def _first(options: list[_Convert]) -> _Convert:
    """The first of several record types that reads the value (`Link | Reference`)."""

    def first(value: Any) -> Any:
        errors = []
        for convert in options:
            try:
                return convert(value)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))

    return first


def _exact(kind: type) -> _Convert:
    what = {str: "a string", bool: "true or false"}[kind]
    return lambda v: v if type(v) is kind else _bad(v, what)


def _bad(value: Any, expected: str) -> Any:
    raise ValueError(f"{str(value)[:40]!r} is not {expected}")
