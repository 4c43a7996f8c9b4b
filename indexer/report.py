"""How the CLI shows results to a person: Rich tables and short summaries (no logic here)."""

from __future__ import annotations

from typing import Any, Iterator

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .query import SearchResult, group_by_rule
from .text import printable


def _snippet(snippet: str, binary: str) -> Text:
    text = Text(snippet)
    text.highlight_words([binary], style="bold yellow", case_sensitive=False)
    return text


def print_search(console: Console, result: SearchResult) -> None:
    if not result.mentions and result.binaries:
        console.print(Text(f"{', '.join(result.binaries)}: indexed, but no rule passes the filters"), style="yellow")
        return
    if not result.mentions:
        console.print(Text(f"no rule mentions {result.query!r}"), style="yellow")
        if result.suggestions:
            console.print(Text("did you mean: " + ", ".join(result.suggestions) + "?"))
        return
    groups = group_by_rule(result.mentions)
    verdicts: dict[tuple[str, str], list[Any]] = {}
    for rule in result.rules:
        verdicts.setdefault((rule.source, rule.path), []).append(rule)
    console.print(
        Text(
            f"{result.query}: {len(result.mentions)} mentions of {', '.join(result.binaries[:8])}"
            f"{' ...' if len(result.binaries) > 8 else ''} in {len(groups)} rule files",
            style="bold",
        )
    )
    for line in counterpart_lines(result.binaries, result.counterparts, result.platforms):
        console.print(Text(line, style="yellow"))
    for (source, path), mentions in groups.items():
        first = mentions[0]
        heading = Text(f"\n{source} ", style="bold")
        rules = verdicts.get((source, path), [])
        if rules:
            several = len(rules) > 1
            heading.append(
                " ".join(f"{r.binary}:{r.verdict}" if several else r.verdict for r in rules) + " ",
                style="bold green" if any(r.detects for r in rules) else "bold",
            )
            if any(r.retired for r in rules):
                heading.append("(retired) ", style="dim")
        heading.append(path, style="bold cyan")
        if first.title and source == "sigma":
            heading.append(f"  {first.title}")
        if first.level:
            heading.append(f"  [{first.level}]", style="magenta")
        heading.append(f"  ({first.platform or 'no platform'})", style="blue")
        console.print(heading)
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
        for column, style in (("line", "dim"), ("role", "green"), ("field", ""), ("snippet", "")):
            table.add_column(column, style=style, overflow="fold", no_wrap=column != "snippet")
        for m in mentions:
            role = m.role + (" (filter)" if m.context == "filter" else "") + (" ~" if m.inferred else "")
            field = m.field + ("|" + "|".join(m.modifiers) if m.modifiers else "")
            table.add_row(
                f"L{m.line}",
                role,
                Text(field),
                _snippet(m.snippet, m.binary.rsplit(".", 1)[0] if m.inferred else m.binary),
            )
        console.print(table)
    for link in result.declared_detections:
        where = link.get("current_path") or link.get("reason") or ""
        console.print(
            Text(
                f"LOLBAS {link['lolbas_path']} L{link['line']} links a Sigma rule: {link['status']} {where}",
                style="dim",
            )
        )
    if any(m.inferred for m in result.mentions):
        console.print(Text("\n~ bare name recognised without its extension", style="dim"))


def counterpart_lines(
    binaries: list[str], counterparts: dict[str, list[str]], platforms: dict[str, list[str]]
) -> Iterator[str]:
    """The same program under its other platform's name (curl <-> curl.exe): both found, or the
    one not searched for, with the platforms of their rules."""

    def named(name: str) -> str:
        return f"{name} ({', '.join(p or 'no platform' for p in platforms.get(name, [])) or '-'})"

    for name in binaries:
        for other in counterparts.get(name, []):
            if other not in binaries:
                yield f"also indexed on another platform: {named(other)} (indexer search {other})"
            elif name < other:
                yield f"the same program on two platforms: {named(name)} and {named(other)}"


def _other_matches(console: Console, data: dict[str, Any]) -> None:
    for other in data.get("other_matches", []):
        if other["kind"] == "binary":
            console.print(
                Text(
                    f"  also a binary name: {', '.join(other['binaries'])} (indexer show --kind binary)", style="yellow"
                )
            )
        elif other["matched_by"] == "id":
            console.print(Text(f"  duplicate id: also in {other['source']}:{other['path']}", style="yellow"))
        else:
            console.print(Text(f"  also a rule path: {other['source']}:{other['path']}", style="yellow"))


