"""Elastic rule queries parsed with real parsers: the values each compares with a field.

- EQL with the grammar of Elastic's `eql` library (`eql/etc/eql.g`, LALR, compiled once per
  process by Lark): its tokens know their line, so no value is searched for in the text.
  `tests/test_elastic.py` checks it against the library's own AST (`eql.parse_query`).
- KQL (kuery) and Lucene with `luqum` (a Lucene parser): KQL's lower-case `and`/`or`/`not` and
  its nested `field:{...}` are rewritten to Lucene's in place (same length, so positions hold).
- ES|QL with the tokenizer of `esql.py`.

Each gives `Term`s: a field, a string value, the operator, the 0-based line of the value in
the query, whether a `not` (or `!=`, `not in`, ...) covers it, and which subquery of an EQL
sequence it is in. An EQL event type is the term it means: `library where` gives
`event.category` "library" (operator `where`). These imports stay off the search path
(import-linter, pyproject.toml).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import esql


class QueryError(Exception):
    """A query its parser refuses: the reason, with the 0-based line of the query if known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


@dataclass(frozen=True)
class Term:
    """One string value a query compares with a field."""

    field: str  # as written, EQL's `?` optional marker removed
    value: str  # the string, decoded (escapes resolved)
    op: str  # "==", "!=", ":", "in", "like", "regex", "wildcard", "startswith", "endswith", "contains", ...
    line: int  # 0-based line of the value in the query
    negated: bool  # under `not`, `!=`, `not in`, `!:`: a filter
    part: str = ""  # EQL: "sequence 2" for a sequence's second subquery ("" for a plain query)


def terms(language: str, query: str) -> list[Term]:
    """The terms of a query in `language` (eql, kuery, lucene, esql); QueryError if it does not parse."""
    if language == "eql":
        return eql_terms(query)
    if language in ("kuery", "lucene"):
        return lucene_terms(query, kql=language == "kuery")
    if language == "esql":
        return [Term(c.field, c.value, c.op, query.count("\n", 0, c.pos), c.negated) for c in esql.comparisons(query)]
    raise QueryError(f"query language {language!r} is not read")


# --- EQL ----------------------------------------------------------------------------------------

_eql: list[Any] = []  # the compiled parser of this process


def eql_parser() -> Any:
    """Lark's LALR parser for the `eql` library's grammar, compiled once per process.

    The library's own parser object (`eql.parser.lark_parser`) keeps positions in every tree node
    and re-parses each field name; the tokens carry their lines already, and this parser reads
    the 1,080 EQL rules at the tip in 0.6 s instead of 2.1 s.
    """
    if not _eql:
        from lark import Lark

        spec = importlib.util.find_spec("eql")
        if spec is None or not spec.submodule_search_locations:
            raise QueryError("the eql library is not installed")
        grammar = Path(next(iter(spec.submodule_search_locations)), "etc", "eql.g").read_text(encoding="utf-8")
        _eql.append(Lark(grammar, parser="lalr", start="piped_query"))
    return _eql[0]


# functions whose first argument is a field and whose other arguments are its patterns
_EQL_FUNCTIONS = {
    "wildcard": "wildcard",
    "startswith": "startswith",
    "endswith": "endswith",
    "stringcontains": "contains",
    "match": "regex",
    "matchlite": "regex",
}


def eql_terms(query: str) -> list[Term]:
    from lark.exceptions import LarkError, UnexpectedInput

    try:
        tree = eql_parser().parse(query if query.endswith("\n") else query + "\n")
    except UnexpectedInput as exc:
        raise QueryError(f"EQL syntax error at line {exc.line}, column {exc.column}", exc.line - 1) from None
    except LarkError as exc:
        raise QueryError(f"EQL syntax error: {str(exc).splitlines()[0][:200]}") from None
    out: list[Term] = []
    _EqlWalk(out).walk(tree, False, "")
    return out


class _EqlWalk:
    def __init__(self, out: list[Term]) -> None:
        self.out = out
        self.subqueries = 0
        self.sequence = False
        self.label = ""

    def walk(self, node: Any, negated: bool, part: str) -> None:
        from lark import Token

        if isinstance(node, Token):
            return
        kind = node.data
        children = node.children
        if kind in ("sequence", "sample", "join"):
            self.sequence = True
            self.label = kind
        elif kind == "subquery":
            self.subqueries += 1
            part = f"{self.label} {self.subqueries}" if self.sequence else part
        elif kind == "event_query" and children and children[0] is not None:
            # `library where ...` is `event.category == "library" and ...` (EQL's event type); `any` selects none
            name = children[0].children[0]
            if str(name).lower() != "any":
                self.out.append(Term("event.category", str(name), "where", name.line - 1, negated, part))
        elif kind == "not_expr":
            nots = sum(1 for c in children if isinstance(c, Token) and c.type == "NOT_OP")
            negated ^= nots % 2 == 1
        elif kind == "comparison" and len(children) == 3:
            left, op, right = children
            op_text = str(op)
            if op_text in ("==", "=", "!="):
                neg = negated ^ (op_text == "!=")
                if self._pair(left, right, op_text, neg, part) or self._pair(right, left, op_text, neg, part):
                    return
        elif kind in ("in_set", "not_in_set"):
            field = _eql_field(children[0])
            if field is not None:
                op = "not in" if kind == "not_in_set" else str(children[1])
                self._values(field, _expressions(children[-1]), op, negated ^ (kind == "not_in_set"), part)
                return
        elif kind == "string_predicate":
            field = _eql_field(children[0])
            if field is not None:
                self._values(field, children[2:], str(children[1]), negated, part)
                return
        elif kind == "function_call":
            name = str(children[0]).rstrip("~").lower()
            args = _expressions(children[1]) if len(children) > 1 and children[1] is not None else []
            if name in _EQL_FUNCTIONS and args:
                field = _eql_field(args[0])
                if field is not None:
                    self._values(field, args[1:], _EQL_FUNCTIONS[name], negated, part)
                    return
        for child in children:
            if child is not None:
                self.walk(child, negated, part)

    def _pair(self, left: Any, right: Any, op: str, negated: bool, part: str) -> bool:
        field = _eql_field(left)
        if field is None:
            return False
        self._values(field, [right], op, negated, part)
        return True

    def _values(self, field: str, nodes: list[Any], op: str, negated: bool, part: str) -> None:
        for node in nodes:
            token = _eql_string(node)
            if token is not None:
                self.out.append(Term(field, _eql_decode(token), op, token.line - 1, negated, part))


