"""`indexer serve`: the index over HTTP/1.1 — a JSON API and server-rendered pages — on
FastAPI and uvicorn.

Routes are plain functions over the query functions the CLI uses; their answers are
validated against the response models in `models.py`, from which the OpenAPI description
(`/api/openapi.json`) is generated. Every list is paged (`offset`, `limit`): a rule that names
150,000 executables costs one page, not 150,000 rows.

Around the routes, one ASGI middleware (`Guard`) keeps what the standard-library server had:
only GET and HEAD; on a loopback bind, requests whose Host names another host are refused
(DNS rebinding); strict security headers and Content-Security-Policy on every answer; plus
an ETag from the index generation (a 304 when it has not changed). GZip and, when asked
(`--cors-origin`), CORS wrap it.

The MCP server of `indexer mcp` answers at `/mcp` (streamable HTTP, stateless, JSON answers:
any worker answers any request); the Guard hands it POST and DELETE there, after the Host check.

Index swaps: each request takes a reader from `ReaderPool`, of the generation named by
`index/CURRENT` when it starts; a refresh never interrupts the server. With `--workers N`,
uvicorn runs N processes, each with its own pool over the same published index.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Callable, Iterator, Mapping
from urllib.parse import unquote_to_bytes, urlencode

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, joins, xref
from ..index import IndexMissing, IndexReader, current_generation, stem_of
from ..model import PLATFORMS, ROLES
from ..sources import SOURCES
from ..verdicts import DETECTING, VERDICT_HELP, VERDICTS
from ..query import binary_target, find_rule, index_stats, parse_query, resolve, rule_target, search, suggest
from ..xref import TIERS
from . import charts, models
from .views import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Links,
    footer_of,
    iso_time,
    page_of,
    page_rules,
    paged_mentions,
    render,
    technique_url,
)

log = logging.getLogger("indexer.serve")

MAX_QUERY = 256  # characters in a name query
MAX_TARGET = 1024  # characters in a rule id or path
MAX_FIELD = 100
MAX_NAMES = 200  # executables one query may resolve to (cert*.exe: fine; *: too broad)
MAX_PARAMS = 20
SUGGEST_LIMIT = 10
CACHE_ENTRIES = 16  # binaries (or searches) kept built, per worker, whatever their spelling
CACHE_MENTIONS = 200_000  # and at most this many mentions in all
HEAVY_MENTIONS = 100  # only answers with this many mentions are worth keeping
STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
LOOPBACK_NAMES = ("localhost", "localhost.")
MCP_PATH = "/mcp"
SEARCH_PARAMS = ("q", "role", "source", "platform", "field", "context", "inferred", "offset", "limit", "at")
PAGE_PARAMS = ("offset", "limit")
BINARY_PARAMS = (*PAGE_PARAMS, "at")  # at=DATE: as of that date, from the history (search --at)
MISSING = {
    "/api/suggest": "give the start of a name: ?q=psr",
    "": "give an executable's name to look for (q=psr.exe, a path, a stem or a wildcard)",
}


class Problem(Exception):
    """A request that cannot be answered: status, message, and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# --- readers and caches ------------------------------------------------------------------------


class ReaderPool:
    """Readers of the current generation, one request at a time each; older ones closed when
    free. `memo` keeps small per-generation values (statistics, coverage)."""

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
        """A new reader of the current generation; one pruned between reading CURRENT and
        opening it is retried with the next."""
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
            keep = (
                not broken
                and not self._closed
                and name == self._current
                and len(self._idle.get(name, [])) < self.idle_per_generation
            )
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
        """A value computed once per generation."""
        slot = (reader.generation.name, key)
        with self._lock:
            if slot in self._memo:
                return self._memo[slot]
        value = compute()
        with self._lock:
            if reader.generation.name == self._current or not self._current:
                self._memo[slot] = value
        return value

    def snapshot(self) -> dict[str, Any]:
        """Open readers by generation (for tests)."""
        with self._lock:
            return {
                "current": self._current,
                "busy": dict(self._busy),
                "idle": {k: len(v) for k, v in self._idle.items() if v},
            }

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


class BoundedCache:
    """Built answers of heavy binaries, keyed by what a query resolves to (never by how it
    was spelled), least recently used out first, bounded in entries and in mentions held."""

    def __init__(self, entries: int = CACHE_ENTRIES, mentions: int = CACHE_MENTIONS) -> None:
        self.max_entries = entries
        self.max_mentions = mentions
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Any, ...], tuple[int, Any]] = OrderedDict()
        self._mentions = 0

    def get(self, key: tuple[Any, ...], build: Callable[[], tuple[int, Any]]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][1]
        weight, value = build()
        if weight < HEAVY_MENTIONS or weight > self.max_mentions:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = (weight, value)
                self._mentions += weight
            while len(self._items) > self.max_entries or self._mentions > self.max_mentions:
                _, (old, _) = self._items.popitem(last=False)
                self._mentions -= old
        return value

    def info(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._items), "mentions": self._mentions}


# --- requests ----------------------------------------------------------------------------------


def _decode(raw: bytes, what: str) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ") if what != "the path" else raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, f"{what} is not valid UTF-8 once %-decoded") from None


def raw_params(request: Request) -> dict[str, list[str]]:
    """The query parameters, each UTF-8 once %-decoded (Starlette would replace bad bytes)."""
    query: bytes = request.scope.get("query_string", b"")
    pieces = [p for p in query.split(b"&") if p]
    if len(pieces) > MAX_PARAMS:
        raise Problem(400, f"too many query parameters ({len(pieces)}; at most {MAX_PARAMS})")
    params: dict[str, list[str]] = {}
    for piece in pieces:
        key, _, value = piece.partition(b"=")
        params.setdefault(_decode(key, "a parameter name"), []).append(_decode(value, "a parameter value"))
    return params


