"""The records every stage agrees on: a `Mention` of an executable and a `FileReport`.

This module imports nothing heavy, so the search path can use it.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, get_args

from .errors import IndexUnavailable
from .shape import Record
from .verdicts import mention_verdict

Role = Literal[
    "process",  # the rule watches this binary run (Image, NewProcessName, ...)
    "parent",  # ParentImage, ParentProcessName
    "original_filename",  # OriginalFileName (PE header name)
    "target",  # TargetImage: the process acted upon (e.g. lsass.exe opened)
    "command_line",  # inside CommandLine, ScriptBlockText, ImagePath, keywords, ...
    "loaded_module",  # ImageLoaded (DLLs, drivers)
    "file",  # TargetFilename and other file-path fields
    "registry",  # TargetObject, registry Details
    "other",  # any other detection field
    "text",  # title, description, false positives
    "lolbas_entry",  # LOLBAS Name / Aliases
    "lolbas_path",  # LOLBAS Full_Path
    "lolbas_command",  # LOLBAS Commands[].Command
    "lolbas_ioc",  # LOLBAS Detection IOC lines
    "keyword",  # a Sigma keyword list (values without a field)
    "comment",  # a YAML comment (`# - '\\rundll32.exe'`): what a rule stopped watching, or a note
    # the atlas: what a source other than a detection says of the binary (verdicts.ATLAS_VERDICTS)
    "tested_by",  # atomic-red-team: a test's command, cleanup or steps run or name it
    "vulnerable_driver",  # LOLDrivers: a known vulnerable driver (Tags, sample Filename/OriginalFilename)
    "malicious_driver",  # LOLDrivers: a known malicious driver
    "sideload_target",  # HijackLibs: the DLL that can be planted (Name)
    "sideload_host",  # HijackLibs: an executable that loads it (VulnerableExecutables Path)
    "gtfobin",  # GTFOBins: a Unix binary's abuse (field: the function, shell, download, ...)
    "loobin",  # LOOBins: a macOS binary's abuse (name, paths, example code)
]
ROLES: tuple[str, ...] = get_args(Role)
Context = Literal["selection", "filter", ""]  # a detection value's item: used under `not` or not
Platform = Literal["windows", "linux", "macos", ""]  # the system a rule's events come from ("" unknown)
PLATFORMS: tuple[str, ...] = tuple(p for p in get_args(Platform) if p)
FileStatus = Literal["indexed", "error", "skipped"]


MAX_FILE_BYTES = 4 * 1024 * 1024  # rule files over this are skipped (refresh --max-file-mb)


class IndexMissing(IndexUnavailable):
    """No usable index in this data directory: none built yet, of another format, or damaged."""


def detects_running(mention: dict[str, Any]) -> bool:
    """Whether a mention (as a dict: stored, exported) selects its binary as the running process:
    its verdict is `runs` (verdicts.mention_verdict; OriginalFileName in an image load is `loads`)."""
    return mention_verdict(mention) == "runs"


# What a Mention field is: it keeps the field lists of the exports, the index and the change
# summary in one place (the declaration below).
RULE, PLACE, DERIVED, SAYS = "rule", "place", "derived", "says"


def _of(kind: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"kind": kind})


@dataclass(frozen=True, order=True)
class Mention(Record):
    """One line of one rule file that names one executable."""

    binary: str  # lower-case file name, e.g. "psr.exe"
    source: str = _of(RULE)  # "sigma" | "lolbas"
    path: str = _of(RULE)  # path inside the repository
    line: int = _of(PLACE)  # 1-based line in the file
    snippet: str  # that line, stripped
    field: str = ""  # detection field ("Image"), YAML key ("title", "Command")
    modifiers: tuple[str, ...] = ()  # Sigma value modifiers ("endswith", "re", "base64offset")
    role: Role = "text"
    context: Context = ""  # "selection" | "filter" for detection values, "" otherwise
    detection: str = ""  # name of the detection item ("selection_img", "filter_main")
    inferred: bool = False  # a bare name ("rundll32") recognised from the known names
    encoded: bool = _of(DERIVED, False)  # value is encoded by its modifiers (base64, utf16le, wide)
    homoglyph: bool = _of(DERIVED, False)  # non-ASCII letters drawn like an ASCII name (`svсhost.exe`, Cyrillic с)
    rule_id: str = _of(RULE, "")
    title: str = _of(RULE, "")
    level: str = _of(RULE, "")
    status: str = _of(RULE, "")
    tags: tuple[str, ...] = _of(RULE, ())
    logsource: str = _of(RULE, "")  # "product/category/service", empty parts left out
    commit: str = _of(RULE, "")
    url: str = _of(PLACE, "")  # link to the file at `commit`, anchored at the line
    license: str = _of(RULE, "")
    platform: Platform = _of(RULE, "")  # "windows" | "linux" | "macos" (a Sigma rule's logsource product) | ""

    @classmethod
    def fields_of(cls, kind: str) -> tuple[str, ...]:
        """The fields of one kind: RULE (the same for every mention of a rule), PLACE (where in
        the file), DERIVED (follows from the others), SAYS (what the mention says of its binary)."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("kind", SAYS) == kind)

    @property
    def detects_running(self) -> bool:
        """A Sigma detection item that selects this binary as the process (not a filter)."""
        return detects_running(self.__dict__)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _MENTION_FIELDS}  # Record's is 5x slower
        data["modifiers"] = list(self.modifiers)
        data["tags"] = list(self.tags)
        return data

    def row(self, alias_of: str = "") -> dict[str, Any]:
        """The mention as answers carry it (records.MentionRow): its fields and `alias_of`, the
        name searched for when its binary is one of that name's aliases ("" otherwise)."""
        data = self.to_dict()
        data["alias_of"] = alias_of
        return data

    def sort_key(self) -> tuple[Any, ...]:
        """The order of `sorted(mentions)` (field by field), three times faster as a sort key."""
        return tuple(map(self.__dict__.__getitem__, _MENTION_FIELDS))

    def at(self, binary: str, line: int, snippet: str, inferred: bool = False, homoglyph: bool = False) -> "Mention":
        """This mention (a template) for `binary` found on `line`: dataclasses.replace, 8x faster.

        A line longer than SNIPPET_CHARS is cut to a window around the name: a rule naming
        thousands of executables on one line costs memory in proportion to its size.
        """
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet_around(snippet, binary)
        mention = object.__new__(Mention)
        mention.__dict__.update(self.__dict__)
        mention.__dict__.update(binary=binary, line=line, snippet=snippet, inferred=inferred, homoglyph=homoglyph)
        return mention

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as a tuple of its values: parser processes send thousands, and this loads
        # six times faster than a dataclass's default pickle.
        return _mention_from_values, (tuple(map(self.__dict__.__getitem__, _MENTION_FIELDS)),)


