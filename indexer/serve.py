"""`indexer serve`: the index over HTTP — a JSON API and server-rendered pages — and
`write_site`, the same pages as static files (`indexer export --format html`).

Why the standard library's `http.server.ThreadingHTTPServer` and not a web framework: the
surface is small (a dozen GET routes, no forms that write, no sessions, no templates worth a
template engine), there is nothing to install or keep patched beside the indexer itself, and
the pages are rendered on the server from the same objects the CLI prints with `--json`, so
no client framework is needed either. The server binds the loopback interface by default;
on a loopback bind it also refuses requests whose Host header names another host (a DNS
rebinding page cannot read the API through the user's browser).

Index swaps: every request takes a reader from `ReaderPool`, which opens readers of the
generation named by `index/CURRENT` at the time of the request and never hands a reader to
two requests at once (Whoosh searchers are not shared between threads). When a refresh
publishes a new generation, the next request opens it; readers of the previous generation
are closed as their in-flight requests finish. A refresh keeps the two previous generations
on disk, so a reader opened just before a swap keeps reading.

Errors: a bad parameter is a 4xx with `{"error": "..."}` (JSON routes) or an error page; a
name that resolves to nothing is a 404 with suggestions. Every exception is caught at the
handler boundary and logged; only a bug answers 500, and it never shows a traceback.
"""

from __future__ import annotations

import bisect
import importlib
import importlib.util
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import unquote_to_bytes, urlsplit

from . import pages
from .export import safe_filename
from .index import IndexMissing, IndexReader, current_generation, stem_of
from .model import ROLES, SOURCES, Mention
from .query import (binary_record, index_stats, parse_query, resolve, rule_record, search,
                    show_target, suggest)

log = logging.getLogger("indexer.serve")

MAX_QUERY = 256          # characters in a name query
MAX_TARGET = 1024        # characters in a rule id or path
MAX_FIELD = 100
MAX_NAMES = 200          # executables one query may resolve to (cert*.exe: fine; *: too broad)
MAX_PARAMS = 20
SUGGEST_LIMIT = 10
STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
CONTEXTS = ("selection", "filter")
JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
SEARCH_PARAMS = ("q", "role", "source", "field", "context", "inferred")
LOOPBACK_NAMES = ("localhost", "localhost.")


