"""Mentions of executables in parsed Sigma rules and LOLBAS entries.

Extraction runs in two steps. `extract_sigma` / `extract_lolbas` find every explicit name
(with an extension, or the tail of a Unix process path) and return the strings where a bare
name (`rundll32 `) could stand. Once every file is read, the executables the corpus knows are
known, and `infer` turns those strings into `inferred` mentions.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import yaml

from .model import PLATFORMS, Mention
from .names import (
    COMMON_WORDS,
    LOG_SOURCE_WORDS,
    MODULE_PREFIX,
    PROSE_WORDS,
    UNIX_PREFIX,
    UNIX_WORDS,
    WINDOWS_PREFIX,
    NameHit,
    bare_names,
    explicit_names,
    is_homoglyph,
    process_tail,
    regex_names,
    unix_program_paths,
    value_names,
)
from .parse import ParsedFile, child, mapping_items, scalar_text, scalars

_PROCESS = {
    "image",
    "newprocessname",
    "processname",
    "sourceimage",
    "callerprocessname",
    "application",
    "processpath",
    "applicationpath",
    "modifyingapplication",
    "processnamebuffer",
    "exe",
    "comm",
    "sourceprocessname",
    "initiatingprocessfilename",
    "process_path",
    "executable",
}
_PARENT = {"parentimage", "parentprocessname", "parentprocesspath", "parentexe"}
_ORIGINAL = {"originalfilename"}
_TARGET = {"targetimage", "targetprocessname"}
_LOADED = {"imageloaded", "loadedimage"}
_FILE = {
    "targetfilename",
    "filename",
    "sourcefilename",
    "filepath",
    "path",
    "relativetargetname",
    "filenamebuffer",
    "objectname",
    "currentdirectory",
    "targetfilepath",
    "file_path",
    "name",
}
_REGISTRY = {"targetobject", "details", "newvalue", "oldvalue"}
_COMMAND = {
    "commandline",
    "parentcommandline",
    "scriptblocktext",
    "payload",
    "servicefilename",
    "imagepath",
    "processcommandline",
    "contextinfo",
    "data",
    "hostapplication",
    "command",
    "taskcontent",
    "taskcontentnew",
    "contents",
    "param1",
    "param2",
    "param3",
    "a0",
    "a1",
    "a2",
    "a3",
    "a4",
    "a5",
    "a6",
    "a7",
    "a8",
    "a9",
    "proctitle",
    "args",
    "cmdline",
}
# Fields whose values are never file names: network names, hashes, user agents, accounts.
_NEVER = re.compile(
    r"host|domain|^query|queryname|queryresults|dns|hash|md5|sha\d|imphash|useragent|user-agent|agent|"
    r"ip$|port$|sid$|guid|accessmask|grantedaccess|^user|username|account",
    re.IGNORECASE,
)
_WHOLE_VALUE_ROLES = {"process", "parent", "original_filename", "target", "loaded_module", "file"}
_PROCESS_ROLES = {"process", "parent", "original_filename", "target"}
_INFER_ROLES = {"command_line", "keyword", "other", "registry"}
_ENCODING_MODIFIERS = {"base64", "base64offset", "utf16le", "utf16be", "utf16", "wide"}
_NO_NAME_MODIFIERS = {"cidr", "lt", "lte", "gt", "gte", "fieldref", "exists", "neq"}
_UNIX_PRODUCTS = {"linux", "macos"}
# Fields holding the name of a service, unit or organisation: a bare word there names
# that object ('TeamViewer' service, 'AnyDesk Software GmbH'), not a program (a pipe named after
# a program, '\\PSEXESVC', stays its artifact).
_OBJECT_NAME_FIELDS = {"servicename", "company", "unit", "displayname"}
# Titles ending in the name of their log source ("... - PowerShell", "... - Linux"): that part
# names where the events come from, not a program.
_LOGSOURCE_SUFFIX = re.compile(
    r"\s+-\s+(?:powershell(?: module| classic| core| script)?|posh ?module|ps ?script|scriptblock(?: ?logging)?|"
    r"ps|linux|macos|windows|sysmon|registry|security|system|file|process(?: ?creation)?|proccreation|"
    r"dns client|zeek|auditd|builtin|commandline|reg|proxy)\s*$",
    re.IGNORECASE,
)


def platform_of(logsource: str) -> str:
    """Which names a rule may infer: "windows", "unix" (Linux, macOS) or "other" (web, network, cloud).

    logsource is "product/category/service" with empty parts left out (as `Mention.logsource`).
    """
    product = logsource.split("/")[0]
    return "unix" if product in _UNIX_PRODUCTS else "windows" if product == "windows" else "other"


def mention_platform(logsource: str) -> str:
    """`Mention.platform` of a Sigma rule: its product ("windows", "linux", "macos") when
    platform_of reads it as a host's, "" otherwise (web, network, cloud, none)."""
    product = logsource.split("/")[0]
    return product if platform_of(logsource) != "other" and product in PLATFORMS else ""


