"""Misuse tables for other tools: Markdown (the xCyclopedia layout), CSV, JSON, JSONL.

Everything that comes from a rule is data: escaped for the format it is written in, and a
binary's name becomes a file name only through `safe_filename`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable, TextIO
from urllib.parse import quote

from .model import Mention
from .query import group_by_rule
from .verdicts import DETECTING, RuleVerdict, rule_verdicts
from .text import printable

FORMATS = ("markdown", "csv", "json", "jsonl")
CSV_COLUMNS = ("binary", "source", "path", "line", "snippet", "field", "modifiers", "role", "context",
               "detection", "inferred", "encoded", "rule_id", "title", "level", "status", "tags",
               "logsource", "commit", "url", "license", "verdict")
SOURCE_LABELS = {"sigma": "sigma", "lolbas": "LOLBAS"}
_HASHED = re.compile(r"-[0-9a-f]{8}$")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_AFTER_SEMICOLON = re.compile(r";(\s*)(?=[=+\-@])")


# --- escaping ----------------------------------------------------------------------------------

def clean(text: str) -> str:
    """One line of printable text: control characters shown as U+FFFD, newlines as spaces."""
    return printable(text)


def md_text(text: str) -> str:
    """Text for a Markdown table cell: no markup, no HTML, no cell break."""
    text = clean(text)
    text = re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", text)
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


def csv_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet runs as a formula (OWASP: prefix = + - @ tab CR with ')."""
    if isinstance(value, (list, tuple)):
        value = ";".join(str(v) for v in value)
    elif isinstance(value, bool):
        value = "true" if value else "false"
    text = clean(str(value))
    if text[:1] in _FORMULA:
        text = "'" + text
    # a spreadsheet whose list separator is `;` splits cells there: what follows is guarded too
    return _AFTER_SEMICOLON.sub(r";\1'", text) if ";" in text else text


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
    out = [f"# {md_text(binary)}", "", "## Possible Misuse", "",
           f"*{len(sigma)} Sigma rule files name {md_code(binary)}: {detecting} detect it, {running} of them "
           f"running it ({len(sigma) - len(active)} deprecated or unsupported rule files not counted); "
           f"{len(lolbas)} LOLBAS entries describe it.*", "",
           "Source | Source File | Example | License | Role | Verdict", "-- | -- | -- | -- | -- | --"]
    for (source, path), items in groups.items():
        info = sources.get(source, {})
        web = info.get("web_url", "")
        label = md_link(SOURCE_LABELS.get(source, source), web)
        license_url = f"{web}/blob/{info.get('commit', '')}/{info['license_path']}" if web and info.get("license_path") else ""
        for m in items:
            role = m.role + (" (filter)" if m.context == "filter" else "") + (" (inferred)" if m.inferred else "")
            rule = verdicts[(m.source, m.path, m.binary)]
            verdict = rule.verdict + (" (deprecated or unsupported)" if rule.retired else "")
            out.append(" | ".join([label, md_link(path.rsplit("/", 1)[-1], m.url), md_code(m.snippet),
                                   md_link(m.license, license_url) if m.license else "", md_text(role),
                                   md_text(verdict)]))
    return "\n".join(out) + "\n"


def write_markdown(by_binary: dict[str, list[Mention]], sources: dict[str, dict[str, Any]],
                   output: Path | TextIO) -> list[Path]:
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
    """Each mention as a dict with `verdict`: its rule file's verdict on the binary."""
    mentions = list(mentions)
    verdicts = verdict_map(mentions)
    for m in mentions:
        data = m.to_dict()
        data["verdict"] = verdicts[(m.source, m.path, m.binary)].verdict
        yield data


def write_csv(mentions: Iterable[Mention], stream: TextIO) -> int:
    writer = csv_writer(stream)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for data in _with_verdicts(mentions):
        writer.writerow([csv_cell(data[c]) for c in CSV_COLUMNS])
        count += 1
    return count


