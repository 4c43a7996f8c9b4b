"""Server-rendered HTML for `indexer serve` and `export --format html`: plain pages from the
same objects the JSON API returns (search results, `show_target` dicts).

Everything that comes from a rule — names, snippets, titles, paths, tags, ids — is data:
it goes through `esc` (html.escape, quotes included) on its way into a page, links are built
with urllib.parse.quote, and only http(s) URLs become hrefs. No page has inline script or
style: the one stylesheet and the one script are files under /static/, so the
Content-Security-Policy can forbid everything inline.
"""

from __future__ import annotations

import copy
import functools
import html
import json
import re
from datetime import datetime, timezone
from typing import Any, Collection, Iterable, Mapping
from urllib.parse import quote, urlencode

from .export import SOURCE_LABELS, clean, safe_filename
from .model import ROLES
from .verdicts import VERDICT_HELP, rank, rule_verdicts

LEVELS = ("critical", "high", "medium", "low", "informational")
MAX_GROUPS = 300        # rule files shown on one search page; the JSON API has them all
MAX_TABLE_ROWS = 2000   # rows of one generic (coverage, links) table
_TECHNIQUE = re.compile(r"^attack\.(t\d{4})(?:\.(\d{3}))?$", re.IGNORECASE)
_HTTP = re.compile(r"^https?://[^\s\"'<>\\]+$", re.IGNORECASE)


# --- escaping and links ------------------------------------------------------------------------