def field_role(field_name: str, logsource: str = "") -> str | None:
    """The role of a detection field, or None when its values are never file names.

    `Data` holds the command line in PowerShell classic events (HostApplication=...), and the
    faulting program or anything else in other event logs (WER, MSSQL): there it is `other`.
    """
    key = field_name.lower()
    if not key:  # `'|all': [...]`: a keyword list with modifiers
        return "keyword"
    if key == "data" and "ps_classic" not in logsource and "powershell-classic" not in logsource:
        return "other"
    for names, role in (
        (_PROCESS, "process"),
        (_PARENT, "parent"),
        (_ORIGINAL, "original_filename"),
        (_TARGET, "target"),
        (_LOADED, "loaded_module"),
        (_FILE, "file"),
        (_REGISTRY, "registry"),
        (_COMMAND, "command_line"),
    ):
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
    platform: str = "windows"  # platform_of(logsource): which stems may resolve

    def __reduce__(self) -> tuple[Any, ...]:  # as a tuple: parser processes send tens of thousands
        return Candidate, (self.text, self.line, self.snippet, self.template, self.in_prose, self.platform)


@dataclass
class Extraction:
    """What one file gives: explicit mentions, and strings to scan for bare names later."""

    mentions: list[Mention] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    rule_ids: list[str] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)  # Sigma -> LOLBAS pages, LOLBAS -> Sigma rules
    entry: dict[str, Any] = field(default_factory=dict)  # a LOLBAS entry: name, aliases, categories
    own_stems: dict[str, str] = field(default_factory=dict)  # a LOLBAS entry's own stems: always names in it
    depends: list[str] = field(default_factory=list)  # the source's shared files it read (Source.shared)
    warnings: list[str] = field(default_factory=list)  # what a source without a checker warns of (a macro cycle)

    def alias_pairs(self) -> list[list[str]]:
        """Image and OriginalFileName names one selection pairs: [image, original, kind].

        kind "stem": the two share their stem (`\\pwsh.exe` with `pwsh.dll`); "single": the
        item names exactly one of each, so the pairing is unambiguous (`\\nltest.exe` with
        `nltestrk.exe`). Filters and inferred names never pair.
        """
        items: dict[str, tuple[set[str], set[str]]] = {}
        for m in self.mentions:
            if (
                m.source == "sigma"
                and m.context == "selection"
                and not m.inferred
                and m.role in ("process", "original_filename")
            ):
                images, originals = items.setdefault(m.detection, (set(), set()))
                (images if m.role == "process" else originals).add(m.binary)
        pairs = set()
        for images, originals in items.values():
            for image in images:
                for original in originals:
                    if image == original:
                        continue
                    if image.rpartition(".")[0] == original.rpartition(".")[0] and "." in image + original:
                        pairs.add((image, original, "stem"))
                    elif len(images) == 1 and len(originals) == 1:
                        pairs.add((image, original, "single"))
        return [list(p) for p in sorted(pairs)]

    def executables(self) -> set[str]:
        """Names this file shows to be executables: run as a process, a LOLBAS, GTFOBins or
        LOOBins entry (names.known_stems).

        A Windows program written without extension is marked `windows:`, a GTFOBins or LOOBins
        program `unix:`, a DLL a selection watches being loaded `module:`.
        """
        names = set()
        for m in self.mentions:
            if m.inferred:
                continue
            if m.role in ("gtfobin", "loobin"):  # a GTFOBins or LOOBins page's own binary: a Unix program
                names.add(UNIX_PREFIX + m.binary)
            elif m.role in ("process", "parent", "original_filename", "lolbas_entry"):
                windows = "." not in m.binary and m.role != "lolbas_entry" and m.platform == "windows"
                names.add(WINDOWS_PREFIX + m.binary if windows else m.binary)
            elif m.role == "loaded_module" and m.context == "selection" and m.binary.endswith(".dll"):
                names.add(MODULE_PREFIX + m.binary)
        return names


