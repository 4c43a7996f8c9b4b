"""Elastic (elastic/detection-rules): TOML detection rules in EQL, KQL, ES|QL and Lucene.

A rule file is TOML, read with the standard library's `tomllib`; its query is parsed by the
parser of its language (`queries.py`), and every string value compared with a field becomes
a mention with the role of its ECS field (`ecs.py`): `process.name` runs, `process.parent.name`
parent, `process.args` invoked (names in it found as in a Sigma command line), `dll.name` loads,
and a value under `not`, `!=`, `not in` is a filter (`excluded`), as in Sigma. In a (sub)query
of module loads (`module_parts`), `file.*` is the module loaded (ECS's Sysmon image loads), so it
loads as `dll.*` does; a name selected only on an impostor (`impostors`) gets the modifier
`masquerade`. The rule's name, description and false positives are text; so is the investigation
guide (`note`), whose long prose gives the names written with their extension only. A Kibana filter (`[[rule.filters]]`)
is a condition like the query's (`meta.negate`: a filter). `tomllib` gives no lines: a value's
line is found from the line where its key starts (a multi-line string's line i is that line + 1 + i).
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from ..extract import Candidate, Extraction, FileContext
from ..model import Mention
from ..names import COMMON_WORDS, NameHit, explicit_names, process_tail, regex_names, value_names
from ..parse import Document, ParsedFile, RuleFileError, split_lines
from . import register
from .atlas import Collector, own_name
from .base import Source
from .ecs import ecs_role
from .queries import QueryError, Term, terms

_WHOLE_VALUE_ROLES = {"process", "parent", "original_filename", "target", "loaded_module", "file"}
_PROCESS_ROLES = {"process", "parent", "original_filename", "target"}
_INFER_ROLES = {"command_line", "keyword", "other", "registry"}
_TEXT_KEYS = ("name", "description", "false_positives")
_OS_TAGS = {"os: windows": "windows", "os: linux": "linux", "os: macos": "macos"}
_INDEX_PLATFORMS = (
    (re.compile(r"winlogbeat|logs-windows|logs-system\.|windows", re.IGNORECASE), "windows"),
    (re.compile(r"auditd|logs-auditd_manager|linux", re.IGNORECASE), "linux"),
    (re.compile(r"macos|logs-jamf", re.IGNORECASE), "macos"),
)


class TomlLines:
    """Where each key of a TOML file starts: (table, key) -> 1-based line, and the text after `=`.

    Lines inside multi-line strings (`'''` and `\"\"\"`) are never taken for keys or tables.
    """

    _HEADER = re.compile(r"\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(r"\s*([A-Za-z0-9_\-]+)\s*=\s*(.*)$")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.keys: dict[tuple[str, str], tuple[int, str]] = {}
        table, inside = "", ""
        for number, text in enumerate(lines, 1):
            if inside:
                if inside in text and text.count(inside) % 2 == 1:
                    inside = ""
                continue
            if text.lstrip()[:1] == "[":
                header = self._HEADER.match(text)
                if header:
                    table = header.group(1)
                    continue
            elif "=" in text:
                key = self._KEY.match(text)
                if key:
                    self.keys.setdefault((table, key.group(1)), (number, key.group(2)))
            if "'''" in text or '"""' in text:
                for delimiter in ("'''", '"""'):
                    if text.count(delimiter) % 2 == 1:
                        inside = delimiter
                        break

    def string_lines(self, table: str, key: str, value: str) -> list[tuple[int, str]]:
        """(file line, text) of each line of the string `value` of `key` in `table`."""
        found = self.keys.get((table, key))
        if found is None:
            return []
        number, rest = found
        rest = rest.lstrip()
        if not rest.startswith(("'''", '"""')):
            return [(number, value)]
        first = 1 if not rest[3:].strip() else 0  # TOML drops a newline right after the delimiter
        parts = value.split("\n")
        if rest.startswith('"""') and "\\\n" in "\n".join(self.lines[number : number + len(parts) + 1]):
            return self._located(number, parts)  # a line-ending backslash joins lines: find each
        return [(number + first + i, text) for i, text in enumerate(parts)]

    def array_lines(self, table: str, key: str, values: list[Any]) -> list[tuple[int, str]]:
        """(file line, text) of each line of each string of the array `key`, found in order."""
        found = self.keys.get((table, key))
        if found is None:
            return []
        out: list[tuple[int, str]] = []
        at = found[0]
        for value in values:
            if not isinstance(value, str) or not value.strip():
                continue
            parts = value.split("\n")
            head = next((p.strip() for p in parts if p.strip()), "")
            line = self._find(head, at)
            if line is None:
                continue
            first = next(i for i, p in enumerate(parts) if p.strip())
            out += [(line - first + i, text) for i, text in enumerate(parts) if line - first + i >= line]
            at = line + len(parts) - 1 - first
        return out

    def _located(self, number: int, parts: list[str]) -> list[tuple[int, str]]:
        out, at = [], number
        for text in parts:
            line = self._find(text.strip(), at) if text.strip() else None
            if line is not None:
                out.append((line, text))
                at = line
        return out

    def _find(self, text: str, start: int) -> int | None:
        """The first line from `start` (1-based) holding `text` as written or as a TOML basic string."""
        probes = {text[:60], json.dumps(text, ensure_ascii=False)[1:61]}
        for number in range(start, len(self.lines) + 1):
            line = self.lines[number - 1]
            if any(p and p in line for p in probes):
                return number
        return None


