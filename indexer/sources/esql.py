"""ES|QL: a tokenizer that finds `field <op> value` comparisons, their values and negations.

Not a full ES|QL parser: it knows quoting (`"..."` with escapes, `\"\"\"...\"\"\"` raw), comments,
keywords (`and`, `or`, `not`, `in`, `like`, `rlike`, case-insensitive), `field == value`,
`field != value`, `field : value`, `field [not] in (v1, v2)`, `field [not] like|rlike v` or
`(v1, v2)`, `to_lower(field)`, `starts_with(field, v)` / `ends_with(field, v)` and which of them
stand under `not` (a `not` before a term or a parenthesis, `!=`, `not in`, `not like`). Values
are only ever the string literals of such comparisons: never a bare substring search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<tq>"""(?:.|\n)*?""")|(?P<str>"(?:\\.|[^"\\\n])*")'
    r"|(?P<id>`[^`]*`|[A-Za-z_@?][\w.@\-*?]*)|(?P<num>\d[\w.]*)|(?P<op>==|!=|<=|>=|=~|[<>:=+\-*/%])"
    r"|(?P<punct>[(),|\[\]])|(?P<other>.)",
    re.DOTALL,
)
_KEYWORDS = {"and", "or", "not", "in", "like", "rlike", "is", "null"}
_CASE_FOLD = {"to_lower", "to_upper"}
_STRING_FUNCTIONS = {"starts_with": "startswith", "ends_with": "endswith"}


@dataclass(frozen=True)
class Token:
    kind: str  # "id", "kw", "str", "num", "op", "punct", "other"
    text: str  # the value of a string, the lower-case keyword, the field name
    pos: int  # where it starts in the query


@dataclass(frozen=True)
class Comparison:
    """One value compared with one field: where the value is written and whether it is negated."""

    field: str
    value: str
    op: str  # "==", "!=", ":", "in", "like", "rlike", "startswith", "endswith"
    pos: int
    negated: bool


def tokens(query: str) -> list[Token]:
    """The query's tokens, comments and blanks left out; strings decoded."""
    out: list[Token] = []
    for match in _TOKEN.finditer(query):
        kind = match.lastgroup or "other"
        text = match.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "tq":
            kind, text = "str", text[3:-3]
        elif kind == "str":
            text = _unescape(text[1:-1])
        elif kind == "id":
            if text.lower() in _KEYWORDS:
                kind, text = "kw", text.lower()
            elif text.startswith("`"):
                text = text[1:-1]
        out.append(Token(kind, text, match.start()))
    return _fold_case_functions(out)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), text)


def _fold_case_functions(toks: list[Token]) -> list[Token]:
    """`to_lower(process.name)` compares like `process.name`: one field token instead of four."""
    out: list[Token] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if (
            t.kind == "id"
            and t.text.lower() in _CASE_FOLD
            and i + 3 < len(toks)
            and toks[i + 1].text == "("
            and toks[i + 2].kind == "id"
            and toks[i + 3].text == ")"
        ):
            out.append(toks[i + 2])
            i += 4
            continue
        out.append(t)
        i += 1
    return out


def comparisons(query: str) -> list[Comparison]:
    """Every string value compared with a field, in the order written."""
    toks = tokens(query)
    out: list[Comparison] = []
    stack = [False]  # negation of each open parenthesis
    pending = False  # a `not` waiting for its term or parenthesis
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "punct" and t.text == "|":
            stack, pending = [False], False
        elif t.kind == "kw" and t.text == "not":
            pending = not pending
        elif t.kind == "punct" and t.text == "(":
            stack.append(stack[-1] ^ pending)
            pending = False
        elif t.kind == "punct" and t.text == ")":
            if len(stack) > 1:
                stack.pop()
        elif t.kind == "kw" and t.text in ("and", "or"):
            pending = False
        elif t.kind == "id" and t.text.lower() in _STRING_FUNCTIONS and _at(toks, i + 1, "("):
            # starts_with(field, "value")
            if len(toks) > i + 5 and toks[i + 2].kind == "id" and toks[i + 3].text == "," and toks[i + 4].kind == "str":
                op = _STRING_FUNCTIONS[t.text.lower()]
                out.append(Comparison(toks[i + 2].text, toks[i + 4].text, op, toks[i + 4].pos, stack[-1] ^ pending))
                pending = False
                i += 6
                continue
        elif t.kind == "id":
            found, i = _comparison(toks, i, stack[-1] ^ pending)
            if found is not None:
                out.extend(found)
                pending = False
                continue
        i += 1
    return out


def _at(toks: list[Token], i: int, text: str) -> bool:
    return i < len(toks) and toks[i].text == text and toks[i].kind in ("punct", "op", "kw")


def _comparison(toks: list[Token], i: int, negated: bool) -> tuple[list[Comparison] | None, int]:
    """The comparison starting at field token i: its values and the index after it, or (None, i)."""
    field = toks[i].text
    j = i + 1
    neg = negated
    if _at(toks, j, "not"):
        neg, j = not neg, j + 1
    if j >= len(toks):
        return None, i
    op_token = toks[j]
    if op_token.kind == "op" and op_token.text in ("==", "!=", ":", "=~"):
        op = op_token.text
        if op == "!=":
            neg = not neg
    elif op_token.kind == "kw" and op_token.text in ("in", "like", "rlike"):
        op = op_token.text
    else:
        return None, i
    j += 1
    values: list[Token] = []
    if j < len(toks) and toks[j].kind == "str":
        values, j = [toks[j]], j + 1
    elif _at(toks, j, "(") and op != "==":
        k = j + 1
        while k < len(toks) and not _at(toks, k, ")"):
            if toks[k].kind == "str":
                values.append(toks[k])
            elif not _at(toks, k, ","):
                break  # not a list of literals (an expression): read it token by token
            k += 1
        if k < len(toks) and _at(toks, k, ")"):
            j = k + 1
        else:
            return None, i
    if not values:
        return None, i
    return [Comparison(field, v.text, op, v.pos, neg) for v in values], j