def allowed(*names: str, repeat: tuple[str, ...] = ()) -> Callable[[Request], dict[str, list[str]]]:
    """A dependency: the request's parameters, refused if one is unknown or given twice."""

    def check(request: Request) -> dict[str, list[str]]:
        params = raw_params(request)
        unknown = sorted(k for k in params if k not in names)
        if unknown:
            raise Problem(400, f"unknown parameter {unknown[0][:50]!r} (known: {', '.join(names) or 'none'})")
        for key, values in params.items():
            if len(values) > 1 and key not in repeat:
                raise Problem(400, f"give {key!r} once (got {len(values)} values)")
        return params

    return check


def path_tail(request: Request, prefix: str) -> str:
    """What follows `prefix` in the raw path, %-decoded, UTF-8."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    return _decode(raw.split(b"?", 1)[0][len(prefix) :], "the path")


def check_name(text: str | None, what: str = "q") -> str:
    if text is None or not text.strip():
        raise Problem(400, f"give an executable's name to look for ({what}=psr.exe, a path, a stem or a wildcard)")
    if len(text) > MAX_QUERY:
        raise Problem(400, f"{what} is {len(text)} characters long; at most {MAX_QUERY}")
    try:
        parse_query(text)
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    return text


def resolve_guard(reader: IndexReader, text: str) -> list[str]:
    names = resolve(parse_query(text), reader.binaries())
    if len(names) > MAX_NAMES:
        raise Problem(
            400, f"{text[:60]!r} matches {len(names)} executables; narrow it (at most {MAX_NAMES})", binaries=len(names)
        )
    return names


def suggestions_for(reader: IndexReader, text: str, limit: int = SUGGEST_LIMIT) -> list[str]:
    """Names for a prefix being typed: the name itself, names with that stem, names starting
    with it, names containing it; close names when none does."""
    import bisect

    prefix = re.split(r"[\\/]", text.strip().strip("'\"`"))[-1].strip().lower()
    if not prefix:
        return []
    binaries = reader.binaries()
    starting = []
    for name in binaries[bisect.bisect_left(binaries, prefix) :]:
        if not name.startswith(prefix):
            break
        starting.append(name)
    out = sorted(starting, key=lambda n: (n != prefix, stem_of(n) != prefix, len(n), n))[:limit]
    if len(out) < limit and len(prefix) >= 3:
        out += [n for n in binaries if prefix in n and not n.startswith(prefix)][: limit - len(out)]
    if not out:
        try:
            out = suggest(parse_query(prefix), binaries, limit)
        except ValueError:
            out = []
    return out


Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Skip this many items of the list.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"At most this many items (1-{MAX_LIMIT}).")]
AT_QUERY = Query(
    None,
    max_length=40,
    description="As of this date (YYYY-MM-DD or ISO date and time, UTC), read from the history "
    "(refresh --history-since): each source at its last first-parent commit then.",
)
LongLimit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"At most this many rows (1-{MAX_LIMIT}).")]


class JSONAnswer(JSONResponse):
    media_type = "application/json; charset=utf-8"


def search_params(request: Request) -> dict[str, list[str]]:
    """A dependency: a search's parameters, known and valid (clear messages before FastAPI's own)."""
    params = allowed(*SEARCH_PARAMS, repeat=("role",))(request)
    _search_options({k: [v for v in vs if v != ""] for k, vs in params.items()})
    return params


# --- the application ---------------------------------------------------------------------------


class Service:
    """What the routes share: the pool of readers, the cache, the pages' links."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.pool = ReaderPool(self.data_dir)
        self.cache = BoundedCache()
        self.static = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_TYPES}

    def links(self, reader: IndexReader) -> Links:
        """Links that point at rule pages only for rule files this generation has."""
        return Links(rules=reader.state.files)

    def footer(self, reader: IndexReader) -> dict[str, Any]:
        return footer_of(reader.sources, reader.generation.name, reader.state.built_at)

    def stats(self, reader: IndexReader) -> dict[str, Any]:
        return self.pool.memo(reader, "stats", lambda: index_stats(reader))

    # -- answers (one per route, shared by the API and the pages) --

    @contextmanager
    def then(self, reader: IndexReader, params: Mapping[str, list[str]]) -> Iterator[Any]:
        """The index `reader`, or with ?at=DATE the index as of that date read from the history
        (chronicle.AsOf, as `search --at`): 400 for a date that is not one, 404 where the history
        does not know it."""
        at = _one(params, "at")
        if not at:
            yield reader
            return
        from ..chronicle import AsOf, HistoryError, parse_date

        try:
            when = parse_date(at, "at")
        except HistoryError as exc:
            raise Problem(400, str(exc)) from None
        try:
            past = AsOf(self.data_dir, when)
        except HistoryError as exc:
            raise Problem(404, str(exc).replace(str(self.data_dir), "this index")) from None
        with past:
            yield past

    def binary(self, reader: IndexReader, name: str, params: Mapping[str, list[str]] = {}) -> dict[str, Any]:
        """show_target for an executable (as of ?at=DATE); 404 with suggestions when nothing matches."""
        check_name(name, "the name")
        with self.then(reader, params) as source:
            names = resolve_guard(source, name)
            if not names:
                raise Problem(
                    404,
                    f"no executable in the index matches {name[:80]!r}"
                    + (f" as of {source.as_of()['at']}" if source is not reader else ""),
                    suggestions=suggest(parse_query(name), source.binaries()),
                )

            def build() -> tuple[int, Any]:
                # as `search NAME`: the aliases' mentions too (pwsh.dll for pwsh.exe), marked alias_of
                known = source.aliases()
                aliases = {alias: n for n in names for alias in known.get(n, ()) if alias not in names}
                looked_up = names + sorted(aliases)
                target = binary_target(source, name, names, source.search(looked_up), source.rules(looked_up), aliases)
                return len(target["mentions"]), target

            key = (reader.generation.name, "binary", _when(source, reader), tuple(names))
            return {**self.cache.get(key, build), "query": name, **_as_of(source, reader)}

    def search(self, reader: IndexReader, params: Mapping[str, list[str]]) -> tuple[dict[str, Any], str]:
        text = check_name(_one(params, "q"))
        options = _search_options(params)
        with self.then(reader, params) as source:
            names = resolve_guard(source, text)
            key = (
                reader.generation.name,
                "search",
                _when(source, reader),
                tuple(names),
                json.dumps(options, sort_keys=True),
            )

            def build() -> tuple[int, Any]:
                result = search(source, text, **options).to_dict()
                return len(result["mentions"]), result

            result = self.cache.get(key, build) if names else search(source, text, **options).to_dict()
            return {**result, "query": text, **_as_of(source, reader)}, text

    def rule(self, reader: IndexReader, key: str, offset: int, limit: int) -> dict[str, Any]:
        cleaned = key.strip()
        if not cleaned:
            raise Problem(400, "give a rule id, a rule path or source:path")
        if len(key) > MAX_TARGET:
            raise Problem(400, f"the rule id or path is {len(key)} characters long; at most {MAX_TARGET}")
        report = find_rule(reader, cleaned)
        if report is None:
            lowered = cleaned.lower()
            close = [ref for ref in reader.state.files if len(lowered) >= 4 and lowered in ref.lower()][:5]
            raise Problem(404, f"no rule file with the id or path {cleaned[:120]!r}", suggestions=close)
        binaries = sorted(report.binaries)
        target = rule_target(reader, report, binaries=binaries[offset : offset + limit])
        return {**target, "page": page_of(len(binaries), offset, limit)}

    def status(self, reader: IndexReader) -> dict[str, Any]:
        """What is indexed, at which commits, when; counts without the long lists."""
        keep = ("commit", "branch", "web_url", "license", "license_path", "committed")
        stats = self.stats(reader)
        counts = {k: v for k, v in stats.items() if k not in ("generation", "sources", "problems")}
        counts["problems"] = len(stats.get("problems", []))
        built = reader.state.built_at
        return {
            "generation": reader.generation.name,
            "built_at": built,
            "built_at_iso": iso_time(built) if built else "",
            "sources": {name: {k: info.get(k, "") for k in keep} for name, info in sorted(reader.sources.items())},
            "counts": counts,
        }

    def _whole(self, reader: IndexReader, source: Any, key: str, compute: Callable[[Any], Any]) -> Any:
        """A whole answer (coverage, gaps) of the index, kept with its generation, or as of a date
        (`source`: chronicle.AsOf), kept in the bounded cache."""
        if source is reader:
            return self.pool.memo(reader, key, lambda: compute(reader))
        return self.cache.get((reader.generation.name, key, source.when), lambda: (1, compute(source)))

    def coverage(
        self, reader: IndexReader, offset: int, limit: int, retired: bool = False, params: Mapping[str, list[str]] = {}
    ) -> dict[str, Any]:
        """`coverage` (as of ?at=DATE), one page of its entries."""
        with self.then(reader, params) as source:
            data = self._whole(reader, source, f"coverage-{retired}", lambda r: joins.coverage(r, retired))
            entries = data.get("entries", [])
            return {
                "entries": entries[offset : offset + limit],
                "summary": data.get("summary") or None,
                "rule_sets": data.get("rule_sets"),
                "page": page_of(len(entries), offset, limit),
                **_as_of(source, reader),
            }

    def gaps(
        self, reader: IndexReader, platform: str | None, offset: int, limit: int, params: Mapping[str, list[str]] = {}
    ) -> dict[str, Any]:
        """`gaps` (as of ?at=DATE), one page of its rows."""
        with self.then(reader, params) as source:
            data = self._whole(reader, source, f"gaps-{platform}", lambda r: joins.gaps(r, platform=platform).to_dict())
            rows = data["rows"]
            page = {"rows": rows[offset : offset + limit], "page": page_of(len(rows), offset, limit)}
            return {**data, **page, **_as_of(source, reader)}

    def tests(self, reader: IndexReader, name: str, offset: int, limit: int) -> dict[str, Any]:
        check_name(name, "the name")
        if not resolve_guard(reader, name):
            raise Problem(
                404, f"no executable in the index matches {name[:80]!r}", suggestions=suggestions_for(reader, name)
            )
        data = joins.tests(reader, name).to_dict()
        found = data["tests"]
        return {**data, "tests": found[offset : offset + limit], "page": page_of(len(found), offset, limit)}

    def links_table(
        self, reader: IndexReader, status: list[str], offset: int, limit: int, params: Mapping[str, list[str]] = {}
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """`links` (as of ?at=DATE): one page of those with one of these statuses (any if none),
        and all the links (the page's counts)."""
        with self.then(reader, params) as source:
            every = self._whole(reader, source, "links", xref.links)
            rows = [row for row in every if not status or row["status"] in status]
            page = {"links": rows[offset : offset + limit], "page": page_of(len(rows), offset, limit)}
            return {**page, **_as_of(source, reader)}, every


def _page_query(**params: Any) -> str:
    """`?limit=..&at=..` of a page's own links (the pager's base), the empty ones left out."""
    kept = {k: v for k, v in params.items() if v}
    return "?" + urlencode(kept) if kept else ""


def _when(source: Any, reader: IndexReader) -> int | None:
    """The date an answer is as of (a cache key's part): None for the index as it is."""
    return None if source is reader else source.when


def _as_of(source: Any, reader: IndexReader) -> dict[str, Any]:
    """`as_of` (the date and each source's commit then) of an answer read from the history."""
    return {} if source is reader else {"as_of": source.as_of()}


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name) or []
    return values[0] if values else None