def rule_platform(rule: dict[str, Any], found: list[Term]) -> str:
    """`Mention.platform` of a rule: its one `OS:` tag, else the `host.os.type` its query selects,
    else what its index patterns say (winlogbeat: windows); "" for cloud, network, several."""
    tags = {_OS_TAGS[t.lower()] for t in rule.get("tags") or () if isinstance(t, str) and t.lower() in _OS_TAGS}
    if len(tags) == 1:
        return tags.pop()
    if tags:
        return ""
    selected = {
        t.value.lower()
        for t in found
        if t.field.lower() in ("host.os.type", "host.os.family") and not t.negated and t.value.lower() in _PLATFORMS
    }
    if len(selected) == 1:
        return _PLATFORMS[selected.pop()]
    indexes = " ".join(str(i) for i in rule.get("index") or () if isinstance(i, str))
    matched = {platform for pattern, platform in _INDEX_PLATFORMS if pattern.search(indexes)}
    return matched.pop() if len(matched) == 1 else ""


_PLATFORMS = {"windows": "windows", "linux": "linux", "macos": "macos", "darwin": "macos"}


@dataclass(frozen=True)
class Events:
    """What a query's (sub)queries select, for the roles and verdicts of its values: the parts of
    module loads (`module_parts`) and the (part, object) pairs of impostors (`impostors`)."""

    modules: frozenset[str]
    impostors: frozenset[tuple[str, str]]


# module loads: Elastic Defend's library and driver events (`library where`, `event.category == "library"`);
# Sysmon's events 7 and 6 as ECS maps them (`event.action : "Image loaded*"`, "Driver loaded ..."); Defend's `load`
_MODULE_CATEGORIES = frozenset({"library", "driver"})
_MODULE_ACTIONS = re.compile(r"(?:image|driver) loaded\b.*|load", re.IGNORECASE)


def module_parts(found: list[Term]) -> frozenset[str]:
    """The parts of a query (`Term.part`: an EQL sequence's subquery, "" for the whole query) that
    select module loads: a library or driver event category, Sysmon's load actions or its event 7
    among process events (`process where event.code == "7"`), and no file event (whose `file.*` is
    a file written). There `file.*` names the module loaded: ECS puts Sysmon's ImageLoaded in
    `file.path`, Elastic Defend its own in `dll.path`."""
    loads: set[str] = set()
    files: set[str] = set()
    processes: set[str] = set()
    sysmon_7: set[str] = set()
    for term in found:
        if term.negated:
            continue
        field, value = term.field.lower(), term.value.lower().rstrip("*")
        if field == "event.category" and value in _MODULE_CATEGORIES:
            loads.add(term.part)
        elif field == "event.category" and value in ("file", "process"):
            (files if value == "file" else processes).add(term.part)
        elif field == "event.action" and _MODULE_ACTIONS.fullmatch(value):
            loads.add(term.part)
        elif field == "event.code" and value == "7":
            sysmon_7.add(term.part)
    return frozenset((loads | (sysmon_7 & processes)) - files)


