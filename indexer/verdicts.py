"""What a rule does with a binary: the verdict vocabulary and the pure function that gives it.

A mention says where a name is; a verdict says what the rule file does with that binary. Each
mention of a Sigma rule implies one verdict; a rule file's verdicts for a binary are the set of
its mentions' verdicts, and the strongest of them is *the* verdict, in this order:

    runs > parent > target > loads > invoked > artifact > masquerade > excluded > mentioned

Filters never make a rule detect a binary: a detection item the condition uses only under `not`
gives `excluded`, whatever its field. Nor does a name the rule selects only on an impostor
(`masquerade`: an Elastic query that lets through, under `not`, the binaries the genuine
publisher signed): it detects a fake binary wearing the name, not the binary. A LOLBAS entry is
abuse documentation, not a detection: its mentions give `documented`, which is never compared
with the Sigma verdicts (a file is one or the other) and never counts as detecting. The atlas's
sources say the same kind of thing: LOLDrivers, HijackLibs, GTFOBins and LOOBins give
`documented`, an atomic test `tested`.

Verdicts are stored in the index: a change to what a mention implies is a change of the
stored data, so it bumps `index.INDEX_FORMAT` (an index of another format reads as "run
refresh", and the next refresh rebuilds it).

This module imports nothing heavy: the search path uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterable, Literal, Mapping, get_args

from .shape import Record

# Strongest first. `documented` (LOLBAS and the atlas) and `tested` (atomic-red-team) sort after
# every Sigma verdict: a file is a detection or not, never both.
Verdict = Literal[
    "runs",
    "parent",
    "target",
    "loads",
    "invoked",
    "artifact",
    "masquerade",
    "excluded",
    "mentioned",
    "documented",
    "tested",
]
VERDICTS: tuple[str, ...] = get_args(Verdict)
SIGMA_VERDICTS = VERDICTS[:9]  # the verdicts of detection rules (Sigma's, Elastic's, Splunk's)
DETECTING = frozenset({"runs", "parent", "target", "loads", "invoked"})  # what `--detects` keeps
VERDICT_HELP = {
    "runs": "selects the binary as the process (Image, OriginalFileName, process name fields)",
    "parent": "selects it as the parent (ParentImage, GrandParentImage)",
    "target": "selects it as the process accessed or injected (TargetImage; Path in Defender ASR events)",
    "loads": "selects it as a loaded module (ImageLoaded; OriginalFileName in image and driver loads; CallTrace)",
    "invoked": "names it in another process's command line, script block or keywords",
    "artifact": "names it in a file, registry, pipe, service, URL or other field",
    "masquerade": "selects the name only on an impostor: the genuine publisher's signed binary is let through",
    "excluded": "names it only in filters (items used under `not`)",
    "mentioned": "names it only in text (title, description, false positives) or comments",
    "documented": "a LOLBAS, LOLDrivers, HijackLibs, GTFOBins or LOOBins entry documents it (not a detection)",
    "tested": "an atomic-red-team test runs or names it (a test to run, not a detection)",
}
# The atlas's roles say what their source says, never that a rule detects the binary.
ATLAS_VERDICTS = {
    "tested_by": "tested",
    "vulnerable_driver": "documented",
    "malicious_driver": "documented",
    "sideload_target": "documented",
    "sideload_host": "documented",
    "gtfobin": "documented",
    "loobin": "documented",
}
RETIRED_STATUSES = frozenset({"deprecated", "unsupported"})
RETIRED_FOLDERS = ("deprecated/", "unsupported/", "detections/deprecated/")  # Sigma's; Splunk's
LEVELS = ("critical", "high", "medium", "low", "informational")

_RANK = {v: i for i, v in enumerate(VERDICTS)}
_BY_ROLE = {
    "process": "runs",
    "original_filename": "runs",
    "parent": "parent",
    "target": "target",
    "loaded_module": "loads",
    "command_line": "invoked",
    "keyword": "invoked",
    "file": "artifact",
    "registry": "artifact",
}
# Fields of role `other` (not a file name field) that still say what the binary is to the event.
_OTHER_FIELDS = {
    "runs": {"imagename", "appname", "callingprocess", "process", "product", "company", "description"},
    "parent": {"grandparentimage", "sourceparentimage"},
    "loads": {"calltrace", "startmodule", "modulename"},
    "invoked": {"taskcontentnew", "sourcecommandline"},
}
_OTHER = {name: verdict for verdict, names in _OTHER_FIELDS.items() for name in names}
# A field whose meaning depends on the log: (logsource part, field) -> verdict. Task Scheduler
# event 129 (Created Task Process): Path is the image the task started. Defender ASR events
# (1121/1122): Path is what the blocked process acted on (lsass.exe), ProcessName the actor.
_LOG_FIELDS = {("taskscheduler", "path"): "runs", ("windefend", "path"): "target"}
# Module loads, where PE metadata describes the module loaded, not the process: Sigma's log source
# categories, and Sysmon's events 7 (image loaded) and 6 (driver loaded) as Splunk's detections name
# their data source (`Sysmon EventID 7`; the first one is the mention's `logsource`).
_MODULE_EVENTS = ("image_load", "driver_load")
_MODULE_SOURCES = frozenset({"sysmon eventid 7", "sysmon eventid 6"})
_MODULE_FIELDS = {"originalfilename", "product", "company", "description"}


def mention_verdict(mention: Mapping[str, Any]) -> str:
    """The verdict one mention (a stored or exported dict) implies for its binary.

    Unknown roles (added by a later version) give `mentioned`, or `excluded` in a filter:
    never a detecting verdict.
    """
    if mention.get("source") == "lolbas":
        return "documented"
    role = mention.get("role", "")
    if role in ATLAS_VERDICTS:
        return ATLAS_VERDICTS[role]
    if role in ("text", "comment"):
        return "mentioned"
    context = mention.get("context", "")
    if context == "filter":
        return "excluded"
    if context != "selection":  # not a detection value (an unknown role outside detection)
        return "mentioned"
    field = str(mention.get("field", "")).lower()
    for part in str(mention.get("logsource", "")).split("/"):
        if (part, field) in _LOG_FIELDS:
            return _LOG_FIELDS[(part, field)]
    verdict = _BY_ROLE.get(role)
    if verdict is None:
        if role != "other":
            return "mentioned"
        verdict = _OTHER.get(field, "artifact")
    if verdict == "runs" and field in _MODULE_FIELDS and _is_module_load(str(mention.get("logsource", ""))):
        verdict = "loads"
    if verdict in DETECTING and "masquerade" in mention.get("modifiers", ()):
        return "masquerade"  # the name an impostor wears (the plug-in says so: elastic.impostors)
    return verdict


def _is_module_load(logsource: str) -> bool:
    """A log source of module loads (Sigma's image_load and driver_load, Sysmon's events 7 and 6)."""
    return any(event in logsource for event in _MODULE_EVENTS) or logsource.lower() in _MODULE_SOURCES


def ordered(verdicts: Iterable[str]) -> tuple[str, ...]:
    """Distinct verdicts, strongest first (unknown ones last)."""
    return tuple(sorted(set(verdicts), key=lambda v: _RANK.get(v, len(VERDICTS))))


def rank(verdict: str) -> int:
    """0 for the strongest verdict; unknown verdicts rank last."""
    return _RANK.get(verdict, len(VERDICTS))


def is_retired(path: str, status: str) -> bool:
    """A deprecated or unsupported rule: under deprecated/ or unsupported/, or with that status."""
    return path.startswith(RETIRED_FOLDERS) or status.lower() in RETIRED_STATUSES


def parse_verdicts(values: Iterable[str]) -> list[str]:
    """`--verdict` values (repeatable, or comma lists) checked against the vocabulary.

    Raises ValueError naming the valid values.
    """
    wanted = [v.strip().lower() for value in values for v in value.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in _RANK]
    if unknown:
        raise ValueError(f"unknown verdict {unknown[0]!r} (choose from {', '.join(VERDICTS)})")
    return list(dict.fromkeys(wanted))


@dataclass(frozen=True)
class RuleVerdict(Record):
    """What one rule file does with one binary: its verdicts, strongest first, and the strongest."""

    source: str
    path: str
    binary: str
    verdict: Verdict
    verdicts: tuple[Verdict, ...]
    rule_id: str = ""
    title: str = ""
    level: str = ""
    status: str = ""
    COMPUTED: ClassVar[dict[str, type]] = {"retired": bool}

    @property
    def retired(self) -> bool:
        """Deprecated or unsupported (folder or status; an Elastic rule's maturity `deprecated`):
        shown last, never counted unless asked."""
        return is_retired(self.path, self.status)

    @property
    def detects(self) -> bool:
        """The rule detects the binary (runs, parent, target, loads, invoked), retired or not."""
        return self.verdict in DETECTING

    def sort_key(self) -> tuple[Any, ...]:
        """Strongest first; retired rules last; then level (critical first), source, path."""
        level = self.level.lower()
        return (
            self.retired,
            rank(self.verdict),
            LEVELS.index(level) if level in LEVELS else len(LEVELS),
            self.source != "sigma",
            self.path,
            self.binary,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in _FIELDS}
        data["verdicts"] = list(self.verdicts)
        data["retired"] = self.retired  # computed: from_dict ignores it
        return data


_FIELDS = tuple(f.name for f in fields(RuleVerdict))


def rule_verdicts(mentions: Iterable[Mapping[str, Any]]) -> list[RuleVerdict]:
    """One RuleVerdict per (source, path, binary) of `mentions` (dicts), in order of first appearance.

    The rule's metadata (id, title, level, status) comes from its first mention that carries
    an id or a title.
    """
    found: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for m in mentions:
        found.setdefault((m["source"], m["path"], m["binary"]), []).append(m)
    out = []
    for (source, path, binary), items in found.items():
        verdicts = ordered(mention_verdict(m) for m in items)
        meta = next((m for m in items if m.get("rule_id") or m.get("title")), items[0])
        out.append(
            RuleVerdict(
                source=source,
                path=path,
                binary=binary,
                verdict=verdicts[0],
                verdicts=verdicts,
                rule_id=str(meta.get("rule_id", "")),
                title=str(meta.get("title", "")),
                level=str(meta.get("level", "")),
                status=str(meta.get("status", "")),
            )
        )
    return out


def select(
    rules: Iterable[RuleVerdict], *, detects: bool = False, verdicts: Iterable[str] = (), include_retired: bool = True
) -> list[RuleVerdict]:
    """Rules kept by `--detects` (a detecting verdict), `--verdict` (one of these), retired or not."""
    wanted = set(verdicts)
    return [
        r
        for r in rules
        if (not detects or r.detects) and (not wanted or r.verdict in wanted) and (include_retired or not r.retired)
    ]