class HTTPProblem(Exception):
    """A request that cannot be answered: status, message, and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, **headers: str) -> "Response":
        text = json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n"
        return cls(status, JSON_TYPE, text.encode("utf-8"), dict(headers))

    @classmethod
    def html(cls, status: int, text: str, **headers: str) -> "Response":
        return cls(status, HTML_TYPE, text.encode("utf-8"), dict(headers))

    def json_data(self) -> Any:
        return json.loads(self.body) if self.content_type == JSON_TYPE else None


# --- readers -----------------------------------------------------------------------------------

HEAVY_MENTIONS = 100  # a binary page or answer with this many mentions is kept per generation


class ReaderPool:
    """Readers of the current generation, one request at a time each; older ones closed when free."""

    def __init__(self, data_dir: Path, idle_per_generation: int = 4) -> None:
        self.data_dir = Path(data_dir)
        self.idle_per_generation = idle_per_generation
        self._lock = threading.Lock()
        self._idle: dict[str, list[IndexReader]] = {}
        self._busy: dict[str, int] = {}
        self._current = ""
        self._memo: dict[tuple[str, str], Any] = {}
        self._closed = False

    def acquire(self) -> IndexReader:
        generation = current_generation(self.data_dir)
        if generation is None:
            raise IndexMissing(f"no index in {self.data_dir}: run 'indexer refresh' first")
        stale: list[IndexReader] = []
        with self._lock:
            if generation.name != self._current:
                self._current = generation.name
                for name in [n for n in self._idle if n != generation.name]:
                    stale += self._idle.pop(name)
                self._memo = {k: v for k, v in self._memo.items() if k[0] == generation.name}
            idle = self._idle.get(generation.name)
            reader = idle.pop() if idle else None
            if reader is not None:
                self._busy[generation.name] = self._busy.get(generation.name, 0) + 1
        for old in stale:
            _close(old)
        if reader is not None:
            return reader
        reader = self._open()
        with self._lock:
            name = reader.generation.name
            self._busy[name] = self._busy.get(name, 0) + 1
        return reader

    def _open(self) -> IndexReader:
        """A new reader of the current generation (which may be newer than the one just seen).
        A generation pruned between reading CURRENT and opening it is retried with the next."""
        for attempt in range(3):
            try:
                return IndexReader(self.data_dir)
            except IndexMissing:
                raise
            except Exception:
                if attempt == 2:
                    raise
                log.warning("opening the index failed; retrying with the current generation", exc_info=True)
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def release(self, reader: IndexReader, broken: bool = False) -> None:
        name = reader.generation.name
        with self._lock:
            self._busy[name] = self._busy.get(name, 1) - 1
            if not self._busy[name]:
                del self._busy[name]
            keep = (not broken and not self._closed and name == self._current
                    and len(self._idle.get(name, [])) < self.idle_per_generation)
            if keep:
                self._idle.setdefault(name, []).append(reader)
        if not keep:
            _close(reader)

    @contextmanager
    def reader(self) -> Iterator[IndexReader]:
        reader = self.acquire()
        broken = True
        try:
            yield reader
            broken = False
        finally:
            self.release(reader, broken)

    def memo(self, reader: IndexReader, key: str, compute: Callable[[], Any]) -> Any:
        """A value computed once per generation (statistics, cross-references)."""
        slot = (reader.generation.name, key)
        with self._lock:
            if slot in self._memo:
                return self._memo[slot]
        value = compute()
        with self._lock:
            if reader.generation.name == self._current or not self._current:
                self._memo[slot] = value
        return value

    def peek(self, reader: IndexReader, key: str) -> Any:
        """The value `memo` keeps for this generation and key, or None."""
        with self._lock:
            return self._memo.get((reader.generation.name, key))

    def snapshot(self) -> dict[str, Any]:
        """Open readers by generation (for tests and /api/status)."""
        with self._lock:
            return {"current": self._current, "busy": dict(self._busy),
                    "idle": {k: len(v) for k, v in self._idle.items() if v}}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            readers = [r for rs in self._idle.values() for r in rs]
            self._idle.clear()
        for reader in readers:
            _close(reader)


def _close(reader: IndexReader) -> None:
    try:
        reader.close()
    except Exception:  # a reader of a pruned generation: nothing left to release
        log.debug("closing a reader failed", exc_info=True)


# --- shared lookups ----------------------------------------------------------------------------

def binary_target(reader: IndexReader, name: str) -> dict[str, Any] | None:
    """`show_target` for an executable only (a rule id spelled like the name does not shadow it)."""
    return show_target(reader, name, kind="binary")


def xref_module() -> Any | None:
    """`indexer.xref` when this installation has it (another part of the project)."""
    try:
        spec = importlib.util.find_spec("indexer.xref")
    except (ImportError, ValueError):
        return None
    return importlib.import_module("indexer.xref") if spec is not None else None


def xref_pages() -> tuple[str, ...]:
    """The cross-reference pages this installation can show."""
    module = xref_module()
    return tuple(what for what in ("coverage", "links") if callable(getattr(module, what, None)))


def jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(value)
    return value


def lolbas_entries(reader: IndexReader, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The LOLBAS entry facts (category, MITRE) of some files, when the index records them."""
    files = reader.state.files
    out = {}
    for source, path in keys:
        report = files.get(f"{source}:{path}")
        entry = getattr(report, "entry", None) if report is not None else None
        if entry:
            out[(source, path)] = dict(entry)
    return out


def status_object(reader: IndexReader, stats: Mapping[str, Any]) -> dict[str, Any]:
    """/api/status: what is indexed, at which commits, when; counts without the long lists."""
    keep = ("commit", "branch", "web_url", "license", "license_path", "committed")
    state = reader.state
    counts = {k: v for k, v in stats.items() if k not in ("generation", "sources", "problems")}
    counts["problems"] = len(stats.get("problems", []))
    return {
        "generation": reader.generation.name,
        "built_at": state.built_at,
        "built_at_iso": pages.iso_time(state.built_at) if state.built_at else "",
        "sources": {name: {k: info.get(k, "") for k in keep} for name, info in sorted(reader.sources.items())},
        "counts": counts,
    }


# --- requests ----------------------------------------------------------------------------------

def split_target(target: str) -> tuple[bytes, dict[str, list[str]]]:
    """The raw (still %-encoded) path and the decoded query parameters of a request target.

    http.server hands the request line over decoded as Latin-1; the bytes are taken back and
    every parameter must be UTF-8 once %-decoded."""
    try:
        raw = target.encode("latin-1")
    except UnicodeEncodeError:
        raw = target.encode("utf-8")
    if raw.lower().startswith((b"http://", b"https://")):
        parts = urlsplit(raw)
        raw = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
    path, _, query = raw.partition(b"?")
    path = path.split(b"#", 1)[0]
    query = query.split(b"#", 1)[0]
    params: dict[str, list[str]] = {}
    pieces = [p for p in query.split(b"&") if p]
    if len(pieces) > MAX_PARAMS:
        raise HTTPProblem(400, f"too many query parameters ({len(pieces)}; at most {MAX_PARAMS})")
    for piece in pieces:
        key, _, value = piece.partition(b"=")
        params.setdefault(_decode(key, "a parameter name"), []).append(_decode(value, "a parameter value"))
    return path, params