def print_show(console: Console, data: dict[str, Any]) -> None:
    console.soft_wrap = True  # one line per rule and per mention, however long, as grep would print it
    if data["kind"] == "rule":
        how = {"id": "rule id", "path": "rule path"}.get(data.get("matched_by", ""), "rule")
        console.print(Text(f"rule ({how}) {data['source']}: {data['path']}", style="bold cyan"))
        _other_matches(console, data)
        for key in ("title", "rule_ids", "level", "logsource", "tags", "url", "status", "reason", "warnings"):
            if data.get(key):
                value = ", ".join(data[key]) if isinstance(data[key], list) else str(data[key])
                console.print(Text(f"  {key}: {value}"))
        console.print(Text(f"  binaries: {', '.join(data['binaries'])}"))
        for former in data.get("former_paths", []):
            console.print(
                Text(f"  formerly: {former['path']} (moved {former['date'][:10]}, {former['moved_in'][:12]})")
            )
        for link in data.get("linked_from_lolbas", []):
            console.print(Text(f"  linked from LOLBAS {link['lolbas_path']} L{link['line']} ({link['status']})"))
        for v in data.get("verdicts", []):
            console.print(
                Text(
                    f"  {v['binary']}: {v['verdict']}"
                    + (f" ({', '.join(v['verdicts'][1:])} too)" if len(v["verdicts"]) > 1 else "")
                )
            )
        for item in data.get("detection_items", []):
            kind = "filter: excludes" if item["context"] == "filter" else "selection"
            console.print(Text(f"  item {item['name']} ({kind}): {', '.join(item['binaries'])}"))
        for m in data["mentions"]:
            where = f"{m['detection']}{' (filter)' if m['context'] == 'filter' else ''}" if m["detection"] else ""
            console.print(Text(f"  {m['line']:>4}  {m['binary']:<24} {m['role']:<18} {where:<28} {m['snippet']}"))
        return
    console.print(Text("binary " + ", ".join(data["binaries"]), style="bold"))
    _other_matches(console, data)
    if data.get("counterparts"):
        console.print(
            Text(f"  on another platform: {', '.join(data['counterparts'])} (indexer show NAME)", style="yellow")
        )
    console.print(Text(f"  roles: {', '.join(data['roles'])}"))
    for line in binary_lines(data):
        console.print(Text(line, style="dim" if line.rstrip().endswith("]") else ""))


SECTION_TITLES = {
    "detection": "detection",
    "abuse": "abuse (LOLBAS, GTFOBins, LOOBins)",
    "tests": "tests (atomic-red-team)",
    "drivers": "drivers (LOLDrivers)",
    "sideloading": "side-loading (HijackLibs)",
}


def binary_lines(data: dict[str, Any]) -> Iterator[str]:
    """`show NAME` grouped by kind of source (records.BinarySections): each detection source's
    rule files with its counts, then the entries of abuse, tests, drivers and side-loading."""
    sections = data["sections"]
    yield SECTION_TITLES["detection"]
    if not sections["detection"]:
        yield "  no detection rule names it"
    for rule_set in sections["detection"]:
        yield (
            f"  {rule_set['source']}: {len({r['path'] for r in rule_set['rules']})} rule files: "
            f"{rule_set['running']} run it, {rule_set['detecting']} detect it (runs, parent, target, loads, invoked), "
            f"{rule_set['retired']} deprecated or unsupported"
        )
        yield from rule_lines(rule_set["rules"])
    for link in data.get("lolbas_declared_detections", []):
        yield (
            f"  LOLBAS links a Sigma rule ({link['status']}): "
            f"{link.get('current_path') or link.get('reason') or link['url']}"
        )
    for kind in ("abuse", "tests", "drivers", "sideloading"):
        if sections[kind]:
            yield SECTION_TITLES[kind]
        for item in sections[kind]:
            yield "  " + atlas_line(item)


