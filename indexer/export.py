"""Misuse tables for other tools: Markdown (the xCyclopedia layout), CSV, JSON, JSONL, and the
SIEM lookup (one row per executable). The records of each export are declared here; their JSON
Schemas (indexer/schemas/) are derived from them.

Everything that comes from a rule is data: escaped for the format it is written in, and a
binary's name becomes a file name only through `safe_filename`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Iterable, TextIO
from urllib.parse import quote

from . import __version__
from .model import RULE, Mention, Platform
from .query import group_by_rule
from .schema import Without
from .shape import Record
from .records import technique_ids
from .verdicts import DETECTING, SIGMA_VERDICTS, RuleVerdict, Verdict, rule_verdicts
from .text import printable

FORMATS = ("markdown", "csv", "json", "jsonl", "lookup")
SOURCE_LABELS = {"sigma": "sigma", "lolbas": "LOLBAS"}
LIST_SEPARATOR = ";"  # lists in a CSV cell (tags, modifiers, rule ids...): documented in the README
_HASHED = re.compile(r"-[0-9a-f]{8}$")
_AFTER_SEMICOLON = re.compile(r";\s*")

# --- the records of the exports (their JSON Schemas are derived from them: indexer/schema.py) --


@dataclass(frozen=True)
class MentionLine(Mention):
    """One line of `export --format jsonl`: a mention and its rule file's verdict on the binary."""

    verdict: Verdict = "mentioned"


# a mention's fields that the JSON export gives once, on its binary or its rule (the same for every mention of a rule)
RULE_FIELDS = ("binary", *Mention.fields_of(RULE))


@dataclass(frozen=True)
class RuleEntry:
    """One rule file naming a binary, with its verdict on it and the mentions (lines) that name it."""

    source: str
    path: str
    rule_id: str
    title: str
    level: str
    status: str
    verdict: Verdict
    verdicts: tuple[Verdict, ...]
    retired: bool
    tags: tuple[str, ...]  # the union over its mentions (a LOLBAS entry's differ by command)
    attack: tuple[str, ...]  # ATT&CK technique ids of the tags, as T1218.011
    logsource: str
    platform: Platform
    license: str
    url: str
    roles: tuple[str, ...]
    mentions: tuple[Annotated[Mention, Without(*RULE_FIELDS)], ...]


@dataclass(frozen=True)
class BinaryEntry:
    """One executable and every rule file naming it."""

    binary: str
    rule_files: int
    rules: tuple[RuleEntry, ...]


@dataclass(frozen=True)
class SourceInfo:
    """The commit of one source that the export was made from."""

    commit: str
    branch: str
    web_url: str
    license: str
    committed: str


@dataclass(frozen=True)
class JsonExport:
    """`export --format json`: the executables, and what they were exported from."""

    schema: str  # the $id of indexer/schemas/export-json.schema.json
    tool: str
    version: str
    generated: str  # UTC, ISO 8601
    sources: dict[str, SourceInfo]
    binaries: tuple[BinaryEntry, ...]


@dataclass(frozen=True)
class LookupRow(Record):
    """One row of `export --format lookup`: one executable, what detects it, what LOLBAS says.

    Column names are no SQL keyword (`binary` is one in DuckDB, `commit` in SQLite). Rule
    counts are of Sigma rule files, deprecated and unsupported ones counted apart.
    """

    executable: str
    aliases: tuple[str, ...]
    sigma_rules: int
    rules_runs: int
    rules_parent: int
    rules_target: int
    rules_loads: int
    rules_invoked: int
    rules_artifact: int
    rules_masquerade: int
    rules_excluded: int
    rules_mentioned: int
    rules_detecting: int
    rules_retired: int
    detecting_rule_ids: tuple[str, ...]
    detecting_rule_titles: tuple[str, ...]
    detecting_rule_urls: tuple[str, ...]
    lolbas_entries: tuple[str, ...]
    lolbas_categories: tuple[str, ...]
    attack_ids: tuple[str, ...]
    source_commits: tuple[str, ...]  # "sigma@<commit>" of each source naming the executable