class _Collector:
    """Builds mentions for one file: the line of every hit, deduplicated."""

    def __init__(self, ctx: FileContext, parsed: ParsedFile) -> None:
        self.ctx = ctx
        self.parsed = parsed
        self.lines = parsed.lines
        self.out = Extraction()
        self._seen: set[tuple[Any, ...]] = set()
        self._bases: dict[tuple[Any, ...], Mention] = {}
        self._stripped: dict[int, str] = {}
        self.text_nodes: list[tuple[yaml.Node, Mention]] = []  # scalars of text fields, with their template

    def template(self, meta: dict[str, Any], **fields: Any) -> Mention:
        """A mention without binary, line and snippet: the rule's `meta` and the place's `fields`.

        One Mention per distinct meta is made by its constructor; the templates are copies of it
        with `fields` set (as `Mention.at` does): a file makes dozens, the constructor cost 0.1 s.
        """
        key = tuple(meta.items())
        base = self._bases.get(key)
        if base is None:
            base = self._bases[key] = Mention(
                binary="", source=self.ctx.source, path=self.ctx.path, line=0, snippet="", **meta
            )
        values = base.__dict__
        if not values.keys() >= fields.keys():
            raise TypeError(f"Mention has no field {sorted(fields.keys() - values.keys())}")
        mention = object.__new__(Mention)
        mention.__dict__.update(values)
        mention.__dict__.update(fields)
        return mention

    def add(self, template: Mention, name: str, line: int, inferred: bool = False) -> None:
        key = (name, line, template.role, template.field, template.detection, template.context)
        if key in self._seen or not 0 < line <= len(self.lines):
            return
        self._seen.add(key)
        self.out.mentions.append(
            template.at(name, line, self._line(line), inferred, not name.isascii() and is_homoglyph(name))
        )

    def _line(self, line: int) -> str:
        """The stripped text of a line: one string per line, however many names it holds."""
        stripped = self._stripped.get(line)
        if stripped is None:
            stripped = self._stripped[line] = self.lines[line - 1].strip()
        return stripped

    def scan(
        self,
        node: yaml.Node,
        template: Mention,
        finder: Any,
        *,
        infer: bool = False,
        in_prose: bool = False,
        platform: str = "windows",
        infer_text: Any = None,
    ) -> None:
        """Run finder(text) over a scalar, line by line when the scalar spans several lines.

        infer_text(text): the part of the text where bare names may stand (default: all of it).
        """
        for line, text in self.scalar_lines(node):
            for hit in finder(text):
                self.add(template, hit.name, line, hit.inferred)
            if infer:
                self.out.candidates.append(
                    Candidate(
                        infer_text(text) if infer_text else text, line, self._line(line), template, in_prose, platform
                    )
                )

    def scalar_lines(self, node: yaml.Node) -> Iterator[tuple[int, str]]:
        """(file line, text) of a scalar: its value on one line, else each line's text; a
        double-quoted value with escapes as YAML reads it (see _quoted_lines)."""
        start, end = node.start_mark.line, node.end_mark.line
        if node.end_mark.column == 0 and end > start:
            end -= 1
        if start == end:
            yield self.parsed.file_line(start), node.value
            return
        if node.style == '"' and self._has_escape(start, end):
            quoted = _quoted_lines(self.parsed.yaml_lines, node)
            if quoted is not None:
                yield from ((self.parsed.file_line(number), text) for number, text in quoted)
                return
        for number in range(start, min(end, len(self.parsed.yaml_lines) - 1) + 1):
            text = self.parsed.yaml_lines[number]
            if number == start:
                text = text[node.start_mark.column :]
            yield self.parsed.file_line(number), text

    def _has_escape(self, start: int, end: int) -> bool:
        return any(
            "\\" in self.parsed.yaml_lines[n] for n in range(start, min(end, len(self.parsed.yaml_lines) - 1) + 1)
        )


_QUOTED = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_QUOTED_MAX_LINES = 64  # each line reads the text before it again: a longer value is read as written


