"""Mentions of executables in parsed Sigma rules and LOLBAS entries.

Extraction runs in two steps. `extract_sigma` / `extract_lolbas` find every explicit name
(with an extension, or the tail of a Unix process path) and return the strings where a bare
name (`rundll32 `) could stand. Once every file is read, the executables the corpus knows are
known, and `infer` turns those strings into `inferred` mentions.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import yaml

from .model import Mention
from .names import NameHit, bare_names, explicit_names, regex_names, value_names
from .parse import ParsedFile, child, mapping_items, scalar_text, scalars

_PROCESS = {"image", "newprocessname", "processname", "sourceimage", "callerprocessname", "application",
            "processpath", "applicationpath", "modifyingapplication", "processnamebuffer", "exe", "comm",
            "sourceprocessname", "initiatingprocessfilename", "process_path", "executable"}
_PARENT = {"parentimage", "parentprocessname", "parentprocesspath", "parentexe"}
_ORIGINAL = {"originalfilename"}
_TARGET = {"targetimage", "targetprocessname"}
_LOADED = {"imageloaded", "loadedimage"}
_FILE = {"targetfilename", "filename", "sourcefilename", "filepath", "path", "relativetargetname",
         "filenamebuffer", "objectname", "currentdirectory", "targetfilepath", "file_path", "name"}
_REGISTRY = {"targetobject", "details", "newvalue", "oldvalue"}
_COMMAND = {"commandline", "parentcommandline", "scriptblocktext", "payload", "servicefilename",
            "imagepath", "processcommandline", "contextinfo", "data", "hostapplication", "command",
            "taskcontent", "contents", "param1", "param2", "param3", "a0", "a1", "a2", "a3", "a4",
            "a5", "a6", "a7", "a8", "a9", "proctitle", "args", "cmdline"}
# Fields whose values are never file names: network names, hashes, user agents, accounts.
_NEVER = re.compile(r"host|domain|^query|queryname|queryresults|dns|hash|md5|sha\d|imphash|useragent|user-agent|agent|"
                    r"ip$|port$|sid$|guid|accessmask|grantedaccess|^user|username|account",
                    re.IGNORECASE)
_WHOLE_VALUE_ROLES = {"process", "parent", "original_filename", "target", "loaded_module", "file"}
_PROCESS_ROLES = {"process", "parent", "original_filename", "target"}
_INFER_ROLES = {"command_line", "keyword", "other", "registry"}
_ENCODING_MODIFIERS = {"base64", "base64offset", "utf16le", "utf16be", "utf16", "wide"}
_NO_NAME_MODIFIERS = {"cidr", "lt", "lte", "gt", "gte", "fieldref", "exists", "neq"}
_UNIX_PRODUCTS = {"linux", "macos"}


def field_role(field_name: str) -> str | None:
    """The role of a detection field, or None when its values are never file names."""
    key = field_name.lower()
    if not key:  # `'|all': [...]`: a keyword list with modifiers
        return "keyword"
    for names, role in ((_PROCESS, "process"), (_PARENT, "parent"), (_ORIGINAL, "original_filename"),
                        (_TARGET, "target"), (_LOADED, "loaded_module"), (_FILE, "file"),
                        (_REGISTRY, "registry"), (_COMMAND, "command_line")):
        if key in names:
            return role
    if _NEVER.search(key):
        return None
    return "other"


@dataclass(frozen=True)
class FileContext:
    """The file being read. Commit, URL and license are the index's to add (per source)."""

    source: str
    path: str


@dataclass(frozen=True)
class Candidate:
    """A string where a bare executable name may stand, with the mention it would make."""

    text: str
    line: int
    snippet: str
    template: Mention
    in_prose: bool = False
    unix: bool = False

    def __reduce__(self) -> tuple[Any, ...]:  # as a tuple: parser processes send tens of thousands
        return Candidate, (self.text, self.line, self.snippet, self.template, self.in_prose, self.unix)


@dataclass
class Extraction:
    """What one file gives: explicit mentions, and strings to scan for bare names later."""

    mentions: list[Mention] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    rule_ids: list[str] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)  # Sigma -> LOLBAS pages, LOLBAS -> Sigma rules
    entry: dict[str, Any] = field(default_factory=dict)        # a LOLBAS entry: name, aliases, categories

    def executables(self) -> set[str]:
        """Names this file shows to be executables: run as a process, or a LOLBAS entry."""
        return {m.binary for m in self.mentions
                if m.role in ("process", "parent", "original_filename", "lolbas_entry")}