JSON_SCHEMA_ID = "urn:indexer:schema:export-json/1"
CSV_COLUMNS = (*Mention.columns(), "verdict")
LOOKUP_COLUMNS = LookupRow.columns()


# --- escaping ----------------------------------------------------------------------------------


def clean(text: str) -> str:
    """One line of printable text: control characters shown as U+FFFD, newlines as spaces."""
    return printable(text)


def md_text(text: str) -> str:
    """Text for a Markdown table cell: no markup, no HTML, no cell break."""
    text = clean(text)
    text = re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", text)
    text = re.sub(r"^(\s*)(-|\d+\.)", lambda m: m[1] + m[2][:-1] + "\\" + m[2][-1], text)  # a row's start: no list
    return text.replace("&", "&amp;")


def md_code(text: str) -> str:
    """An inline code span that survives any backticks and pipes inside it."""
    text = clean(text).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_url(url: str) -> str:
    """A URL safe inside Markdown link parentheses (http(s) only, else no link)."""
    if not re.match(r"^https?://", url):
        return ""
    return quote(clean(url), safe=":/#?=%@+,;~!$*'-._")  # `&` encoded: Markdown reads entities


def md_link(text: str, url: str) -> str:
    target = md_url(url)
    return f"[{md_text(text)}]({target})" if target else md_text(text)


def formula_like(text: str) -> bool:
    """Whether a spreadsheet would read this cell as a formula.

    Always for a leading `=`, `+`, `@`, tab or CR. A leading `-` followed by a space is text
    (`- '\\certutil.exe'`, a YAML list line: a spreadsheet finds no formula there), unless what
    follows makes one: a digit, `(`, `"` (a string), `= + - @`, or a DDE reference anywhere
    (`|` and `!`: `- cmd|' /c calc'!A0`). Any other `-` (`-1+2`, `-x.exe`, `-=`) is a formula;
    a `-` alone is text.
    """
    head = text[:1]
    if head in ("=", "+", "@", "\t", "\r"):
        return True
    if head != "-" or len(text) == 1:
        return False
    if text[1] != " ":
        return True
    after = text[1:].lstrip(" ")[:1]
    return bool(after) and (after.isdigit() or after in '("=+-@' or ("|" in text and "!" in text))


def csv_cell(value: Any, guard: bool = True) -> str:
    """A CSV cell: lists joined with `;`, booleans as true/false, control characters shown as
    U+FFFD; with `guard`, a formula (see formula_like) prefixed with `'` (OWASP), at the start and
    after each `;` (where a spreadsheet whose list separator is `;` would split the cell)."""
    if isinstance(value, (list, tuple)):
        value = LIST_SEPARATOR.join(str(v) for v in value)
    elif isinstance(value, bool):
        value = "true" if value else "false"
    text = clean(str(value))
    if not guard:
        return text
    if formula_like(text):
        text = "'" + text
    if ";" in text:
        parts = _AFTER_SEMICOLON.split(text)
        seps = _AFTER_SEMICOLON.findall(text)
        text = parts[0] + "".join(
            sep + ("'" if formula_like(part) else "") + part for sep, part in zip(seps, parts[1:])
        )
    return text


def csv_writer(stream: TextIO) -> Any:
    """The CSV writer of every export: every cell quoted, so a `;` inside one never splits it."""
    return csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)


def safe_filename(name: str) -> str:
    """A file name for a binary's page: [a-z0-9._-] only, never hidden, never an option, never a path."""
    safe = re.sub(r"[^a-z0-9._-]", "_", name.lower()).lstrip(".-").rstrip(".") or "_"
    # a name kept as it is never ends like a hashed one, so no two names share a page
    # (`notepad__.exe-db9caabd` is not notepad++.exe's page)
    if safe != name or safe in (".", "..") or len(safe) > 120 or _HASHED.search(safe):
        safe = f"{safe[:80]}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
    return safe


def verdict_map(mentions: Iterable[Mention]) -> dict[tuple[str, str, str], RuleVerdict]:
    """(source, path, binary) -> that rule file's verdict on the binary (the index stores the same)."""
    return {(v.source, v.path, v.binary): v for v in rule_verdicts(m.__dict__ for m in mentions)}