def _quoted_lines(yaml_lines: list[str], node: yaml.Node) -> list[tuple[int, str]] | None:
    """A double-quoted scalar across lines as YAML reads it, by the YAML line each part starts
    on: the text up to each line's end read by PyYAML (then what it shares with the value) says
    where the next line's text starts in it; a line ending in an escaped line break (an odd run
    of `\\`: no space, one word) goes on with the next. None if a part cannot be read so, or the
    value has more than _QUOTED_MAX_LINES lines."""
    first, last = node.start_mark.line, node.end_mark.line
    if last - first >= _QUOTED_MAX_LINES:
        return None
    raw = yaml_lines[first : last + 1]
    raw[0] = raw[0][node.start_mark.column :]
    value = node.value
    starts, joined = [0], []
    for k in range(1, len(raw)):
        upto = "\n".join(raw[:k])
        continued = (len(upto) - len(upto.rstrip("\\"))) % 2 == 1
        joined.append(continued)
        try:
            read = yaml.load(upto[:-1] + '"' if continued else upto + '"', Loader=_QUOTED)
        except yaml.YAMLError:
            return None
        if not isinstance(read, str):
            return None
        shared = 0
        for a, b in zip(read, value):
            if a != b:
                break
            shared += 1
        starts.append(max(shared, starts[-1]))
    starts.append(len(value))
    parts: list[tuple[int, str]] = []
    for k in range(len(raw)):
        text = value[starts[k] : starts[k + 1]]
        if k and joined[k - 1]:
            parts[-1] = (parts[-1][0], parts[-1][1] + text)
        else:
            parts.append((first + k, text))
    return parts


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
            pattern = (
                names
                if low == "them"
                else fnmatch.filter(names, token)
                if "*" in token or "?" in token or "[" in token
                else [name for name in names if name == token]
            )
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
        platform = platform_of(meta["logsource"])
        top = _top_level(doc.node)
        for ref in scalars(top.get("references")):
            if "lolbas-project" in ref.value.lower():
                col.out.links.append(
                    {"kind": "lolbas", "url": ref.value.strip(), "line": parsed.file_line(ref.start_mark.line)}
                )
        # text: title, description, false positives, the log source's definition, simulations
        texts = [(key, top.get(key)) for key in ("title", "description", "falsepositives", "simulation")]
        texts.append(("definition", child(top.get("logsource"), "definition")))
        for key, value in texts:
            if value is None:
                continue
            template = col.template(meta, field=key, role="text")
            cut = _title_text if key == "title" else None
            for scalar in scalars(value):
                col.scan(scalar, template, explicit_names, infer=True, in_prose=True, platform=platform, infer_text=cut)
                col.text_nodes.append((scalar, template))
        is_filter_rule = "filter" in doc.data and "detection" not in doc.data
        det_node = top.get("filter" if is_filter_rule else "detection")
        item_names = [k for k, _, _ in mapping_items(det_node) if k not in ("condition", "timeframe", "rules")]
        negated = (
            set(item_names)
            if is_filter_rule
            else negated_items(" ( ".join(conditions) + " )" * len(conditions), item_names)
        )
        for name, _, item in mapping_items(det_node):
            if name in ("condition", "timeframe", "rules"):
                continue
            context = "filter" if name in negated else "selection"
            _detection_item(col, item, name, context, meta, platform)
    _programs_in_text(col)
    if docs:
        meta = _sigma_meta({**global_data, **docs[-1].data})
        _comments(col, col.template(meta, field="comment", role="comment"), platform_of(meta["logsource"]))
    return col.out


def _top_level(node: yaml.Node) -> dict[str, yaml.Node]:
    """A document's top-level keys and their value nodes (the first of a repeated key, as `child`)."""
    top: dict[str, yaml.Node] = {}
    for key, _, value in mapping_items(node):
        top.setdefault(key, value)
    return top


ALIAS_MIN_RULES = 2  # an unambiguous pair of different stems must be seen in this many rule files


def derive_aliases(reports: Iterable[Any]) -> dict[str, list[str]]:
    """name -> its aliases, from every file report's alias pairs (symmetric).

    Two names are aliases when a selection of some rule pairs them as Image and OriginalFileName
    with the same stem (pwsh.exe and pwsh.dll), or when ALIAS_MIN_RULES rule files each pair
    exactly these two (nltest.exe and nltestrk.exe): one rule pairing two different names may
    be a coincidence of its selection (svchost.exe with wsmwmipl.dll).
    """
    seen: dict[tuple[str, str], set[str]] = {}
    for report in reports:
        for image, original, kind in getattr(report, "aliases", None) or ():
            seen.setdefault((image, original), set()).add(kind + ":" + report.path)
    aliases: dict[str, set[str]] = {}
    for (image, original), where in seen.items():
        stem = any(w.startswith("stem:") for w in where)
        if stem or len({w.split(":", 1)[1] for w in where}) >= ALIAS_MIN_RULES:
            aliases.setdefault(image, set()).add(original)
            aliases.setdefault(original, set()).add(image)
    return {name: sorted(names) for name, names in sorted(aliases.items())}


def _title_text(title: str) -> str:
    """A title without the log source it may end with ("Obfuscated ... - PowerShell")."""
    return _LOGSOURCE_SUFFIX.sub("", title)