_UNCLEAN = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute: one line, control characters replaced."""
    text = str(value)
    if _UNCLEAN.search(text):
        text = clean(text)
    return html.escape(text, quote=True)


def http_url(url: str) -> str:
    """`url` if it is a plain http(s) URL, else "" (javascript:, data:, relative... never links)."""
    url = (url or "").strip()
    if _UNCLEAN.search(url):
        return ""
    return url if _HTTP.match(url) else ""


def ext_link(text: str, url: str, cls: str = "") -> str:
    """An outside link when `url` is http(s); the escaped text alone otherwise."""
    target = http_url(url)
    if not target:
        return esc(text)
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<a{klass} href="{esc(target)}" rel="noopener noreferrer">{esc(text)}</a>'


def link(text: str, href: str | None, cls: str = "") -> str:
    """A link inside the site; `href` was built by `Links` (quoted), escaped again as an attribute."""
    if not href:
        return esc(text)
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<a{klass} href="{esc(href)}">{esc(text)}</a>'


def highlight(snippet: str, names: Iterable[str]) -> str:
    """The escaped snippet with every occurrence of the names (or their stems, for bare names
    recognised without extension) wrapped in <mark>."""
    text = clean(snippet) if _UNCLEAN.search(snippet) else snippet
    full, stems = _name_patterns(tuple(sorted({n for n in names if n}, key=lambda n: (-len(n), n))))
    pattern = full if full is not None and full.search(text) else stems
    if pattern is None:
        return html.escape(text)
    out, pos = [], 0
    for match in pattern.finditer(text):
        out.append(html.escape(text[pos:match.start()]))
        out.append(f"<mark>{html.escape(match.group(0))}</mark>")
        pos = match.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _name_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    if not names:
        return None, None
    full = re.compile("|".join(re.escape(n) for n in names), re.IGNORECASE)
    stems = [re.escape(n.rsplit(".", 1)[0]) for n in names if "." in n.strip(".")]
    bare = re.compile(r"(?<![\w.-])(?:%s)(?![\w-])" % "|".join(stems), re.IGNORECASE) if stems else None
    return full, bare


class Links:
    """Where pages point: the live server's URLs, or the relative files of a static site.

    `depth` is how many folders below the site root the page being rendered sits (static only).
    """

    def __init__(self, static: bool = False, depth: int = 0, nav: Iterable[str] = (),
                 rules: Collection[str] | None = None) -> None:
        self.static = static
        self.prefix = "../" * depth if static else "/"
        self.nav = tuple(nav)       # top-level pages that exist: "coverage", "links"
        self.rules = rules          # "source:path" of the rule pages that exist (None: any)

    def with_rules(self, rules: Collection[str]) -> "Links":
        other = copy.copy(self)
        other.rules = rules
        return other

    def home(self) -> str:
        return self.prefix + "index.html" if self.static else "/"

    def binary(self, name: str) -> str:
        if self.static:
            return f"{self.prefix}binary/{quote(safe_filename(name))}.html"
        return "/binary/" + quote(name, safe="")

    def rule(self, source: str, path: str) -> str | None:
        ref = f"{source}:{path}"
        if self.rules is not None and ref not in self.rules:
            return None
        if self.static:
            return f"{self.prefix}rule/{quote(rule_filename(source, path))}"
        return "/rule/" + quote(ref, safe="/")

    def search(self, query: str, **params: str) -> str | None:
        if self.static:
            return None
        extra = {k: v for k, v in params.items() if v}
        return "/search?" + urlencode({"q": query, **extra})

    def asset(self, name: str) -> str:
        return f"{self.prefix}static/{quote(name)}"

    def page(self, name: str) -> str | None:
        """coverage, links: a top-level page."""
        return f"{self.prefix}{quote(name)}.html" if self.static else f"/{quote(name)}"


def rule_filename(source: str, path: str) -> str:
    return safe_filename(f"{source}:{path}") + ".html"


# --- layout ------------------------------------------------------------------------------------

def layout(title: str, body: str, links: Links, *, script: bool = False, footer: str = "") -> str:
    """A whole page. `script` adds /static/app.js (the as-you-type suggestions)."""
    head_extra = ""
    if links.static:
        # A static site has no server to send headers: the same policy as a meta element.
        head_extra = ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
                      'style-src \'self\'; img-src \'self\'; base-uri \'none\'; form-action \'none\'">\n')
    script_tag = f'<script src="{esc(links.asset("app.js"))}" defer></script>\n' if script else ""
    nav_links = [link("Search" if not links.static else "All executables", links.home())]
    nav_links += [link(name.capitalize(), links.page(name)) for name in links.nav]
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{head_extra}"
        f"<title>{esc(title)} · indexer</title>\n"
        f'<link rel="stylesheet" href="{esc(links.asset("app.css"))}">\n'
        f"{script_tag}"
        "</head>\n<body>\n"
        f'<header><nav>{" ".join(nav_links)}</nav></header>\n'
        f"<main>\n{body}\n</main>\n"
        f'<footer>{footer}</footer>\n'
        "</body>\n</html>\n"
    )


def sources_footer(sources: Mapping[str, Mapping[str, Any]], generation: str = "", built_at: float = 0.0) -> str:
    parts = []
    for name, info in sorted(sources.items()):
        commit = str(info.get("commit", ""))
        web = str(info.get("web_url", ""))
        label = SOURCE_LABELS.get(name, name)
        commit_link = ext_link(commit[:12], f"{web}/tree/{commit}" if web and commit else "")
        lic = f" ({esc(info['license'])})" if info.get("license") else ""
        parts.append(f"{ext_link(label, web)} at {commit_link}{lic}")
    text = "Indexed: " + "; ".join(parts) if parts else "No sources indexed."
    if built_at:
        text += f" · built {esc(iso_time(built_at))}"
    if generation:
        text += f' · <span class="gen">{esc(generation)}</span>'
    return text


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_form(links: Links, query: str = "", params: Mapping[str, str] | None = None,
                filters: bool = False) -> str:
    params = params or {}
    out = ['<form class="search" method="get" action="/search" role="search">',
           '<label for="q">Executable</label> ',
           f'<input id="q" name="q" type="search" value="{esc(query)}" autocomplete="off" '
           'spellcheck="false" placeholder="psr.exe, certutil, C:\\Windows\\System32\\mshta.exe, cert*.exe" '
           'aria-controls="suggestions" maxlength="256" autofocus>',
           '<button type="submit">Search</button>']
    if filters:
        out.append(_select("role", ("",) + ROLES, params.get("role", ""), "any role"))
        out.append(_select("source", ("", "sigma", "lolbas"), params.get("source", ""), "any source"))
        out.append(_select("context", ("", "selection", "filter"), params.get("context", ""), "any context"))
        out.append(f'<input name="field" value="{esc(params.get("field", ""))}" placeholder="field (Image…)" '
                   'size="12" maxlength="100">')
    out.append("</form>")
    out.append('<ul id="suggestions" class="suggestions" hidden data-api="/api/suggest" '
               'data-binary-base="/binary/"></ul>')
    return "\n".join(out)


def _select(name: str, values: Iterable[str], chosen: str, blank: str) -> str:
    options = "".join(f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(v or blank)}</option>'
                      for v in values)
    return f'<select name="{esc(name)}" aria-label="{esc(name)}">{options}</select>'


def _files(n: int) -> str:
    return "file" if n == 1 else "files"


def _verb(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _level(level: str) -> str:
    if not level:
        return ""
    cls = level.lower() if level.lower() in LEVELS else "other"
    return f'<span class="level level-{cls}">{esc(level)}</span>'


def _tags(tags: Iterable[str]) -> str:
    out = []
    for tag in tags:
        match = _TECHNIQUE.match(tag)
        if match:
            technique = match.group(1).upper() + (f"/{match.group(2)}" if match.group(2) else "")
            out.append(ext_link(tag, f"https://attack.mitre.org/techniques/{technique}/", "tag attack"))
        else:
            cls = "tag attack" if tag.lower().startswith("attack.") else "tag"
            out.append(f'<span class="{cls}">{esc(tag)}</span>')
    return " ".join(out)


def _role(m: Mapping[str, Any]) -> str:
    out = esc(m.get("role", ""))
    if m.get("context") == "filter":
        out += ' <span class="badge filter" title="excluded by the rule (a filter item)">filter</span>'
    if m.get("inferred"):
        out += ' <span class="badge inferred" title="bare name recognised without its extension">inferred</span>'
    if m.get("encoded"):
        out += ' <span class="badge encoded" title="value encoded by its modifiers">encoded</span>'
    return out


def _field(m: Mapping[str, Any]) -> str:
    mods = m.get("modifiers") or []
    return esc("|".join([m.get("field", "")] + list(mods)))


def _line(m: Mapping[str, Any]) -> str:
    return ext_link(f"L{m.get('line', '')}", str(m.get("url", "")), "line")


def group(mentions: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Mention dicts grouped by (source, path), in order of first appearance (query.group_by_rule)."""
    out: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for m in mentions:
        out.setdefault((m["source"], m["path"]), []).append(m)
    return out