# --- Markdown ----------------------------------------------------------------------------------


def markdown_table(binary: str, mentions: list[Mention], sources: dict[str, dict[str, Any]]) -> str:
    """The "Possible Misuse" section for one executable, in the layout of xCyclopedia's pages,
    with each rule file's verdict on it."""
    groups = group_by_rule(mentions)
    verdicts = verdict_map(mentions)
    sigma = [v for v in verdicts.values() if v.source == "sigma"]
    active = [v for v in sigma if not v.retired]
    running = sum(v.verdict == "runs" for v in active)
    detecting = sum(v.verdict in DETECTING for v in active)
    lolbas = {p for (s, p) in groups if s == "lolbas"}
    out = [
        f"# {md_text(binary)}",
        "",
        "## Possible Misuse",
        "",
        f"*{len(sigma)} Sigma rule files name {md_code(binary)}: {detecting} detect it, {running} of them "
        f"running it ({len(sigma) - len(active)} deprecated or unsupported rule files not counted); "
        f"{len(lolbas)} LOLBAS entries describe it.*",
        "",
        "Source | Source File | Example | License | Role | Verdict",
        "-- | -- | -- | -- | -- | --",
    ]
    for (source, path), items in groups.items():
        info = sources.get(source, {})
        web = info.get("web_url", "")
        label = md_link(SOURCE_LABELS.get(source, source), web)
        license_url = (
            f"{web}/blob/{info.get('commit', '')}/{info['license_path']}" if web and info.get("license_path") else ""
        )
        for m in items:
            role = m.role + (" (filter)" if m.context == "filter" else "") + (" (inferred)" if m.inferred else "")
            rule = verdicts[(m.source, m.path, m.binary)]
            verdict = rule.verdict + (" (deprecated or unsupported)" if rule.retired else "")
            out.append(
                " | ".join(
                    [
                        label,
                        md_link(path.rsplit("/", 1)[-1], m.url),
                        md_code(m.snippet),
                        md_link(m.license, license_url) if m.license else "",
                        md_text(role),
                        md_text(verdict),
                    ]
                )
            )
    return "\n".join(out) + "\n"