def _programs_in_text(col: _Collector) -> None:
    """`.com` programs the rule runs (ParentImage `\\more.com`) also count in its text ("More.com")."""
    programs = {m.binary for m in col.out.mentions if m.binary.endswith(".com") and m.role in _PROCESS_ROLES}
    for name in programs:
        pattern = re.compile(rf"(?<![\w.\-]){re.escape(name)}(?![\w\-]|\.\w)", re.IGNORECASE)
        for node, template in col.text_nodes:
            for line, text in col.scalar_lines(node):
                if pattern.search(text):
                    col.add(template, name, line)


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
        "platform": mention_platform("/".join(parts)),
    }


def _detection_item(
    col: _Collector, item: yaml.Node, name: str, context: str, meta: dict[str, Any], platform: str
) -> None:
    if isinstance(item, yaml.MappingNode):
        maps = [item]
    elif isinstance(item, yaml.SequenceNode) and any(isinstance(v, yaml.MappingNode) for v in item.value):
        maps = [v for v in item.value if isinstance(v, yaml.MappingNode)]
        keywords = [v for v in item.value if isinstance(v, yaml.ScalarNode)]
        _keywords(col, keywords, name, context, meta, platform)
    else:
        _keywords(col, list(scalars(item)), name, context, meta, platform)
        return
    for mapping in maps:
        for key, _, value in mapping_items(mapping):
            field_name, *modifiers = key.split("|")
            role = field_role(field_name, meta["logsource"])
            if role is None or _NO_NAME_MODIFIERS.intersection(modifiers):
                continue
            template = col.template(
                meta,
                field=field_name,
                modifiers=tuple(modifiers),
                role=role,
                context=context,
                detection=name,
                encoded=bool(_ENCODING_MODIFIERS.intersection(modifiers)),
            )
            _values(col, value, template, "re" in modifiers, platform)


def _keywords(
    col: _Collector, nodes: list[yaml.ScalarNode], name: str, context: str, meta: dict[str, Any], platform: str
) -> None:
    template = col.template(meta, field="", role="keyword", context=context, detection=name)
    for node in nodes:
        if scalar_text(node):
            col.scan(node, template, explicit_names, infer=True, platform=platform)


def _values(col: _Collector, value: yaml.Node, template: Mention, is_regex: bool, platform: str) -> None:
    finder = value_finder(template, is_regex, platform)
    infer = infers_bare_names(template, is_regex)
    for scalar in scalars(value):
        if scalar_text(scalar):
            col.scan(scalar, template, finder, infer=infer, platform=platform)


def infers_bare_names(template: Mention, is_regex: bool) -> bool:
    """Whether bare names (`rundll32 `) are looked for in a detection value of this field: a
    command line, keyword, registry or other field, not a regex, not a service or company name."""
    return template.role in _INFER_ROLES and not is_regex and template.field.lower() not in _OBJECT_NAME_FIELDS


def value_finder(template: Mention, is_regex: bool, platform: str) -> Callable[[str], list[NameHit]]:
    """The names in one detection value of `template`'s role and modifiers (contains, endswith,
    startswith, re): the whole value of a process or file field, names with an extension in
    other fields; platform: platform_of the rule (a Unix process value names a Unix program)."""
    whole = template.role in _WHOLE_VALUE_ROLES
    process = template.role in _PROCESS_ROLES and "startswith" not in template.modifiers
    contains = "contains" in template.modifiers
    # an exact process value without separator (`Image: 'System'`) is a pseudo-process on Windows;
    # an OriginalFileName without extension (`'Plink'`) is still the program's name
    exact = not {"contains", "endswith"}.intersection(template.modifiers) and template.role != "original_filename"
    unix = platform == "unix"

    def finder(text: str) -> list[NameHit]:
        if is_regex:
            return regex_names(text, whole, process)
        if argv0:
            hits = explicit_names(text)
            argv = None if hits or encoded else argv0_name(text)
            return [argv] if argv is not None else hits
        # `Image|contains: '/python'` names python; `'/opt/app/work'` names a folder
        hits = value_names(text, whole, process and (not contains or text.count("/") == 1))
        if hits or not process or encoded:
            return hits
        # `Image|endswith: 'crontab'` (Unix), `Image|contains: '\\smbexec'` (smbexec.exe, inferred)
        tail = process_tail(text, exact, unix)
        return [tail] if tail is not None else []

    encoded = template.encoded
    argv0 = unix and template.field.lower() == "a0"  # auditd EXECVE: a0 is argv[0], the program run
    return finder


