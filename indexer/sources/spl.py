"""Splunk's Search Processing Language, as far as naming executables goes: tokens, macro
expansion, and the comparisons a search filters on.

No well-kept SPL parser exists on PyPI (a Pygments lexer plug-in is the nearest), so this is a
small tokenizer and a walk over its tokens, never a substring search:

    tokenize('Processes.process_name IN ("a.exe", b.exe) NOT `m(x)` ```note```')
    -> word, word IN, (, string "a.exe", comma, word b.exe, ), word NOT, macro m (args x), comment

`expand` replaces macro calls by their definitions (recursively, at most MAX_DEPTH deep; a
cycle is refused with a warning), each token remembering the calls it came through;
`comparisons` finds `field=value`, `field!=value`, `field IN (...)`, `like/match/in(field, ...)`
and bare search terms in the parts of a search that select events (the first search, `search`,
`where`, the `where` of `tstats`, `regex`), each marked negated when a `NOT` or `!=` applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, NamedTuple

MAX_DEPTH = 10  # macros nested deeper than this are not expanded (a warning says where)

_TOKEN = re.compile(
    r"""
     (?P<comment>```.*?(?:```|\Z))
    |(?P<macro>`[^`]*`)
    |(?P<string>"(?:\\.|[^"\\])*(?:"|\Z))
    |(?P<op>!=|==|<=|>=|=|<|>)
    |(?P<punct>[()\[\],|])
    |(?P<word>(?:[^\s()\[\],|"=<>!`]|!(?!=))+)
    |(?P<other>\S)
    """,
    re.DOTALL | re.VERBOSE,
)
_ESCAPE = re.compile(r'\\([\\"])')
_CALL = re.compile(r"\s*([^\s()]+)\s*(?:\((.*)\))?\s*", re.DOTALL)


class Token(NamedTuple):
    """One token of a search: its kind, its text as written, what it means, where it is.

    kind: "word", "string" (value: unquoted, `\\\\` and `\\"` unescaped), "op" (= == != < > <= >=),
    "(", ")", "[", "]", ",", "|", "macro" (value: the name; args: the arguments as written),
    "comment" (```...```, value: the text inside) or "other" (a lone `!` or backtick).
    """

    kind: str
    text: str
    value: str
    start: int
    end: int
    args: tuple[str, ...] = ()


def tokenize(text: str) -> list[Token]:
    """The tokens of a search, in order; never raises (an unclosed quote or comment runs to the end)."""
    return list(_tokens(text))


@lru_cache(maxsize=2048)  # macro definitions are tokenized once, however many searches call them
def _tokens(text: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    new = tuple.__new__  # a NamedTuple's own __new__ is Python code: a fifth of the tokenizer's time
    for match in _TOKEN.finditer(text):
        kind, raw = match.lastgroup or "other", match.group()
        start, end = match.span()
        if kind == "word" or kind == "op":
            tokens.append(new(Token, (kind, raw, raw, start, end, ())))
        elif kind == "string":
            body = raw[1:-1] if len(raw) > 1 and raw.endswith('"') and not _odd_escape(raw) else raw[1:]
            tokens.append(Token(kind, raw, _ESCAPE.sub(r"\1", body), start, end))
        elif kind == "comment":
            tokens.append(Token(kind, raw, raw[3:-3] if raw.endswith("```") and len(raw) >= 6 else raw[3:], start, end))
        elif kind == "macro":
            call = _CALL.fullmatch(raw[1:-1])
            if call is None:  # `` or ` `: nothing to call
                tokens.append(Token("other", raw, raw, start, end))
            else:
                args = tuple(_split_args(call.group(2))) if call.group(2) is not None else ()
                tokens.append(Token(kind, raw, call.group(1), start, end, args))
        elif kind == "punct":
            tokens.append(new(Token, (raw, raw, raw, start, end, ())))
        else:
            tokens.append(Token(kind, raw, raw, start, end))
    return tuple(tokens)


def _odd_escape(raw: str) -> bool:
    """Whether the closing quote of `raw` is itself escaped (an unclosed string at the end)."""
    backslashes = len(raw) - 1 - len(raw[:-1].rstrip("\\"))
    return backslashes % 2 == 1


def _split_args(text: str) -> list[str]:
    """A macro call's arguments: split at commas outside quotes and parentheses, stripped."""
    args, depth, quoted, current = [], 0, False, []
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth <= 0 and ch == ",":
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    args.append("".join(current).strip())
    return args