def _expressions(node: Any) -> list[Any]:
    return list(node.children) if getattr(node, "data", None) == "expressions" else [node]


def _eql_field(node: Any) -> str | None:
    """The field name of a `field` or `base_field` node (`?process.pe.original_file_name` -> without `?`)."""
    data = getattr(node, "data", None)
    if data == "field":
        return re.sub(r"\s+", "", str(node.children[0])).lstrip("?")
    if data == "base_field":
        name = node.children[0]
        return str(name.children[0] if hasattr(name, "children") else name).strip("`")
    return None


def _eql_string(node: Any) -> Any:
    """The string token of a `literal` node, or None (numbers, booleans, null, expressions)."""
    if getattr(node, "data", None) == "literal":
        node = node.children[0]
    if getattr(node, "data", None) == "string":
        return node.children[0]
    return None


_EQL_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "'": "'", "\\": "\\"}


def _eql_decode(token: Any) -> str:
    """A string token's value: raw strings (`?"..."`, `\"\"\"...\"\"\"`) as written, others unescaped."""
    text = str(token)
    if token.type == "RAW_TQ_STRING":
        return text[3:-3]
    if token.type in ("RAW_DQ_STRING", "RAW_SQ_STRING"):
        return text[2:-1]
    body = text[1:-1]
    if "\\" not in body:
        return body
    return re.sub(
        r"\\u\{([0-9a-fA-F]{2,8})\}|\\(.)",
        lambda m: chr(int(m.group(1), 16)) if m.group(1) else _EQL_ESCAPES.get(m.group(2), m.group(0)),
        body,
    )


# --- KQL and Lucene ----------------------------------------------------------------------------

_KQL_WORD = re.compile(r'"(?:\\.|[^"\\])*"|\\.|(?<![\w.\-*\\])(?:and|or|not)(?![\w.\-*])', re.IGNORECASE | re.DOTALL)
# `http.response.status_code >= 300`: a numeric range, never a name; luqum reads `field:>=300` only
_KQL_RANGE = re.compile(r'"(?:\\.|[^"\\])*"|[\w.@]+\s*(?:>=|<=|>|<)\s*(?:"[^"]*"|[^\s()]+)', re.DOTALL)


_SLASH = "\ue000"  # `/` outside quotes: a path in KQL (`/tmp/*`), a regex in Lucene


def kql_to_lucene(query: str) -> str:
    """KQL rewritten in place as Lucene, every character at its position: `and`/`or`/`not` upper
    case outside quotes, `field:{ nested }` as `field:( nested )`, ranges as a blank term, `/`
    (a regex delimiter to Lucene, a character to KQL) as a private-use character."""

    def words(m: re.Match[str]) -> str:
        text = m.group()
        if text[0] in '"\\':
            return text
        return text.upper()

    text = _KQL_WORD.sub(words, query)
    text = _KQL_RANGE.sub(lambda m: m.group() if m.group()[0] == '"' else "_" + " " * (len(m.group()) - 1), text)
    return _replace_outside_quotes(text, {"{": "(", "}": ")", "/": _SLASH})


def _replace_outside_quotes(text: str, table: dict[str, str]) -> str:
    out = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch in table:
            ch = table[ch]
        out.append(ch)
    return "".join(out)


def lucene_terms(query: str, kql: bool = True) -> list[Term]:
    from luqum.exceptions import ParseError
    from luqum.parser import parser

    text = kql_to_lucene(query) if kql else query
    try:
        tree = parser.parse(text)
    except ParseError as exc:
        pos = re.search(r"position (\d+)", str(exc))
        line = query.count("\n", 0, int(pos.group(1))) if pos else None
        raise QueryError(f"{'KQL' if kql else 'Lucene'} syntax error: {str(exc)[:200]}", line) from None
    out: list[Term] = []
    _lucene_walk(tree, query, "", False, out)
    return out


def _lucene_walk(node: Any, query: str, field: str, negated: bool, out: list[Term]) -> None:
    from luqum import tree as t

    if isinstance(node, (t.Not, t.Prohibit)):
        negated = not negated
    elif isinstance(node, t.SearchField):
        field = f"{field}.{node.name}" if field else node.name
    elif isinstance(node, (t.Word, t.Phrase, t.Regex)):
        if isinstance(node, t.Word) and node.value == "_" and field == "":
            return  # a range blanked by kql_to_lucene
        if isinstance(node, t.Phrase):
            value, op = _lucene_unescape(node.value[1:-1]), ":"
        elif isinstance(node, t.Regex):
            value, op = node.value[1:-1], "regex"
        else:
            value, op = _lucene_unescape(node.value).replace(_SLASH, "/"), ":"
        out.append(Term(field, value, op, query.count("\n", 0, node.pos), negated))
        return
    elif isinstance(node, (t.Range, t.From, t.To)):
        return
    for child in node.children:
        _lucene_walk(child, query, field, negated, out)


def _lucene_unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text) if "\\" in text else text