_ARGV0 = re.compile(r"[A-Za-z0-9_][\w.+\-]*[A-Za-z0-9_]", re.ASCII)


def argv0_name(value: str) -> NameHit | None:
    """The program an auditd `a0` value (argv[0]) names: the value itself or its Unix path's tail,
    two characters or more, common words included (`last`, `users`, `service`); inferred."""
    stripped = value.strip().strip("'\"").strip("*").rstrip("/")
    tail = stripped.rsplit("/", 1)[-1]
    if not _ARGV0.fullmatch(tail) or tail.isdigit():
        return None
    start = value.rfind(tail)
    return NameHit(tail.lower(), start, start + len(tail), inferred=True)


# --- comments ----------------------------------------------------------------------------------


def comment_lines(parsed: ParsedFile) -> Iterator[tuple[int, str]]:
    """(0-based YAML line, text after `#`) of every YAML comment in a parsed file.

    PyYAML drops comments: a `#` starts one where it is not inside a scalar (the node tree
    knows every scalar's span, quoted and block ones included) and follows a blank or starts
    the line.
    """
    # lines with a `#` that may start a comment, and where
    marked: dict[int, list[int]] = {}
    for number, text in enumerate(parsed.yaml_lines):
        if "#" in text:
            positions = [m.start(1) for m in _COMMENT_START.finditer(text)]
            if positions:
                marked[number] = positions
    if not marked:
        return
    inside: dict[int, list[tuple[int, float]]] = {}
    lines = sorted(marked)
    stack = [d.node for d in parsed.documents]
    while stack:
        node = stack.pop()
        first, last = node.start_mark.line, node.end_mark.line
        at = bisect.bisect_left(lines, first)
        if at == len(lines) or lines[at] > last:  # no marked line in the node's span
            continue
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += (key, value)
            continue
        if isinstance(node, yaml.SequenceNode):
            stack += node.value
            continue
        if first == last:
            if first in marked:
                inside.setdefault(first, []).append((node.start_mark.column, node.end_mark.column))
            continue
        for number in marked.keys() & range(first, last + 1):
            start = node.start_mark.column if number == first else 0
            end = node.end_mark.column if number == last else float("inf")
            inside.setdefault(number, []).append((start, end))
    for number in sorted(marked):
        spans = inside.get(number, ())
        for position in marked[number]:
            if not any(a <= position < b for a, b in spans):
                yield number, parsed.yaml_lines[number][position + 1 :]
                break


_COMMENT_START = re.compile(r"(?:^|[ \t])(#)")


def _comments(col: _Collector, template: Mention, platform: str) -> None:
    """Names in YAML comments (`# - '\\rundll32.exe'`): role `comment`, bare names as in prose."""
    for number, text in comment_lines(col.parsed):
        line = col.parsed.file_line(number)
        for hit in explicit_names(text):
            col.add(template, hit.name, line)
        col.out.candidates.append(Candidate(text, line, col._line(line), template, True, platform))


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
        meta = {"title": str(data.get("Name") or ""), "tags": tags, "platform": "windows"}
        name_node = child(node, "Name")
        if isinstance(name_node, yaml.ScalarNode) and scalar_text(name_node):
            _lolbas_name(col, name_node, col.template(meta, field="Name", role="lolbas_entry"))
        for alias in scalars(child(node, "Aliases")):
            _lolbas_name(col, alias, col.template(meta, field="Alias", role="lolbas_entry"))
        desc = child(node, "Description")
        if isinstance(desc, yaml.ScalarNode):
            col.scan(
                desc, col.template(meta, field="Description", role="text"), explicit_names, infer=True, in_prose=True
            )
        for path in scalars(child(node, "Full_Path")):
            col.scan(
                path,
                col.template(meta, field="Path", role="lolbas_path"),
                lambda text: value_names(text, whole_value=True, process=True),
            )
        cmd_nodes = child(node, "Commands")
        if isinstance(cmd_nodes, yaml.SequenceNode):
            for cmd_node, cmd in zip(cmd_nodes.value, commands):
                if not isinstance(cmd, dict):
                    continue
                cmd_meta = {**meta, "tags": _lolbas_tags([cmd])}
                for key, _, value in mapping_items(cmd_node):
                    if not isinstance(value, yaml.ScalarNode) or not scalar_text(value):
                        continue
                    if key == "Command":
                        col.scan(
                            value,
                            col.template(cmd_meta, field="Command", role="lolbas_command"),
                            explicit_names,
                            infer=True,
                        )
                    elif key in ("Description", "Usecase"):
                        col.scan(
                            value,
                            col.template(cmd_meta, field=key, role="text"),
                            explicit_names,
                            infer=True,
                            in_prose=True,
                        )
        listed = data.get("Aliases") if isinstance(data.get("Aliases"), list) else []
        aliases = [a.get("Alias") for a in listed if isinstance(a, dict)]
        col.out.entry = {
            "name": str(data.get("Name") or ""),
            "aliases": [str(a) for a in aliases if a],
            "categories": sorted({str(c["Category"]) for c in commands if isinstance(c, dict) and c.get("Category")}),
            "mitre": sorted({str(c["MitreID"]) for c in commands if isinstance(c, dict) and c.get("MitreID")}),
        }
        # the entry's own stems are names inside it, even an English word or a short one (`expand`, `sc`)
        for own in [col.out.entry["name"], *col.out.entry["aliases"]]:
            stem, dot, _ = own.strip().lower().rpartition(".")
            if dot and stem and _OWN_STEM.fullmatch(stem):
                col.out.own_stems.setdefault(stem, own.strip().lower())
        for det in _mapping_list(child(node, "Detection")):
            for key, _, value in mapping_items(det):
                if key in _RULE_LINKS and isinstance(value, yaml.ScalarNode) and scalar_text(value):
                    col.out.links.append(
                        {
                            "kind": key.lower(),
                            "url": value.value.strip(),
                            "line": parsed.file_line(value.start_mark.line),
                        }
                    )
                if key == "IOC" and isinstance(value, yaml.ScalarNode):
                    col.scan(
                        value,
                        col.template(meta, field="IOC", role="lolbas_ioc"),
                        explicit_names,
                        infer=True,
                        in_prose=True,
                    )
        _comments(col, col.template(meta, field="comment", role="comment"), "windows")
    return col.out