def write_markdown(
    by_binary: dict[str, list[Mention]], sources: dict[str, dict[str, Any]], output: Path | TextIO
) -> list[Path]:
    """One file for all binaries (`x.md` or a stream) or, for a directory, one page per binary."""
    if not isinstance(output, Path) or output.suffix == ".md":
        text = "\n".join(markdown_table(b, ms, sources) for b, ms in sorted(by_binary.items()))
        if isinstance(output, Path):
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
            return [output]
        output.write(text)
        return []
    output.mkdir(parents=True, exist_ok=True)
    written = []
    index = ["# Possible misuse, by executable", "", "Executable | Rule files", "-- | --"]
    for binary, mentions in sorted(by_binary.items()):
        page = output / f"{safe_filename(binary)}.md"
        page.write_text(markdown_table(binary, mentions, sources), encoding="utf-8")
        written.append(page)
        files = len({(m.source, m.path) for m in mentions})
        index.append(f"[{md_text(binary)}]({quote(page.name)}) | {files}")
    (output / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    return written + [output / "README.md"]


# --- CSV, JSON, JSONL --------------------------------------------------------------------------


def _with_verdicts(mentions: Iterable[Mention]) -> Iterable[dict[str, Any]]:
    """Each mention as a dict with `verdict`: its rule file's verdict on the binary (a MentionLine)."""
    mentions = list(mentions)
    verdicts = verdict_map(mentions)
    for m in mentions:
        data = m.to_dict()
        data["verdict"] = verdicts[(m.source, m.path, m.binary)].verdict
        yield data


def write_csv(mentions: Iterable[Mention], stream: TextIO, guard: bool = True) -> int:
    writer = csv_writer(stream)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for data in _with_verdicts(mentions):
        writer.writerow([csv_cell(data[c], guard) for c in CSV_COLUMNS])
        count += 1
    return count


def write_jsonl(mentions: Iterable[Mention], stream: TextIO) -> int:
    count = 0
    for data in _with_verdicts(mentions):
        stream.write(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count


_LINE_FIELDS = tuple(f for f in Mention.columns() if f not in RULE_FIELDS)


def binary_object(binary: str, mentions: list[Mention]) -> dict[str, Any]:
    """One executable with its mentions grouped by rule file, and each rule file's verdict on it
    (a BinaryEntry as a dict)."""
    rules = []
    verdicts = verdict_map(mentions)
    for (source, path), items in group_by_rule(mentions).items():
        first = items[0]
        rule = verdicts[(source, path, first.binary)]  # the mentions are of `binary`
        tags = list(dict.fromkeys(t for m in items for t in m.tags))  # LOLBAS tags differ by command
        rules.append(
            {
                "source": source,
                "path": path,
                "rule_id": first.rule_id,
                "title": first.title,
                "level": first.level,
                "status": first.status,
                "verdict": rule.verdict,
                "verdicts": list(rule.verdicts),
                "retired": rule.retired,
                "tags": tags,
                "attack": technique_ids(tags),
                "logsource": first.logsource,
                "platform": first.platform,
                "license": first.license,
                "url": first.url.split("#", 1)[0],
                "roles": sorted({m.role for m in items}),
                "mentions": [{k: v for k, v in m.to_dict().items() if k in _LINE_FIELDS} for m in items],
            }
        )
    return {"binary": binary, "rule_files": len(rules), "rules": rules}


def envelope(sources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a JSON export was made from: schema id, tool version, date, each source's commit."""
    return {
        "schema": JSON_SCHEMA_ID,
        "tool": "indexer",
        "version": __version__,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": {
            name: {key: str(info.get(key, "")) for key in SourceInfo.__dataclass_fields__}
            for name, info in sorted(sources.items())
        },
    }


def write_json(by_binary: dict[str, list[Mention]], stream: TextIO, sources: dict[str, dict[str, Any]]) -> int:
    """A JsonExport: the envelope, then one object per executable."""
    objects = [binary_object(b, ms) for b, ms in sorted(by_binary.items())]
    json.dump({**envelope(sources), "binaries": objects}, stream, ensure_ascii=False, indent=1)
    stream.write("\n")
    return len(objects)


def by_binary(mentions: Iterable[Mention]) -> dict[str, list[Mention]]:
    out: dict[str, list[Mention]] = {}
    for m in mentions:
        out.setdefault(m.binary, []).append(m)
    return out


# --- the lookup: one row per executable ---------------------------------------------------------


def lookup_rows(
    mentions: Iterable[Mention],
    sources: dict[str, dict[str, Any]],
    aliases: dict[str, list[str]],
    entries: list[dict[str, Any]],
) -> list[LookupRow]:
    """One LookupRow per executable of `mentions`.

    entries: the LOLBAS coverage rows (xref.coverage's `entries`: entry, names, categories, mitre).
    Detecting rules: active Sigma rule files whose verdict detects the binary, strongest first.
    """
    lolbas: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        for name in entry["names"]:
            lolbas.setdefault(name, []).append(entry)
    rows = []
    for binary, items in sorted(by_binary(mentions).items()):
        tags: dict[tuple[str, str], set[str]] = {}
        urls: dict[tuple[str, str], str] = {}
        for m in items:
            tags.setdefault((m.source, m.path), set()).update(m.tags)
            urls.setdefault((m.source, m.path), m.url.split("#", 1)[0])
        sigma = [v for v in verdict_map(items).values() if v.source == "sigma"]
        active = sorted((v for v in sigma if not v.retired), key=RuleVerdict.sort_key)
        detecting = [v for v in active if v.detects]
        counts = {verdict: sum(v.verdict == verdict for v in active) for verdict in SIGMA_VERDICTS}
        its_entries = lolbas.get(binary, [])
        attack = technique_ids(
            [t for v in detecting for t in tags[(v.source, v.path)]] + [t for e in its_entries for t in e["mitre"]]
        )
        rows.append(
            LookupRow(
                executable=binary,
                aliases=tuple(aliases.get(binary, ())),
                sigma_rules=len(active),
                **{f"rules_{verdict}": n for verdict, n in counts.items()},
                rules_detecting=len(detecting),
                rules_retired=len(sigma) - len(active),
                detecting_rule_ids=tuple(v.rule_id for v in detecting),
                detecting_rule_titles=tuple(v.title for v in detecting),
                detecting_rule_urls=tuple(urls[(v.source, v.path)] for v in detecting),
                lolbas_entries=tuple(sorted({e["entry"] for e in its_entries})),
                lolbas_categories=tuple(sorted({c for e in its_entries for c in e["categories"]})),
                attack_ids=tuple(attack),
                # the sources naming it (seven commits on every row cost a third of the file)
                source_commits=tuple(
                    f"{name}@{sources[name].get('commit', '')}"
                    for name in sorted({m.source for m in items})
                    if name in sources
                ),
            )
        )
    return rows


def write_lookup(rows: Iterable[LookupRow], stream: TextIO, guard: bool = True) -> int:
    writer = csv_writer(stream)
    writer.writerow(LOOKUP_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(getattr(row, c), guard) for c in LOOKUP_COLUMNS])
        count += 1
    return count


def render(fmt: str, mentions: list[Mention], sources: dict[str, dict[str, Any]], guard: bool = True) -> str:
    """An export as text (for stdout and tests; the lookup needs the index: export_index)."""
    buffer = io.StringIO()
    if fmt == "csv":
        write_csv(mentions, buffer, guard)
    elif fmt == "jsonl":
        write_jsonl(mentions, buffer)
    elif fmt == "json":
        write_json(by_binary(mentions), buffer, sources)
    elif fmt == "markdown":
        write_markdown(by_binary(mentions), sources, buffer)
    else:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return buffer.getvalue()


def selected_mentions(reader: Any, binaries: Iterable[str] = ()) -> list[Mention]:
    """The mentions of the binaries named (as search reads names), or of the whole index;
    ValueError for a name that is not indexed."""
    from .query import parse_query, resolve

    wanted = list(binaries)
    if not wanted:
        return sorted(reader.all_mentions(), key=lambda m: (m.binary, m.source, m.path, m.line))
    names: list[str] = []
    for text in wanted:
        found = resolve(parse_query(text), reader.binaries())
        if not found:
            raise ValueError(f"no binary {text!r} in the index")
        names += found
    return reader.search(names)


def export_index(
    reader: Any, fmt: str, output: str, binaries: Iterable[str] = (), guard: bool = True
) -> dict[str, Any]:
    """Write an export of the whole index, or of some binaries, to a path or stdout ("-").

    guard: the CSV formula guard (csv and lookup); `--no-formula-guard` turns it off.
    """
    import sys

    from . import xref

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    mentions = selected_mentions(reader, binaries)
    sources = reader.sources
    grouped = by_binary(mentions)
    summary: dict[str, Any] = {"format": fmt, "output": output, "mentions": len(mentions), "binaries": len(grouped)}
    if fmt == "markdown" and output != "-":
        write_markdown(grouped, sources, Path(output))
        return summary
    path = Path(output)
    if output != "-":
        path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "w", encoding="utf-8", newline="") if output != "-" else contextlib.nullcontext(sys.stdout)
    ) as stream:
        if fmt == "lookup":
            rows = lookup_rows(mentions, sources, reader.aliases(), xref.coverage(reader)["entries"])
            summary["rows"] = write_lookup(rows, stream, guard)
        elif fmt == "csv":
            write_csv(mentions, stream, guard)
        elif fmt == "jsonl":
            write_jsonl(mentions, stream)
        elif fmt == "json":
            write_json(grouped, stream, sources)
        else:
            write_markdown(grouped, sources, stream)
    if output != "-":
        summary["bytes"] = path.stat().st_size
    return summary


