"""Splunk security_content (splunk/security_content): detections whose SPL `search` names
executables, and the macros (`macros/*.yml`) those searches call.

A search is tokenized and its macros expanded (`spl`), then every comparison of the commands
that select events (`field=value`, `field!=value`, `field IN (...)`, `like/match(field, ...)`,
bare search terms) gives mentions: the field's role from Splunk's CIM (`Processes.process_name`
runs, `Processes.parent_process_name` is the parent, `Processes.process` the command line, ...;
`unknown` and CIM's other placeholders name nothing)
or, for raw event fields (`Image`, `TargetImage`, `ImageLoaded`), as in Sigma; names are found
in a value as in a Sigma value of the same role and wildcards (`*\\cmd.exe`: endswith).
A comparison under `NOT`, `!=` or `NOT ... IN` is a filter. A value that came from a macro sits
on the line of the detection's macro call; its `modifiers` name the macros (`macro:NAME`) and
the line of the innermost definition (`via:macros/NAME.yml#L1`). The detection's name,
description and known false positives are text; names in ``` comments ``` are comments.

Each detection lists the macro files it called (found or not) in `Extraction.depends`: a macro
changed upstream reads it again. A macro file is indexed on its own: its definition's names are
what it defines, not a detection (context "", verdict `mentioned`).

Level from `tags.risk_score` (0-100) as Splunk Enterprise Security ranks risk: 81+ critical,
61-80 high, 41-60 medium, 21-40 low, below informational. Tags: `attack.<technique>` per
`tags.mitre_attack_id` (Sigma's form), `atomic:<guid>` per `tags.atomic_guid` (the atomic
source's rule id of that test). Deprecated detections (`status: deprecated`,
`detections/deprecated/`) are retired.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..extract import (
    Candidate,
    Extraction,
    FileContext,
    field_role,
    infers_bare_names,
    value_finder,
)
from ..names import explicit_names
from ..parse import ParsedFile, RuleFileError, child, parse_yaml, read_text, scalar_text, scalars
from . import register
from .atlas import Collector, require_mapping
from .base import Source
from .spl import Comparison, MacroDef, Piece, comparisons, expand

MACRO_DIR = "macros/"

# Splunk CIM fields (the part after the data model's dataset, `Processes.`) -> role
CIM_ROLES = {
    "process_name": "process",
    "process_path": "process",
    "original_file_name": "original_filename",
    "orig_process_name": "original_filename",
    "parent_process_name": "parent",
    "parent_process_exec": "parent",
    "parent_process_path": "parent",
    "process": "command_line",
    "process_exec": "command_line",  # the auditd macros put the command line there (CIM: the executable)
    "parent_process": "command_line",
    "file_name": "file",
    "file_path": "file",
    "loaded_file": "loaded_module",
    "loaded_file_path": "loaded_module",
    "registry_path": "registry",
    "registry_key_name": "registry",
    "registry_value_name": "registry",
    "registry_value_data": "registry",
}
PLACEHOLDERS = frozenset({"unknown", "null", "none", "n/a", "-"})  # CIM's values for what a log did not say
LEVELS = ((81, "critical"), (61, "high"), (41, "medium"), (21, "low"), (0, "informational"))
_TEXT_FIELDS = ("name", "description", "known_false_positives")


def splunk_level(risk_score: Any) -> str:
    """A Sigma level for a Splunk risk score (0-100), as Enterprise Security ranks risk; "" if none."""
    try:
        score = float(risk_score)
    except (TypeError, ValueError):
        return ""
    return next(level for floor, level in LEVELS if score >= floor)


def splunk_role(field: str) -> str | None:
    """The role of a search field: CIM names (`Processes.process_name`, `process_name`), any
    `Registry.*` field, else the Sigma field roles (`Image`, `TargetImage`, `ImageLoaded`)."""
    dataset, _, name = field.rpartition(".")
    key = name.lower()
    if key in CIM_ROLES:
        return CIM_ROLES[key]
    if dataset.lower().endswith("registry"):
        return "registry"
    return field_role(name)


@dataclass(frozen=True)
class ValueLines:
    """The file line of each offset of a scalar's value (a search that spans lines)."""

    first: int
    starts: tuple[int, ...] = ()
    lines: tuple[int, ...] = ()

    @classmethod
    def of(cls, parsed: ParsedFile, node: yaml.ScalarNode) -> "ValueLines":
        start, end = node.start_mark, node.end_mark
        first = parsed.file_line(start.line)
        last = end.line - 1 if end.column == 0 and end.line > start.line else end.line
        if last == start.line:
            return cls(first)
        starts: list[int] = []
        lines: list[int] = []
        cursor = 0
        for number in range(start.line, min(last, len(parsed.yaml_lines) - 1) + 1):
            text = parsed.yaml_lines[number]
            if number == end.line:
                text = text[: end.column]
            if number == start.line:
                if node.style in ("|", ">"):
                    continue  # the indicator's line
                text = text[start.column + (1 if node.style in ("'", '"') else 0) :]
            piece = text.strip()
            if number == last and node.style in ("'", '"') and piece.endswith(node.style):
                piece = piece[:-1]
            if node.style == "'":
                piece = piece.replace("''", "'")
            elif node.style == '"':
                piece = piece.replace('\\"', '"').replace("\\\\", "\\")
            probe = piece[:40]
            at = node.value.find(probe, cursor) if probe else -1
            if at >= 0:
                starts.append(at)
                lines.append(parsed.file_line(number))
                cursor = at + len(probe)
        return cls(first, tuple(starts), tuple(lines))

    def line(self, offset: int) -> int:
        at = bisect.bisect_right(self.starts, offset) - 1
        return self.lines[at] if at >= 0 else self.first