_MENTION_FIELDS = tuple(f.name for f in fields(Mention))
SNIPPET_CHARS = 500  # the longest line of the real corpora that names an executable has 482
_lowered: list[str] = ["", ""]  # the last long line and its lower case (mentions of one line come together)


def snippet_around(line: str, name: str) -> str:
    """At most SNIPPET_CHARS of `line` around the first place `name` (or its stem) is written."""
    if len(line) <= SNIPPET_CHARS:
        return line
    if _lowered[0] is not line:
        _lowered[:] = [line, line.lower()]
    low = _lowered[1]
    at = low.find(name)
    if at < 0:
        at = max(low.find(name.rpartition(".")[0] or name), 0)
    start = max(0, min(at - SNIPPET_CHARS // 2, len(line) - SNIPPET_CHARS))
    end = start + SNIPPET_CHARS
    return ("…" if start else "") + line[start:end] + ("…" if end < len(line) else "")


def _mention_from_values(values: tuple[Any, ...]) -> Mention:
    mention = object.__new__(Mention)
    mention.__dict__.update(zip(_MENTION_FIELDS, values))
    return mention


@dataclass
class FileReport(Record):
    """What happened to one file of a source: indexed, or why not."""

    source: str
    path: str
    status: FileStatus
    reason: str = ""  # why it failed or was skipped
    warnings: list[str] = field(default_factory=list)  # e.g. pySigma rejected the rule
    rule_ids: list[str] = field(default_factory=list)
    mentions: int = 0
    executables: list[str] = field(default_factory=list)  # names this file shows to be executables
    links: list[dict[str, Any]] = field(default_factory=list)  # Sigma<->LOLBAS links with their lines
    entry: dict[str, Any] = field(default_factory=dict)  # LOLBAS entry: name, aliases, categories
    blob: str = ""  # git blob read (pySigma's verdict is kept per blob)
    binaries: list[str] = field(default_factory=list)  # every binary its mentions name (their documents)
    aliases: list[list[str]] = field(
        default_factory=list
    )  # [Image name, OriginalFileName, "stem"|"single"] paired in a selection
    title: str = ""  # the rule's title (a LOLBAS entry's Name)
    depends: list[str] = field(default_factory=list)  # shared files of its source it read (a change reads it again)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # its values are plain already