def _search_options(params: Mapping[str, list[str]]) -> dict[str, Any]:
    roles: list[str] = []
    for value in params.get("role", []):
        roles += [r.strip() for r in value.split(",") if r.strip()]
    for role in roles:
        if role not in ROLES:
            raise Problem(400, f"unknown role {role[:50]!r} (choose from {', '.join(ROLES)})")
    source = _one(params, "source") or None
    if source is not None and source not in SOURCES:
        raise Problem(400, f"unknown source {source[:50]!r} (choose from {', '.join(SOURCES)})")
    platform = _one(params, "platform") or None
    if platform is not None and platform not in PLATFORMS:
        raise Problem(400, f"unknown platform {platform[:50]!r} (choose from {', '.join(PLATFORMS)})")
    context = _one(params, "context") or None
    if context is not None and context not in ("selection", "filter"):
        raise Problem(400, f"unknown context {context[:50]!r} (choose from selection, filter)")
    field_name = _one(params, "field") or None
    if field_name is not None and len(field_name) > MAX_FIELD:
        raise Problem(400, f"field is {len(field_name)} characters long; at most {MAX_FIELD}")
    inferred = (_one(params, "inferred") or "true").lower()
    if inferred not in ("true", "false", "yes", "no", "1", "0"):
        raise Problem(400, f"inferred must be true or false, not {inferred[:20]!r}")
    return {
        "source": source,
        "platform": platform,
        "roles": roles,
        "field": field_name,
        "context": context,
        "include_inferred": inferred in ("true", "yes", "1"),
    }