def _verdicts(items: list[Mapping[str, Any]]) -> list[Any]:
    """The rule file's verdict on each binary its mentions here name (verdicts.rule_verdicts)."""
    return rule_verdicts(items)


def _rule_sort(key: tuple[str, str], items: list[Mapping[str, Any]]) -> tuple[Any, ...]:
    level = str(items[0].get("level", "")).lower()
    verdicts = _verdicts(items)
    return (any(v.retired for v in verdicts), min((rank(v.verdict) for v in verdicts), default=99),
            LEVELS.index(level) if level in LEVELS else len(LEVELS), key[1])


# --- pages -------------------------------------------------------------------------------------

def home_page(links: Links, footer: str, stats: Mapping[str, Any] | None = None) -> str:
    examples = ["psr.exe", "certutil.exe", "rundll32", "mshta.exe", "cert*.exe"]
    sample = " · ".join(link(e, links.search(e) if "*" in e else links.binary(e)) for e in examples)
    counts = ""
    if stats:
        counts = (f'<p class="counts">{esc(stats.get("binaries", 0))} executables named in '
                  f'{esc(stats.get("mentions", 0))} rule lines of {esc(stats.get("rule_ids", 0))} Sigma rules '
                  f'and the LOLBAS entries.</p>')
    body = (
        "<h1>What detects abuse of an executable</h1>\n"
        "<p>Type an executable's name, path or stem: every Sigma rule line and LOLBAS entry that "
        "names it, with the role it plays.</p>\n"
        f"{search_form(links)}\n{counts}\n<p class=\"examples\">Examples: {sample}</p>"
    )
    return layout("Search", body, links, script=True, footer=footer)