class _Collector:
    """Builds mentions for one file: the line of every hit, deduplicated."""

    def __init__(self, ctx: FileContext, parsed: ParsedFile) -> None:
        self.ctx = ctx
        self.parsed = parsed
        self.lines = parsed.lines
        self.out = Extraction()
        self._seen: set[tuple[Any, ...]] = set()
        self._stripped: dict[int, str] = {}

    def template(self, **fields: Any) -> Mention:
        return Mention(binary="", source=self.ctx.source, path=self.ctx.path, line=0, snippet="", **fields)

    def add(self, template: Mention, name: str, line: int) -> None:
        key = (name, line, template.role, template.field, template.detection, template.context)
        if key in self._seen or not 0 < line <= len(self.lines):
            return
        self._seen.add(key)
        self.out.mentions.append(template.at(name, line, self._line(line)))

    def _line(self, line: int) -> str:
        """The stripped text of a line: one string per line, however many names it holds."""
        stripped = self._stripped.get(line)
        if stripped is None:
            stripped = self._stripped[line] = self.lines[line - 1].strip()
        return stripped

    def scan(self, node: yaml.Node, template: Mention, finder: Any, *,
             infer: bool = False, in_prose: bool = False, unix: bool = False) -> None:
        """Run finder(text) over a scalar, line by line when the scalar spans several lines."""
        for line, text in self._scalar_lines(node):
            for hit in finder(text):
                self.add(template, hit.name, line)
            if infer:
                self.out.candidates.append(Candidate(text, line, self._line(line),
                                                     template, in_prose, unix))

    def _scalar_lines(self, node: yaml.Node) -> Iterator[tuple[int, str]]:
        start, end = node.start_mark.line, node.end_mark.line
        if node.end_mark.column == 0 and end > start:
            end -= 1
        if start == end:
            yield self.parsed.file_line(start), node.value
            return
        for number in range(start, min(end, len(self.parsed.yaml_lines) - 1) + 1):
            text = self.parsed.yaml_lines[number]
            if number == start:
                text = text[node.start_mark.column:]
            yield self.parsed.file_line(number), text


# --- Sigma -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def negated_items(condition: str, names: Iterable[str]) -> set[str]:
    """Detection items that a condition uses only under `not` (filters)."""
    names = list(names)
    negated: set[str] = set()
    positive: set[str] = set()
    stack = [False]
    pending = False
    for token in _TOKEN.findall(condition):
        low = token.lower()
        if low == "not":
            pending = not pending
        elif token == "(":
            stack.append(stack[-1] ^ pending)
            pending = False
        elif token == ")":
            if len(stack) > 1:
                stack.pop()
        elif low in ("and", "or", "1", "all", "of", "|"):
            continue
        else:
            pattern = names if low == "them" else fnmatch.filter(names, token)
            (negated if stack[-1] ^ pending else positive).update(pattern)
            pending = False
    return negated - positive