def _gen(reader: IndexReader) -> dict[str, str]:
    return {"X-Index-Generation": reader.generation.name}


def _json(status: int, data: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONAnswer(data, status_code=status, headers=dict(headers or {}))


def create_app(data_dir: Path, *, host: str = "127.0.0.1", cors_origins: tuple[str, ...] = ()) -> FastAPI:
    """The ASGI application serving the index in `data_dir`. `host`: the address bound (a
    loopback bind refuses other Host names); `cors_origins`: origins allowed to read the API."""
    from ..mcp_server import build_server  # the MCP SDK: imported by `serve` and `mcp` only

    service = Service(Path(data_dir))
    assistant = build_server(Path(data_dir))
    mcp_http = assistant.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=host
    )

    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        async with assistant.session_manager.run():  # the MCP transport's task group
            yield

    api = FastAPI(
        title="indexer",
        version=str(__version__),
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
        description="Which Sigma rules and LOLBAS entries name an executable. Every answer is "
        "the object `indexer ... --json` prints, its lists paged with offset and limit; "
        'errors are {"error": "..."}.',
        responses={400: {"model": models.ErrorAnswer, "description": "Bad input."}},
    )
    api.state.service = service
    errors = {
        404: {"model": models.ErrorAnswer, "description": "Nothing found (with close names)."},
        503: {"model": models.ErrorAnswer, "description": "No usable index yet."},
    }

    # -- JSON --

    @api.get(
        "/api/search",
        response_model=models.SearchAnswer,
        responses=errors,
        summary="Every rule line naming what q names (indexer search --json), one page of rule files.",
    )
    def api_search(
        request: Request,
        q: str = Query(
            ..., max_length=MAX_QUERY, description="A name (PSR.EXE), a stem (psr), a path or a wildcard (cert*.exe)."
        ),
        role: list[str] = Query(
            [],
            description="Only these roles (repeat, or comma-separated).",
            json_schema_extra={"items": {"type": "string", "enum": list(ROLES)}},
        ),
        source: models.Source | None = Query(None, description="Only one source."),  # type: ignore[valid-type]
        platform: models.PlatformName | None = Query(None, description="Only rules for this platform."),  # type: ignore[valid-type]
        field: str | None = Query(None, max_length=MAX_FIELD, description="Only this detection field."),
        context: models.Context | None = Query(None, description="Items that select, or exclude."),
        inferred: bool = Query(True, description="false: leave out bare names found without extension."),
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        at: str | None = AT_QUERY,
        params: dict[str, list[str]] = Depends(search_params),
    ) -> Any:
        with service.pool.reader() as reader:
            result, text = service.search(reader, params)
            groups, mentions, page = paged_mentions(result["mentions"], offset, limit)
            answer = {**result, "mentions": mentions, "rules": page_rules(result["rules"], groups), "page": page}
            if not result["binaries"]:
                return _json(
                    404, {"error": f"no executable in the index matches {text[:80]!r}", **answer}, _gen(reader)
                )
            return _json(200, models.SearchAnswer.model_validate(answer).model_dump(exclude_unset=True), _gen(reader))

    @api.get(
        "/api/binary/{name:path}",
        response_model=models.BinaryAnswer,
        responses=errors,
        summary="Everything about one executable (indexer show NAME --json), one page of rule files.",
    )
    def api_binary(
        request: Request,
        name: str = PathParam(..., description="Name, stem, path or wildcard."),
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        at: str | None = AT_QUERY,
        params: dict[str, list[str]] = Depends(allowed(*BINARY_PARAMS)),
    ) -> Any:
        name = path_tail(request, "/api/binary/")
        with service.pool.reader() as reader:
            target = service.binary(reader, name, params)
            groups, mentions, page = paged_mentions(target["mentions"], offset, limit)
            answer = {**target, "mentions": mentions, "rules": page_rules(target["rules"], groups), "page": page}
            return _json(200, models.BinaryAnswer.model_validate(answer).model_dump(exclude_unset=True), _gen(reader))

    @api.get(
        "/api/rule/{key:path}",
        response_model=models.RuleAnswer,
        responses=errors,
        summary="Everything about one rule file (indexer show RULE --json), one page of its executables.",
    )
    def api_rule(
        request: Request,
        key: str = PathParam(..., description="Rule id, path in its repository, or source:path."),
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        params: dict[str, list[str]] = Depends(allowed(*PAGE_PARAMS)),
    ) -> Any:
        key = path_tail(request, "/api/rule/")
        with service.pool.reader() as reader:
            answer = service.rule(reader, key, offset, limit)
            return _json(200, models.RuleAnswer.model_validate(answer).model_dump(exclude_unset=True), _gen(reader))

    @api.get(
        "/api/status",
        response_model=models.StatusAnswer,
        summary="Commits indexed per source, the generation, when it was built, counts.",
    )
    def api_status(params: dict[str, list[str]] = Depends(allowed())) -> Any:
        with service.pool.reader() as reader:
            return _json(
                200,
                models.StatusAnswer.model_validate(service.status(reader)).model_dump(exclude_unset=True),
                _gen(reader),
            )

    @api.get("/api/suggest", response_model=models.SuggestAnswer, summary="Executable names for a prefix being typed.")
    def api_suggest(
        q: str = Query(..., max_length=MAX_QUERY, description="The start of a name."),
        limit: int = Query(SUGGEST_LIMIT, ge=1, le=50, description="At most this many (1-50)."),
        params: dict[str, list[str]] = Depends(allowed("q", "limit")),
    ) -> Any:
        if not q.strip():
            raise Problem(400, MISSING["/api/suggest"])
        with service.pool.reader() as reader:
            return _json(200, {"query": q, "suggestions": suggestions_for(reader, q, limit)}, _gen(reader))

    @api.get(
        "/api/gaps",
        response_model=models.GapsAnswer,
        responses=errors,
        summary="Binaries attackers use that no rule detects running or invoked, per platform (indexer gaps --json).",
    )
    def api_gaps(
        platform: models.PlatformName | None = Query(None, description="Only this platform."),  # type: ignore[valid-type]
        offset: Offset = 0,
        limit: LongLimit = MAX_LIMIT,
        at: str | None = AT_QUERY,
        params: dict[str, list[str]] = Depends(allowed("platform", *BINARY_PARAMS)),
    ) -> Any:
        with service.pool.reader() as reader:
            answer = service.gaps(reader, platform, offset, limit, params)
            return _json(200, models.GapsAnswer.model_validate(answer).model_dump(exclude_unset=True), _gen(reader))

    @api.get(
        "/api/tests/{name:path}",
        response_model=models.TestsAnswer,
        responses=errors,
        summary="Atomic tests naming the executable and the rules that should fire (indexer tests NAME --json).",
    )
    def api_tests(
        request: Request,
        name: str = PathParam(..., description="Name, stem, path or wildcard."),
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        params: dict[str, list[str]] = Depends(allowed(*PAGE_PARAMS)),
    ) -> Any:
        name = path_tail(request, "/api/tests/")
        with service.pool.reader() as reader:
            answer = service.tests(reader, name, offset, limit)
            return _json(200, models.TestsAnswer.model_validate(answer).model_dump(exclude_unset=True), _gen(reader))

    @api.get(
        "/api/coverage",
        response_model=models.CoverageAnswer,
        summary="Per LOLBAS entry: the Sigma rules that detect it running; summary per category and technique.",
    )
    def api_coverage(
        include_deprecated: bool = Query(False, description="Count deprecated and unsupported rules."),
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        at: str | None = AT_QUERY,
        params: dict[str, list[str]] = Depends(allowed("include_deprecated", *BINARY_PARAMS)),
    ) -> Any:
        with service.pool.reader() as reader:
            answer = service.coverage(reader, offset, limit, include_deprecated, params)
            return _json(200, models.CoverageAnswer.model_validate(answer).model_dump(exclude_unset=True), _gen(reader))

    @api.get(
        "/api/links",
        response_model=models.LinksAnswer,
        summary="LOLBAS entries' links to Sigma rules, with where each leads today.",
    )
    def api_links(
        status: list[models.LinkStatus] = Query([], description="Only links with these statuses."),
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        at: str | None = AT_QUERY,
        params: dict[str, list[str]] = Depends(allowed("status", *BINARY_PARAMS, repeat=("status",))),
    ) -> Any:
        with service.pool.reader() as reader:
            answer, _ = service.links_table(reader, list(status), offset, limit, params)
            return _json(200, models.LinksAnswer.model_validate(answer).model_dump(exclude_unset=True), _gen(reader))

    @api.get("/api", include_in_schema=False)
    @api.get("/api/", include_in_schema=False)
    def api_root(params: dict[str, list[str]] = Depends(allowed())) -> Any:
        return _json(200, api.openapi())

    # -- pages --

    def page(reader: IndexReader, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        text = render(template, service.links(reader), service.footer(reader), **context)
        return HTMLResponse(text, status_code=status, headers=_gen(reader))

    @api.get("/", include_in_schema=False)
    @api.get("/index.html", include_in_schema=False)
    def home(params: dict[str, list[str]] = Depends(allowed())) -> Any:
        with service.pool.reader() as reader:
            return page(reader, "home.html", title="Search", script=True, stats=service.stats(reader))

    @api.get("/search", include_in_schema=False)
    def search_page(
        request: Request,
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        params: dict[str, list[str]] = Depends(allowed(*SEARCH_PARAMS, repeat=("role",))),
    ) -> Any:
        # A form sends empty fields for "any": they are no filter.
        params = {k: [v for v in vs if v != "" or k == "q"] for k, vs in params.items()}
        shown = {k: (_one(params, k) or "") for k in ("source", "platform", "field", "context", "at")}
        with service.pool.reader() as reader:
            result, text = service.search(reader, params)
            shown["role"] = ",".join(_search_options(params)["roles"])
            groups, _, paging = paged_mentions(result["mentions"], offset, limit, result["rules"])
            result["total_mentions"] = len(result["mentions"])
            base = Links().search(text, **shown, limit=limit if limit != DEFAULT_LIMIT else "")
            return page(
                reader,
                "search.html",
                status=200 if result["binaries"] else 404,
                title=f"Search {text}",
                script=True,
                query=text,
                params=shown,
                result=result,
                groups=groups,
                page=paging,
                base=base,
            )

    @api.get("/binary/{name:path}", include_in_schema=False)
    def binary_page(
        request: Request,
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        params: dict[str, list[str]] = Depends(allowed(*BINARY_PARAMS)),
    ) -> Any:
        name = path_tail(request, "/binary/")
        with service.pool.reader() as reader:
            target = service.binary(reader, name, params)
            groups, _, paging = paged_mentions(target["mentions"], offset, limit, target["rules"])
            return page(
                reader,
                "binary.html",
                **binary_context(reader, target, groups, paging),
                base=Links().binary(name)
                + _page_query(limit=limit if limit != DEFAULT_LIMIT else "", at=_one(params, "at")),
            )

    @api.get("/rule/{key:path}", include_in_schema=False)
    def rule_page(
        request: Request,
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
        params: dict[str, list[str]] = Depends(allowed(*PAGE_PARAMS)),
    ) -> Any:
        key = path_tail(request, "/rule/")
        with service.pool.reader() as reader:
            target = service.rule(reader, key, offset, limit)
            base = Links().rule(target["source"], target["path"])
            return page(
                reader,
                "rule.html",
                title=rule_title(target),
                target=target,
                page=target["page"],
                base=f"{base}?limit={limit}" if limit != DEFAULT_LIMIT else base,
            )

    @api.get("/coverage", include_in_schema=False)
    def coverage_page(
        offset: Offset = 0,
        limit: LongLimit = MAX_LIMIT,
        params: dict[str, list[str]] = Depends(allowed(*BINARY_PARAMS)),
    ) -> Any:
        with service.pool.reader() as reader:
            data = service.coverage(reader, offset, limit, params=params)
            entries = service.coverage(reader, 0, 1_000_000, params=params)["entries"]
            context = coverage_context(entries, data, service.links(reader))
            return page(reader, "coverage.html", **context, base="/coverage" + _page_query(at=_one(params, "at")))

    @api.get("/gaps", include_in_schema=False)
    def gaps_page(
        offset: Offset = 0,
        limit: LongLimit = MAX_LIMIT,
        params: dict[str, list[str]] = Depends(allowed("platform", *BINARY_PARAMS)),
    ) -> Any:
        platform = _one(params, "platform") or None
        if platform is not None and platform not in PLATFORMS:
            raise Problem(400, f"unknown platform {platform[:50]!r} (choose from {', '.join(PLATFORMS)})")
        with service.pool.reader() as reader:
            data = service.gaps(reader, platform, offset, limit, params)
            base = Links().page("gaps", platform=platform or "", at=_one(params, "at") or "")
            return page(reader, "gaps.html", **gaps_context(data, platform), base=base)

    @api.get("/links", include_in_schema=False)
    def links_page(
        offset: Offset = 0,
        limit: LongLimit = MAX_LIMIT,
        params: dict[str, list[str]] = Depends(allowed(*BINARY_PARAMS)),
    ) -> Any:
        with service.pool.reader() as reader:
            data, every = service.links_table(reader, [], offset, limit, params)
            base = "/links" + _page_query(at=_one(params, "at"))
            return page(reader, "links.html", **links_context(every, data), base=base)

    @api.get("/timeline/{name:path}", include_in_schema=False)
    def timeline_page(request: Request, params: dict[str, list[str]] = Depends(allowed())) -> Any:
        from ..chronicle import HistoryError
        from ..errors import NotFound
        from ..timeline import plot, timeline

        name = check_name(path_tail(request, "/timeline/"), "name")
        with service.pool.reader() as reader:
            try:
                result = timeline(Path(data_dir), name)
            except (HistoryError, NotFound) as exc:
                raise Problem(404, exc.reason) from None
            return page(
                reader, "timeline.html", title=f"Timeline of {name}", timeline=result.to_dict(), chart=plot(result)
            )

    @api.get("/static/{name}", include_in_schema=False)
    def static(request: Request, params: dict[str, list[str]] = Depends(allowed())) -> Any:
        name = path_tail(request, "/static/")
        if name not in service.static:
            raise Problem(404, "no such file")
        return Response(service.static[name], media_type=STATIC_TYPES[name])

    for empty, message in (
        ("/api/binary/", MISSING[""]),
        ("/binary/", MISSING[""]),
        ("/api/rule/", "give a rule id, a rule path or source:path"),
        ("/rule/", "give a rule id, a rule path or source:path"),
    ):
        api.add_api_route(empty, _refuse(message), include_in_schema=False)

    # -- errors: JSON under /api, a page elsewhere; never a traceback --

    def problem(request: Request, status: int, message: str, **extra: Any) -> Response:
        headers = {"Allow": "GET, HEAD"} if status == 405 else {}
        if _is_api(request.scope["path"]):
            return _json(status, {"error": message, **extra}, headers)
        links = Links()
        text = render(
            "error.html",
            links,
            footer_of({}),
            title=str(status),
            status=status,
            message=message,
            suggestions=extra.get("suggestions", []),
            script=True,
        )
        return HTMLResponse(text, status_code=status, headers=headers)

    @api.exception_handler(Problem)
    def on_problem(request: Request, exc: Problem) -> Response:
        return problem(request, exc.status, exc.message, **exc.extra)

    @api.exception_handler(IndexMissing)
    def on_missing(request: Request, exc: IndexMissing) -> Response:
        log.warning("%s", exc)
        return problem(
            request, 503, "no usable index yet: run 'indexer refresh' (or 'indexer refresh --full' after an upgrade)"
        )

    @api.exception_handler(RequestValidationError)
    def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        error = exc.errors()[0]
        name = next((str(part) for part in reversed(error.get("loc", ())) if isinstance(part, str)), "")
        if error.get("type") == "missing":
            message = MISSING.get(request.scope["path"], MISSING[""])
        else:
            value = error.get("input")
            shown = f" (got {str(value)[:20]!r})" if isinstance(value, str) and len(value) <= 20 else ""
            message = f"{name}: {error.get('msg', 'invalid')}{shown}"
        return problem(request, 400, message)

    @api.exception_handler(StarletteHTTPException)
    def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return problem(
                request,
                404,
                "no such API endpoint (see /api/openapi.json)" if _is_api(request.scope["path"]) else "no such page",
            )
        return problem(request, exc.status_code, str(exc.detail))

    generated = api.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's description, less the 422 it adds to every route: bad input answers 400."""
        if api.openapi_schema is None:
            schema = generated()
            for item in schema["paths"].values():
                for operation in item.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return api.openapi_schema or {}

    api.openapi = openapi  # type: ignore[method-assign]
    app: Any = GZipMiddleware(api, minimum_size=1000)
    app = Guard(app, service, loopback=_is_loopback(host), mcp=mcp_http)
    if cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "HEAD"],
            expose_headers=["ETag", "X-Index-Generation"],
        )
    api.state.asgi = app
    return api