# --- macros -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacroDef:
    """A macro's definition; `origin` is the caller's (the Splunk plug-in: its file and lines)."""

    name: str
    definition: str
    arguments: tuple[str, ...] = ()
    origin: Any = None


class Call(NamedTuple):
    """One macro call a token came through: the macro and the call's token in its caller's text."""

    macro: MacroDef
    token: Token


class Piece(NamedTuple):
    """A token after expansion, with the calls it came through (outermost first; none: the search's own)."""

    token: Token
    chain: tuple[Call, ...] = ()


@dataclass
class Expansion:
    """A search with its macros expanded: its pieces, the macros called (found or not), warnings."""

    pieces: list[Piece]
    called: list[str]
    missing: list[str]
    warnings: list[str]


Lookup = Callable[[str, int], "MacroDef | None"]  # (name, number of arguments) -> the macro or None


def expand(text: str, lookup: Lookup, max_depth: int = MAX_DEPTH) -> Expansion:
    """`text`'s tokens with every macro call replaced by its definition's tokens (arguments
    substituted for `$name$`), recursively. A call to an unknown macro stays a `macro` token;
    a cycle or a nesting deeper than `max_depth` stays one too, with a warning."""
    out = Expansion([], [], [], [])
    _expand(_tokens(text), (), lookup, max_depth, out)
    out.called = list(dict.fromkeys(out.called))
    out.missing = list(dict.fromkeys(out.missing))
    out.warnings = list(dict.fromkeys(out.warnings))
    return out


def _expand(tokens: tuple[Token, ...], chain: tuple[Call, ...], lookup: Lookup, max_depth: int, out: Expansion) -> None:
    new, pieces = tuple.__new__, out.pieces
    for token in tokens:
        if token.kind != "macro":
            pieces.append(new(Piece, (token, chain)))
            continue
        out.called.append(token.value)
        macro = lookup(token.value, len(token.args))
        if macro is None:
            out.missing.append(token.value)
            out.pieces.append(Piece(token, chain))
            continue
        names = [call.macro.name for call in chain]
        if macro.name in names:
            out.warnings.append(f"macro cycle {' -> '.join([*names, macro.name])}: not expanded")
            out.pieces.append(Piece(token, chain))
            continue
        if len(chain) >= max_depth:
            out.warnings.append(f"macros nested over {max_depth} deep ({' -> '.join(names)}): not expanded")
            out.pieces.append(Piece(token, chain))
            continue
        body = macro.definition
        for name, value in zip(macro.arguments, token.args):
            body = body.replace(f"${name}$", value)
        _expand(_tokens(body), (*chain, Call(macro, token)), lookup, max_depth, out)


# --- what a search selects on --------------------------------------------------------------------

# commands whose arguments select events: their comparisons count (tstats: after `where`)
# the commands whose comparisons are the detection's conditions; `eval`'s are too: its `if`,
# `case`, `match` compute the fields a later `where` keeps (`eval hit=case(OriginalFileName=="credui.dll", 1, ...)`)
_FILTERS = {"search", "where", "tstats", "regex", "eval"}
_KEYWORDS = {"AND", "OR", "NOT"}
_FUNCTIONS = {"like", "match", "in", "searchmatch"}  # eval functions comparing a field with values


@dataclass(frozen=True)
class Comparison:
    """One thing a search selects on: `field op values` (op "=", "!=", "IN", "like", "match",
    "regex"), or a bare search term (field None, op "term"); negated under `NOT` or by `!=`."""

    field: Piece | None
    op: str
    values: tuple[Piece, ...]
    negated: bool
    command: str  # "search", "where", "tstats", "regex"


def segments(pieces: list[Piece]) -> list[tuple[str, list[Piece]]]:
    """The pipeline's commands: (command, its pieces without the command word); the first
    segment is an implicit `search` unless the search starts with `|`."""
    parts: list[list[Piece]] = [[]]
    for piece in pieces:
        if piece.token.kind == "|":
            parts.append([])
        elif piece.token.kind != "comment":
            parts[-1].append(piece)
    out = []
    for number, part in enumerate(parts):
        if number == 0:
            if part:
                out.append(("search", part))
        elif part and part[0].token.kind == "word":
            out.append((part[0].token.value.lower(), part[1:]))
    return out