def atlas_line(item: dict[str, Any]) -> str:
    """One entry, test, driver or DLL: what it says of the binary, and where."""
    where = f"{item['source']}:{item['path']} L{','.join(map(str, item['lines'][:5]))}"
    techniques = f" {','.join(item['techniques'])}" if item["techniques"] else ""
    functions = f" [{', '.join(item['functions'])}]" if item["functions"] else ""
    if item["kind"] == "tests":
        return f"{item['id']} {item['platform'] or '-'} {item['executor'] or '-'}{techniques}  {item['title']}  {where}"
    if item["kind"] == "drivers":
        hashes = f" {len(item['hashes'])} hashes ({', '.join(item['hashes'][:3])}{' ...' if len(item['hashes']) > 3 else ''})"
        return f"{item['title']}{functions}{hashes if item['hashes'] else ''}  {where}"
    if item["kind"] == "sideloading":
        if item["dlls"]:
            return f"side-loads {', '.join(item['dlls'])}{functions}  {where}"
        hosts = ", ".join(item["hosts"][:8]) + (f" ... ({len(item['hosts'])})" if len(item["hosts"]) > 8 else "")
        return f"{item['title']} is side-loaded by {hosts or '-'}{functions}  {where}"
    return f"{item['title']} ({item['platform'] or '-'}){functions}{techniques}  {where}"


def rule_lines(rules: list[dict[str, Any]]) -> Iterator[str]:
    """One line per rule file: verdict, level, status, title, path (as given: strongest first);
    deprecated and unsupported rules marked at the end of their line."""
    several = len({r["binary"] for r in rules}) > 1
    for r in rules:
        mark = ""
        if r.get("retired"):
            mark = (
                "  [deprecated]"
                if r["path"].startswith("deprecated/") or r["status"] == "deprecated"
                else "  [unsupported]"
            )
        who = f"{r['binary']}: " if several else ""
        yield (
            f"  {who}{r['verdict']:<10} {r['level'] or '-':<13} {r['status'] or '-':<12} "
            f"{r['title'] or '-'}  {r['source']}:{r['path']}{mark}"
        )


def print_stats(console: Console, data: dict[str, Any], show_all: bool = False) -> None:
    for name, info in data["sources"].items():
        console.print(
            Text(
                f"{name}: {info.get('url')} {info.get('branch')} at {info.get('commit', '')[:12]} "
                f"({info.get('committed', '')}), license {info.get('license') or 'unknown'}"
            )
        )
    table = Table("source", "seen", "indexed", "error", "skipped", "with warnings")
    for name, counts in data["files"].items():
        table.add_row(name, *(str(counts[k]) for k in ("seen", "indexed", "error", "skipped", "with_warnings")))
    console.print(table)
    console.print(
        Text(
            f"rules: {data['rule_ids']}  mentions: {data['mentions']} "
            f"({data['inferred_mentions']} inferred)  binaries: {data['binaries']}"
        )
    )
    console.print(Text("mentions by role: " + ", ".join(f"{k} {v}" for k, v in data["mentions_by_role"].items())))
    problems = data["problems"]
    shown = problems if show_all else [p for p in problems if p["status"] == "error"]
    for p in shown:
        console.print(Text(f"  {p['status']}: {p['source']}:{p['path']}: {p['reason']}"))
    hidden = len(problems) - len(shown)
    if hidden:
        console.print(Text(f"  ({hidden} skipped or with pySigma warnings: --errors lists them)"))


def manifest_lines(m: dict[str, Any], every: bool = False) -> Iterator[str]:
    """A refresh manifest for people: what moved, what changed, per binary; the binaries whose
    detecting rules changed, and the rules added and removed (the first 15 of each, or every one).
    Titles and paths come from rules: no control character is printed."""
    for line in _manifest_lines(m, None if every else 15):
        yield printable(line)