def _refuse(message: str) -> Callable[[], Any]:
    def refuse() -> Any:
        raise Problem(400, message)

    return refuse


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def rule_title(target: Mapping[str, Any]) -> str:
    return str(target.get("title") or str(target.get("path", "")).rsplit("/", 1)[-1])


def binary_context(
    reader: IndexReader, target: Mapping[str, Any], groups: list[Any], paging: Mapping[str, int]
) -> dict[str, Any]:
    """What binary.html needs: the page's groups split by source; every Sigma rule file by
    verdict (leading the page: detecting verdicts first, by level, retired last and marked);
    the LOLBAS entries' categories and techniques; the atlas's files (tests, drivers, side-loading,
    GTFOBins, LOOBins) after them."""
    files = reader.state.files
    entries = {}
    for g in groups:
        report = files.get(f"{g.source}:{g.path}") if g.source == "lolbas" else None
        if report is not None and report.entry:
            entries[g.path] = report.entry
    rule_sets = []  # per detection source: its rule files by verdict (strongest first, retired last)
    for rule_set in target["sections"]["detection"]:
        by_verdict: dict[str, list[Mapping[str, Any]]] = {}
        seen: set[str] = set()
        for rule in rule_set["rules"]:
            if rule["path"] not in seen:
                seen.add(rule["path"])
                by_verdict.setdefault(rule["verdict"], []).append(rule)
        rule_sets.append((rule_set["source"], [(v, by_verdict[v]) for v in VERDICTS if v in by_verdict]))
    names = list(target.get("binaries", []))
    return {
        "title": ", ".join(names) if names else str(target.get("query", "")),
        "target": target,
        "sigma": [g for g in groups if g.source == "sigma"],
        "lolbas": [g for g in groups if g.source == "lolbas"],
        "atlas": [g for g in groups if g.source not in ("sigma", "lolbas")],
        "rule_sets": rule_sets,
        "kinds": [(kind, target["sections"][kind]) for kind in KIND_TITLES if target["sections"][kind]],
        "kind_titles": KIND_TITLES,
        "detecting_verdicts": DETECTING,
        "verdict_help": VERDICT_HELP,
        "entries": entries,
        "page": paging,
    }


