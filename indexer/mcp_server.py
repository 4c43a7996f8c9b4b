"""`indexer mcp`: the index as a Model Context Protocol server (the official `mcp` SDK).

Thin typed tools over the library functions the CLI's `--json` uses (query, xref, navigator,
refresh manifests): the SDK turns each function's annotated parameters into the tool's input
schema and its pydantic return type into the output schema. Every answer is bounded
(limit/offset, capped lists and snippets) so an assistant never receives megabytes.

Only `indexer mcp` (and the `/mcp` mount of `indexer serve`) imports this module.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Optional

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from . import __version__, joins, xref
from .chronicle import HistoryError
from .index import IndexReader, current_generation
from .model import PLATFORMS, ROLES, IndexMissing, Mention
from .query import binary_sections, search, show_target
from .records import AtlasItem, RuleSet
from .timeline import HistoryChanges
from .typed import Source, model_of
from .verdicts import VERDICT_HELP, VERDICTS, RuleVerdict

SNIPPET_MAX = 300  # characters of a rule line kept in an answer
LIST_MAX = 100  # names kept in any other list of an answer
Role = Literal[ROLES]  # type: ignore[valid-type]
LinkStatus = Literal[xref.LINK_STATUSES]  # type: ignore[valid-type]
Verdict = Literal[VERDICTS]  # type: ignore[valid-type]
Tier = Literal[xref.TIERS]  # type: ignore[valid-type]
Platform = Literal[PLATFORMS]  # type: ignore[valid-type]
VERDICT_TEXT = "; ".join(f"{v}: {why}" for v, why in VERDICT_HELP.items())

INSTRUCTIONS = (
    "Answers 'which Sigma rules detect this executable, on which line, and what does LOLBAS say "
    "attackers do with it' from an index of SigmaHQ/sigma and LOLBAS at pinned commits. Start with "
    "search_binary (a name like certutil.exe, a bare name, a path or a wildcard); every rule and line "
    "carries a permalink at the indexed commit. Results are paged: pass offset=next_offset for more. "
    "gaps lists the binaries attackers use that no rule detects; atomic_tests the rules an atomic "
    "test should fire."
)
AtlasItemModel = model_of(AtlasItem)
RuleSetModel = model_of(RuleSet, "RuleSetCount", rules=int)  # the rule files counted, not listed
RuleSetCoverageModel = model_of(joins.RuleSetCoverage)
GapsResult = model_of(joins.GapsReport, "GapsResult", rows_total=int, offset=int, next_offset=Optional[int])
GapsResult.__doc__ = "indexer gaps --json, one page of the rows."
AtomicTestsResult = model_of(
    joins.TestsReport, "AtomicTestsResult", tests_total=int, offset=int, next_offset=Optional[int]
)
AtomicTestsResult.__doc__ = "indexer tests NAME --json, one page of the tests."
HistoryChangesModel = model_of(HistoryChanges, "HistoryChanges", gained_total=int, lost_total=int, rules_total=int)
HistoryChangesModel.__doc__ = "indexer changes --since --until --json, its lists capped at max_items."


# --- typed results -----------------------------------------------------------------------------


class RuleLine(BaseModel):
    """One line of a rule file that names the binary."""

    line: int = Field(description="1-based line in the file")
    binary: str = Field(description="the executable named, lower case")
    snippet: str = Field(description=f"the line, stripped (cut at {SNIPPET_MAX} characters)")
    role: str = Field(description="what the name is to the rule: process, parent, command_line, text, ...")
    field: str = Field(description="detection field or YAML key (Image, CommandLine, title, ...)")
    modifiers: list[str] = Field(description="Sigma value modifiers (endswith, contains, re, ...)")
    context: str = Field(description="selection, filter (the rule excludes it), or empty outside detection")
    detection: str = Field(description="name of the detection item")
    inferred: bool = Field(description="a bare name recognised without its extension")
    encoded: bool = Field(description="the value is encoded by its modifiers (base64, utf16)")
    url: str = Field(description="permalink to this line at the indexed commit")


class RuleHit(BaseModel):
    """One rule file (Sigma rule or LOLBAS entry) and the lines where it names one binary."""

    source: str = Field(description="sigma or lolbas")
    path: str = Field(description="path in the repository")
    binary: str
    rule_id: str
    title: str
    level: str
    status: str
    logsource: str = Field(description="product/category/service")
    tags: list[str]
    commit: str = Field(description="the commit indexed")
    license: str
    url: str = Field(description="permalink to the file at the indexed commit")
    verdict: str = Field(
        description=f"what the rule file does with the binary, the strongest of its verdicts ({VERDICT_TEXT})"
    )
    verdicts: list[str] = Field(description="every verdict of its lines, strongest first")
    detects: bool = Field(description="the verdict is runs, parent, target, loads or invoked")
    retired: bool = Field(description="a deprecated or unsupported Sigma rule (listed last, never counted)")
    roles: list[str] = Field(description="roles of its lines")
    lines: list[RuleLine]
    lines_total: int = Field(description="lines of this file naming the binary (lines holds at most lines_per_rule)")


class LinkRecord(BaseModel):
    """A LOLBAS -> Sigma link (or a Sigma rule's reference to a LOLBAS page) with its status."""

    status: str
    url: str = ""
    line: int = 0
    lolbas_path: str = ""
    entry: str = ""
    sigma_path: str = ""
    entry_path: str = ""
    current_path: str = Field("", description="where the linked rule lives at the tip")
    rule_id: str = ""
    linked_path: str = ""
    basis: str = Field("", description="which content gave the rule id")
    reason: str = ""


class SearchBinaryResult(BaseModel):
    query: str
    found: bool
    binaries: list[str] = Field(description=f"indexed names the query stands for (at most {LIST_MAX})")
    binaries_total: int
    suggestions: list[str] = Field(description="close names when nothing matched")
    rules_total: int = Field(description="rule files (per binary) that match the filters")
    mentions_total: int
    offset: int
    next_offset: Optional[int] = Field(description="offset of the next page, null on the last")
    rules: list[RuleHit] = Field(
        description="strongest verdict first (runs, parent, ...), retired rules last, then level and path"
    )
    counterparts: dict[str, list[str]] = Field(
        description="the same program's name on another platform, when indexed (curl -> curl.exe)"
    )
    rule_sets: list[RuleSetModel] = Field(  # type: ignore[valid-type]
        description="per detection source (sigma, ...): rule files naming it, running, detecting, retired"
    )
    sections: dict[str, list[AtlasItemModel]] = Field(  # type: ignore[valid-type]
        description=f"what the other sources say, by kind (abuse, tests, drivers, sideloading; at most {LIST_MAX} each)"
    )
    lolbas_declared_detections: list[LinkRecord] = Field(
        description="Sigma rules the binary's LOLBAS entries link to, resolved to today's paths"
    )


class BinaryVerdict(BaseModel):
    binary: str
    verdict: str = Field(description="what the rule file does with the binary, the strongest of its verdicts")
    verdicts: list[str]


class AsOfSources(BaseModel):
    """What an answer as of a date was read at: the date, each source's commit then (author date)."""

    at: str
    sources: dict[str, dict[str, str]] = Field(description="source -> its commit then and that commit's date")


class RuleDetail(BaseModel):
    target: str
    found: bool
    message: str = ""
    source: str = ""
    path: str = ""
    status: str = Field("", description="indexed, error or skipped")
    reason: str = ""
    warnings: list[str] = Field(default_factory=list)
    rule_ids: list[str] = Field(default_factory=list)
    title: str = ""
    level: str = ""
    tags: list[str] = Field(default_factory=list)
    logsource: str = ""
    url: str = Field("", description="permalink to the file at the indexed commit")
    binaries: list[str] = Field(default_factory=list, description=f"executables it names (at most {LIST_MAX})")
    binaries_total: int = 0
    verdicts: list[BinaryVerdict] = Field(
        default_factory=list, description=f"per binary, strongest first (at most {LIST_MAX})"
    )
    former_paths: list[dict[str, str]] = Field(default_factory=list, description="paths the rule had before")
    linked_from_lolbas: list[LinkRecord] = Field(default_factory=list)
    links: list[LinkRecord] = Field(default_factory=list, description="links this file makes to the other source")
    mentions_total: int = 0
    offset: int = 0
    next_offset: Optional[int] = None
    mentions: list[RuleLine] = Field(default_factory=list)
    as_of: Optional[AsOfSources] = Field(None, description="with `at`: the date and each source's commit then")


class Tally(BaseModel):
    entries: int
    detected: int = Field(description="entries of tier running or other")
    undetected: int = Field(description="entries of tier mentioned or none")
    running: int
    other: int
    mentioned: int
    none: int


class CoverageSummary(BaseModel):
    entries: int
    include_retired: bool = Field(description="whether deprecated and unsupported rules counted")
    tiers: dict[str, int] = Field(description="entries per tier: running, other, mentioned, none")
    detected: int
    undetected: int
    links_disagree: int
    by_category: dict[str, Tally]
    by_mitre: dict[str, Tally]


class CoverageEntry(BaseModel):
    entry: str
    path: str
    url: str = Field(description="permalink to the LOLBAS entry at the indexed commit")
    names: list[str]
    categories: list[str]
    mitre: list[str]
    tier: str = Field(
        description="running: a Sigma rule selects it as the process; other: only as parent, "
        "target, loaded module or in a command line; mentioned: rules only name it; none"
    )
    verdicts: list[str] = Field(description="the verdicts of the rules naming it, strongest first")
    running_rules: list[str] = Field(description="rules with verdict runs (capped at rules_per_entry)")
    running_rules_total: int
    other_rules: list[str] = Field(description="rules with verdict parent, target, loads or invoked (capped)")
    other_rules_total: int
    detecting_rules: list[str] = Field(description="running and other rules (capped at rules_per_entry)")
    detecting_rules_total: int
    mentioning_rules: list[str] = Field(
        description="rules that name it without detecting it (capped at rules_per_entry)"
    )
    mentioning_rules_total: int
    retired_rules: list[str] = Field(description="deprecated or unsupported rules naming it (capped)")
    retired_rules_total: int
    linked: list[LinkRecord]
    linked_and_detecting: list[str]
    linked_not_detecting: list[str]
    citing_rules: list[str]
    agree: bool = Field(description="every rule LOLBAS links to detects it running")


class CoverageResult(BaseModel):
    summary: CoverageSummary = Field(description="over every LOLBAS entry, whatever the filters")
    rule_sets: Optional[RuleSetCoverageModel] = Field(  # type: ignore[valid-type]
        description="each entry's tier by each detection source alone, and the entries detected by one only, all, none"
    )
    total: int = Field(description="entries that match the filters")
    offset: int
    next_offset: Optional[int]
    entries: list[CoverageEntry]


class LinksResult(BaseModel):
    total: int
    offset: int
    next_offset: Optional[int]
    links: list[LinkRecord]


class SourceChange(BaseModel):
    name: str
    mode: str = Field(description="full, incremental, unchanged or failed")
    before: str
    after: str
    error: str
    added: list[str]
    modified: list[str]
    deleted: list[str]
    renamed: list[list[str]] = Field(description="[old, new] pairs")
    added_total: int
    modified_total: int
    deleted_total: int
    renamed_total: int


class BinaryChange(BaseModel):
    binary: str
    rules_before: int
    rules_after: int
    gained: int
    lost: int


class DetectionChange(BaseModel):
    binary: str
    before: int = Field(description="live Sigma rules that detected it before")
    after: int
    gained: list[dict[str, str]] = Field(description="rules that now detect it: path, title, verdict")
    lost: list[dict[str, str]] = Field(description="rules that no longer detect it: path, title, verdict, now")
    changed: list[dict[str, str]] = Field(description="rules that detect it differently: path, title, before, after")


class ChangeRecord(BaseModel):
    started: str
    finished: str
    duration_s: float
    exit_code: int
    full: bool
    reason: str
    sources: list[SourceChange]
    files_parsed: int
    file_errors: list[dict[str, str]]
    file_errors_total: int
    mentions_added: int
    mentions_removed: int
    mentions_total: int
    binaries: list[BinaryChange] = Field(description="binaries whose rules changed, most changed first")
    binaries_total: int
    detections: list[DetectionChange] = Field(
        description="binaries that gained or lost a detecting rule "
        "(verdict runs, parent, target, loads, invoked), most changed first"
    )
    detections_total: int
    rules_added: list[dict[str, str]] = Field(description="id, path, title")
    rules_added_total: int
    rules_removed: list[dict[str, str]] = Field(description="id, path, title (before)")
    rules_removed_total: int
    rules_renamed: list[dict[str, str]]
    rules_renamed_total: int


class ChangesResult(BaseModel):
    refreshes: list[ChangeRecord] = Field(description="newest first (none when `history` answers)")
    history: Optional[HistoryChangesModel] = Field(  # type: ignore[valid-type]
        None, description="with until, or since where the history is kept: what changed between the two dates"
    )


class LayerTechnique(BaseModel):
    techniqueID: str
    score: int
    comment: str
    enabled: bool
    metadata: list[dict[str, str]]
    links: list[dict[str, str]]


class NavigatorLayer(BaseModel):
    """An ATT&CK Navigator layer, format 4.5 (save it as JSON and open it in the Navigator)."""

    name: str
    versions: dict[str, str]
    domain: str
    description: str
    sorting: int
    techniques: list[LayerTechnique]
    gradient: dict[str, Any]
    metadata: list[dict[str, str]]


class LayerResult(BaseModel):
    query: str
    found: bool
    suggestions: list[str]
    layer: Optional[NavigatorLayer]


# --- the server ------------------------------------------------------------------------------


class _Index:
    """The data directory's current generation, reopened when a refresh publishes a new one; the
    index as of the last date asked, kept open until another date is asked or the history changes
    (what it computed once, the cross-references then, serves the next calls).

    Calls are serialised: each is a few milliseconds, and one reader is never used by two threads.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._reader: IndexReader | None = None
        self._past: tuple[tuple[int, ...], Any] | None = None  # (the date and the store's identity, AsOf)

    @contextmanager
    def reader(self) -> Iterator[IndexReader]:
        with self._lock:
            generation = current_generation(self.data_dir)
            if self._reader is not None and self._reader.generation != generation:
                self._reader.close()
                self._reader = None
            try:
                if self._reader is None:
                    self._reader = IndexReader(self.data_dir)
                yield self._reader
            except IndexMissing as exc:  # none yet, or damaged (found opening it or reading its state)
                raise ToolError(str(exc)) from None

    @contextmanager
    def then(self, at: Optional[str]) -> Iterator[Any]:
        """The index, or with `at` the index as of that date read from the history (as `search --at`)."""
        if at is None:
            with self.reader() as reader:
                yield reader
            return
        from .chronicle import AsOf, parse_date, store_path

        with self._lock:
            try:
                when = parse_date(at, "at")
                try:
                    stat = store_path(self.data_dir).stat()
                    key: tuple[int, ...] = (when, stat.st_ino, stat.st_mtime_ns, stat.st_size)
                except OSError:  # no history: AsOf says so
                    key = (when,)
                if self._past is None or self._past[0] != key:
                    if self._past is not None:
                        self._past[1].close()
                        self._past = None
                    self._past = (key, AsOf(self.data_dir, when))
                yield self._past[1]
            except HistoryError as exc:  # no history, a date it does not know, a tree it cannot read
                raise ToolError(str(exc)) from None


def _page(total: int, offset: int, limit: int) -> Optional[int]:
    return offset + limit if offset + limit < total else None


def _paged(model: type[BaseModel], data: dict[str, Any], key: str, offset: int, limit: int) -> Any:
    """A report as `model`: one page of its list `key`, the list's total (`<key>_total`), the offset
    and the next one."""
    items = data[key]
    return model.model_validate(
        {
            **data,
            key: items[offset : offset + limit],
            f"{key}_total": len(items),
            "offset": offset,
            "next_offset": _page(len(items), offset, limit),
        }
    )


def _cut(text: str, limit: int = SNIPPET_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(m: Mention) -> RuleLine:
    return RuleLine(
        line=m.line,
        binary=m.binary,
        snippet=_cut(m.snippet),
        role=m.role,
        field=m.field,
        modifiers=list(m.modifiers),
        context=m.context,
        detection=m.detection,
        inferred=m.inferred,
        encoded=m.encoded,
        url=m.url,
    )


def _link(data: dict[str, Any]) -> LinkRecord:
    return LinkRecord.model_validate({k: v for k, v in data.items() if k in LinkRecord.model_fields and v is not None})


def _rule_hit(rule: RuleVerdict, items: list[Mention], lines_per_rule: int) -> RuleHit:
    """One rule file's verdict for a binary, with its lines."""
    first = items[0]
    return RuleHit(
        source=rule.source,
        path=rule.path,
        binary=rule.binary,
        rule_id=rule.rule_id,
        title=rule.title,
        level=rule.level,
        status=rule.status,
        logsource=first.logsource,
        tags=sorted({t for m in items for t in m.tags}),
        commit=first.commit,
        license=first.license,
        url=first.url.split("#", 1)[0],
        verdict=rule.verdict,
        verdicts=list(rule.verdicts),
        detects=rule.detects,
        retired=rule.retired,
        roles=sorted({m.role for m in items}),
        lines=[_line(m) for m in items[:lines_per_rule]],
        lines_total=len(items),
    )


AtDate = Annotated[
    Optional[str],
    Field(
        description="As of this date (YYYY-MM-DD or ISO date and time, UTC): each source at its last "
        "first-parent commit then, read from the history (kept by refresh --history-since)",
        max_length=40,
    ),
]


def build_server(data_dir: Path) -> MCPServer:
    """The MCP server over the index in `data_dir` (opened at each call: refreshes show at once)."""
    index = _Index(Path(data_dir))
    server: MCPServer = MCPServer(
        "indexer",
        title="Sigma / LOLBAS executable index",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def search_binary(
        name: Annotated[
            str,
            Field(
                description="An executable: psr.exe, PSR.EXE, a bare name (psr), a Windows "
                "or Unix path, or a wildcard (cert*.exe)",
                min_length=1,
                max_length=260,
            ),
        ],
        source: Annotated[
            Optional[Source],  # type: ignore[valid-type]
            Field(
                description="Only this source (sigma, lolbas, atomic, loldrivers, hijacklibs, gtfobins, loobins, ...)"
            ),
        ] = None,
        platform: Annotated[
            Optional[Platform],  # type: ignore[valid-type]
            Field(description="Only rules and entries for this platform (windows, linux, macos)"),
        ] = None,
        roles: Annotated[
            list[Role],
            Field(
                description="Only lines with these roles (what the name is to the rule: "
                "process, parent, command_line, ...); to select rules by what "
                "they do with the binary, use detects or verdicts"
            ),
        ] = [],
        detects: Annotated[
            bool, Field(description="Only rules that detect the binary: verdict runs, parent, target, loads or invoked")
        ] = False,
        verdicts: Annotated[list[Verdict], Field(description="Only rules whose verdict is one of these")] = [],
        context: Annotated[
            Optional[Literal["selection", "filter"]],
            Field(description="selection: items that select the binary; filter: items that exclude it"),
        ] = None,
        field: Annotated[
            Optional[str], Field(description="Only this detection field (Image, CommandLine, ...)", max_length=100)
        ] = None,
        include_inferred: Annotated[
            bool, Field(description="Include bare names recognised without their extension")
        ] = True,
        limit: Annotated[int, Field(description="Rules per page", ge=1, le=100)] = 20,
        offset: Annotated[int, Field(description="Rules to skip (next_offset of the previous page)", ge=0)] = 0,
        lines_per_rule: Annotated[int, Field(description="Lines kept per rule", ge=1, le=50)] = 5,
        at: AtDate = None,
    ) -> SearchBinaryResult:
        """Which Sigma rules detect an executable, and how (the verdict: runs, parent, target, loads,
        invoked, artifact, masquerade, excluded, mentioned; LOLBAS and the atlas's entries: documented;
        atomic tests: tested), on which lines; and what every other source says of it, grouped by kind
        (sections: abuse, tests, drivers, sideloading), with its counterpart on another platform.

        Strongest verdicts first; each rule and line has a permalink at the indexed commit (with
        `at`: at each source's commit then). A name that is not indexed gives found=false and close
        suggestions.
        """
        with index.then(at) as reader:
            try:
                result = search(
                    reader,
                    name,
                    source=source,
                    roles=roles,
                    field=field,
                    context=context,
                    platform=platform,
                    include_inferred=include_inferred,
                    detects=detects,
                    verdicts=verdicts,
                )
            except ValueError as exc:
                raise ToolError(str(exc)) from None
            try:
                files = reader.state.files
            except IndexMissing:  # a damaged state: the entries' categories are left out, the rest answers
                files = {}
            sections = binary_sections(reader, result.rules, result.mentions, files).to_dict()
        lines: dict[tuple[str, str, str], list[Mention]] = {}
        for m in result.mentions:
            lines.setdefault((m.source, m.path, m.binary), []).append(m)
        rules = [r for r in result.rules if (r.source, r.path, r.binary) in lines]
        return SearchBinaryResult(
            query=name,
            found=bool(result.mentions),
            binaries=result.binaries[:LIST_MAX],
            binaries_total=len(result.binaries),
            suggestions=result.suggestions,
            rules_total=len(rules),
            mentions_total=len(result.mentions),
            offset=offset,
            next_offset=_page(len(rules), offset, limit),
            rules=[
                _rule_hit(r, lines[(r.source, r.path, r.binary)], lines_per_rule)
                for r in rules[offset : offset + limit]
            ],
            counterparts=result.counterparts,
            rule_sets=[
                {**{k: v for k, v in s.items() if k != "rules"}, "rules": len({r["path"] for r in s["rules"]})}
                for s in sections.pop("detection")
            ],
            sections={kind: items[:LIST_MAX] for kind, items in sections.items()},
            lolbas_declared_detections=[_link(l) for l in result.declared_detections[:LIST_MAX]],
        )

    @server.tool(annotations=read_only)
    def show_rule(
        rule: Annotated[
            str,
            Field(
                description="A Sigma rule id (UUID) or a path: rules/.../x.yml, yml/OSBinaries/X.yml",
                min_length=1,
                max_length=500,
            ),
        ],
        limit: Annotated[int, Field(description="Mentions per page", ge=1, le=200)] = 50,
        offset: Annotated[int, Field(description="Mentions to skip", ge=0)] = 0,
        at: AtDate = None,
    ) -> RuleDetail:
        """Everything about one rule file: metadata, every executable it names with line and role,
        former paths, and its links between Sigma and LOLBAS (with `at`: the file as it was then)."""
        with index.then(at) as reader:
            as_of = reader.as_of() if at is not None else None
            data = show_target(reader, rule, kind="rule")
            if data is None:
                return RuleDetail(
                    target=rule,
                    found=False,
                    message=f"no rule with id or path {rule!r}"
                    + (f" as of {at}" if at is not None else "")
                    + "; search_binary finds rules by the executables they name",
                    as_of=as_of,
                )
            mentions = [Mention.from_dict(m) for m in data["mentions"]]
            binaries: list[str] = data["binaries"]
            verdicts = [
                BinaryVerdict(binary=r.binary, verdict=r.verdict, verdicts=list(r.verdicts))
                for r in reader.rules(binaries)
                if (r.source, r.path) == (data["source"], data["path"])
            ]
        return RuleDetail(
            target=rule,
            found=True,
            source=data["source"],
            path=data["path"],
            status=data["status"],
            reason=data["reason"],
            warnings=data["warnings"],
            rule_ids=data["rule_ids"],
            title=data["title"],
            level=data["level"],
            tags=data["tags"],
            logsource=data["logsource"],
            url=data["url"],
            binaries=binaries[:LIST_MAX],
            binaries_total=len(binaries),
            verdicts=verdicts[:LIST_MAX],
            former_paths=data["former_paths"][:LIST_MAX],
            linked_from_lolbas=[_link(l) for l in data["linked_from_lolbas"][:LIST_MAX]],
            links=[_link(l) for l in data["links"][:LIST_MAX]],
            mentions_total=len(mentions),
            offset=offset,
            next_offset=_page(len(mentions), offset, limit),
            mentions=[_line(m) for m in mentions[offset : offset + limit]],
            as_of=as_of,
        )

    @server.tool(annotations=read_only)
    def coverage(
        entry: Annotated[
            Optional[str],
            Field(
                description="Only LOLBAS entries with this name or alias (certutil.exe; case-insensitive)",
                max_length=260,
            ),
        ] = None,
        detected: Annotated[
            Optional[bool],
            Field(
                description="true: only entries some Sigma rule detects (tier running "
                "or other); false: only the gaps (mentioned or none)"
            ),
        ] = None,
        tiers: Annotated[
            list[Tier], Field(description="Only entries of these tiers (running, other, mentioned, none)")
        ] = [],
        category: Annotated[
            Optional[str],
            Field(description="Only this LOLBAS category (Execute, Download, AWL Bypass, ...)", max_length=100),
        ] = None,
        technique: Annotated[
            Optional[str],
            Field(description="Only entries documenting this ATT&CK id (T1218 also matches T1218.011)", max_length=20),
        ] = None,
        limit: Annotated[int, Field(description="Entries per page", ge=1, le=100)] = 25,
        offset: Annotated[int, Field(description="Entries to skip", ge=0)] = 0,
        rules_per_entry: Annotated[int, Field(description="Rule paths kept per list of an entry", ge=0, le=100)] = 10,
        include_retired: Annotated[bool, Field(description="Count deprecated and unsupported rules too")] = False,
        at: AtDate = None,
    ) -> CoverageResult:
        """For each LOLBAS entry: its tier (running, other, mentioned, none), the Sigma rules by verdict,
        and the rules LOLBAS links to; counts per tier, category and ATT&CK technique. Use
        detected=false to list the gaps."""
        with index.then(at) as reader:
            data = joins.coverage(reader, include_retired=include_retired)
            commit = reader.sources.get("lolbas", {}).get("commit", "")
            web = reader.sources.get("lolbas", {}).get("web_url", "")
        wanted = entry.strip().lower() if entry else None
        tech = technique.strip().upper() if technique else None
        rows = [
            r
            for r in data["entries"]
            if (wanted is None or wanted == r["entry"].lower() or wanted in r["names"])
            and (detected is None or bool(r["detecting_rules"]) == detected)
            and (not tiers or r["tier"] in tiers)
            and (category is None or category.lower() in (c.lower() for c in r["categories"]))
            and (tech is None or any(m == tech or m.startswith(tech + ".") for m in r["mitre"]))
        ]
        n = rules_per_entry
        entries = [
            CoverageEntry(
                entry=r["entry"],
                path=r["path"],
                url=f"{web}/blob/{commit}/{r['path']}" if web and commit else "",
                names=r["names"],
                categories=r["categories"],
                mitre=r["mitre"],
                tier=r["tier"],
                verdicts=r["verdicts"],
                running_rules=r["running_rules"][:n],
                running_rules_total=len(r["running_rules"]),
                other_rules=r["other_rules"][:n],
                other_rules_total=len(r["other_rules"]),
                detecting_rules=r["detecting_rules"][:n],
                detecting_rules_total=len(r["detecting_rules"]),
                mentioning_rules=r["mentioning_rules"][:n],
                mentioning_rules_total=len(r["mentioning_rules"]),
                retired_rules=r["retired_rules"][:n],
                retired_rules_total=len(r["retired_rules"]),
                linked=[_link(l) for l in r["linked"][:LIST_MAX]],
                linked_and_detecting=r["linked_and_detecting"][:LIST_MAX],
                linked_not_detecting=r["linked_not_detecting"][:LIST_MAX],
                citing_rules=r["citing_rules"][:LIST_MAX],
                agree=r["agree"],
            )
            for r in rows[offset : offset + limit]
        ]
        summary = data["summary"]
        return CoverageResult(
            summary=CoverageSummary(**{k: summary[k] for k in CoverageSummary.model_fields}),
            rule_sets=data["rule_sets"],
            total=len(rows),
            offset=offset,
            next_offset=_page(len(rows), offset, limit),
            entries=entries,
        )

    @server.tool(annotations=read_only)
    def gaps(
        platform: Annotated[
            Optional[Platform], Field(description="Only this platform (windows, linux, macos)")  # type: ignore[valid-type]
        ] = None,
        rule_sets: Annotated[
            list[str], Field(description="Count only these detection sources' rules (default: every one: sigma, ...)")
        ] = [],
        include_detected: Annotated[
            bool, Field(description="List every binary attackers use with the rule sets that detect it, not only gaps")
        ] = False,
        limit: Annotated[int, Field(description="Rows per page", ge=1, le=200)] = 50,
        offset: Annotated[int, Field(description="Rows to skip", ge=0)] = 0,
        at: AtDate = None,
    ) -> GapsResult:  # type: ignore[valid-type]
        """Binaries attackers use (named by a LOLBAS entry, an atomic test, GTFOBins, LOOBins or a
        HijackLibs host) that no rule detects running or invoked (verdict runs or invoked; deprecated
        and unsupported rules never count) on their platform, ranked by how many sources name them;
        per platform, how many each rule set detects alone and together."""
        with index.then(at) as reader:
            try:
                report = joins.gaps(reader, rule_sets=rule_sets, platform=platform, every=include_detected)
            except ValueError as exc:
                raise ToolError(str(exc)) from None
        return _paged(GapsResult, report.to_dict(), "rows", offset, limit)

    @server.tool(annotations=read_only)
    def atomic_tests(
        name: Annotated[
            str,
            Field(description="An executable, as search_binary reads it (certutil.exe)", min_length=1, max_length=260),
        ],
        rule_sets: Annotated[
            list[str], Field(description="Only these detection sources' rules (default: every one)")
        ] = [],
        limit: Annotated[int, Field(description="Tests per page", ge=1, le=50)] = 10,
        offset: Annotated[int, Field(description="Tests to skip", ge=0)] = 0,
        at: AtDate = None,
    ) -> AtomicTestsResult:  # type: ignore[valid-type]
        """The atomic-red-team tests that run or name an executable, and for each the rules that
        should fire when it runs: rules (not deprecated or unsupported) that detect one of the
        test's binaries and carry one of its ATT&CK techniques; and the detections validated
        with it (Splunk's tags.atomic_guid), when indexed."""
        with index.then(at) as reader:
            try:
                report = joins.tests(reader, name, rule_sets=rule_sets)
            except ValueError as exc:
                raise ToolError(str(exc)) from None
        return _paged(AtomicTestsResult, report.to_dict(), "tests", offset, limit)

    @server.tool(annotations=read_only)
    def links(
        status: Annotated[
            list[LinkStatus], Field(description="Only these statuses (ok, moved, deprecated, deleted, unresolvable)")
        ] = [],
        entry: Annotated[
            Optional[str],
            Field(description="Only the links of this LOLBAS entry (Certutil.exe or its path)", max_length=260),
        ] = None,
        limit: Annotated[int, Field(description="Links per page", ge=1, le=200)] = 50,
        offset: Annotated[int, Field(description="Links to skip", ge=0)] = 0,
        at: AtDate = None,
    ) -> LinksResult:
        """LOLBAS -> Sigma links, each resolved through Sigma's history: ok, moved (with the rule's
        path today), deprecated, deleted, unresolvable (with why)."""
        with index.then(at) as reader:
            items = xref.links(reader, list(status))
        if entry:
            wanted = entry.strip().lower()
            items = [l for l in items if wanted in (l["entry"].lower(), l["lolbas_path"].lower())]
        return LinksResult(
            total=len(items),
            offset=offset,
            next_offset=_page(len(items), offset, limit),
            links=[_link(l) for l in items[offset : offset + limit]],
        )

    @server.tool(annotations=read_only)
    def changes(
        last: Annotated[int, Field(description="How many refreshes", ge=1, le=20)] = 5,
        since: Annotated[
            Optional[str],
            Field(
                description="Only refreshes started on or after this date (YYYY-MM-DD)", pattern=r"^\d{4}-\d{2}-\d{2}"
            ),
        ] = None,
        include_unchanged: Annotated[bool, Field(description="Also the refreshes that found nothing new")] = False,
        max_items: Annotated[int, Field(description="Items kept per list (files, binaries, rules)", ge=0, le=100)] = 10,
        until: Annotated[
            Optional[str],
            Field(
                description="With since: what changed between since and this date (YYYY-MM-DD or ISO, UTC), "
                "read from the history (refresh --history-since), whatever refreshes ran meanwhile",
                max_length=40,
            ),
        ] = None,
    ) -> ChangesResult:
        """What the last refreshes changed: commits, files, binaries that gained or lost a detecting rule,
        rules added, removed, renamed. With until, or since where the history is kept: what changed
        between the two dates (to the commits indexed without until), read from the history, as
        `indexer changes --since --until`. Lists are capped at max_items; each has its total beside it."""
        from .chronicle import history_since, iso
        from .manifest import recent_manifests

        n = max_items
        if until is not None or (since is not None and history_since(index.data_dir) is not None):
            if since is None:
                raise ToolError("until needs since: what changed between two dates")
            from .timeline import changes_between

            try:
                found = changes_between(index.data_dir, since, until or iso(int(time.time()))).to_dict()
            except HistoryError as exc:
                raise ToolError(str(exc)) from None
            lists = {key: found[key][:n] for key in ("gained", "lost", "rules")}
            totals = {f"{key}_total": len(found[key]) for key in lists}
            return ChangesResult(refreshes=[], history=HistoryChangesModel.model_validate({**found, **lists, **totals}))
        records = []
        for m in recent_manifests(index.data_dir, last, since, include_unchanged):
            changed = sorted(m["binaries"].items(), key=lambda kv: (-(kv[1]["gained"] + kv[1]["lost"]), kv[0]))
            detections = sorted(
                m.get("detections", {}).items(), key=lambda kv: (-len(kv[1]["gained"]) - len(kv[1]["lost"]), kv[0])
            )
            added = m.get("rules_added_detail") or [{"id": rid} for rid in m["rules_added"]]
            removed = m.get("rules_removed_detail") or [{"id": rid} for rid in m["rules_removed"]]
            records.append(
                ChangeRecord(
                    started=m["started"],
                    finished=m["finished"],
                    duration_s=m["duration_s"],
                    exit_code=m["exit_code"],
                    full=m["full"],
                    reason=m["reason"],
                    sources=[
                        SourceChange(
                            name=name,
                            mode=s["mode"],
                            before=s["before"],
                            after=s["after"],
                            error=s["error"],
                            added=s["added"][:n],
                            modified=s["modified"][:n],
                            deleted=s["deleted"][:n],
                            renamed=[list(r) for r in s["renamed"][:n]],
                            added_total=len(s["added"]),
                            modified_total=len(s["modified"]),
                            deleted_total=len(s["deleted"]),
                            renamed_total=len(s["renamed"]),
                        )
                        for name, s in m["sources"].items()
                    ],
                    files_parsed=m["files_parsed"],
                    file_errors=m["file_errors"][:n],
                    file_errors_total=len(m["file_errors"]),
                    mentions_added=m["mentions_added"],
                    mentions_removed=m["mentions_removed"],
                    mentions_total=m["mentions_total"],
                    binaries=[BinaryChange(binary=b, **c) for b, c in changed[:n]],
                    binaries_total=len(changed),
                    detections=[
                        DetectionChange(
                            binary=b,
                            before=d["before"],
                            after=d["after"],
                            gained=d["gained"][:n],
                            lost=d["lost"][:n],
                            changed=d["changed"][:n],
                        )
                        for b, d in detections[:n]
                    ],
                    detections_total=len(detections),
                    rules_added=added[:n],
                    rules_added_total=len(added),
                    rules_removed=removed[:n],
                    rules_removed_total=len(removed),
                    rules_renamed=m["rules_renamed"][:n],
                    rules_renamed_total=len(m["rules_renamed"]),
                )
            )
        return ChangesResult(refreshes=records)

    @server.tool(annotations=read_only)
    def navigator_layer(
        binary: Annotated[str, Field(description="An executable, as for search_binary", min_length=1, max_length=260)],
        max_links: Annotated[int, Field(description="Rule permalinks kept per technique", ge=0, le=50)] = 10,
        at: AtDate = None,
    ) -> LayerResult:
        """An ATT&CK Navigator layer (format 4.5) for an executable: each technique scored by the number
        of Sigma rules that detect it running with that technique's tag, plus the techniques its LOLBAS
        entries document. Save `layer` as a .json file and open it in the ATT&CK Navigator."""
        from .navigator import binary_layer

        with index.then(at) as reader:
            try:
                layer = binary_layer(reader, binary, max_links=max_links)
                suggestions = [] if layer else search(reader, binary).suggestions
            except ValueError as exc:
                raise ToolError(str(exc)) from None
        return LayerResult(
            query=binary,
            found=layer is not None,
            suggestions=suggestions,
            layer=NavigatorLayer.model_validate(layer) if layer else None,
        )

    return server


def run_stdio(data_dir: Path) -> None:
    """Serve the index over stdio until the client closes the connection."""
    build_server(data_dir).run("stdio")