def search_page(links: Links, query: str, params: Mapping[str, str], result: Mapping[str, Any],
                footer: str) -> str:
    mentions = result.get("mentions", [])
    groups = group(mentions)
    names = result.get("binaries", [])
    parts = [f"<h1>Search: {esc(query)}</h1>", search_form(links, query, params, filters=True)]
    if not names:
        parts.append(_no_match(links, f"No executable in the index matches {query!r}.", result.get("suggestions", [])))
        return layout(f"Search {query}", "\n".join(parts), links, script=True, footer=footer)
    parts.append(f'<p class="summary">{len(mentions)} mentions of '
                 f'{", ".join(link(n, links.binary(n)) for n in names)} in {len(groups)} rule files.</p>')
    if not mentions:
        parts.append("<p>No mention passes these filters.</p>")
    shown = list(groups.items())[:MAX_GROUPS]
    parts.append('<table class="mentions">\n<thead><tr><th>Line</th><th>Executable</th><th>Role</th>'
                 "<th>Field</th><th>Example</th></tr></thead>")
    for (source, path), items in shown:
        parts.append(_group_head(links, source, path, items, 5))
        for m in items:
            parts.append(f'<tr class="{"filter" if m.get("context") == "filter" else "m"}"><td>{_line(m)}</td>'
                         f'<td>{link(m["binary"], links.binary(m["binary"]))}</td><td>{_role(m)}</td>'
                         f'<td>{_field(m)}</td><td><code>{highlight(m["snippet"], [m["binary"]])}</code></td></tr>')
        parts.append("</tbody>")
    parts.append("</table>")
    if len(groups) > len(shown):
        parts.append(f'<p class="note">{len(groups) - len(shown)} more rule files: narrow the search, '
                     "or ask the JSON API (/api/search) for all of them.</p>")
    return layout(f"Search {query}", "\n".join(parts), links, script=True, footer=footer)


def _group_head(links: Links, source: str, path: str, items: list[Mapping[str, Any]], colspan: int,
                extra: str = "") -> str:
    """The header row of one rule file's rows; `extra` (HTML) replaces the tags line."""
    first = items[0]
    title = first.get("title") or path.rsplit("/", 1)[-1]
    upstream = str(first.get("url", "")).split("#", 1)[0]
    verdicts = _verdicts(items)
    several = len(verdicts) > 1
    detects = "".join(
        f' <span class="badge verdict {esc(v.verdict)}{" detects" if v.detects else ""}" '
        f'title="{esc(VERDICT_HELP.get(v.verdict, ""))}">{esc(v.binary + ": " if several else "")}{esc(v.verdict)}</span>'
        for v in verdicts)
    if any(v.retired for v in verdicts):
        detects += ' <span class="badge retired">deprecated or unsupported</span>'
    tags = extra or _tags(first.get("tags", []))
    return (f'<tbody class="rule {esc(source)}"><tr class="rule-head"><th colspan="{colspan}">'
            f'<span class="src">{esc(SOURCE_LABELS.get(source, source))}</span> '
            f'{link(title, links.rule(source, path), "rule-link")} {_level(first.get("level", ""))}{detects}'
            f'<div class="meta">{ext_link(path, upstream, "upstream")}'
            f'{" · " + esc(first["license"]) if first.get("license") else ""}'
            f'{" · " + esc(first["logsource"]) if first.get("logsource") else ""}</div>'
            f'{"<div class=tags>" + tags + "</div>" if tags else ""}</th></tr>')


def _no_match(links: Links, message: str, suggestions: Iterable[str]) -> str:
    out = f'<p class="miss">{esc(message)}</p>'
    names = list(suggestions)
    if names:
        out += ('<p class="suggest">Did you mean: '
                + ", ".join(link(n, links.binary(n)) for n in names) + "?</p>")
    return out