KIND_TITLES = {
    "abuse": "Abuse: LOLBAS, GTFOBins, LOOBins",
    "tests": "Tests: atomic-red-team",
    "drivers": "Drivers: LOLDrivers",
    "sideloading": "Side-loading: HijackLibs",
}

TIER_NAMES = {
    "running": "detected running",
    "other": "detected otherwise (parent, target, module, command line)",
    "mentioned": "named, not detected",
    "none": "named by no rule",
}


def coverage_context(entries: list[Mapping[str, Any]], data: Mapping[str, Any], links: Links) -> dict[str, Any]:
    """What coverage.html needs: `entries` (all) for the charts, `data` (one page) for the table."""

    def entry_href(entry: Mapping[str, Any]) -> str | None:
        names = entry.get("names") or []
        return links.binary(names[0]) if names else links.rule("lolbas", str(entry.get("path", "")))

    summary = data.get("summary") or {}
    by_tier = [(t, [r for r in data["entries"] if r.get("tier") == t]) for t in TIERS]
    return {
        "title": "Coverage",
        "coverage": data,
        "page": data["page"],
        "tiers": TIERS,
        "tier_names": TIER_NAMES,
        "bar": charts.stacked(summary.get("tiers", {}), TIERS),
        "by_category": charts.waffle(entries, "categories", TIERS, entry_href),
        "by_technique": charts.waffle(entries, "mitre", TIERS, entry_href, lambda t: technique_url(t) or None),
        "by_tier": [(t, rows) for t, rows in by_tier if rows],
    }