def _manifest_lines(m: dict[str, Any], limit: int | None) -> Iterator[str]:
    yield f"refresh {m['started']} ({m['duration_s']}s, exit {m['exit_code']})" + (
        f": {m['reason']}" if m.get("reason") else ""
    )
    if m["exit_code"] == 2 and not m["generation"]:
        yield "  no index yet: give reachable sources (--sigma-url, --lolbas-url: a URL, a clone or a git bundle)"
    for name, s in m["sources"].items():
        if s["mode"] == "failed":
            kept = "previous index kept" if s["before"] else "nothing indexed from it yet"
            yield f"  {name}: FAILED: {s['error']} ({kept})"
        elif s["mode"] == "unchanged":
            yield f"  {name}: up to date at {s['after'][:12]}"
        else:
            counts = ", ".join(f"{len(s[k])} {k}" for k in ("added", "modified", "deleted", "renamed") if s[k])
            yield f"  {name}: {s['mode']} {s['before'][:12] or '(new)'} -> {s['after'][:12]}" + (
                f": {counts}" if counts else ""
            )
    if m["files_parsed"] or m["mentions_added"] or m["mentions_removed"]:
        yield (
            f"  files parsed {m['files_parsed']}, mentions +{m['mentions_added']} -{m['mentions_removed']}"
            f" (total {m['mentions_total']})"
        )
    for e in m["file_errors"][:20]:
        yield f"  error: {e['source']}:{e['path']}: {e['reason']}"
    if len(m["file_errors"]) > 20:
        yield f"  ... and {len(m['file_errors']) - 20} more file errors"
    detections = m.get("detections", {})
    if detections:
        yield f"  detections changed for {len(detections)} binaries (Sigma rules that run, parent, target, load or invoke them):"
    for name, d in sorted(detections.items(), key=lambda kv: (-len(kv[1]["gained"]) - len(kv[1]["lost"]), kv[0]))[
        :limit
    ]:
        yield f"  {name}: {d['before']} -> {d['after']} detecting rules"
        lines = (
            [f"    - {r['verdict']:<8} {r['title']}  {r['path']}  (now: {r['now'] or 'gone'})" for r in d["lost"]]
            + [f"    + {r['verdict']:<8} {r['title']}  {r['path']}" for r in d["gained"]]
            + [f"    ~ {r['before']} -> {r['after']}  {r['title']}  {r['path']}" for r in d["changed"]]
        )
        yield from lines[: None if limit is None else 5]
        if limit is not None and len(lines) > 5:
            yield f"    ... and {len(lines) - 5} more rules"
    if limit is not None and len(detections) > limit:
        yield f"  ... and {len(detections) - limit} more binaries whose detections changed (--all lists them)"
    changed = m["binaries"]
    for name, c in list(sorted(changed.items(), key=lambda kv: -(kv[1]["gained"] + kv[1]["lost"])))[:limit]:
        parts = ([f"+{c['gained']}"] if c["gained"] else []) + ([f"-{c['lost']}"] if c["lost"] else [])
        yield f"  {name}: {' '.join(parts)} rules naming it ({c['rules_before']} -> {c['rules_after']})"
    if limit is not None and len(changed) > limit:
        yield f"  ... and {len(changed) - limit} more binaries changed (--all lists them)"
    for key in ("rules_added", "rules_removed"):
        if m[key]:
            yield f"  {key.replace('_', ' ')}: {len(m[key])}"
            detail = m.get(f"{key}_detail", [])
            for r in detail[:limit]:
                yield f"    {'+' if key == 'rules_added' else '-'} {r['title']}  {r['path']}"
            if limit is not None and len(detail) > limit:
                yield f"    ... and {len(detail) - limit} more (--all lists them)"
    if m["rules_renamed"]:
        yield f"  rules renamed: {len(m['rules_renamed'])}"