def _decode(raw: bytes, what: str) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPProblem(400, f"{what} is not valid UTF-8 once %-decoded") from None


def _path_part(raw: bytes) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPProblem(400, "the path is not valid UTF-8 once %-decoded") from None


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise HTTPProblem(400, f"give {name!r} once (got {len(values)} values)")
    return values[0] if values else None


def _known(params: Mapping[str, list[str]], allowed: tuple[str, ...]) -> None:
    unknown = sorted(k for k in params if k not in allowed)
    if unknown:
        raise HTTPProblem(400, f"unknown parameter {unknown[0]!r} (known: {', '.join(allowed) or 'none'})")


def _name(text: str | None, what: str = "q") -> str:
    if text is None or not text.strip():
        raise HTTPProblem(400, f"give an executable's name to look for ({what}=psr.exe, a path, a stem or a wildcard)")
    if len(text) > MAX_QUERY:
        raise HTTPProblem(400, f"{what} is {len(text)} characters long; at most {MAX_QUERY}")
    try:
        parse_query(text)
    except ValueError as exc:
        raise HTTPProblem(400, str(exc)) from None
    return text


def _search_options(params: Mapping[str, list[str]]) -> dict[str, Any]:
    roles: list[str] = []
    for value in params.get("role", []):
        roles += [r.strip() for r in value.split(",") if r.strip()]
    for role in roles:
        if role not in ROLES:
            raise HTTPProblem(400, f"unknown role {role[:50]!r} (choose from {', '.join(ROLES)})")
    source = _one(params, "source") or None
    if source is not None and source not in SOURCES:
        raise HTTPProblem(400, f"unknown source {source[:50]!r} (choose from {', '.join(SOURCES)})")
    context = _one(params, "context") or None
    if context is not None and context not in CONTEXTS:
        raise HTTPProblem(400, f"unknown context {context[:50]!r} (choose from {', '.join(CONTEXTS)})")
    field_name = _one(params, "field") or None
    if field_name is not None and len(field_name) > MAX_FIELD:
        raise HTTPProblem(400, f"field is {len(field_name)} characters long; at most {MAX_FIELD}")
    inferred = (_one(params, "inferred") or "true").lower()
    if inferred not in ("true", "false", "yes", "no", "1", "0"):
        raise HTTPProblem(400, f"inferred must be true or false, not {inferred[:20]!r}")
    return {"source": source, "roles": roles, "field": field_name, "context": context,
            "include_inferred": inferred in ("true", "yes", "1")}


def _resolve_guard(reader: IndexReader, text: str) -> list[str]:
    names = resolve(parse_query(text), reader.binaries())
    if len(names) > MAX_NAMES:
        raise HTTPProblem(400, f"{text[:60]!r} matches {len(names)} executables; narrow it (at most {MAX_NAMES})",
                          binaries=len(names))
    return names


def suggestions_for(reader: IndexReader, text: str, limit: int = SUGGEST_LIMIT) -> list[str]:
    """Names for a prefix being typed: the name itself, names with that stem, names starting
    with it, names containing it; close names when none does."""
    prefix = re.split(r"[\\/]", text.strip().strip("'\"`"))[-1].strip().lower()
    if not prefix:
        return []
    binaries = reader.binaries()
    start = bisect.bisect_left(binaries, prefix)
    starting = []
    for name in binaries[start:]:
        if not name.startswith(prefix):
            break
        starting.append(name)
    ranked = sorted(starting, key=lambda n: (n != prefix, stem_of(n) != prefix, len(n), n))
    out = ranked[:limit]
    if len(out) < limit and len(prefix) >= 3:
        out += [n for n in binaries if prefix in n and not n.startswith(prefix)][:limit - len(out)]
    if not out:
        try:
            out = suggest(parse_query(prefix), binaries, limit)
        except ValueError:
            out = []
    return out


