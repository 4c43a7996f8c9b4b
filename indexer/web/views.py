"""What the pages show, shared by the server and the static site: the Jinja2 environment
(autoescape on; rule text is never marked safe), where links point (`Links`), how a binary's
rule files are ordered and paged, and the marking of names in a snippet.

Everything from a rule reaches a page as data: Jinja2 escapes it, links are built with
urllib.parse.quote, and only http(s) URLs become hrefs. No page has inline script or style,
so the Content-Security-Policy forbids both.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Collection, Iterable, Mapping
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from ..export import SOURCE_LABELS, clean, safe_filename
from ..model import PLATFORMS, ROLES, detects_running

LEVELS = ("critical", "high", "medium", "low", "informational")
RETIRED = ("deprecated", "unsupported")  # Sigma folders (and statuses) of rules no longer maintained
DEFAULT_LIMIT = 100  # rule files (binary, search), executables (rule), rows (coverage, links) per page
MAX_LIMIT = 500
_TECHNIQUE = re.compile(r"^(?:attack\.)?(t\d{4})(?:\.(\d{3}))?$", re.IGNORECASE)
_HTTP = re.compile(r"^https?://[^\s\"'<>\\]+$", re.IGNORECASE)
_UNCLEAN = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def one_line(value: Any) -> str:
    """Text on one line: control characters replaced (escaping is Jinja2's)."""
    text = "" if value is None else str(value)
    return clean(text) if _UNCLEAN.search(text) else text


def http_url(url: Any) -> str:
    """`url` if it is a plain http(s) URL, else "" (javascript:, data:, relative... never links)."""
    url = str(url or "").strip()
    if _UNCLEAN.search(url):
        return ""
    return url if _HTTP.match(url) else ""


def technique_url(tag: str) -> str:
    """attack.t1218.011 / T1218.011 -> its ATT&CK page; "" for other tags."""
    match = _TECHNIQUE.match(tag.strip())
    if not match:
        return ""
    return f"https://attack.mitre.org/techniques/{match.group(1).upper()}/" + (
        f"{match.group(2)}/" if match.group(2) else ""
    )


def highlight(snippet: str, names: Iterable[str]) -> Markup:
    """The escaped snippet with every occurrence of the names (or their stems, for bare names
    recognised without extension) wrapped in <mark>."""
    text = one_line(snippet)
    full, stems = _name_patterns(tuple(sorted({n for n in names if n}, key=lambda n: (-len(n), n))))
    pattern = full if full is not None and full.search(text) else stems
    if pattern is None:
        return escape(text)
    out, pos = Markup(), 0
    for match in pattern.finditer(text):
        out += escape(text[pos : match.start()]) + Markup("<mark>%s</mark>") % match.group(0)
        pos = match.end()
    return out + escape(text[pos:])


@functools.lru_cache(maxsize=4096)
def _name_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    if not names:
        return None, None
    full = re.compile("|".join(re.escape(n) for n in names), re.IGNORECASE)
    stems = [re.escape(n.rsplit(".", 1)[0]) for n in names if "." in n.strip(".")]
    bare = re.compile(r"(?<![\w.-])(?:%s)(?![\w-])" % "|".join(stems), re.IGNORECASE) if stems else None
    return full, bare


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Links:
    """Where pages point: the live server's URLs, or the relative files of a static site.

    `depth`: how many folders below the site root the page being rendered sits (static only).
    `rules`: "source:path" of the rule pages that exist (None: any).
    """

    def __init__(self, static: bool = False, depth: int = 0, rules: Collection[str] | None = None) -> None:
        self.static = static
        self.prefix = "../" * depth if static else "/"
        self.rules = rules

    def home(self) -> str:
        return self.prefix + "index.html" if self.static else "/"

    def binary(self, name: str) -> str:
        if self.static:
            return f"{self.prefix}binary/{quote(safe_filename(name))}.html"
        return "/binary/" + quote(name, safe="")

    def rule(self, source: str, path: str, **params: Any) -> str | None:
        ref = f"{source}:{path}"
        if self.rules is not None and ref not in self.rules:
            return None
        if self.static:
            return f"{self.prefix}rule/{quote(rule_filename(source, path))}"
        return "/rule/" + quote(ref, safe="/") + _query(params)

    def search(self, query: str, **params: Any) -> str | None:
        if self.static:
            return None
        return "/search?" + urlencode({"q": query, **{k: v for k, v in params.items() if v not in ("", None)}})

    def asset(self, name: str) -> str:
        return f"{self.prefix}static/{quote(name)}"

    def page(self, name: str, **params: Any) -> str:
        """coverage, links: a top-level page."""
        return f"{self.prefix}{quote(name)}.html" if self.static else f"/{quote(name)}" + _query(params)

    def paged(self, base: str | None, offset: int) -> str | None:
        """`base` (a page's own link) at another offset (live server only)."""
        if self.static or not base:
            return None
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}offset={offset}"


def _query(params: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in params.items() if v not in ("", None, 0)}
    return "?" + urlencode(kept) if kept else ""


def rule_filename(source: str, path: str) -> str:
    return safe_filename(f"{source}:{path}") + ".html"