def print_links(console: Console, links: list[dict[str, Any]]) -> None:
    table = Table("status", "rule set", "LOLBAS entry", "line", "now at / why", box=None, pad_edge=False)
    for link in links:
        style = {"ok": "green", "moved": "yellow", "deprecated": "magenta"}.get(link["status"], "red")
        table.add_row(
            Text(link["status"], style=style),
            Text(link.get("rule_set", "sigma")),
            Text(link["lolbas_path"]),
            str(link["line"]),
            Text(link.get("current_path") or link.get("reason") or ""),
        )
    console.print(table)
    counts: dict[str, int] = {}
    for link in links:
        counts[link["status"]] = counts.get(link["status"], 0) + 1
    console.print(Text(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no links"))


def print_coverage(console: Console, data: dict[str, Any]) -> None:
    s = data["summary"]
    if not s:
        console.print(Text("no coverage computed yet: run 'indexer refresh'"))
        return
    t = s["tiers"]
    retired = "counting" if s["include_retired"] else "not counting"
    console.print(
        Text(
            f"{s['entries']} LOLBAS entries: {t['running']} have a Sigma rule that detects them running, "
            f"{t['other']} one that detects them otherwise (parent, target, loaded module, command line), "
            f"{t['mentioned']} are only mentioned, {t['none']} are named by no rule "
            f"({retired} deprecated and unsupported rules); {s['links_disagree']} entries link rules "
            "that do not detect them.",
            style="bold",
        )
    )
    for tier in ("other", "mentioned", "none"):
        console.print(Text(f"{tier}: " + (", ".join(s["entries_by_tier"][tier]) or "-")))
    for line in rule_set_lines(data.get("rule_sets")):
        console.print(Text(line))
    table = Table("category", "entries", *TIER_COLUMNS, box=None, pad_edge=False)
    for name, v in s["by_category"].items():
        table.add_row(Text(name), str(v["entries"]), *(str(v[tier]) for tier in TIER_COLUMNS))
    console.print(table)


TIER_COLUMNS = ("running", "other", "mentioned", "none")


def rule_set_lines(rule_sets: dict[str, Any] | None) -> Iterator[str]:
    """Coverage tiers by each detection source (joins.RuleSetCoverage), alone and together."""
    if not rule_sets:
        return
    for name in rule_sets["rule_sets"]:
        tiers = ", ".join(f"{t} {n}" for t, n in rule_sets["tiers"][name].items())
        yield (
            f"by {name}: {tiers}; detected running by {name} alone: {rule_sets['running_only'][name]}, "
            f"detected by it alone: {rule_sets['detected_only'][name]}"
        )
    count = len(rule_sets["rule_sets"])
    yield (
        f"detected running by all {count} rule sets: {rule_sets['running_by_all']}, by none: "
        f"{rule_sets['running_by_none']}; detected by all: {rule_sets['detected_by_all']}, by none: "
        f"{rule_sets['detected_by_none']}"
    )


def gaps_lines(data: dict[str, Any], limit: int | None = 25) -> Iterator[str]:
    """`indexer gaps` for a person: per platform, the counts per rule set, then the first
    `limit` binaries (ranked) with the sources naming them and what the rules do instead."""
    sets = data["rule_sets"]
    for s in data["summary"]:
        platform = s["platform"] or "no platform"
        per_set = ", ".join(f"{k} {v} ({s['only'][k]} by it alone)" for k, v in s["by_rule_set"].items())
        yield (
            f"{platform}: {s['binaries']} binaries attackers use; detected running or invoked by "
            f"{per_set or 'no rule set'}; by all {len(sets)}: {s['by_all']}; by none: {s['gaps']}"
        )
        rows = [r for r in data["rows"] if r["platform"] == s["platform"]]
        for rank, r in enumerate(rows[:limit], 1):
            why = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["verdicts"].items()) or "named by no rule"
            seen = f"detected by {', '.join(r['detected_by'])}" if r["detected_by"] else why
            yield f"  {rank:>3} {r['binary']:<32} {', '.join(r['sources']):<28} {r['files']:>3} file{'s' if r['files'] != 1 else ' '}  {seen}"
        if limit is not None and len(rows) > limit:
            yield f"  ... and {len(rows) - limit} more (--limit 0, --json or --markdown list them all)"


def tests_lines(data: dict[str, Any]) -> Iterator[str]:
    """`indexer tests NAME` for a person: each test, then the rules that should fire."""
    if not data["tests"]:
        hint = f" (did you mean: {', '.join(data['suggestions'])}?)" if data["suggestions"] else ""
        yield f"no atomic test names {data['query']!r}{hint}"
        return
    yield f"{', '.join(data['binaries'])}: {len(data['tests'])} atomic tests"
    for t in data["tests"]:
        yield ""
        yield f"{t['guid']}  {t['technique']}  {', '.join(t['platforms']) or '-'}  {t['executor'] or '-'}  {t['name']}"
        yield f"  {t['path']}  binaries: {', '.join(t['binaries'])}"
        if not t["expected"]:
            yield "  no rule detects its binaries with one of its techniques"
        for r in t["expected"]:
            yield (
                f"  should fire: {r['verdict']:<8} {r['level'] or '-':<13} {r['title'] or '-'}  "
                f"{r['source']}:{r['path']} ({r['binary']}; {', '.join(r['techniques'])})"
            )
        for r in t["proven"]:
            yield f"  validated with it: {r['title'] or '-'}  {r['source']}:{r['path']}"