class App:
    """Routes a request target to a Response; no sockets here (tests call `handle` directly)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.pool = ReaderPool(self.data_dir)
        self.static = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_TYPES}
        self.links = pages.Links(nav=xref_pages())

    # -- entry point --

    def handle(self, target: str, method: str = "GET") -> Response:
        api = target.startswith("/api")
        try:
            if method not in ("GET", "HEAD"):
                raise HTTPProblem(405, f"method {method[:20]} not allowed: this server only reads (GET, HEAD)")
            raw_path, params = split_target(target)
            api = raw_path.startswith(b"/api/") or raw_path == b"/api"
            return (self._api if api else self._page)(raw_path, params)
        except HTTPProblem as problem:
            return self._problem(problem, api)
        except IndexMissing as exc:
            log.warning("%s", exc)
            return self._problem(HTTPProblem(503, "no usable index yet: run 'indexer refresh' "
                                                  "(or 'indexer refresh --full' after an upgrade)"), api)

    def _problem(self, problem: HTTPProblem, api: bool) -> Response:
        headers = {"Allow": "GET, HEAD"} if problem.status == 405 else {}
        if api:
            return Response.json(problem.status, {"error": problem.message, **problem.extra}, **headers)
        page = pages.error_page(self.links, problem.status, problem.message,
                                suggestions=problem.extra.get("suggestions", []))
        return Response.html(problem.status, page, **headers)

    # -- JSON --

    def _api(self, path: bytes, params: dict[str, list[str]]) -> Response:
        if path in (b"/api", b"/api/", b"/api/openapi.json"):
            _known(params, ())
            return Response.json(200, openapi())
        if path == b"/api/search":
            _known(params, SEARCH_PARAMS)
            return self._json_search(params)
        if path.startswith(b"/api/binary/"):
            _known(params, ())
            return self._json_binary(_path_part(path[len(b"/api/binary/"):]))
        if path.startswith(b"/api/rule/"):
            _known(params, ())
            return self._json_rule(_path_part(path[len(b"/api/rule/"):]))
        if path == b"/api/status":
            _known(params, ())
            with self.pool.reader() as reader:
                stats = self.pool.memo(reader, "stats", lambda: index_stats(reader))
                return Response.json(200, status_object(reader, stats), **self._gen(reader))
        if path == b"/api/suggest":
            _known(params, ("q", "limit"))
            return self._json_suggest(params)
        if path in (b"/api/coverage", b"/api/links"):
            _known(params, ())
            what = "coverage" if path.endswith(b"coverage") else "links"
            with self.pool.reader() as reader:
                return Response.json(200, self._xref(reader, what), **self._gen(reader))
        raise HTTPProblem(404, "no such API endpoint (see /api/openapi.json)")

    def _gen(self, reader: IndexReader) -> dict[str, str]:
        return {"X-Index-Generation": reader.generation.name}

    def _json_search(self, params: dict[str, list[str]]) -> Response:
        text = _name(_one(params, "q"))
        options = _search_options(params)
        with self.pool.reader() as reader:
            _resolve_guard(reader, text)
            result = search(reader, text, **options).to_dict()
            if not result["binaries"]:
                return Response.json(404, {"error": f"no executable in the index matches {text[:80]!r}", **result},
                                     **self._gen(reader))
            return Response.json(200, result, **self._gen(reader))

    def _json_binary(self, name: str) -> Response:
        _name(name, "the name")
        with self.pool.reader() as reader:
            _resolve_guard(reader, name)
            target = self._binary_target(reader, name)
            return Response.json(200, target, **self._gen(reader))

    def _binary_target(self, reader: IndexReader, name: str) -> dict[str, Any]:
        """binary_target or a 404 with suggestions; kept per generation for the names with many
        mentions (cmd.exe: ~100 ms to build)."""
        key = f"binary:{name.strip().lower()}"
        cached = self.pool.peek(reader, key)
        if cached is not None:
            return cached
        target = binary_target(reader, name)
        if target is None:
            raise HTTPProblem(404, f"no executable in the index matches {name[:80]!r}",
                              suggestions=suggest(parse_query(name), reader.binaries()))
        if len(target["mentions"]) >= HEAVY_MENTIONS:
            self.pool.memo(reader, key, lambda: target)
        return target

    def _json_rule(self, key: str) -> Response:
        with self.pool.reader() as reader:
            target = self._rule_target(reader, key)
            return Response.json(200, target, **self._gen(reader))

    def _rule_target(self, reader: IndexReader, key: str) -> dict[str, Any]:
        cleaned = key.strip()
        if not cleaned:
            raise HTTPProblem(400, "give a rule id, a rule path or source:path")
        if len(key) > MAX_TARGET:
            raise HTTPProblem(400, f"the rule id or path is {len(key)} characters long; at most {MAX_TARGET}")
        keys = self.pool.memo(reader, "rule-keys", lambda: _rule_keys(reader))
        target = show_target(reader, cleaned) if cleaned in keys else None
        if target is None or target.get("kind") != "rule":
            lowered = cleaned.lower()
            close = [ref for ref in keys if ":" in ref and len(lowered) >= 4 and lowered in ref.lower()][:5]
            raise HTTPProblem(404, f"no rule file with the id or path {cleaned[:120]!r}", suggestions=close)
        return target

    def _json_suggest(self, params: dict[str, list[str]]) -> Response:
        text = _one(params, "q")
        if text is None or not text.strip():
            raise HTTPProblem(400, "give the start of a name: ?q=psr")
        if len(text) > MAX_QUERY:
            raise HTTPProblem(400, f"q is {len(text)} characters long; at most {MAX_QUERY}")
        limit_text = _one(params, "limit") or str(SUGGEST_LIMIT)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 50:
            raise HTTPProblem(400, "limit must be a number from 1 to 50")
        with self.pool.reader() as reader:
            names = suggestions_for(reader, text, int(limit_text))
            return Response.json(200, {"query": text, "suggestions": names}, **self._gen(reader))

    def _xref(self, reader: IndexReader, what: str) -> Any:
        module = xref_module()
        function = getattr(module, what, None) if module is not None else None
        if function is None:
            raise HTTPProblem(501, f"{what} needs indexer.xref.{what}(reader), which this installation "
                                   "does not have yet")
        return self.pool.memo(reader, what, lambda: jsonable(function(reader)))

    # -- pages --

    def _links(self, reader: IndexReader) -> pages.Links:
        """Links that point at rule pages only for rule files this generation has."""
        return self.links.with_rules(self.pool.memo(reader, "rule-keys", lambda: _rule_keys(reader)))

    def _footer(self, reader: IndexReader) -> str:
        return pages.sources_footer(reader.sources, reader.generation.name, reader.state.built_at)

    def _page(self, path: bytes, params: dict[str, list[str]]) -> Response:
        if path.startswith(b"/static/"):
            name = _path_part(path[len(b"/static/"):])
            if name not in self.static:
                raise HTTPProblem(404, "no such file")
            return Response(200, STATIC_TYPES[name], self.static[name])
        if path in (b"/", b"/index.html"):
            with self.pool.reader() as reader:
                stats = self.pool.memo(reader, "stats", lambda: index_stats(reader))
                return Response.html(200, pages.home_page(self.links, self._footer(reader), stats),
                                     **self._gen(reader))
        if path == b"/search":
            return self._search_page(params)
        if path.startswith(b"/binary/"):
            return self._binary_page(_path_part(path[len(b"/binary/"):]))
        if path.startswith(b"/rule/"):
            key = _path_part(path[len(b"/rule/"):])
            with self.pool.reader() as reader:
                target = self._rule_target(reader, key)
                return Response.html(200, pages.rule_page(self._links(reader), target, self._footer(reader)),
                                     **self._gen(reader))
        if path in (b"/coverage", b"/links"):
            what = path[1:].decode()
            with self.pool.reader() as reader:
                data = self._xref(reader, what)
                title = {"coverage": "Coverage", "links": "Sigma ↔ LOLBAS links"}[what]
                return Response.html(200, pages.data_page(self._links(reader), title, data, self._footer(reader)),
                                     **self._gen(reader))
        raise HTTPProblem(404, "no such page")

    def _search_page(self, params: dict[str, list[str]]) -> Response:
        _known(params, SEARCH_PARAMS)
        # A form sends empty fields for "any": they are no filter.
        params = {k: [v for v in vs if v != "" or k == "q"] for k, vs in params.items()}
        text = _name(_one(params, "q"))
        options = _search_options(params)
        shown = {k: (_one(params, k) or "") for k in ("source", "field", "context")}
        shown["role"] = ",".join(options["roles"])
        with self.pool.reader() as reader:
            _resolve_guard(reader, text)
            result = search(reader, text, **options).to_dict()
            status = 200 if result["binaries"] else 404
            page = pages.search_page(self._links(reader), text, shown, result, self._footer(reader))
            return Response.html(status, page, **self._gen(reader))

    def _binary_page(self, name: str) -> Response:
        _name(name, "the name")
        with self.pool.reader() as reader:
            _resolve_guard(reader, name)
            target = self._binary_target(reader, name)
            keys = [(m["source"], m["path"]) for m in target["mentions"] if m["source"] == "lolbas"]
            entries = lolbas_entries(reader, list(dict.fromkeys(keys)))
            page = pages.binary_page(self._links(reader), target, self._footer(reader), entries)
            return Response.html(200, page, **self._gen(reader))


def _rule_keys(reader: IndexReader) -> set[str]:
    """Every string `show_target` takes as a rule: ids, paths, source:path."""
    keys: set[str] = set()
    for ref, report in reader.state.files.items():
        keys.update(report.rule_ids)
        keys.add(report.path)
        keys.add(ref)
    return keys


# --- HTTP --------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    server_version = "indexer"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = 30                 # seconds a client may take to send its request

    server: "IndexServer"

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _refuse(self) -> None:
        try:  # read a small body, so that closing the connection does not reset it under the answer
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= 1 << 20:
                self.rfile.read(length)
        except (ValueError, OSError):
            pass
        self._send(self.server.app.handle(self.path, self.command), head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _respond(self, head: bool) -> None:
        try:
            if not self.server.host_allowed(self.headers.get("Host", "")):
                response = Response.json(421, {"error": "this server answers only to requests for its loopback "
                                                        "address (the Host header names another host)"})
            else:
                response = self.server.app.handle(self.path, self.command)
        except Exception:
            log.exception("error answering %s", _printable(self.path))
            api = self.path.startswith("/api")
            message = "internal error (logged on the server)"
            response = (Response.json(500, {"error": message}) if api else
                        Response.html(500, pages.error_page(pages.Links(), 500, message)))
        self._send(response, head)

    def _send(self, response: Response, head: bool) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in {**SECURITY_HEADERS, **response.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Requests http.server itself refuses (a malformed request line, a line too long):
        a JSON error with the same headers as every other answer."""
        self.close_connection = True
        self.request_version = "HTTP/1.0"   # a malformed line is no HTTP/0.9 request: send the status line
        text = message or self.responses.get(code, ("error",))[0]
        self._send(Response.json(code, {"error": _printable(str(text))[:200]}),
                   head=getattr(self, "command", "") == "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), _printable(format % args))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:2000]


class IndexServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.loopback = _is_loopback(address[0])
        super().__init__(address, Handler)

    def host_allowed(self, host_header: str) -> bool:
        """On a loopback bind, only Host: localhost / 127.x / [::1] (any port)."""
        if not self.loopback:
            return True
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return not host or host in LOOPBACK_NAMES or _is_loopback(host)

    def server_close(self) -> None:
        super().server_close()
        self.app.pool.close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(data_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> IndexServer:
    """A bound server (port 0: any free port), not yet serving: call serve_forever()."""
    cls = IndexServer
    if ":" in host:
        cls = type("IndexServer6", (IndexServer,), {"address_family": socket.AF_INET6})
    return cls((host, port), App(Path(data_dir)))


def serve(data_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the index in `data_dir` until interrupted (Ctrl-C).

    Standard library only (http.server.ThreadingHTTPServer): a small read-only surface,
    nothing to install, and the pages are rendered on the server. Binds loopback unless told
    otherwise. A refresh may run meanwhile: each request reads the generation current when
    it starts."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if current_generation(Path(data_dir)) is None:
        log.warning("no index in %s yet: pages answer 503 until 'indexer refresh' builds one", data_dir)
    server = make_server(data_dir, host, port)
    if not server.loopback:
        log.warning("listening on %s, not loopback: anyone who can reach it can read the index", host)
    sys.stderr.write(f"indexer: serving {data_dir} at {server.url} (Ctrl-C to stop)\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- the OpenAPI description -------------------------------------------------------------------

def openapi() -> dict[str, Any]:
    error = {"$ref": "#/components/responses/Error"}

    def param(name: str, description: str, required: bool = False, where: str = "query",
              schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"name": name, "in": where, "required": required or where == "path", "description": description,
                "schema": schema or {"type": "string"}}

    def ok(description: str, schema: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

    filters = [param("role", "Only these roles (repeat, or comma-separated).",
                     schema={"type": "string", "enum": list(ROLES)}),
               param("source", "Only one source.", schema={"type": "string", "enum": list(SOURCES)}),
               param("field", "Only this detection field (Image, CommandLine, ...).",
                     schema={"type": "string", "maxLength": MAX_FIELD}),
               param("context", "Detection items that select the binary, or exclude it.",
                     schema={"type": "string", "enum": list(CONTEXTS)}),
               param("inferred", "false: leave out bare names recognised without extension.",
                     schema={"type": "boolean", "default": True})]
    xref_note = " Needs indexer.xref; 501 when this installation does not have it."
    records = {"type": "array", "items": {"type": "object"},
               "description": "Cross-reference records (indexer.xref), when the index has them."}
    return {
        "openapi": "3.0.3",
        "info": {"title": "indexer", "version": _version(),
                 "description": "Which Sigma rules and LOLBAS entries name an executable. Every response is "
                                "the object `indexer ... --json` prints; errors are {\"error\": \"...\"}."},
        "paths": {
            "/api/search": {"get": {
                "summary": "Every rule line naming what q names (indexer search --json).",
                "parameters": [param("q", "A name (PSR.EXE), a stem (psr), a path or a wildcard (cert*.exe).",
                                     True, schema={"type": "string", "maxLength": MAX_QUERY})] + filters,
                "responses": {"200": ok("Mentions.", "SearchResult"),
                              "404": ok("Nothing matches: suggestions, with an error.", "SearchResult"),
                              "400": error}}},
            "/api/binary/{name}": {"get": {
                "summary": "Everything about one executable (indexer show NAME --json).",
                "parameters": [param("name", "Name, stem, path or wildcard.", where="path")],
                "responses": {"200": ok("The executable.", "BinaryTarget"), "404": error, "400": error}}},
            "/api/rule/{key}": {"get": {
                "summary": "Everything about one rule file (indexer show RULE --json).",
                "parameters": [param("key", "Rule id, path in its repository, or source:path (slashes allowed).",
                                     where="path")],
                "responses": {"200": ok("The rule file.", "RuleTarget"), "404": error, "400": error}}},
            "/api/status": {"get": {
                "summary": "Commits indexed per source, the generation, when it was built, counts.",
                "responses": {"200": ok("Status.", "Status")}}},
            "/api/suggest": {"get": {
                "summary": "Executable names for a prefix being typed.",
                "parameters": [param("q", "The start of a name.", True),
                               param("limit", "At most this many (1-50).",
                                     schema={"type": "integer", "minimum": 1, "maximum": 50, "default": 10})],
                "responses": {"200": ok("Names.", "Suggestions"), "400": error}}},
            "/api/coverage": {"get": {"summary": "Detection coverage per executable." + xref_note,
                                      "responses": {"200": {"description": "indexer.xref.coverage(reader)"},
                                                    "501": error}}},
            "/api/links": {"get": {"summary": "Sigma rules and LOLBAS entries that cite each other." + xref_note,
                                   "responses": {"200": {"description": "indexer.xref.links(reader)"},
                                                 "501": error}}},
            "/api/openapi.json": {"get": {"summary": "This description.",
                                          "responses": {"200": {"description": "OpenAPI 3"}}}},
        },
        "components": {
            "responses": {"Error": {"description": "Bad input, or nothing found.", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"}, "suggestions": {"type": "array", "items": {"type": "string"}}}},
                "Mention": {"type": "object", "description": "One line of one rule file naming one executable.",
                            "properties": {k: {"type": t} for k, t in _MENTION_TYPES.items()}},
                "SearchResult": {"type": "object", "properties": {
                    "query": {"type": "string"}, "binaries": {"type": "array", "items": {"type": "string"}},
                    "mentions": {"type": "array", "items": {"$ref": "#/components/schemas/Mention"}},
                    "suggestions": {"type": "array", "items": {"type": "string"}},
                    "lolbas_declared_detections": records,
                    "error": {"type": "string"}}},
                "BinaryTarget": {"type": "object", "properties": {
                    "kind": {"type": "string", "enum": ["binary"]}, "query": {"type": "string"},
                    **{k: {"type": "array", "items": {"type": "string"}}
                       for k in ("binaries", "sigma_rules", "detecting_rules", "lolbas_entries", "roles")},
                    "lolbas_declared_detections": records,
                    "mentions": {"type": "array", "items": {"$ref": "#/components/schemas/Mention"}}}},
                "RuleTarget": {"type": "object", "properties": {
                    "kind": {"type": "string", "enum": ["rule"]},
                    **{k: {"type": "string"} for k in ("source", "path", "status", "reason", "title", "level",
                                                       "logsource", "url")},
                    **{k: {"type": "array", "items": {"type": "string"}}
                       for k in ("warnings", "rule_ids", "tags", "binaries")},
                    "mentions": {"type": "array", "items": {"$ref": "#/components/schemas/Mention"}},
                    "former_paths": records, "linked_from_lolbas": records, "links": records}},
                "Status": {"type": "object", "properties": {
                    "generation": {"type": "string"}, "built_at": {"type": "number"},
                    "built_at_iso": {"type": "string"}, "sources": {"type": "object"},
                    "counts": {"type": "object"}}},
                "Suggestions": {"type": "object", "properties": {
                    "query": {"type": "string"}, "suggestions": {"type": "array", "items": {"type": "string"}}}},
            },
        },
    }


_MENTION_TYPES = {"binary": "string", "source": "string", "path": "string", "line": "integer",
                  "snippet": "string", "field": "string", "modifiers": "array", "role": "string",
                  "context": "string", "detection": "string", "inferred": "boolean", "encoded": "boolean",
                  "rule_id": "string", "title": "string", "level": "string", "status": "string",
                  "tags": "array", "logsource": "string", "commit": "string", "url": "string",
                  "license": "string"}


def _version() -> str:
    from . import __version__
    return str(__version__)


# --- the static site ---------------------------------------------------------------------------

SITE_MARKER = ".indexer-site"


def _search_order(m: Mention) -> tuple[Any, ...]:
    # IndexReader.search's order: sigma first, then source, path, line, role, field, detection, context.
    return (m.source != "sigma", m.source, m.path, m.line, m.role, m.field, m.detection, m.context, m.binary)


class SiteData:
    """What `show_target` adds from the cross-references, for every page of a static site from
    one read of them (show_target reads them again for each call)."""

    def __init__(self, reader: IndexReader) -> None:
        module = xref_module()
        self.available = module is not None and callable(getattr(module, "load", None))
        data = module.load(reader) if self.available else {}
        self.links: list[dict[str, Any]] = data.get("links", [])
        self.references: list[dict[str, Any]] = data.get("references", [])
        self.coverage: list[dict[str, Any]] = data.get("coverage", {}).get("entries", [])
        self.former: dict[str, list[Any]] = data.get("former_paths", {})

    def binary(self, names: list[str]) -> dict[str, Any]:
        if not self.available:
            return {}
        wanted = set(names)
        entries = {row["path"] for row in self.coverage if wanted & set(row.get("names", []))}
        return {"lolbas_declared_detections": [l for l in self.links if l.get("lolbas_path") in entries]}

    def rule(self, source: str, path: str) -> dict[str, Any]:
        if not self.available:
            return {}
        own = self.references if source == "sigma" else self.links
        return {
            "former_paths": self.former.get(path, []) if source == "sigma" else [],
            "linked_from_lolbas": [l for l in self.links if l.get("current_path") == path],
            "links": [l for l in own if l.get("sigma_path", l.get("lolbas_path")) == path],
        }


def site_binary_target(name: str, mentions: list[Mention], extra: SiteData | None = None) -> dict[str, Any]:
    """What show_target(reader, name) returns, from mentions already read (no search per page)."""
    return {**binary_record(name, [name], mentions), **(extra.binary([name]) if extra else {})}


def site_rule_target(report: Any, mentions: list[Mention], extra: SiteData | None = None) -> dict[str, Any]:
    """What show_target(reader, rule) returns, from mentions already read."""
    return {**rule_record(report, mentions), **(extra.rule(report.source, report.path) if extra else {})}


def write_site(reader: IndexReader, output_dir: Path) -> dict[str, Any]:
    """The pages of `indexer serve` as static files with relative links (intranet publishing):
    index.html, binary/<safe_filename(name)>.html, rule/<safe_filename(source:path)>.html,
    coverage.html and links.html (with indexer.xref), static/app.css. No search box: a static
    site has no API. The site is written beside `output_dir` and swapped in; an existing
    `output_dir` is replaced only if an earlier write_site made it (or it is empty)."""
    output_dir = Path(output_dir).resolve()
    if output_dir.exists() and (not output_dir.is_dir() or (any(output_dir.iterdir())
                                                           and not (output_dir / SITE_MARKER).exists())):
        raise FileExistsError(f"{output_dir} exists and was not written by 'indexer export --format html': "
                              "choose a new or empty directory")
    started = time.time()
    by_binary: dict[str, list[Mention]] = {}
    by_file: dict[tuple[str, str], list[Mention]] = {}
    for m in reader.all_mentions():
        by_binary.setdefault(m.binary, []).append(m)
        by_file.setdefault((m.source, m.path), []).append(m)
    footer = pages.sources_footer(reader.sources, reader.generation.name, reader.state.built_at)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{os.getpid()}-{time.time_ns():x}"
    (tmp / "binary").mkdir(parents=True)
    (tmp / "rule").mkdir()
    (tmp / "static").mkdir()
    try:
        nav = xref_pages()
        files = reader.state.files
        deep = pages.Links(static=True, depth=1, nav=nav, rules=set(files))
        root = pages.Links(static=True, depth=0, nav=nav, rules=set(files))
        rows = []
        extra = SiteData(reader)
        for name in sorted(by_binary):
            mentions = sorted(by_binary[name], key=_search_order)
            target = site_binary_target(name, mentions, extra)
            keys = list(dict.fromkeys((m.source, m.path) for m in mentions if m.source == "lolbas"))
            entries = lolbas_entries(reader, keys)
            text = pages.binary_page(deep, target, footer, entries)
            (tmp / "binary" / f"{safe_filename(name)}.html").write_text(text, encoding="utf-8")
            rows.append((name, len(target["detecting_rules"]), len(target["sigma_rules"]),
                         len(target["lolbas_entries"])))
        for report in files.values():
            mentions = sorted(by_file.get((report.source, report.path), []),
                              key=lambda m: (m.line, m.binary, m.role, m.field))
            text = pages.rule_page(deep, site_rule_target(report, mentions, extra), footer)
            (tmp / "rule" / pages.rule_filename(report.source, report.path)).write_text(text, encoding="utf-8")
        module = xref_module()
        for what in nav:
            title = {"coverage": "Coverage", "links": "Sigma ↔ LOLBAS links"}[what]
            data = jsonable(getattr(module, what)(reader))
            (tmp / f"{what}.html").write_text(pages.data_page(root, title, data, footer), encoding="utf-8")
        (tmp / "index.html").write_text(pages.site_index_page(root, rows, footer), encoding="utf-8")
        shutil.copyfile(STATIC_DIR / "app.css", tmp / "static" / "app.css")
        (tmp / SITE_MARKER).write_text(f"{reader.generation.name}\n", encoding="utf-8")
        if output_dir.exists():
            old = output_dir.parent / f".{output_dir.name}.old-{os.getpid()}-{time.time_ns():x}"
            os.replace(output_dir, old)
            os.replace(tmp, output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"format": "html", "output": str(output_dir), "binaries": len(rows), "rules": len(files),
            "pages": len(rows) + len(files) + 1 + len(nav), "seconds": round(time.time() - started, 2)}