def comparisons(pieces: list[Piece]) -> list[Comparison]:
    """What the search's selecting commands compare, in order."""
    found: list[Comparison] = []
    for command, part in segments(pieces):
        if command not in _FILTERS:
            continue
        if command == "tstats":
            words = [p.token.value.lower() if p.token.kind == "word" else "" for p in part]
            if "where" not in words:
                continue
            start = words.index("where") + 1
            end = next((i for i in range(start, len(part)) if words[i] == "by"), len(part))
            part = part[start:end]
        _walk(part, command, found)
    return found


def _walk(part: list[Piece], command: str, found: list[Comparison]) -> None:
    stack, pending, i = [False], False, 0
    literal_only = command in ("where", "eval")  # there an unquoted word is a field, not a value
    while i < len(part):
        token = part[i].token
        nxt = part[i + 1].token if i + 1 < len(part) else None
        negated = stack[-1] ^ pending
        if command == "eval" and token.kind == "word" and nxt is not None:
            if len(stack) == 1 and nxt.kind == "op" and nxt.value == "=":
                i += 2  # `eval NAME=...`: the field it sets, not a comparison
                continue
            if nxt.kind == "(" and token.value.lower() not in _FUNCTIONS:
                i += 1  # `if(...)`, `case(...)`, `lower(...)`: their comparisons are read as a group's
                continue
        if token.kind == "word" and token.value == "NOT":
            pending = not pending
            i += 1
            continue
        if token.kind in ("(", "["):
            stack.append(negated)
            pending = False
            i += 1
            continue
        if token.kind in (")", "]"):
            if len(stack) > 1:
                stack.pop()
            pending = False
            i += 1
            continue
        if (
            token.kind == "word"
            and nxt is not None
            and nxt.kind == "("
            and (nxt.start == token.end or token.value.lower() in _FUNCTIONS)
        ):
            end = _closing(part, i + 1)
            if token.value.lower() in _FUNCTIONS:
                args = _arguments(part[i + 2 : end])
                if args and len(args[0]) == 1 and args[0][0].token.kind == "word":
                    values = tuple(p for arg in args[1:] for p in arg if p.token.kind == "string")
                    op = {"in": "IN", "searchmatch": "term"}.get(token.value.lower(), token.value.lower())
                    found.append(Comparison(args[0][0], op, values, negated, command))
            pending = False
            i = end + 1
            continue
        if token.kind == "word" and nxt is not None and nxt.kind == "op" and i + 2 < len(part):
            value = part[i + 2]
            if nxt.value in ("=", "==", "!=") and _is_value(value.token, literal_only):
                op = "regex" if command == "regex" else "!=" if nxt.value == "!=" else "="
                found.append(Comparison(part[i], op, (value,), negated ^ (nxt.value == "!="), command))
            pending = False
            i += 3
            continue
        if (
            token.kind == "word"
            and nxt is not None
            and nxt.kind == "word"
            and nxt.value.upper() == "IN"
            and i + 2 < len(part)
            and part[i + 2].token.kind == "("
        ):
            end = _closing(part, i + 2)
            values = tuple(p for p in part[i + 3 : end] if _is_value(p.token, literal_only))
            found.append(Comparison(part[i], "IN", values, negated, command))
            pending = False
            i = end + 1
            continue
        if command == "search" and (token.kind == "string" or (token.kind == "word" and token.value not in _KEYWORDS)):
            found.append(Comparison(None, "term", (part[i],), negated, command))
        pending = False if token.kind in ("word", "string") and token.value not in _KEYWORDS else pending
        i += 1


def _is_value(token: Token, literal_only: bool) -> bool:
    return token.kind == "string" or (token.kind == "word" and not literal_only)


def _closing(part: list[Piece], opening: int) -> int:
    """The index of the `)` closing the `(` at `opening` (the end of the part if none does)."""
    depth = 0
    for j in range(opening, len(part)):
        kind = part[j].token.kind
        if kind == "(":
            depth += 1
        elif kind == ")":
            depth -= 1
            if depth == 0:
                return j
    return len(part)


def _arguments(pieces: list[Piece]) -> list[list[Piece]]:
    """A function call's arguments (pieces between top-level commas)."""
    args: list[list[Piece]] = [[]]
    depth = 0
    for piece in pieces:
        kind = piece.token.kind
        if kind == "," and depth == 0:
            args.append([])
            continue
        depth += (kind == "(") - (kind == ")")
        args[-1].append(piece)
    return [a for a in args if a]