_OWN_STEM = re.compile(r"[a-z0-9_][a-z0-9_.+\-]*")
_RULE_LINKS = ("Sigma", "Elastic", "Splunk")  # a LOLBAS entry's Detection links to these rule sets (kind: the source)


def _lolbas_name(col: _Collector, node: yaml.ScalarNode, template: Mention) -> None:
    hits = value_names(node.value, whole_value=True, process=True)
    if hits:
        col.scan(node, template, lambda text: value_names(text, whole_value=True, process=True))
    elif re.fullmatch(r"[A-Za-z0-9_.+\-]*[A-Za-z0-9][A-Za-z0-9_.+\-]*", name := node.value.strip()):
        # a block scalar (`- |-`) starts a line above its text: the name's line is where it is written
        line = next((number for number, text in col.scalar_lines(node) if name in text), None)
        if line is not None:
            col.add(template, name.lower(), line)


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

_SPEAKS_OF_DLLS = re.compile(r"(?i)\bdlls?\b")
_PE_NAME_FIELDS = {"Product", "Description", "FileDescription"}  # PE metadata: product names
_NAME_GOES_ON = re.compile(r" +(?!Application\b|Executable\b)[A-Z]")  # 'PAExec Application' is PAExec
_merged: list[Any] = [None, None, {}]  # the last (module stems, Windows stems) merged, and the merge


# "CLR DLL", "Dbghelp/Dbgcore DLLs": the words before "DLL" name DLLs, common words too
_DLL_PHRASE = re.compile(r"(?<![\w.\-])([\w\-]+(?:/[\w\-]+)*)\s+dlls?\b", re.IGNORECASE)


def _with_modules(module_stems: dict[str, str], windows_stems: dict[str, str]) -> dict[str, str]:
    """DLL stems that are no common word and Windows stems in one map (Windows names win),
    merged once per pair of maps: every file of a refresh resolves against the same two
    (copying them per file cost 0.2 s)."""
    if _merged[0] is not module_stems or _merged[1] is not windows_stems:
        modules = {stem: name for stem, name in module_stems.items() if stem not in COMMON_WORDS}
        _merged[:] = [module_stems, windows_stems, {**modules, **windows_stems}]
    return _merged[2]


def _dll_phrases(text: str, module_stems: dict[str, str]) -> list[str]:
    """DLLs named as "X DLL" or "X/Y DLLs" in prose, X a loaded DLL's stem (`CLR DLL` -> clr.dll)."""
    return [
        module_stems[word]
        for match in _DLL_PHRASE.finditer(text)
        for word in match.group(1).lower().split("/")
        if word in module_stems
    ]