@dataclass(frozen=True)
class MacroFile:
    """Where a macro is defined: its file and the lines of its definition."""

    path: str
    lines: ValueLines


def load_macros(files: dict[str, bytes]) -> dict[tuple[str, int], MacroDef]:
    """(name, number of arguments) -> the macro, from the macro files; a file that cannot be
    read is left out (its own read reports why); of two files defining one macro, the first path."""
    macros: dict[tuple[str, int], MacroDef] = {}
    for path in sorted(files):
        try:
            parsed = parse_yaml(path, read_text(path, files[path]))
        except RuleFileError:
            continue
        macro = _macro(parsed)
        if macro is not None:
            macros.setdefault((macro.name, len(macro.arguments)), macro)
    return macros


def _macro(parsed: ParsedFile) -> MacroDef | None:
    doc = next((d for d in parsed.documents if isinstance(d.data, dict)), None)
    if doc is None:
        return None
    node = child(doc.node, "definition")
    if not isinstance(node, yaml.ScalarNode):
        return None
    name = str(doc.data.get("name") or parsed.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip()
    args = doc.data.get("arguments") if isinstance(doc.data.get("arguments"), list) else []
    return MacroDef(
        name, scalar_text(node), tuple(str(a) for a in args), MacroFile(parsed.path, ValueLines.of(parsed, node))
    )


def detection_platform(path: str, data: dict[str, Any]) -> str:
    """`Mention.platform`: linux or macos by the detection's name or data sources, windows for
    other endpoint detections and those reading Windows logs (a `sysmon` macro), "" for cloud,
    network, web and application ones."""
    stem = path.rsplit("/", 1)[-1].lower()
    sources = " ".join(str(s) for s in _list(data.get("data_source"))).lower()
    if stem.startswith("linux_") or "linux" in sources:
        return "linux"
    if stem.startswith("macos") or "macos" in sources or "osquery" in sources:
        return "macos"
    tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
    if (
        path.startswith("detections/endpoint/")
        or str(tags.get("security_domain", "")).lower() == "endpoint"
        or "windows" in sources
        or _WINDOWS_LOGS.search(str(data.get("search") or ""))
    ):
        return "windows"
    return ""


_WINDOWS_LOGS = re.compile(r"`(?:sysmon|wineventlog_\w+|powershell)`")  # macros of Windows event logs


def macro_platform(path: str, data: dict[str, Any]) -> str:
    """`Mention.platform` of a macro file: linux or macos by its name, windows for a macro of
    original file names (a PE header's) or Windows logs, "" for the others."""
    stem = path.rsplit("/", 1)[-1].lower()
    definition = str(data.get("definition") or "")
    if stem.startswith(("linux", "macos")):
        return "linux" if stem.startswith("linux") else "macos"
    if "original_file_name" in definition.lower() or _WINDOWS_LOGS.search(definition):
        return "windows"
    return ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _meta(path: str, data: dict[str, Any]) -> dict[str, Any]:
    tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
    attack = [f"attack.{str(t).strip().lower()}" for t in _list(tags.get("mitre_attack_id")) if str(t).strip()]
    atomic = [f"atomic:{str(g).strip().lower()}" for g in _list(tags.get("atomic_guid")) if str(g).strip()]
    model = re.search(r"datamodel\s*=\s*\"?([\w.]+)", str(data.get("search") or ""))
    sources = [str(s) for s in _list(data.get("data_source"))]
    return {
        "rule_id": str(data.get("id") or ""),
        "title": str(data.get("name") or ""),
        "level": splunk_level(tags.get("risk_score")),
        "status": str(data.get("status") or ""),
        "tags": tuple(dict.fromkeys(attack + atomic)),
        "logsource": model.group(1) if model else sources[0] if sources else "",
        "platform": detection_platform(path, data),
    }


def extract_splunk(ctx: FileContext, parsed: ParsedFile, macros: dict[tuple[str, int], MacroDef]) -> Extraction:
    """Mentions in a detection (its search, expanded, and its text) or a macro file (its definition)."""
    doc = next(d for d in parsed.documents if isinstance(d.data, dict))
    is_macro = ctx.path.startswith(MACRO_DIR)
    meta = (
        {"title": str(doc.data.get("name") or ""), "platform": macro_platform(ctx.path, doc.data)}
        if is_macro
        else _meta(ctx.path, doc.data)
    )
    col = Collector(ctx, parsed, meta["platform"])
    platform = {"windows": "windows", "linux": "unix", "macos": "unix"}.get(meta["platform"], "other")
    if meta.get("rule_id"):
        col.out.rule_ids.append(meta["rule_id"])
    if not is_macro:
        tags = doc.data.get("tags") if isinstance(doc.data.get("tags"), dict) else {}
        col.out.entry = {"atomic_guids": sorted({str(g).strip().lower() for g in _list(tags.get("atomic_guid")) if g})}
    for key in ("description",) if is_macro else _TEXT_FIELDS:
        template = col.make(**meta, field=key, role="text")
        for scalar in scalars(child(doc.node, key)):
            col.scan(scalar, template, explicit_names, infer=True, in_prose=True, platform=platform)
    node = child(doc.node, "definition" if is_macro else "search")
    if isinstance(node, yaml.ScalarNode) and scalar_text(node):
        _search(col, node, meta, platform, macros, is_macro)
    return col.out


def _search(
    col: Collector,
    node: yaml.ScalarNode,
    meta: dict[str, Any],
    platform: str,
    macros: dict[tuple[str, int], MacroDef],
    is_macro: bool,
) -> None:
    lines = ValueLines.of(col.parsed, node)
    expansion = expand(node.value, lambda name, count: macros.get((name, count)))
    calls = _calls(expansion.pieces)
    # the file each call resolved to, and the name it called (`macros/NAME.yml`): a file that
    # comes to define the name, or stops defining it, changes what the call means (Splunk.provides)
    used = {_macro_path(name, macros, count) for name, count in calls} | {_named(name) for name, _ in calls}
    col.out.depends = sorted(used - {col.ctx.path})
    col.out.warnings.extend(expansion.warnings)  # `stats --errors` lists them with the file
    for piece in expansion.pieces:
        if piece.token.kind == "comment":
            line = _line(piece, lines)
            template = col.make(**meta, field="comment", role="comment")
            for hit in explicit_names(piece.token.value):
                col.add(template, hit.name, line)
            col.out.candidates.append(Candidate(piece.token.value, line, col._line(line), template, True, platform))
    for comparison in comparisons(expansion.pieces):
        _comparison(col, comparison, meta, platform, lines, is_macro)


def _calls(pieces: list[Piece]) -> list[tuple[str, int]]:
    """(name, number of arguments) of every macro call, nested ones included."""
    calls = {(call.macro.name, len(call.macro.arguments)) for piece in pieces for call in piece.chain}
    calls.update((p.token.value, len(p.token.args)) for p in pieces if p.token.kind == "macro")
    return sorted(calls)


def _macro_path(name: str, macros: dict[tuple[str, int], MacroDef], count: int) -> str:
    """The file defining a macro, or where it would be defined (`macros/NAME.yml`)."""
    macro = macros.get((name, count))
    if macro is not None and isinstance(macro.origin, MacroFile):
        return macro.origin.path
    return _named(name)


def _named(name: str) -> str:
    """A macro's name as a dependency: the path of a file named after it (`macros/NAME.yml`)."""
    return f"{MACRO_DIR}{name}.yml"


def _line(piece: Piece, lines: ValueLines) -> int:
    """The file line of a piece: its own, or that of the outermost macro call it came through."""
    return lines.line((piece.chain[0].token if piece.chain else piece.token).start)


def _via(piece: Piece) -> tuple[str, ...]:
    """`modifiers` of a value found through macros: each macro, then where the innermost defines it."""
    if not piece.chain:
        return ()
    names = tuple(f"macro:{call.macro.name}" for call in piece.chain)
    origin = piece.chain[-1].macro.origin
    if isinstance(origin, MacroFile):
        return (*names, f"via:{origin.path}#L{origin.lines.line(piece.token.start)}")
    return names


def _comparison(
    col: Collector, comparison: Comparison, meta: dict[str, Any], platform: str, lines: ValueLines, is_macro: bool
) -> None:
    field = comparison.field.token.value if comparison.field is not None else ""
    role = splunk_role(field) if field else "keyword"
    if role is None:
        return
    context = "" if is_macro else "filter" if comparison.negated else "selection"
    is_regex = comparison.op in ("match", "regex")
    for value in comparison.values:
        text = value.token.value
        wildcard = "%" if comparison.op == "like" else "*"
        modifiers: tuple[str, ...] = ()
        if not is_regex:
            text, modifiers = _wildcards(text, wildcard)
        if not text or text.lower() in PLACEHOLDERS:
            continue
        template = col.make(
            **meta,
            field=field,
            modifiers=(*modifiers, *(("re",) if is_regex else ()), *_via(value)),
            role=role,
            context=context,
            detection=comparison.command,
        )
        line = _line(value, lines)
        for hit in value_finder(template, is_regex, platform)(text):
            col.add(template, hit.name, line, hit.inferred)
        if infers_bare_names(template, is_regex):
            col.out.candidates.append(Candidate(text, line, col._line(line), template, False, platform))


def _wildcards(text: str, wildcard: str) -> tuple[str, tuple[str, ...]]:
    """A value without its leading and trailing wildcards, and the Sigma modifier they mean."""
    head, tail = text.startswith(wildcard), text.endswith(wildcard) and len(text) > 1
    core = text.strip(wildcard)
    if head and tail:
        return core, ("contains",)
    if head:
        return core, ("endswith",)
    if tail:
        return core, ("startswith",)
    return core, ()


class Splunk(Source):
    name = "splunk"
    default_url = "https://github.com/splunk/security_content.git"
    web_url = "https://github.com/splunk/security_content"
    branch = "develop"
    paths = re.compile(r"^(detections/.+|macros/[^/]+)\.yml$", re.DOTALL)
    history = True  # LOLBAS links to detections that moved are resolved through it
    detects = True
    # as Elastic's: its process_name values (syscall names among them: setgid, fchmod) do not
    # change what the other sources' bare words mean
    feeds_stems = False

    def __init__(self) -> None:
        self.macros: dict[tuple[str, int], MacroDef] = {}

    def shared(self, path: str) -> bool:
        return path.startswith(MACRO_DIR) and self.wants(path)

    def share(self, files: dict[str, bytes]) -> None:
        self.macros = load_macros(files)

    def provides(self, path: str, content: bytes) -> list[str]:
        """The name of the macro the file defines, as a dependency (`macros/NAME.yml`)."""
        macros = load_macros({path: content}) if self.shared(path) else {}
        return sorted({_named(name) for name, _ in macros})

    def parse(self, path: str, text: str) -> ParsedFile:
        return require_mapping(parse_yaml(path, text))

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_splunk(ctx, parsed, self.macros)

    def title(self, parsed: ParsedFile) -> str:
        return next((str(d.data.get("name") or "") for d in parsed.documents if isinstance(d.data, dict)), "")


register(Splunk())