def binary_page(links: Links, target: Mapping[str, Any], footer: str,
                entries: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> str:
    """The "Possible Misuse" page of one executable (a `show_target` binary dict)."""
    entries = entries or {}
    names = list(target.get("binaries", []))
    title = ", ".join(names) if names else str(target.get("query", ""))
    mentions = target.get("mentions", [])
    groups = group(mentions)
    sigma = [(k, v) for k, v in groups.items() if k[0] == "sigma"]
    lolbas = [(k, v) for k, v in groups.items() if k[0] == "lolbas"]
    detecting = len(target.get("detecting_rules", []))
    running = len(target.get("running_rules", []))
    n_lolbas = len(target.get("lolbas_entries", []))
    mention_only = len(target.get("sigma_rules", [])) - detecting
    code = ", ".join(f"<code>{esc(n)}</code>" for n in names)
    parts = [f"<h1>{esc(title)}</h1>"]
    if len(names) > 1:
        parts.append("<p>The query " + f"<code>{esc(target.get('query', ''))}</code> names: "
                     + ", ".join(link(n, links.binary(n)) for n in names) + ".</p>")
    parts.append(
        '<section class="summary"><h2>Possible misuse</h2><ul>'
        f'<li><strong class="n-detecting">{detecting}</strong> Sigma rule {_files(detecting)} {_verb(detecting, "detects", "detect")} {code}: '
        f'<strong class="n-running">{running}</strong> as the process running, the others as a parent, target, '
        "loaded module or in a command line</li>"
        f'<li><strong class="n-mentioning">{mention_only}</strong> more Sigma rule {_files(mention_only)} only {_verb(mention_only, "names", "name")} it '
        "(file or registry artifact, filter, text) or are deprecated or unsupported</li>"
        f'<li><strong class="n-lolbas">{n_lolbas}</strong> LOLBAS {"entry describes" if n_lolbas == 1 else "entries describe"} it</li>'
        "</ul>"
        f'<p class="roles">Roles: {", ".join(esc(r) for r in target.get("roles", []))}</p></section>')
    if sigma:
        parts.append('<h2 id="sigma">Sigma rules</h2>\n<table class="mentions sigma">\n'
                     "<thead><tr><th>Line</th><th>Role</th><th>Field</th><th>Example</th></tr></thead>")
        for (source, path), items in sorted(sigma, key=lambda kv: _rule_sort(*kv)):
            parts.append(_group_head(links, source, path, items, 4))
            for m in items:
                parts.append(f'<tr class="{"filter" if m.get("context") == "filter" else "m"}"><td>{_line(m)}</td>'
                             f'<td>{_role(m)}</td><td>{_field(m)}</td>'
                             f'<td><code>{highlight(m["snippet"], [m["binary"]])}</code></td></tr>')
            parts.append("</tbody>")
        parts.append("</table>")
    if lolbas:
        parts.append('<h2 id="lolbas">LOLBAS</h2>\n<table class="mentions lolbas">\n'
                     "<thead><tr><th>Line</th><th>Kind</th><th>Example</th></tr></thead>")
        for (source, path), items in lolbas:
            entry = entries.get((source, path)) or {}
            tags = list(items[0].get("tags", []))
            categories = entry.get("categories") or [t.split(".", 1)[1] for t in tags if t.startswith("lolbas.")]
            mitre = entry.get("mitre") or [t.split(".", 1)[1].upper() for t in tags if _TECHNIQUE.match(t)]
            extra = []
            if categories:
                extra.append("Category: " + ", ".join(f'<span class="tag">{esc(c)}</span>' for c in categories))
            if mitre:
                extra.append("MITRE: " + _tags(f"attack.{t.lower()}" for t in mitre))
            parts.append(_group_head(links, source, path, items, 3, " · ".join(extra)))
            for m in items:
                kind = {"lolbas_command": "command", "lolbas_path": "path", "lolbas_ioc": "IOC",
                        "lolbas_entry": "name"}.get(m["role"], m["role"])
                parts.append(f'<tr class="m {esc(m["role"])}"><td>{_line(m)}</td><td>{esc(kind)}'
                             f'{" (" + esc(m["field"]) + ")" if m["role"] == "text" and m.get("field") else ""}</td>'
                             f'<td><code>{highlight(m["snippet"], [m["binary"]])}</code></td></tr>')
            parts.append("</tbody>")
        parts.append("</table>")
    declared = target.get("lolbas_declared_detections") or []
    if declared:
        parts.append('<h2 id="declared">Detections LOLBAS declares</h2>\n<p class="note">Sigma rules the LOLBAS '
                     "entries link to, and where each link leads today.</p>")
        parts.append(records(links, declared, ("entry", "lolbas_path", "url", "status", "current_path", "reason")))
    return layout(title, "\n".join(parts), links, footer=footer)


def records(links: Links, rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> str:
    """A table of some columns of cross-reference records (those columns any row has)."""
    rows = list(rows)
    present = [c for c in columns if any(row.get(c) not in (None, "", []) for row in rows)]
    return _data(links, [{c: row.get(c, "") for c in present} for row in rows], 3)


def rule_page(links: Links, target: Mapping[str, Any], footer: str) -> str:
    """One rule file (a `show_target` rule dict): what it is, its executables, its lines."""
    source, path = str(target.get("source", "")), str(target.get("path", ""))
    title = target.get("title") or path.rsplit("/", 1)[-1]
    binaries = target.get("binaries", [])
    rows = [("Source", esc(SOURCE_LABELS.get(source, source))),
            ("File", ext_link(path, str(target.get("url", "")), "upstream")),
            ("Rule id", ", ".join(f"<code>{esc(i)}</code>" for i in target.get("rule_ids", []))),
            ("Level", _level(str(target.get("level", "")))),
            ("Log source", esc(target.get("logsource", ""))),
            ("Tags", _tags(target.get("tags", []))),
            ("Indexed", esc(target.get("status", "")) + (f" — {esc(target['reason'])}" if target.get("reason") else "")),
            ("Warnings", "<br>".join(esc(w) for w in target.get("warnings", [])))]
    parts = [f'<h1 class="rule-title">{esc(title)}</h1>',
             '<table class="facts">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows if v) + "</table>",
             f"<h2>Executables ({len(binaries)})</h2>",
             '<ul class="binaries">' + "".join(f"<li>{link(b, links.binary(b))}</li>" for b in binaries) + "</ul>"]
    mentions = target.get("mentions", [])
    if mentions:
        parts.append(f"<h2>Lines ({len(mentions)})</h2>")
        parts.append('<table class="mentions">\n<thead><tr><th>Line</th><th>Executable</th><th>Role</th>'
                     "<th>Field</th><th>Detection</th><th>Example</th></tr></thead><tbody>")
        for m in mentions:
            parts.append(f'<tr class="{"filter" if m.get("context") == "filter" else "m"}"><td>{_line(m)}</td>'
                         f'<td>{link(m["binary"], links.binary(m["binary"]))}</td><td>{_role(m)}</td>'
                         f'<td>{_field(m)}</td><td>{esc(m.get("detection", ""))}</td>'
                         f'<td><code>{highlight(m["snippet"], [m["binary"]])}</code></td></tr>')
        parts.append("</tbody></table>")
    former = target.get("former_paths") or []
    if former:
        parts.append(f"<h2>Former paths ({len(former)})</h2>")
        parts.append(_data(links, list(former), 3) if all(isinstance(f, Mapping) for f in former)
                     else "<ul>" + "".join(f"<li>{esc(f)}</li>" for f in former) + "</ul>")
    linked = target.get("linked_from_lolbas") or []
    if linked:
        parts.append(f"<h2>Linked from LOLBAS ({len(linked)})</h2>")
        parts.append(records(links, linked, ("entry", "lolbas_path", "url", "status", "reason")))
    refs = target.get("links") or []
    if refs:
        what = "LOLBAS pages this rule cites" if source == "sigma" else "Sigma rules this entry links"
        parts.append(f"<h2>{what} ({len(refs)})</h2>")
        parts.append(records(links, refs, ("url", "status", "entry_path", "current_path", "reason")))
    return layout(str(title), "\n".join(parts), links, footer=footer)


def error_page(links: Links, status: int, message: str, footer: str = "",
               suggestions: Iterable[str] = (), query: str = "") -> str:
    body = (f"<h1>{status}</h1>\n{_no_match(links, message, suggestions)}\n"
            f"{search_form(links, query) if not links.static else ''}")
    return layout(f"{status}", body, links, script=not links.static, footer=footer)


def data_page(links: Links, title: str, data: Any, footer: str, intro: str = "") -> str:
    """A generic page of tables for the cross-reference results (coverage, links), whatever
    their exact shape: lists of objects become tables, objects become sections."""
    parts = [f"<h1>{esc(title)}</h1>"]
    if intro:
        parts.append(f"<p>{esc(intro)}</p>")
    parts.append(_data(links, data, 2))
    return layout(title, "\n".join(parts), links, footer=footer)


def _scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


def _data(links: Links, data: Any, level: int) -> str:
    h = min(level, 6)
    if isinstance(data, Mapping):
        if data and all(isinstance(v, Mapping) and all(_scalar(x) for x in v.values()) for v in data.values()):
            # {"Execute": {"entries": 3, ...}, ...}: one row per key
            rows = [{"": key, **value} for key, value in data.items()]
            return _data(links, rows, level)
        scalars = [(k, v) for k, v in data.items() if _scalar(v)]
        nested = sorted(((k, v) for k, v in data.items() if not _scalar(v)), key=lambda kv: kv[0] != "summary")
        out = []
        if scalars:
            out.append('<table class="facts">' + "".join(
                f"<tr><th>{esc(k)}</th><td>{_cell(links, str(k), v, data)}</td></tr>" for k, v in scalars) + "</table>")
        for key, value in nested:
            if isinstance(value, (list, tuple)) and all(_scalar(v) for v in value):
                out.append(f'<p><span class="key">{esc(key)}</span> ({len(value)}): {_cell(links, str(key), value, data)}</p>')
            else:
                out.append(f"<h{h}>{esc(key)}</h{h}>\n{_data(links, value, level + 1)}")
        return "\n".join(out)
    if isinstance(data, (list, tuple)):
        if not data:
            return '<p class="note">None.</p>'
        if all(isinstance(row, Mapping) for row in data):
            columns: list[str] = []
            for row in data[:MAX_TABLE_ROWS]:
                columns += [str(k) for k in row if str(k) not in columns]
            out = ['<table class="data"><thead><tr>' + "".join(f"<th>{esc(c)}</th>" for c in columns)
                   + "</tr></thead><tbody>"]
            for row in data[:MAX_TABLE_ROWS]:
                out.append("<tr>" + "".join(f"<td>{_cell(links, c, row.get(c, ''), row)}</td>" for c in columns)
                           + "</tr>")
            out.append("</tbody></table>")
            if len(data) > MAX_TABLE_ROWS:
                out.append(f'<p class="note">{len(data) - MAX_TABLE_ROWS} more rows in the JSON API.</p>')
            return "\n".join(out)
        return f"<p>{_cell(links, '', list(data), {})}</p>"
    return f"<p>{_cell(links, '', data, {})}</p>"


_SIGMA_TOPS = ("rules", "deprecated", "unsupported")
_LOLBAS_TOPS = ("yml/", "Archive-Old-Version/")


def _rule_source(column: str, value: str, row: Mapping[str, Any]) -> str:
    """Which source a path in a cross-reference table belongs to ("" when it is no indexed rule path)."""
    if column in ("sigma_path", "current_path") or column.endswith("_rules"):
        return "sigma"
    if column in ("lolbas_path", "entry_path"):
        return "lolbas"
    if column in ("path", "rule", "file"):
        if row.get("source") in ("sigma", "lolbas"):
            return str(row["source"])
        if value.startswith(_LOLBAS_TOPS):
            return "lolbas"
        if value.split("/", 1)[0].startswith(_SIGMA_TOPS) and "/" in value:
            return "sigma"
    return ""


def _cell(links: Links, column: str, value: Any, row: Mapping[str, Any]) -> str:
    col = column.lower()
    if value in ("", None):
        return ""
    if isinstance(value, str):
        if col in ("binary", "executable"):
            return link(value, links.binary(value))
        source = _rule_source(col, value, row)
        if source:
            return link(value, links.rule(source, value))
        if http_url(value):
            return ext_link(value, value)
        return esc(value)
    if isinstance(value, (list, tuple)):
        if col in ("binaries", "executables", "names") and all(isinstance(v, str) for v in value):
            value = [link(v, links.binary(v)) for v in value]
            if len(value) > 5:
                return f"<details><summary>{len(value)}</summary>" + "<br>".join(value) + "</details>"
            return ", ".join(value)
        if all(_scalar(v) for v in value):
            cells = [_cell(links, col, v, row) for v in value]
            if len(cells) > 5:
                return (f"<details><summary>{len(cells)}</summary>" + "<br>".join(cells) + "</details>")
            return ", ".join(cells)
        if all(isinstance(v, Mapping) for v in value):
            items = (" · ".join(_cell(links, str(k), x, v) for k, x in v.items() if x not in ("", None, [], {}))
                     for v in value)
            return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"
    if isinstance(value, (Mapping, list, tuple)):
        return f"<code>{esc(json.dumps(value, ensure_ascii=False, default=str))}</code>"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return esc("" if value is None else value)


def site_index_page(links: Links, rows: list[tuple[str, int, int, int]], footer: str,
                    extra: Iterable[str] = ()) -> str:
    """The static site's front page: every executable with its counts."""
    parts = ["<h1>Possible misuse, by executable</h1>",
             f"<p>{len(rows)} executables. Detecting: Sigma rule files that detect it running; "
             "Sigma: rule files that mention it; LOLBAS: entries that describe it.</p>"]
    parts += [f"<p>{x}</p>" for x in extra]
    parts.append('<table class="data index"><thead><tr><th>Executable</th><th>Detecting</th><th>Sigma</th>'
                 "<th>LOLBAS</th></tr></thead><tbody>")
    for name, detecting, sigma, lolbas in rows:
        parts.append(f"<tr><td>{link(name, links.binary(name))}</td><td>{detecting}</td><td>{sigma}</td>"
                     f"<td>{lolbas}</td></tr>")
    parts.append("</tbody></table>")
    return layout("Executables", "\n".join(parts), links, footer=footer)