def extract_sigma(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """Explicit mentions in every document of a Sigma rule file, and candidates for bare names."""
    col = _Collector(ctx, parsed)
    docs = [d for d in parsed.documents if isinstance(d.data, dict)]
    global_data: dict[str, Any] = {}
    conditions: list[str] = []
    for doc in docs:
        if doc.data.get("action") == "global":
            global_data = doc.data
        detection = doc.data.get("detection") or (doc.data.get("filter") if "filter" in doc.data else None)
        if isinstance(detection, dict):
            cond = detection.get("condition")
            conditions.extend(c for c in (cond if isinstance(cond, list) else [cond]) if isinstance(c, str))
    for doc in docs:
        data = {**global_data, **doc.data} if doc.data is not global_data else doc.data
        meta = _sigma_meta(data)
        if meta["rule_id"]:
            col.out.rule_ids.append(meta["rule_id"])
        unix = meta["logsource"].split("/")[0] in _UNIX_PRODUCTS
        for ref in scalars(child(doc.node, "references")):
            if "lolbas-project" in ref.value.lower():
                col.out.links.append({"kind": "lolbas", "url": ref.value.strip(),
                                      "line": parsed.file_line(ref.start_mark.line)})
        for key, role_field in (("title", "title"), ("description", "description"), ("falsepositives", "falsepositives")):
            value = child(doc.node, key)
            if value is None:
                continue
            template = col.template(field=role_field, role="text", **meta)
            for scalar in scalars(value):
                col.scan(scalar, template, explicit_names, infer=key == "title", in_prose=True, unix=unix)
        is_filter_rule = "filter" in doc.data and "detection" not in doc.data
        det_node = child(doc.node, "filter" if is_filter_rule else "detection")
        item_names = [k for k, _, _ in mapping_items(det_node) if k not in ("condition", "timeframe", "rules")]
        negated = set(item_names) if is_filter_rule else negated_items(" ( ".join(conditions) + " )" * len(conditions), item_names)
        for name, _, item in mapping_items(det_node):
            if name in ("condition", "timeframe", "rules"):
                continue
            context = "filter" if name in negated else "selection"
            _detection_item(col, item, name, context, meta, unix)
    return col.out


def _sigma_meta(data: dict[str, Any]) -> dict[str, Any]:
    logsource = data.get("logsource") if isinstance(data.get("logsource"), dict) else {}
    parts = [str(logsource.get(k)) for k in ("product", "category", "service") if logsource.get(k)]
    tags = data.get("tags") if isinstance(data.get("tags"), list) else []
    return {
        "rule_id": str(data.get("id") or ""),
        "title": str(data.get("title") or ""),
        "level": str(data.get("level") or ""),
        "status": str(data.get("status") or ""),
        "tags": tuple(str(t) for t in tags),
        "logsource": "/".join(parts),
    }


def _detection_item(col: _Collector, item: yaml.Node, name: str, context: str,
                    meta: dict[str, Any], unix: bool) -> None:
    if isinstance(item, yaml.MappingNode):
        maps = [item]
    elif isinstance(item, yaml.SequenceNode) and any(isinstance(v, yaml.MappingNode) for v in item.value):
        maps = [v for v in item.value if isinstance(v, yaml.MappingNode)]
        keywords = [v for v in item.value if isinstance(v, yaml.ScalarNode)]
        _keywords(col, keywords, name, context, meta, unix)
    else:
        _keywords(col, list(scalars(item)), name, context, meta, unix)
        return
    for mapping in maps:
        for key, _, value in mapping_items(mapping):
            field_name, *modifiers = key.split("|")
            role = field_role(field_name)
            if role is None or _NO_NAME_MODIFIERS.intersection(modifiers):
                continue
            template = col.template(field=field_name, modifiers=tuple(modifiers), role=role,
                                    context=context, detection=name,
                                    encoded=bool(_ENCODING_MODIFIERS.intersection(modifiers)), **meta)
            _values(col, value, template, "re" in modifiers, unix)


def _keywords(col: _Collector, nodes: list[yaml.ScalarNode], name: str, context: str,
              meta: dict[str, Any], unix: bool) -> None:
    template = col.template(field="", role="keyword", context=context, detection=name, **meta)
    for node in nodes:
        if scalar_text(node):
            col.scan(node, template, explicit_names, infer=True, unix=unix)


def _values(col: _Collector, value: yaml.Node, template: Mention, is_regex: bool, unix: bool) -> None:
    whole = template.role in _WHOLE_VALUE_ROLES
    process = template.role in _PROCESS_ROLES and "startswith" not in template.modifiers
    contains = "contains" in template.modifiers

    def finder(text: str) -> list[NameHit]:
        if is_regex:
            return regex_names(text, whole, process)
        # `Image|contains: '/python'` names python; `'/opt/app/work'` names a folder
        return value_names(text, whole, process and (not contains or text.count("/") == 1))

    infer = template.role in _INFER_ROLES and not is_regex
    for scalar in scalars(value):
        if scalar_text(scalar):
            col.scan(scalar, template, finder, infer=infer, unix=unix)


# --- LOLBAS ------------------------------------------------------------------------------------

def extract_lolbas(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """Mentions in a LOLBAS entry (current `yml/` layout and the old archive layout)."""
    col = _Collector(ctx, parsed)
    for doc in parsed.documents:
        if not isinstance(doc.data, dict):
            continue
        data, node = doc.data, doc.node
        commands = data.get("Commands") if isinstance(data.get("Commands"), list) else []
        tags = _lolbas_tags(c for c in commands if isinstance(c, dict))
        meta = {"title": str(data.get("Name") or ""), "tags": tags}
        name_node = child(node, "Name")
        if isinstance(name_node, yaml.ScalarNode) and scalar_text(name_node):
            _lolbas_name(col, name_node, col.template(field="Name", role="lolbas_entry", **meta))
        for alias in scalars(child(node, "Aliases")):
            _lolbas_name(col, alias, col.template(field="Alias", role="lolbas_entry", **meta))
        desc = child(node, "Description")
        if isinstance(desc, yaml.ScalarNode):
            col.scan(desc, col.template(field="Description", role="text", **meta), explicit_names)
        for path in scalars(child(node, "Full_Path")):
            col.scan(path, col.template(field="Path", role="lolbas_path", **meta),
                     lambda text: value_names(text, whole_value=True, process=True))
        cmd_nodes = child(node, "Commands")
        if isinstance(cmd_nodes, yaml.SequenceNode):
            for cmd_node, cmd in zip(cmd_nodes.value, commands):
                if not isinstance(cmd, dict):
                    continue
                cmd_meta = {**meta, "tags": _lolbas_tags([cmd])}
                for key, key_node, value in mapping_items(cmd_node):
                    if not isinstance(value, yaml.ScalarNode) or not scalar_text(value):
                        continue
                    if key == "Command":
                        col.scan(value, col.template(field="Command", role="lolbas_command", **cmd_meta),
                                 explicit_names, infer=True)
                    elif key in ("Description", "Usecase"):
                        col.scan(value, col.template(field=key, role="text", **cmd_meta), explicit_names)
        listed = data.get("Aliases") if isinstance(data.get("Aliases"), list) else []
        aliases = [a.get("Alias") for a in listed if isinstance(a, dict)]
        col.out.entry = {
            "name": str(data.get("Name") or ""),
            "aliases": [str(a) for a in aliases if a],
            "categories": sorted({str(c["Category"]) for c in commands if isinstance(c, dict) and c.get("Category")}),
            "mitre": sorted({str(c["MitreID"]) for c in commands if isinstance(c, dict) and c.get("MitreID")}),
        }
        for det in _mapping_list(child(node, "Detection")):
            for key, _, value in mapping_items(det):
                if key == "Sigma" and isinstance(value, yaml.ScalarNode) and scalar_text(value):
                    col.out.links.append({"kind": "sigma", "url": value.value.strip(),
                                          "line": parsed.file_line(value.start_mark.line)})
                if key == "IOC" and isinstance(value, yaml.ScalarNode):
                    col.scan(value, col.template(field="IOC", role="lolbas_ioc", **meta), explicit_names,
                             infer=True)
    return col.out


def _lolbas_name(col: _Collector, node: yaml.ScalarNode, template: Mention) -> None:
    hits = value_names(node.value, whole_value=True, process=True)
    if hits:
        col.scan(node, template, lambda text: value_names(text, whole_value=True, process=True))
    elif re.fullmatch(r"[A-Za-z0-9_.+\-]+", node.value.strip()):
        col.add(template, node.value.strip().lower(), col.parsed.file_line(node.start_mark.line))


def _mapping_list(node: yaml.Node | None) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return [v for v in node.value if isinstance(v, yaml.MappingNode)]
    return []


def _lolbas_tags(commands: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    tags: list[str] = []
    for cmd in commands:
        category = cmd.get("Category")
        if isinstance(category, str) and category:
            tags.append("lolbas." + category.strip().lower().replace(" ", "_"))
        mitre = cmd.get("MitreID")
        if isinstance(mitre, str) and mitre:
            tags.append("attack." + mitre.strip().lower())
    return tuple(dict.fromkeys(tags))


# --- bare names ----------------------------------------------------------------------------------

def infer(candidates: Iterable[Candidate], windows_stems: dict[str, str],
          unix_stems: dict[str, str], existing: Iterable[Mention] = ()) -> list[Mention]:
    """Inferred mentions: known executables written without their extension."""
    seen = {(m.binary, m.line, m.role, m.field, m.detection, m.context) for m in existing}
    unix_first = {**windows_stems, **unix_stems}  # in a Linux/macOS rule `curl` is curl, not curl.exe
    out: list[Mention] = []
    for cand in candidates:
        hits = bare_names(cand.text, unix_first if cand.unix else windows_stems, in_prose=cand.in_prose)
        for hit in hits:
            t = cand.template
            key = (hit.name, cand.line, t.role, t.field, t.detection, t.context)
            if key in seen:
                continue
            seen.add(key)
            out.append(t.at(hit.name, cand.line, cand.snippet, inferred=True))
    return out