# the fields naming an object whose signer ECS records (`process.code_signature.subject_name`, `dll.`, `file.`)
_SIGNED_NAME = re.compile(r"((?:process(?:\.parent)?|dll|file))\.(?:name|executable|path|pe\.original_file_name)")


def impostors(found: list[Term]) -> frozenset[tuple[str, str]]:
    """(part, object) pairs where the query selects an object's name only on an impostor: the
    (sub)query lets through, under `not`, the binaries its genuine publishers signed
    (`not (process.code_signature.subject_name in ("Microsoft Windows", ...) and ...trusted == true)`)
    and selects no signer. A name it selects there is a name the binary wears, not the binary:
    verdict `masquerade`. A folder alone is not enough: the genuine binary copied elsewhere is
    still the binary (a relocated LOLBin)."""
    excluded: set[tuple[str, str]] = set()
    selected: set[tuple[str, str]] = set()
    for term in found:
        field = term.field.lstrip("?").lower()
        if field.endswith(".code_signature.subject_name"):
            signed = (term.part, field[: -len(".code_signature.subject_name")])
            (excluded if term.negated else selected).add(signed)
    return frozenset(excluded - selected)


def attack_tags(rule: dict[str, Any]) -> tuple[str, ...]:
    """The ATT&CK ids of `[[rule.threat]]` as Sigma tags: `attack.ta0005`, `attack.t1218`, `attack.t1218.011`."""
    tags: list[str] = []
    for threat in rule.get("threat") or ():
        if not isinstance(threat, dict):
            continue
        tactic = threat.get("tactic")
        if isinstance(tactic, dict) and tactic.get("id"):
            tags.append(f"attack.{str(tactic['id']).lower()}")
        for technique in threat.get("technique") or ():
            if not isinstance(technique, dict):
                continue
            if technique.get("id"):
                tags.append(f"attack.{str(technique['id']).lower()}")
            for sub in technique.get("subtechnique") or ():
                if isinstance(sub, dict) and sub.get("id"):
                    tags.append(f"attack.{str(sub['id']).lower()}")
    return tuple(dict.fromkeys(tags))


def _finder(role: str, op: str, text: str, unix: bool) -> list[NameHit]:
    """Names in one value of a field with `role`, as Sigma reads a value of that role."""
    if op == "regex" or op == "regex~" or op == "rlike":
        return regex_names(text, role in _WHOLE_VALUE_ROLES, role in _PROCESS_ROLES)
    whole = role in _WHOLE_VALUE_ROLES
    stripped = text.strip()
    contains = stripped.startswith("*") and stripped.endswith("*") or op == "contains"
    process = role in _PROCESS_ROLES and not (stripped.endswith("*") and not contains) and op != "startswith"
    hits = value_names(text, whole, process and (not contains or text.count("/") == 1))
    if hits or not process:
        return hits
    exact = not (contains or stripped.startswith("*") or op == "endswith") and role != "original_filename"
    tail = process_tail(text, exact, unix)
    return [tail] if tail is not None else []