def write_jsonl(mentions: Iterable[Mention], stream: TextIO) -> int:
    count = 0
    for data in _with_verdicts(mentions):
        stream.write(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count


def binary_object(binary: str, mentions: list[Mention]) -> dict[str, Any]:
    """One executable with its mentions grouped by rule file, and each rule file's verdict on it."""
    rules = []
    verdicts = verdict_map(mentions)
    for (source, path), items in group_by_rule(mentions).items():
        first = items[0]
        rule = verdicts[(source, path, first.binary)]  # the mentions are of `binary`
        rules.append({
            "source": source, "path": path, "rule_id": first.rule_id, "title": first.title,
            "level": first.level, "status": first.status,
            "verdict": rule.verdict, "verdicts": list(rule.verdicts), "retired": rule.retired,
            "tags": list(dict.fromkeys(t for m in items for t in m.tags)),  # LOLBAS tags differ by command
            "logsource": first.logsource, "license": first.license,
            "url": first.url.split("#", 1)[0],
            "roles": sorted({m.role for m in items}),
            "mentions": [{k: v for k, v in m.to_dict().items()
                          if k not in ("binary", "source", "path", "rule_id", "title", "level", "status",
                                       "tags", "logsource", "license", "commit")} for m in items],
        })
    return {"binary": binary, "rule_files": len(rules), "rules": rules}


def write_json(by_binary: dict[str, list[Mention]], stream: TextIO) -> int:
    objects = [binary_object(b, ms) for b, ms in sorted(by_binary.items())]
    json.dump(objects, stream, ensure_ascii=False, indent=1)
    stream.write("\n")
    return len(objects)


def by_binary(mentions: Iterable[Mention]) -> dict[str, list[Mention]]:
    out: dict[str, list[Mention]] = {}
    for m in mentions:
        out.setdefault(m.binary, []).append(m)
    return out


def render(fmt: str, mentions: list[Mention], sources: dict[str, dict[str, Any]]) -> str:
    """An export as text (for stdout and tests)."""
    buffer = io.StringIO()
    if fmt == "csv":
        write_csv(mentions, buffer)
    elif fmt == "jsonl":
        write_jsonl(mentions, buffer)
    elif fmt == "json":
        write_json(by_binary(mentions), buffer)
    elif fmt == "markdown":
        write_markdown(by_binary(mentions), sources, buffer)
    else:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return buffer.getvalue()


def export_index(reader: Any, fmt: str, output: str, binaries: Iterable[str] = ()) -> dict[str, Any]:
    """Write an export of the whole index, or of some binaries, to a path or stdout ("-")."""
    import sys

    from .query import parse_query, resolve

    wanted = list(binaries)
    if wanted:
        names: list[str] = []
        for text in wanted:
            found = resolve(parse_query(text), reader.binaries())
            if not found:
                raise ValueError(f"no binary {text!r} in the index")
            names += found
        mentions = reader.search(names)
    else:
        mentions = sorted(reader.all_mentions(), key=lambda m: (m.binary, m.source, m.path, m.line))
    sources = reader.sources
    grouped = by_binary(mentions)
    if output == "-":
        sys.stdout.write(render(fmt, mentions, sources))
    elif fmt == "markdown":
        write_markdown(grouped, sources, Path(output))
    else:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as stream:
            {"csv": lambda: write_csv(mentions, stream), "jsonl": lambda: write_jsonl(mentions, stream),
             "json": lambda: write_json(grouped, stream)}[fmt]()
    return {"format": fmt, "output": output, "mentions": len(mentions), "binaries": len(grouped)}


# --- cross-references ----------------------------------------------------------------------------

LINK_COLUMNS = ("status", "entry", "lolbas_path", "line", "url", "current_path", "rule_id", "basis", "reason")
COVERAGE_COLUMNS = ("entry", "path", "tier", "categories", "mitre", "running", "other", "mentioning", "linked",
                    "agree", "running_rules", "other_rules", "linked_not_detecting")
TIERS = ("running", "other", "mentioned", "none")


def links_csv(links: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(LINK_COLUMNS)
    for link in links:
        writer.writerow([csv_cell(link.get(c, "")) for c in LINK_COLUMNS])
    return buffer.getvalue()


def _coverage_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"entry": row["entry"], "path": row["path"], "tier": row["tier"], "categories": row["categories"],
            "mitre": row["mitre"], "running": len(row["running_rules"]), "other": len(row["other_rules"]),
            "mentioning": len(row["mentioning_rules"]), "linked": len(row["linked"]), "agree": row["agree"],
            "running_rules": row["running_rules"], "other_rules": row["other_rules"],
            "linked_not_detecting": row["linked_not_detecting"]}


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
    out = ["# LOLBAS coverage by Sigma rules", "",
           f"Of {s['entries']} LOLBAS entries, {t['running']} have a Sigma rule that detects the binary running "
           f"(tier `running`), {t['other']} a rule that detects it as a parent, target, loaded module or in a "
           f"command line (`other`), {t['mentioned']} are only mentioned (`mentioned`) and {t['none']} are named "
           f"by no rule (`none`). Deprecated and unsupported rules are {retired}.", "",
           "Entry | Tier | Categories | Running | Other | Mentioning only | Linked by LOLBAS | Links agree",
           "-- | -- | -- | -- | -- | -- | -- | --"]
    for row in coverage["entries"]:
        out.append(" | ".join([md_text(row["entry"]), row["tier"], md_text(", ".join(row["categories"])),
                               str(len(row["running_rules"])), str(len(row["other_rules"])),
                               str(len(row["mentioning_rules"])), str(len(row["linked"])),
                               "yes" if row["agree"] else "**no**"]))
    head = " | ".join(["Entries", *TIERS])
    for title, key, what in (("By category", "by_category", "Category"), ("By MITRE technique", "by_mitre", "Technique")):
        out += ["", f"## {title}", "", f"{what} | {head}", " | ".join(["--"] * (len(TIERS) + 2))]
        out += [" | ".join([md_text(k), str(v["entries"]), *(str(v[tier]) for tier in TIERS)]) for k, v in s[key].items()]
    return "\n".join(out) + "\n"