# --- cross-references ----------------------------------------------------------------------------

LINK_COLUMNS = (
    "status",
    "rule_set",
    "entry",
    "lolbas_path",
    "line",
    "url",
    "current_path",
    "rule_id",
    "basis",
    "reason",
)
COVERAGE_COLUMNS = (
    "entry",
    "path",
    "tier",
    "categories",
    "mitre",
    "running",
    "other",
    "mentioning",
    "linked",
    "agree",
    "running_rules",
    "other_rules",
    "linked_not_detecting",
)
TIERS = ("running", "other", "mentioned", "none")


def links_csv(links: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(LINK_COLUMNS)
    for link in links:
        writer.writerow([csv_cell(link.get(c, "")) for c in LINK_COLUMNS])
    return buffer.getvalue()


def _coverage_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "entry": row["entry"],
        "path": row["path"],
        "tier": row["tier"],
        "categories": row["categories"],
        "mitre": row["mitre"],
        "running": len(row["running_rules"]),
        "other": len(row["other_rules"]),
        "mentioning": len(row["mentioning_rules"]),
        "linked": len(row["linked"]),
        "agree": row["agree"],
        "running_rules": row["running_rules"],
        "other_rules": row["other_rules"],
        "linked_not_detecting": row["linked_not_detecting"],
    }