# --- a binary's rule files, in the order a person reads them ---------------------------------------


@dataclass
class RuleGroup:
    """One rule file's lines about the executables of a page, and its verdict on them."""

    source: str
    path: str
    items: list[Mapping[str, Any]] = field(default_factory=list)
    rule: Mapping[str, Any] = field(default_factory=dict)  # the strongest RuleVerdict (as a dict)

    @property
    def first(self) -> Mapping[str, Any]:
        return self.items[0]

    @property
    def title(self) -> str:
        return one_line(self.rule.get("title") or self.first.get("title") or self.path.rsplit("/", 1)[-1])

    @property
    def level(self) -> str:
        return str(self.first.get("level", "")).lower()

    @property
    def verdict(self) -> str:
        return str(self.rule.get("verdict", ""))

    @property
    def detects(self) -> bool:
        """Detects the binary running (process or original file name in a selection)."""
        return any(detects_running(m) for m in self.items)

    @property
    def retired(self) -> str:
        """ "deprecated" / "unsupported" for a Sigma rule no longer maintained, else ""."""
        if self.source != "sigma":
            return ""
        top = self.path.split("/", 1)[0]
        status = str(self.first.get("status", "")).lower()
        return top if top in RETIRED else status if status in RETIRED else ""

    @property
    def upstream(self) -> str:
        return str(self.first.get("url", "")).split("#", 1)[0]


def rule_groups(mentions: Iterable[Mapping[str, Any]], rules: list[Mapping[str, Any]] | None = None) -> list[RuleGroup]:
    """Mention dicts grouped by rule file. With `rules` (RuleVerdict dicts, strongest first,
    retired last: `IndexReader.rules`), in that order — what a person reads first; every page
    of a binary, on the server and in the static site. Without, in the order of the mentions
    (the API's pages keep the order of the CLI's --json)."""
    groups: dict[tuple[str, str], RuleGroup] = {}
    for m in mentions:
        key = (m["source"], m["path"])
        if key not in groups:
            groups[key] = RuleGroup(*key)
        groups[key].items.append(m)
    if rules is None:
        return list(groups.values())
    place: dict[tuple[str, str], int] = {}
    for i, rule in enumerate(rules):
        key = (rule["source"], rule["path"])
        if key in groups and key not in place:
            place[key] = i
            groups[key].rule = rule
    return sorted(groups.values(), key=lambda g: place.get((g.source, g.path), len(rules)))


def page_of(total: int, offset: int, limit: int) -> dict[str, int]:
    return {"offset": offset, "limit": limit, "total": total}


def paged_mentions(
    mentions: list[Mapping[str, Any]], offset: int, limit: int, rules: list[Mapping[str, Any]] | None = None
) -> tuple[list[RuleGroup], list[Mapping[str, Any]], dict[str, int]]:
    """One page of rule files: their groups, their mentions (in that order), the page object."""
    groups = rule_groups(mentions, rules)
    shown = groups[offset : offset + limit]
    return shown, [m for g in shown for m in g.items], page_of(len(groups), offset, limit)


def page_rules(rules: Iterable[Mapping[str, Any]], groups: Iterable[RuleGroup]) -> list[Mapping[str, Any]]:
    """The verdicts of the rule files on a page."""
    keep = {(g.source, g.path) for g in groups}
    return [r for r in rules if (r["source"], r["path"]) in keep]


# --- the environment -------------------------------------------------------------------------------


def _role_kind(role: str) -> str:
    return {"lolbas_command": "command", "lolbas_path": "path", "lolbas_ioc": "IOC", "lolbas_entry": "name"}.get(
        role, role
    )


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    """Templates from the package (`indexer/web/templates`), autoescaped."""
    env = Environment(
        loader=PackageLoader("indexer.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        one_line=one_line,
        http_url=http_url,
        technique_url=technique_url,
        highlight=highlight,
        role_kind=_role_kind,
        source_label=lambda s: SOURCE_LABELS.get(s, s),
        iso_time=iso_time,
    )
    from ..sources import SOURCES  # the registry: the search form's sources

    env.globals.update(LEVELS=LEVELS, ROLES=ROLES, SOURCES=tuple(SOURCES), PLATFORMS=PLATFORMS)
    return env


def render(template: str, links: Links, footer: Mapping[str, Any], **context: Any) -> str:
    """A whole page."""
    return environment().get_template(template).render(links=links, footer=footer, **context)


def footer_of(
    sources: Mapping[str, Mapping[str, Any]], generation: str = "", built_at: float = 0.0, as_of: str = ""
) -> dict[str, Any]:
    """What the footer says: each source's commit, license and web page; the generation, or the
    date the pages are as of (`as_of`: read from the history)."""
    rows = []
    for name, info in sorted(sources.items()):
        commit, web = str(info.get("commit", "")), str(info.get("web_url", ""))
        rows.append(
            {
                "label": SOURCE_LABELS.get(name, name),
                "web": web,
                "commit": commit,
                "tree": f"{web}/tree/{commit}" if web and commit else "",
                "license": info.get("license", ""),
            }
        )
    return {
        "sources": rows,
        "generation": generation,
        "built_at": iso_time(built_at) if built_at else "",
        "as_of": as_of,
    }