# A tool known on one platform only, named in the other's prose: a Unix name of this many letters
# or more in Windows prose ("CobaltStrike", "evil-winrm"), a Windows program's stem in Unix prose
# ("Informs tor", "Google Chrome"); English words never (PROSE_WORDS, COMMON_WORDS).
OTHER_PLATFORM_MIN = 6
_across: list[Any] = [None, None, {}, {}]  # the last (Windows, Unix) stems, and the two merges


def _across_platforms(
    windows_stems: dict[str, str], unix_stems: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(Windows prose stems, Unix prose stems), each with the other platform's programs it may name,
    merged once per pair of maps. A Windows program in Unix prose keeps its Unix form (`tor`)."""
    if _across[0] is not windows_stems or _across[1] is not unix_stems:
        from_unix = {
            stem: name
            for stem, name in unix_stems.items()
            if len(stem) >= OTHER_PLATFORM_MIN and stem not in PROSE_WORDS and stem not in UNIX_WORDS
        }
        from_windows = {
            stem: stem
            for stem, name in windows_stems.items()
            if name.endswith(".exe") and stem not in PROSE_WORDS and stem not in UNIX_WORDS and stem not in unix_stems
        }
        _across[:] = [windows_stems, unix_stems, {**from_unix, **windows_stems}, {**from_windows, **unix_stems}]
    return _across[2], _across[3]


def infer(
    candidates: Iterable[Candidate],
    windows_stems: dict[str, str],
    unix_stems: dict[str, str],
    existing: Iterable[Mention] = (),
    own_stems: dict[str, str] | None = None,
    module_stems: dict[str, str] | None = None,
) -> list[Mention]:
    """Inferred mentions: known executables written without their extension.

    A candidate's platform picks the stems: Windows names in Windows rules and LOLBAS, Unix
    names in Linux and macOS rules, neither in web, network and cloud rules; the tail of a Unix
    path (`/usr/bin/curl`) is only ever a Unix name, and a program folder's tail (`/usr/bin/X`,
    `X.app/Contents/MacOS/X`) one even when unknown. Prose may also name the other platform's
    tools (_across_platforms: CobaltStrike in a Windows rule, tor in a macOS one). own_stems: a LOLBAS entry's own stems (in
    its commands and IOCs; in its prose an English word stays one: "Run a remote file");
    module_stems: DLLs, named bare in Windows prose that speaks of DLLs ("Dbgcore/Dbghelp DLLs").
    """
    seen = {(m.binary, m.line, m.role, m.field, m.detection, m.context) for m in existing}
    own = {**windows_stems, **own_stems} if own_stems else windows_stems
    with_modules = _with_modules(module_stems, windows_stems) if module_stems else windows_stems
    windows_prose, unix_prose = _across_platforms(windows_stems, unix_stems)
    out: list[Mention] = []
    for cand in candidates:
        path_stems: dict[str, str] | None = unix_stems
        if cand.platform == "windows":
            if not cand.in_prose:
                stems = own
            elif module_stems and _SPEAKS_OF_DLLS.search(cand.text):
                stems = with_modules
            else:
                stems = windows_prose
        elif cand.platform == "unix":
            stems, path_stems = (unix_prose if cand.in_prose else unix_stems), None
        else:
            # in other logsources values are another system's commands (Cisco `show arp`) or
            # URLs: a bare name counts only in prose, as a Unix name, or as a Unix path's tail
            stems = unix_stems if cand.in_prose else {}
        hits = bare_names(cand.text, stems, in_prose=cand.in_prose, unix_stems=path_stems)
        if cand.template.field == "definition":  # a log source's requirements: "Sysmon config", "auditd rules"
            hits = (hit for hit in hits if cand.text[hit.start : hit.end].lower() not in LOG_SOURCE_WORDS)
        if cand.template.role == "other" and cand.template.field in _PE_NAME_FIELDS:
            # 'Tor Browser', 'Ping Castle', 'Opera Installer': a name another word goes on names a product
            hits = (hit for hit in hits if not _NAME_GOES_ON.match(cand.text, hit.end))
        names = [hit.name for hit in hits]
        if "/" in cand.text:
            names += [hit.name for hit in unix_program_paths(cand.text)]  # `/usr/bin/X`, `.app/Contents/MacOS/X`
        if stems is with_modules and stems is not windows_stems:
            names += _dll_phrases(cand.text, module_stems)  # type: ignore[arg-type]
        for name in names:
            t = cand.template
            key = (name, cand.line, t.role, t.field, t.detection, t.context)
            if key in seen:
                continue
            seen.add(key)
            out.append(t.at(name, cand.line, cand.snippet, True, not name.isascii() and is_homoglyph(name)))
    return out