def coverage_csv(coverage: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(COVERAGE_COLUMNS)
    for row in coverage["entries"]:
        flat = _coverage_row(row)
        writer.writerow([csv_cell(flat[c]) for c in COVERAGE_COLUMNS])
    return buffer.getvalue()


def coverage_markdown(coverage: dict[str, Any]) -> str:
    s = coverage["summary"]
    t = s["tiers"]
    retired = "counted" if s["include_retired"] else "not counted"
    out = [
        "# LOLBAS coverage by Sigma rules",
        "",
        f"Of {s['entries']} LOLBAS entries, {t['running']} have a Sigma rule that detects the binary running "
        f"(tier `running`), {t['other']} a rule that detects it as a parent, target, loaded module or in a "
        f"command line (`other`), {t['mentioned']} are only mentioned (`mentioned`) and {t['none']} are named "
        f"by no rule (`none`). Deprecated and unsupported rules are {retired}.",
        "",
        "Entry | Tier | Categories | Running | Other | Mentioning only | Linked by LOLBAS | Links agree",
        "-- | -- | -- | -- | -- | -- | -- | --",
    ]
    for row in coverage["entries"]:
        out.append(
            " | ".join(
                [
                    md_text(row["entry"]),
                    row["tier"],
                    md_text(", ".join(row["categories"])),
                    str(len(row["running_rules"])),
                    str(len(row["other_rules"])),
                    str(len(row["mentioning_rules"])),
                    str(len(row["linked"])),
                    "yes" if row["agree"] else "**no**",
                ]
            )
        )
    rule_sets = coverage.get("rule_sets")
    if rule_sets:
        out += [
            "",
            "## By rule set",
            "",
            " | ".join(["Rule set", *TIERS, "Running by it alone", "Detected by it alone"]),
        ]
        out.append(" | ".join(["--"] * (len(TIERS) + 3)))
        for name in rule_sets["rule_sets"]:
            counts = [str(rule_sets["tiers"][name][t]) for t in TIERS]
            alone = [str(rule_sets["running_only"][name]), str(rule_sets["detected_only"][name])]
            out.append(" | ".join([md_text(name), *counts, *alone]))
        out += [
            "",
            f"Detected running by every rule set: {rule_sets['running_by_all']}, by none: "
            f"{rule_sets['running_by_none']}; detected at all by every rule set: {rule_sets['detected_by_all']}, "
            f"by none: {rule_sets['detected_by_none']}.",
        ]
    head = " | ".join(["Entries", *TIERS])
    for title, key, what in (
        ("By category", "by_category", "Category"),
        ("By MITRE technique", "by_mitre", "Technique"),
    ):
        out += ["", f"## {title}", "", f"{what} | {head}", " | ".join(["--"] * (len(TIERS) + 2))]
        out += [
            " | ".join([md_text(k), str(v["entries"]), *(str(v[tier]) for tier in TIERS)]) for k, v in s[key].items()
        ]
    return "\n".join(out) + "\n"