def extract_elastic(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """Mentions in one Elastic rule: its query's values by field role, its name, description and false positives."""
    data = parsed.documents[0].data
    rule = data.get("rule") if isinstance(data.get("rule"), dict) else {}
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    toml = TomlLines(parsed.lines)
    language = str(rule.get("language") or "")
    query = rule.get("query")
    found: list[Term] = []
    error: QueryError | None = None
    if isinstance(query, str) and language:
        try:
            found = terms(language, query)
        except QueryError as exc:
            error = exc
    platform = rule_platform(rule, found)
    infer_platform = "windows" if platform == "windows" else "unix" if platform else "other"
    col = Collector(ctx, parsed, platform)
    meta = {
        "rule_id": str(rule.get("rule_id") or ""),
        "title": str(rule.get("name") or ""),
        "level": str(rule.get("severity") or ""),
        "status": str(metadata.get("maturity") or ""),
        "tags": attack_tags(rule),
        "logsource": platform,
    }
    if meta["rule_id"]:
        col.out.rule_ids.append(meta["rule_id"])
    text_lines: list[tuple[Mention, list[tuple[int, str]]]] = []
    for key in _TEXT_KEYS:
        value = rule.get(key)
        if isinstance(value, str):
            lines = toml.string_lines("rule", key, value)
        elif isinstance(value, list):
            lines = toml.array_lines("rule", key, value)
        else:
            continue
        template = col.make(field=key, role="text", **meta)
        text_lines.append((template, lines))
        for line, text in lines:
            for hit in explicit_names(text):
                col.add(template, hit.name, line)
            col.out.candidates.append(Candidate(text, line, col._line(line), template, True, infer_platform))
    note = rule.get("note")
    if isinstance(note, str):  # the investigation guide: long prose, so names written whole only
        template = col.make(field="note", role="text", **meta)
        for line, text in toml.string_lines("rule", "note", note):
            for hit in explicit_names(text):
                col.add(template, hit.name, line)
    by_index = [line for line, _ in toml.string_lines("rule", "query", query)] if isinstance(query, str) else []
    if error is not None:
        line = by_index[error.line] if error.line is not None and error.line < len(by_index) else None
        raise RuleFileError(parsed.path, f"{language} query does not parse: {error.reason}", line)
    templates: dict[tuple[str, str, bool, str], Mention | None] = {}
    events = Events(module_parts(found), impostors(found))
    for term in found:
        # a process name without extension is a Unix program unless the rule is for Windows
        # (there, `System` is a pseudo-process): `process.name:chmod` in an auditbeat rule
        _term(col, term, meta, language, by_index, platform != "windows", infer_platform, templates, events)
    filters, filter_lines = kibana_filters(rule, parsed.lines)
    for term in filters:
        _term(col, term, meta, language, filter_lines, platform != "windows", infer_platform, templates, events)
    if found or filters:
        _own_programs_in_text(col, text_lines)
    return col.out


_FILTER_HEADER = re.compile(r"\s*\[\[\s*rule\.filters\s*\]\]")
_FILTER_VALUE = re.compile(r"\s*value\s*=")


def kibana_filters(rule: dict[str, Any], lines: list[str]) -> tuple[list[Term], list[int]]:
    """The conditions a rule's Kibana filters (`[[rule.filters]]`) add to its query: each
    `query.wildcard` value of a field, a filter (`negated`) where `meta.negate` is true, with
    its `detection` "filters"; and the file line of each (the first `value =` line after the
    i-th `[[rule.filters]]`). `exists` filters compare no value."""
    items = rule.get("filters")
    if not isinstance(items, list):
        return [], []
    headers = [i for i, text in enumerate(lines) if _FILTER_HEADER.match(text)]
    found: list[Term] = []
    at: list[int] = []
    for number, item in enumerate(f for f in items if isinstance(f, dict)):
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        query = item.get("query") if isinstance(item.get("query"), dict) else {}
        wildcard = query.get("wildcard") if isinstance(query.get("wildcard"), dict) else {}
        for field, body in wildcard.items():
            value = body.get("value") if isinstance(body, dict) else body
            if not isinstance(value, str) or number >= len(headers):
                continue
            start = headers[number]
            line = next((i for i in range(start, len(lines)) if _FILTER_VALUE.match(lines[i])), start)
            found.append(Term(field, value, "wildcard", len(at), meta.get("negate") is True, "filters"))
            at.append(line + 1)
    return found, at


@functools.lru_cache(maxsize=4096)
def _own_name(name: str) -> re.Pattern[str]:
    """`atlas.own_name`, compiled once per name (`bash` is named by 272 rules)."""
    return own_name(name, case_sensitive=False)


def _own_programs_in_text(col: Collector, text_lines: list[tuple[Mention, list[tuple[int, str]]]]) -> None:
    """The programs without extension the query selects (`process.parent.name:exim4`) are names in the
    rule's own text ("a descendant process of exim4"), as a LOLBAS entry's own stem is in its entry,
    whether or not another source knows them: inferred."""
    own = {
        m.binary
        for m in col.out.mentions
        if m.role in _PROCESS_ROLES and m.context == "selection" and "." not in m.binary and len(m.binary) >= 3
    }
    for name in sorted(own - COMMON_WORDS):
        pattern = _own_name(name)
        for template, lines in text_lines:
            for line, text in lines:
                if pattern.search(text):
                    col.add(template, name, line, inferred=True)


def _term(
    col: Collector,
    term: Term,
    meta: dict[str, Any],
    language: str,
    lines: list[int],
    unix: bool,
    platform: str,
    templates: dict[tuple[str, str, bool, str], Mention | None],
    events: Events,
) -> None:
    """The mentions of one query value; templates: one per field, operator, negation and subquery."""
    if not term.value or term.line >= len(lines):
        return
    key = (term.field, term.op, term.negated, term.part)
    if key not in templates:
        role = ecs_role(term.field)
        field = term.field.lstrip("?").lower()
        if role == "file" and term.part in events.modules and field.startswith("file."):
            role = "loaded_module"
        signed = _SIGNED_NAME.fullmatch(field)
        impostor = not term.negated and signed is not None and (term.part, signed.group(1)) in events.impostors
        templates[key] = (
            None
            if role is None
            else col.make(
                field=term.field,
                modifiers=(term.op, "masquerade") if impostor else (term.op,),
                role=role,
                context="filter" if term.negated else "selection",
                detection=term.part or language,
                **meta,
            )
        )
    template = templates[key]
    if template is None:
        return
    role = template.role
    line = lines[term.line]
    for hit in _finder(role, term.op, term.value, unix):
        col.add(template, hit.name, line, hit.inferred)
    if role in _INFER_ROLES and term.op not in ("regex", "regex~", "rlike"):
        # a wildcard at either end is Sigma's contains/startswith/endswith, which keep no `*`:
        # `process.command_line : "*comsvcs*#*24*"` names comsvcs as Sigma's `contains: 'comsvcs'` does
        text = term.value.strip("*")
        col.out.candidates.append(Candidate(text, line, col._line(line), template, False, platform))


class Elastic(Source):
    name = "elastic"
    default_url = "https://github.com/elastic/detection-rules.git"
    web_url = "https://github.com/elastic/detection-rules"
    branch = "main"
    paths = re.compile(r"^rules(?:_building_block)?/.+\.toml$", re.DOTALL)
    history = True  # LOLBAS links to rules that moved are resolved through it
    detects = True
    feeds_stems = False  # its process names do not change what Sigma's and LOLBAS's bare words mean

    def parse(self, path: str, text: str) -> ParsedFile:
        """The TOML document as one document (no node tree); RuleFileError naming the line if invalid."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            where = re.search(r" \(at line (\d+), column \d+\)$", str(exc))
            reason = str(exc)[: where.start()] if where else str(exc)
            raise RuleFileError(path, f"invalid TOML: {reason}", int(where.group(1)) if where else None) from None
        if not isinstance(data.get("rule"), dict):
            raise RuleFileError(path, "no [rule] table in the TOML file")
        yaml_lines, lines, _ = split_lines(text)
        return ParsedFile(path, lines, lines, [Document(data, None)])

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_elastic(ctx, parsed)

    def title(self, parsed: ParsedFile) -> str:
        """The rule's `name`."""
        rule = parsed.documents[0].data.get("rule") if parsed.documents else None
        return str(rule.get("name") or "") if isinstance(rule, dict) else ""


register(Elastic())