def gaps_context(data: Mapping[str, Any], platform: str | None) -> dict[str, Any]:
    """What gaps.html needs: one page of the gaps (joins.GapsReport as a dict, with `page`)."""
    return {"title": "Gaps", "gaps": data, "page": data["page"], "platform": platform or ""}


def links_context(every: list[Mapping[str, Any]], data: Mapping[str, Any]) -> dict[str, Any]:
    """What links.html needs: one page of the links (`data`, as of `data["as_of"]` if there),
    the count of every link (`every`) by status."""
    counts: dict[str, int] = {}
    for row in every:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "title": "Sigma ↔ LOLBAS links",
        "rows": data["links"],
        "page": data["page"],
        "counts": counts,
        "as_of": data.get("as_of"),
    }


# --- around the routes ---------------------------------------------------------------------------


class Guard:
    """GET and HEAD only; the Host check on a loopback bind; security headers; the ETag of the
    index generation (304 when If-None-Match has it); `//x` and absolute-form targets as `/x`.
    `/mcp` goes to the MCP transport (`mcp`), which answers its own methods, after the Host check."""

    def __init__(self, app: Any, service: Service, loopback: bool, mcp: Any = None) -> None:
        self.app = app
        self.service = service
        self.loopback = loopback
        self.mcp = mcp

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        _normalise(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        api = _is_api(scope["path"])
        if not self.host_allowed(headers.get("host", "")):
            await _send_json(
                send,
                421,
                {
                    "error": "this server answers only to requests for its loopback "
                    "address (the Host header names another host)"
                },
            )
            return
        if self.mcp is not None and scope["path"] in (MCP_PATH, MCP_PATH + "/"):
            scope["path"] = MCP_PATH

            async def secured(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    out = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SECURITY_KEYS]
                    message = {**message, "headers": out + _headers(SECURITY_HEADERS)}
                await send(message)

            await self.mcp(scope, receive, secured)
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            body = {"error": f"method {method[:20]} not allowed: this server only reads (GET, HEAD)"}
            await _send_json(send, 405, body, {"allow": "GET, HEAD"}, html=not api)
            return
        head = method == "HEAD"
        scope["method"] = "GET"
        etag = self.etag(scope["path"]) if "if-none-match" in headers else ""
        if etag and etag in [t.strip() for t in headers.get("if-none-match", "").split(",")]:
            await send(
                {"type": "http.response.start", "status": 304, "headers": _headers({**SECURITY_HEADERS, "etag": etag})}
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def guarded(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SECURITY_KEYS]
                out += _headers(SECURITY_HEADERS)
                generation = next((v for k, v in out if k.lower() == b"x-index-generation"), None)
                if message["status"] == 200 and (generation or scope["path"].startswith("/static/")):
                    tag = _etag(generation.decode("latin-1") if generation else "static")
                    out.append((b"etag", tag.encode("latin-1")))
                message = {**message, "headers": out}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, guarded)

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

    def etag(self, path: str) -> str:
        """The ETag an answer for `path` will carry now ("" for none)."""
        if path.startswith("/static/"):
            return _etag("static")
        generation = current_generation(self.service.data_dir)
        return _etag(generation.name) if generation is not None else ""


_SECURITY_KEYS = {k.encode("latin-1") for k in SECURITY_HEADERS}


def _etag(generation: str) -> str:
    return f'W/"{generation}-{__version__}"'


def _headers(values: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in values.items()]


def _normalise(scope: dict[str, Any]) -> None:
    """`http://host/x` (absolute form) and `//x` as `/x`, as the standard library's server did."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    match = re.match(rb"^https?://[^/?#]*", raw, re.IGNORECASE)
    if match:
        raw = raw[match.end() :] or b"/"
    if raw.startswith(b"//"):
        raw = b"/" + raw.lstrip(b"/")
    if raw != scope.get("raw_path"):
        scope["raw_path"] = raw
        scope["path"] = unquote_to_bytes(raw).decode("utf-8", "replace")


async def _send_json(
    send: Any, status: int, data: Any, extra: Mapping[str, str] | None = None, html: bool = False
) -> None:
    if html:
        text = render(
            "error.html",
            Links(),
            footer_of({}),
            title=str(status),
            status=status,
            message=data["error"],
            suggestions=[],
            script=True,
        )
        body, kind = text.encode("utf-8"), "text/html; charset=utf-8"
    else:
        body, kind = json.dumps(data).encode("utf-8"), "application/json; charset=utf-8"
    headers = {**SECURITY_HEADERS, "content-type": kind, "content-length": str(len(body)), **(extra or {})}
    await send({"type": "http.response.start", "status": status, "headers": _headers(headers)})
    await send({"type": "http.response.body", "body": body})


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- running it -----------------------------------------------------------------------------------

ENV_DATA_DIR, ENV_HOST, ENV_CORS = "INDEXER_SERVE_DATA_DIR", "INDEXER_SERVE_HOST", "INDEXER_SERVE_CORS"


def asgi(data_dir: Path, host: str = "127.0.0.1", cors_origins: tuple[str, ...] = ()) -> Any:
    """The whole ASGI application (routes inside the middleware)."""
    return create_app(data_dir, host=host, cors_origins=cors_origins).state.asgi


def app_from_env() -> Any:
    """The application of one uvicorn worker process (`--workers N`), configured by `serve`."""
    origins = tuple(o for o in os.environ.get(ENV_CORS, "").split("\n") if o)
    return asgi(Path(os.environ[ENV_DATA_DIR]), os.environ.get(ENV_HOST, "127.0.0.1"), origins)


def serve(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    cors_origins: tuple[str, ...] = (),
    as_json: bool = False,
) -> None:
    """Serve the index in `data_dir` until interrupted (Ctrl-C). Binds loopback unless told
    otherwise; with `workers` > 1, that many uvicorn processes share the socket, each reading
    the published index itself. A refresh may run meanwhile. Where it listens is one line on
    stderr, or with `as_json` one JSON object on stdout (the port chosen for port 0)."""
    import uvicorn

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)  # connections wait from now on, before uvicorn starts accepting
    bound = sock.getsockname()[1]
    if not _is_loopback(host):
        log.warning("listening on %s, not loopback: anyone who can reach it can read the index", host)
    shown = f"[{host}]" if ":" in host else host
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "url": f"http://{shown}:{bound}/",
                    "host": host,
                    "port": bound,
                    "workers": workers,
                    "data_dir": str(Path(data_dir).resolve()),
                }
            )
            + "\n"
        )
        sys.stdout.flush()
    else:
        sys.stderr.write(
            f"indexer: serving {data_dir} at http://{shown}:{bound}/ "
            f"({workers} worker{'s' if workers > 1 else ''}; Ctrl-C to stop)\n"
        )
        sys.stderr.flush()
    os.environ.update({ENV_DATA_DIR: str(Path(data_dir).resolve()), ENV_HOST: host, ENV_CORS: "\n".join(cors_origins)})
    config = uvicorn.Config(
        "indexer.web.app:app_from_env",
        factory=True,
        workers=workers,
        http="h11",
        log_level="warning",
        server_header=False,
        date_header=True,
        timeout_keep_alive=5,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C again once it has shut down: a clean stop
        pass
    finally:
        sock.close()
