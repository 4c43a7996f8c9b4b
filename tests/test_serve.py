"""`indexer serve`: the JSON API and the pages (FastAPI's TestClient, and a real uvicorn over a
socket), bad input (never a 500), hostile rules rendered as text, a refresh while serving, the
static site, and the real `indexer serve` process over HTTP/1.1."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.index import IndexReader
from indexer.model import ROLES
from indexer.query import index_stats, search, show_target
from indexer.refresh import RefreshOptions, refresh
from indexer.repository import SourceSpec
from indexer.web.app import create_app
from indexer.web.models import BinaryAnswer, MentionModel, RuleAnswer, SearchAnswer
from indexer.web.site import write_site
from indexer.web.views import rule_filename
from live import running
from repos import git

PSR_RULE = "rules/windows/process_creation/proc_creation_win_psr_capture_screenshots.yml"
PSR_ID = "2158f96f-43c2-43cb-952a-ab4580f32382"
PSR_TITLE = "Screen Capture Activity Via Psr.EXE"
_BIN = Path(sys.executable).parent / "indexer"
INDEXER = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "indexer"]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- helpers -----------------------------------------------------------------------------------


def client(data_dir: Path) -> TestClient:
    """The application in-process (its Host: 127.0.0.1, as a browser on a loopback bind sends)."""
    return TestClient(create_app(data_dir).state.asgi, base_url="http://127.0.0.1")


def asgi_get(data_dir_app: Any, target: bytes) -> tuple[int, bytes]:
    """A GET of any target bytes straight into the application, as uvicorn hands it over
    (no client library to tidy the URL first)."""
    import asyncio
    from urllib.parse import unquote as unquote_str

    raw_path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote_str(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(data_dir_app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def paged(answer: dict[str, Any]) -> dict[str, Any]:
    """An API answer without its page object: what show_target / search return."""
    return {k: v for k, v in answer.items() if k != "page"}


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """Status, headers (names in any case), body."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _NO_PROXY.open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def get_json(url: str) -> tuple[int, Any]:
    status, headers, body = fetch(url)
    assert headers["Content-Type"].startswith("application/json"), (url, headers)
    return status, json.loads(body)


def raw_request(base: str, request_line: bytes, host: bytes = b"127.0.0.1") -> tuple[int, bytes]:
    """Bytes a urllib client would refuse to send (non-UTF-8 paths, control characters)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return 0, b""  # closed without an answer
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "href" and value is not None:
                self.hrefs.append(value)
            if name == "src" and value is not None:
                self.srcs.append(value)


def hrefs(page: str) -> list[str]:
    parser = _Hrefs()
    parser.feed(page)
    return parser.hrefs


def assert_inert(page: str) -> None:
    """No markup from a rule became markup: the only script is ours, no img, no javascript: link."""
    scripts = re.findall(r"<script\b[^>]*>", page, re.IGNORECASE)
    assert all(re.fullmatch(r'<script src="(/|(\.\./)*)static/app\.js" defer>', s) for s in scripts), scripts
    assert not re.search(r"<script\b[^>]*>[^<]", page), "inline script"
    assert not re.search(r"<img\b|<b>|<svg\b(?! class=\"chart )|<iframe\b", page, re.IGNORECASE)  # our charts only
    assert not re.search(r"""\s(on\w+|style)\s*=\s*["']""", page, re.IGNORECASE), "event handler or style attribute"
    assert not any(h.strip().lower().startswith(("javascript:", "data:", "vbscript:")) for h in hrefs(page))


@pytest.fixture(scope="module")
def live(tip_data_dir: Path) -> Iterator[str]:
    with running(tip_data_dir) as (base, _api):
        yield base


@pytest.fixture(scope="module")
def app(tip_data_dir: Path) -> TestClient:
    return client(tip_data_dir)


# --- the JSON API is the CLI's --json ----------------------------------------------------------


def test_api_search_is_the_search_object(live: str, tip_reader: IndexReader) -> None:
    status, headers, body = fetch(f"{live}/api/search?q=psr.exe")
    assert status == 200
    assert paged(json.loads(body)) == search(tip_reader, "psr.exe").to_dict()
    files = {(r.source, r.path) for r in search(tip_reader, "psr.exe").rules}
    assert json.loads(body)["page"] == {"offset": 0, "limit": 100, "total": len(files)} and len(files) > 3
    assert headers["X-Index-Generation"] == tip_reader.generation.name
    status, data = get_json(f"{live}/api/search?q=" + quote("C:\\Windows\\System32\\PSR.EXE"))
    assert status == 200 and data["binaries"] == ["psr.exe"]


def test_api_search_filters(live: str, tip_reader: IndexReader) -> None:
    status, data = get_json(f"{live}/api/search?q=psr.exe&role=process")
    assert status == 200 and paged(data) == search(tip_reader, "psr.exe", roles=["process"]).to_dict()
    assert {m["role"] for m in data["mentions"]} == {"process"}
    both = search(tip_reader, "certutil.exe", roles=["process", "original_filename"]).to_dict()
    assert paged(get_json(f"{live}/api/search?q=certutil.exe&role=process,original_filename")[1]) == both
    assert paged(get_json(f"{live}/api/search?q=certutil.exe&role=process&role=original_filename")[1]) == both
    status, data = get_json(f"{live}/api/search?q=psr.exe&source=lolbas")
    assert status == 200 and data["mentions"] and {m["source"] for m in data["mentions"]} == {"lolbas"}
    status, data = get_json(f"{live}/api/search?q=cmd.exe&context=filter&field=ParentImage")
    assert paged(data) == search(tip_reader, "cmd.exe", context="filter", field="ParentImage").to_dict()
    assert {(m["context"], m["field"]) for m in data["mentions"]} <= {("filter", "ParentImage")}
    status, data = get_json(f"{live}/api/search?q=rundll32.exe&inferred=false")
    assert data["mentions"] and not any(m["inferred"] for m in data["mentions"])
    # a resolved name whose mentions the filters all drop: found, nothing to show
    status, data = get_json(f"{live}/api/search?q=psr.exe&role=registry")
    assert status == 200 and data["binaries"] == ["psr.exe"] and data["mentions"] == []


def test_api_binary_and_rule_are_show_target(live: str, tip_reader: IndexReader) -> None:
    status, data = get_json(f"{live}/api/binary/psr.exe")
    assert status == 200 and paged(data) == show_target(tip_reader, "psr.exe")
    assert data["detecting_rules"] == [PSR_RULE] and len(data["lolbas_entries"]) == 2
    assert get_json(f"{live}/api/binary/PSR.EXE")[1]["binaries"] == ["psr.exe"]
    windows_path = quote("C:\\Windows\\System32\\psr.exe", safe="")
    assert get_json(f"{live}/api/binary/{windows_path}")[1]["binaries"] == ["psr.exe"]
    for key in (PSR_ID, PSR_RULE, f"sigma:{PSR_RULE}"):
        status, data = get_json(f"{live}/api/rule/{quote(key)}")
        assert status == 200 and paged(data) == show_target(tip_reader, key), key
        assert data["kind"] == "rule" and data["title"] == PSR_TITLE
    status, data = get_json(f"{live}/api/rule/{quote('lolbas:yml/OSBinaries/Psr.yml')}")
    assert status == 200 and data["binaries"] == ["psr.exe"]


def test_api_status(live: str, tip_reader: IndexReader) -> None:
    status, data = get_json(f"{live}/api/status")
    assert status == 200
    assert data["generation"] == tip_reader.generation.name
    assert data["built_at"] == tip_reader.state.built_at and data["built_at_iso"].endswith("Z")
    for name in ("sigma", "lolbas"):
        assert data["sources"][name]["commit"] == tip_reader.sources[name]["commit"]
        assert "url" not in data["sources"][name]  # where the clone came from stays on the server
    stats = index_stats(tip_reader)
    assert data["counts"]["mentions"] == stats["mentions"] and data["counts"]["binaries"] == stats["binaries"]
    assert data["counts"]["problems"] == len(stats["problems"])
    assert not any(isinstance(v, list) for v in data["counts"].values())


def test_api_suggest(live: str) -> None:
    assert get_json(f"{live}/api/suggest?q=psr")[1]["suggestions"][0] == "psr.exe"
    assert get_json(f"{live}/api/suggest?q=PSR")[1]["suggestions"][0] == "psr.exe"
    status, data = get_json(f"{live}/api/suggest?q=" + quote("C:\\Windows\\System32\\certu"))
    assert status == 200 and "certutil.exe" in data["suggestions"]
    assert len(get_json(f"{live}/api/suggest?q=c&limit=3")[1]["suggestions"]) == 3
    assert get_json(f"{live}/api/suggest?q=certutl")[1]["suggestions"][:1] == ["certutil.exe"]  # close names
    assert get_json(f"{live}/api/suggest?q=zqzqzqzq")[1] == {"query": "zqzqzqzq", "suggestions": []}


def test_xref_endpoints(live: str, tip_reader: IndexReader) -> None:
    from indexer import xref

    status, data = get_json(f"{live}/api/coverage")
    assert status == 200 and data["summary"] == xref.coverage(tip_reader)["summary"]
    assert data["entries"] == xref.coverage(tip_reader)["entries"][:100]
    status, data = get_json(f"{live}/api/links?status=moved&offset=10&limit=5")
    assert status == 200 and data["links"] == xref.links(tip_reader, ["moved"])[10:15]
    assert data["page"] == {"offset": 10, "limit": 5, "total": len(xref.links(tip_reader, ["moved"]))}
    for what in ("coverage", "links"):
        page_status, _, page = fetch(f"{live}/{what}")
        assert page_status == 200
        assert_inert(page.decode())


def test_coverage_page_draws_the_tiers(app: TestClient, tip_reader: IndexReader) -> None:
    """Charts per LOLBAS category and per ATT&CK technique (SVG from the server), every entry a
    linked square coloured by its tier; the bar of all entries gives the summary's figures."""
    from indexer import xref

    coverage = xref.coverage(tip_reader)
    page = app.get("/coverage").text
    assert_inert(page)
    charts = re.findall(r'<svg class="chart (\w+)".*?</svg>', page, re.S)
    assert charts == ["tiers", "waffle", "waffle"]
    category, technique = re.findall(r'<svg class="chart waffle".*?</svg>', page, re.S)
    cells = re.findall(r'<a href="([^"]+)"><rect class="cell tier-(\w+)"[^>]*><title>([^<]*)</title>', category)
    per_category = sum(len(row["categories"] or ["(none)"]) for row in coverage["entries"])
    assert len(cells) == per_category
    for row in coverage["entries"]:  # every entry drawn, with its tier, linked to its page
        square = (f"/binary/{quote(row['names'][0], safe='')}", row["tier"], f"{row['entry']}: {row['tier']}")
        assert square in cells, row["entry"]
    assert len(re.findall(r'<rect class="cell ', technique)) == sum(
        len(r["mitre"] or ["(none)"]) for r in coverage["entries"]
    )
    assert 'href="https://attack.mitre.org/techniques/T1218/011/"' in technique
    bar = re.search(r'<svg class="chart tiers".*?</svg>', page, re.S).group(0)
    for tier, n in coverage["summary"]["tiers"].items():
        if n:
            assert re.search(rf'class="tier-{tier}"[^>]*><title>[^<]*: {n}</title>', bar), tier
    for href in sorted(set(re.findall(r'href="(/binary/[^"]+)"', category)))[:20]:
        assert app.get(href).status_code == 200, href
    for anchor in re.findall(r'href="#([^"]+)"', page):
        assert f'id="{anchor}"' in page, anchor


def test_openapi_describes_every_endpoint(live: str) -> None:
    status, doc = get_json(f"{live}/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.") and doc == create_app(Path(".")).openapi()
    assert set(doc["paths"]) == {
        "/api/search",
        "/api/binary/{name}",
        "/api/rule/{key}",
        "/api/status",
        "/api/suggest",
        "/api/coverage",
        "/api/links",
        "/api/gaps",
        "/api/tests/{name}",
    }
    examples = {"{name}": "psr.exe", "{key}": quote(PSR_RULE)}
    for path, item in doc["paths"].items():
        url = path
        for placeholder, value in examples.items():
            url = url.replace(placeholder, value)
        required = [p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query" and p["required"]]
        if required:
            url += "?" + "&".join(f"{name}=psr" for name in required)
        status, _, _ = fetch(live + url)
        assert str(status) in item["get"]["responses"], (url, status)
    role = next(p for p in doc["paths"]["/api/search"]["get"]["parameters"] if p["name"] == "role")
    assert role["schema"]["items"]["enum"] == list(ROLES)
    for path, item in doc["paths"].items():  # every list is paged
        if path not in ("/api/status", "/api/suggest"):
            assert {"offset", "limit"} <= {p["name"] for p in item["get"]["parameters"]}, path
    mention = doc["components"]["schemas"]["Mention"]
    assert mention["additionalProperties"] is False and set(mention["required"]) == set(mention["properties"])
    assert mention["properties"]["role"]["enum"] == list(ROLES)
    assert mention["properties"]["tags"] == {"items": {"type": "string"}, "type": "array", "title": "Tags"}


def test_response_models_are_strict_and_hold_the_real_answers(app: TestClient) -> None:
    """The schema is no decoration: real answers validate, a wrong shape does not."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        MentionModel.model_validate({"zzz": 1})
    good = app.get("/api/binary/psr.exe").json()
    with pytest.raises(ValidationError):
        MentionModel.model_validate({**good["mentions"][0], "role": "bogus"})
    with pytest.raises(ValidationError):
        MentionModel.model_validate({**good["mentions"][0], "tags": [1]})
    with pytest.raises(ValidationError):
        MentionModel.model_validate({k: v for k, v in good["mentions"][0].items() if k != "line"})
    for model, target in (
        (BinaryAnswer, "/api/binary/certutil.exe"),
        (BinaryAnswer, "/api/binary/cmd.exe"),
        (SearchAnswer, "/api/search?q=rundll32"),
        (RuleAnswer, f"/api/rule/{PSR_ID}"),
        (RuleAnswer, "/api/rule/lolbas:yml/OSBinaries/Certutil.yml"),
    ):
        model.model_validate(app.get(target).json())


# --- bad input: 4xx with a reason, never a 500 ---------------------------------------------------

BAD_API = [
    ("/api/search", 400, "give an executable"),
    ("/api/search?q=", 400, "give an executable"),
    ("/api/search?q=%20%20", 400, "give an executable"),
    ("/api/search?q=" + "a" * 10_000, 400, "at most 256"),
    ("/api/search?q=psr.exe&role=nope", 400, "unknown role 'nope'"),
    ("/api/search?q=psr.exe&role=process,nope", 400, "unknown role"),
    ("/api/search?q=psr.exe&source=github", 400, "unknown source"),
    ("/api/search?q=psr.exe&context=maybe", 400, "unknown context"),
    ("/api/search?q=psr.exe&inferred=perhaps", 400, "inferred"),
    ("/api/search?q=psr.exe&field=" + "F" * 500, 400, "field"),
    ("/api/search?q=psr.exe&bogus=1", 400, "unknown parameter 'bogus'"),
    ("/api/search?q=psr.exe&q=cmd.exe", 400, "once"),
    ("/api/search?q=%FF", 400, "UTF-8"),
    ("/api/search?q=%C3%28", 400, "UTF-8"),
    ("/api/search?%FF=1", 400, "UTF-8"),
    ("/api/search?q=*", 400, "narrow it"),
    ("/api/search?q=%27%27", 400, "names no file"),
    ("/api/search?q=%5C", 400, "names no file"),
    ("/api/search?" + "&".join(f"a{i}=1" for i in range(50)), 400, "too many"),
    ("/api/search?q=certutl.exe", 404, "no executable"),
    ("/api/binary/", 400, "give an executable"),
    ("/api/binary/..%2F..%2Fetc%2Fshadow", 404, "no executable"),
    ("/api/binary/../../etc/shadow", 404, "no executable"),
    ("/api/binary/%2e%2e", 404, "no executable"),
    ("/api/binary/%FF", 400, "UTF-8"),
    ("/api/binary/%00", 404, "no executable"),
    ("/api/binary/*", 400, "narrow it"),
    ("/api/binary/" + "a" * 10_000, 400, "at most 256"),
    ("/api/binary/psr.exe?x=1", 400, "unknown parameter"),
    ("/api/rule/nope", 404, "no rule file"),
    ("/api/rule/psr.exe", 404, "no rule file"),
    ("/api/rule/..%2F..%2Fetc%2Fshadow", 404, "no rule file"),
    ("/api/rule/../../../etc/shadow", 404, "no rule file"),
    ("/api/rule/", 400, "give a rule id"),
    ("/api/rule/%FF", 400, "UTF-8"),
    ("/api/rule/" + "r" * 5000, 400, "at most"),
    ("/api/suggest", 400, "give the start"),
    ("/api/suggest?q=", 400, "give the start"),
    ("/api/suggest?q=psr&limit=0", 400, "limit"),
    ("/api/suggest?q=psr&limit=x", 400, "limit"),
    ("/api/suggest?q=%FF", 400, "UTF-8"),
    ("/api/status?x=1", 400, "unknown parameter"),
    ("/api/nope", 404, "no such API endpoint"),
    ("/api/binary/psr.exe?offset=-1", 400, "offset"),
    ("/api/binary/psr.exe?limit=0", 400, "limit"),
    ("/api/binary/psr.exe?limit=100000", 400, "limit"),
    ("/api/rule/" + PSR_ID + "?limit=x", 400, "limit"),
    ("/api/coverage?offset=%C2%B2", 400, "offset"),
    ("/api/links?status=nope", 400, "status"),
    ("/api/", 200, ""),
]


@pytest.mark.parametrize("target,expected,message", BAD_API, ids=[t[:60] for t, _, _ in BAD_API])
def test_bad_api_input_is_a_4xx_json_error(live: str, target: str, expected: int, message: str) -> None:
    status, headers, body = fetch(live + target)
    assert status == expected, body[:300]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    data = json.loads(body)
    if expected >= 400:
        assert message in data["error"], data
        assert b"Traceback" not in body


def test_misses_come_with_suggestions(live: str) -> None:
    status, data = get_json(f"{live}/api/search?q=certutl.exe")
    assert status == 404 and "certutil.exe" in data["suggestions"] and data["mentions"] == []
    status, data = get_json(f"{live}/api/binary/certutl.exe")
    assert status == 404 and "certutil.exe" in data["suggestions"]
    status, data = get_json(f"{live}/api/rule/proc_creation_win_psr_capture")
    assert status == 404 and data["suggestions"] == [f"sigma:{PSR_RULE}"]


def test_methods_raw_bytes_and_hosts(live: str) -> None:
    status, headers, body = fetch(f"{live}/api/search?q=psr.exe", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and "error" in json.loads(body)
    status, headers, body = fetch(f"{live}/api/status", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    for line, expected in (
        (b"GET /api/binary/\xff\xfe HTTP/1.0", 400),
        (b"GET /api/search?q=\xff HTTP/1.0", 400),
        (b"GET /binary/\xc3\x28 HTTP/1.0", 400),
        (b"GET /api/binary/a\x1bb.exe HTTP/1.0", 400),  # h11: no control bytes in a target
        (b"GET /api/binary/ps%72.exe HTTP/1.0", 200),
        (b"GET //api/status HTTP/1.0", 200),
        (b"GET http://127.0.0.1/api/status HTTP/1.0", 200),
    ):
        status, body = raw_request(live, line)
        assert status == expected, (line, body[:200])
        assert b"Traceback" not in body
    for line in (b"GET / HTTP/1.0 x", b"GARBAGE"):  # refused by the HTTP layer (h11)
        status, body = raw_request(live, line)
        assert status == 400 and b"Traceback" not in body, (line, status, body[:100])
    status, body = raw_request(live, b"GET /" + b"a" * 70_000 + b" HTTP/1.0")  # answered or closed
    assert status < 500 and b"Traceback" not in body
    status, body = raw_request(live, b"GET /api/status HTTP/9.9")  # h11 reads any 1-digit version
    assert status in (200, 400, 505) and b"Traceback" not in body
    status, body = raw_request(live, b"GET /api/status HTTP/1.0", host=b"evil.example:80")
    assert status == 421 and b"loopback" in body
    assert raw_request(live, b"GET /api/status HTTP/1.0", host=b"localhost:1234")[0] == 200
    assert raw_request(live, b"GET /api/status HTTP/1.0", host=b"[::1]:8080")[0] == 200


BAD_PAGES = [
    ("/search", 400),
    ("/search?q=", 400),
    ("/search?q=%FF", 400),
    ("/search?q=psr&role=nope", 400),
    ("/search?q=" + "x" * 10_000, 400),
    ("/search?q=nosuchname.exe", 404),
    ("/binary/..%2F..%2Fetc%2Fshadow", 404),
    ("/binary/%FF", 400),
    ("/binary/", 400),
    ("/binary/*", 400),
    ("/rule/nope", 404),
    ("/rule/..%2F..%2Fetc%2Fshadow", 404),
    ("/rule/", 400),
    ("/static/..%2Fserve.py", 404),
    ("/static/../serve.py", 404),
    ("/static/", 404),
    ("/static/app.js%00", 404),
    ("/nope", 404),
    ("/favicon.ico", 404),
    ("/index.html/..", 404),
]


@pytest.mark.parametrize("target,expected", BAD_PAGES, ids=[t[:60] for t, _ in BAD_PAGES])
def test_bad_page_input_is_a_4xx_page(live: str, target: str, expected: int) -> None:
    status, headers, body = fetch(live + target)
    assert status == expected, body[:300]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert "Traceback" not in page
    if target.startswith("/search?q=nosuchname"):
        assert "No executable in the index matches" in page  # the search page, with its form
    else:
        assert f"<h1>{expected}</h1>" in page
    assert_inert(page)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    junk=st.text(max_size=80),
    where=st.sampled_from(
        [
            "/api/search?q=",
            "/api/search?q=psr.exe&role=",
            "/api/search?q=psr.exe&field=",
            "/api/binary/",
            "/api/rule/",
            "/api/suggest?q=",
            "/search?q=",
            "/binary/",
            "/rule/",
            "/static/",
            "/",
            "/api/",
        ]
    ),
)
def test_any_input_is_answered_without_a_server_error(app: TestClient, junk: str, where: str) -> None:
    for target in (where + quote(junk, safe=""), where + junk):
        status, body = asgi_get(app.app, target.encode("utf-8"))
        assert status < 500, (target, body[:300])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=60))
def test_any_raw_target_is_answered_without_a_server_error(app: TestClient, raw: bytes) -> None:
    status, body = asgi_get(app.app, b"/" + raw)
    assert status < 500, (raw, body[:300])


# --- pages ---------------------------------------------------------------------------------------


def test_security_headers_and_no_inline_code(live: str) -> None:
    for target in ("/", "/binary/psr.exe", "/api/status", "/static/app.js", "/nope"):
        status, headers, body = fetch(live + target)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        if headers["Content-Type"].startswith("text/html"):
            assert_inert(body.decode())
    status, headers, body = fetch(f"{live}/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"/api/suggest" in body
    status, headers, _ = fetch(f"{live}/static/app.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    status, headers, body = fetch(f"{live}/static/favicon.svg")  # pages name it: no favicon.ico 404
    assert status == 200 and headers["Content-Type"] == "image/svg+xml" and body.startswith(b"<svg")


def test_home_and_search_pages(live: str, tip_reader: IndexReader) -> None:
    status, _, body = fetch(f"{live}/")
    page = body.decode()
    assert status == 200 and '<form class="search" method="get" action="/search"' in page
    assert 'id="q" name="q"' in page and '<script src="/static/app.js" defer></script>' in page
    status, _, body = fetch(f"{live}/search?q=psr.exe&role=&source=&context=&field=")
    page = body.decode()
    assert status == 200 and PSR_TITLE in page
    assert f'href="/rule/sigma%3A{PSR_RULE}"' in page and 'href="/binary/psr.exe"' in page
    # grouped by rule file: 1 Sigma rule, 2 LOLBAS files, the atlas's (atomic T1113, HijackLibs hosts)
    assert page.count('class="rule-head"') == len({(m.source, m.path) for m in search(tip_reader, "psr.exe").mentions})
    status, _, body = fetch(f"{live}/search?q=psr.exe&role=process")
    running = {(m.source, m.path) for m in search(tip_reader, "psr.exe", roles=["process"]).mentions}
    assert status == 200 and body.decode().count('class="rule-head"') == len(running) >= 1
    status, _, body = fetch(f"{live}/search?q=certutl.exe")
    assert status == 404 and 'href="/binary/certutil.exe"' in body.decode()


def test_binary_page_is_the_misuse_page(live: str, tip_reader: IndexReader) -> None:
    status, headers, body = fetch(f"{live}/binary/psr.exe")
    page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    target = show_target(tip_reader, "psr.exe")
    assert f'<strong class="n-detecting">{len(target["detecting_rules"])}</strong>' in page
    mentioning = len(target["sigma_rules"]) - len(target["detecting_rules"])
    assert f'<strong class="n-mentioning">{mentioning}</strong>' in page
    assert f'<strong class="n-lolbas">{len(target["lolbas_entries"])}</strong>' in page
    assert "Image|endswith: &#39;\\<mark>Psr.exe</mark>&#39;" in page
    line20 = next(m for m in target["mentions"] if m["path"] == PSR_RULE and m["line"] == 20)
    assert line20["url"].startswith("https://github.com/SigmaHQ/sigma/blob/") and f'href="{line20["url"]}"' in page
    assert f'href="/rule/sigma%3A{PSR_RULE}"' in page and "level-medium" in page
    assert 'href="https://attack.mitre.org/techniques/T1113/"' in page  # ATT&CK tag, linked
    assert "Reconnaissance" in page and "psr.exe</mark> /start" in page  # LOLBAS category, command
    assert_inert(page)
    # every link of the page leads somewhere: ours answer 200
    for href in hrefs(page):
        if href.startswith("/"):
            assert fetch(live + href)[0] == 200, href
        else:
            assert href.startswith("https://"), href


def test_binary_page_shows_the_alias_rows(app: TestClient, tip_reader: IndexReader) -> None:
    """pwsh.dll is pwsh.exe's OriginalFileName (issue 13 item 6): its rows are on pwsh.exe's page
    and in /api/binary, marked as found through the alias, as `search pwsh.exe` gives them."""
    dll_rules = {(m.source, m.path) for m in tip_reader.search(["pwsh.dll"])}
    answer = app.get("/api/binary/pwsh.exe?limit=500")
    assert answer.status_code == 200
    data = answer.json()
    rows = [m for m in data["mentions"] if m["binary"] == "pwsh.dll"]
    assert {(m["source"], m["path"]) for m in rows} == dll_rules and len(dll_rules) >= 70
    assert all(m["alias_of"] == "pwsh.exe" for m in rows)
    assert all(m["alias_of"] == "" for m in data["mentions"] if m["binary"] == "pwsh.exe")
    assert data["binaries"] == ["pwsh.exe"]
    page = app.get("/binary/pwsh.exe?limit=500").text
    badge = '<span class="badge alias" title="found through pwsh.dll, an alias of pwsh.exe">alias pwsh.dll</span>'
    assert page.count(badge) == len(rows)
    assert "Also shown: <code>pwsh.dll</code>" in page
    plain = app.get("/binary/psr.exe").text  # no alias: no badge
    assert 'class="badge alias"' not in plain and "Also shown" not in plain


def test_rule_page(live: str, tip_reader: IndexReader) -> None:
    status, _, body = fetch(f"{live}/rule/{quote('sigma:' + PSR_RULE)}")
    page = body.decode()
    assert status == 200 and f'<h1 class="rule-title">{PSR_TITLE}</h1>' in page
    assert 'href="/binary/psr.exe"' in page and PSR_ID in page
    shown = show_target(tip_reader, PSR_ID)
    for verdict in shown["verdicts"]:  # what it does with each executable
        assert f'<span class="badge verdict verdict-{verdict["verdict"]}"' in page
    for item in shown["detection_items"]:
        assert f"<code>{item['name']}</code>" in page
    for key in (PSR_ID, PSR_RULE):
        assert fetch(f"{live}/rule/{quote(key)}")[2] == body
    for href in hrefs(page):  # former paths are text, not links to pages that do not exist
        if href.startswith("/"):
            assert fetch(live + href)[0] == 200, href
    status, _, body = fetch(f"{live}/rule/{quote('lolbas:yml/OSBinaries/Psr.yml')}")
    assert status == 200 and "psr.exe</mark> /start" in body.decode()


# --- hostile rules are text ----------------------------------------------------------------------

HOSTILE_RULE = r"""title: Evil <img src=x onerror=alert(1)> title
id: <script>alert(2)</script>
status: test
description: Runs evil.exe "><script>alert(3)</script>
references:
    - javascript:alert(4)
tags:
    - attack.execution
    - <b>tag</b>
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\<script>alert(1)</script>.exe'
    selection_evil:
        Image|endswith: '\evil.exe'
        CommandLine|contains: '<script>alert(5)</script> evil.exe'
    condition: 1 of selection*
level: high
"""
HOSTILE_PATH = "rules/windows/process_creation/<img src=x onerror=alert(6)>.yml"


@pytest.fixture(scope="module")
def hostile_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("hostile-repo")
    git("init", "-q", "-b", "master", cwd=repo)
    (repo / HOSTILE_PATH).parent.mkdir(parents=True)
    (repo / HOSTILE_PATH).write_text(HOSTILE_RULE, encoding="utf-8")
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "evil", cwd=repo)
    data_dir = tmp_path_factory.mktemp("hostile-data")
    # a web URL that is no http(s) URL: the links built from it must not become hrefs
    spec = SourceSpec("sigma", url=str(repo), branch="master", web_url="javascript:alert(7)//")
    manifest = refresh(RefreshOptions(data_dir, [spec]))
    assert manifest.exit_code in (0, 1)
    return data_dir


def test_hostile_rule_renders_as_text(hostile_data_dir: Path, tmp_path: Path) -> None:
    with running(hostile_data_dir) as (base, _server):
        status, data = get_json(f"{base}/api/binary/evil.exe")
        assert status == 200
        assert any("<script>alert(5)</script>" in m["snippet"] for m in data["mentions"])  # the API keeps data as is
        status, _, body = fetch(f"{base}/binary/evil.exe")
        page = body.decode()
        assert status == 200
        assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the title
        assert "&lt;script&gt;alert(5)&lt;/script&gt;" in page  # a snippet
        assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page  # the description
        assert "&lt;b&gt;tag&lt;/b&gt;" in page  # a tag
        assert "<script>alert" not in page
        assert_inert(page)
        rule_links = [h for h in hrefs(page) if h.startswith("/rule/")]
        assert rule_links and unquote(rule_links[0]) == f"/rule/sigma:{HOSTILE_PATH}"
        status, _, body = fetch(base + rule_links[0])
        page = body.decode()
        assert status == 200 and "&lt;script&gt;alert(2)&lt;/script&gt;" in page  # the rule id
        assert "&lt;img src=x onerror=alert(6)&gt;.yml" in page  # the path
        assert "<script>alert" not in page
        assert_inert(page)
        status, _, body = fetch(f"{base}/rule/{quote('<script>alert(2)</script>')}")
        assert status == 200 and "<script>alert" not in body.decode()
        for target in (
            "/search?q=evil.exe",
            "/search?q=" + quote("<script>alert(9)</script>.exe"),
            "/binary/" + quote("<script>alert(9)</script>.exe", safe=""),
            "/",
        ):
            status, _, body = fetch(base + target)
            assert status < 500 and "<script>alert" not in body.decode(), target
            assert_inert(body.decode())
    with IndexReader(hostile_data_dir) as reader:
        summary = write_site(reader, tmp_path / "site")
    assert summary["binaries"] >= 1
    pages_written = list((tmp_path / "site").rglob("*.html"))
    assert len(pages_written) == summary["pages"]
    for path in pages_written:
        page = path.read_text(encoding="utf-8")
        assert "<script" not in page
        assert_inert(page)
    assert "&lt;script&gt;alert(5)&lt;/script&gt;" in (tmp_path / "site" / "binary" / "evil.exe.html").read_text()


# --- a refresh while serving -----------------------------------------------------------------------


def test_refresh_while_serving(tip_data_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(tip_data_dir, data_dir, symlinks=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}
    with running(data_dir) as (base, server):
        before = get_json(f"{base}/api/status")[1]["generation"]
        expected = get_json(f"{base}/api/binary/psr.exe")[1]
        stop = threading.Event()
        failures: list[str] = []
        generations: Counter[str] = Counter()
        lock = threading.Lock()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    status, headers, body = fetch(f"{base}/api/binary/psr.exe")
                    ok = status == 200 and json.loads(body) == expected
                    with lock:
                        if ok:
                            generations[headers["X-Index-Generation"]] += 1
                        else:
                            failures.append(f"{status} {body[:200]!r}")
                except Exception as exc:  # a refused or reset connection is a failure too
                    with lock:
                        failures.append(repr(exc))
                time.sleep(0.05)  # steady traffic, leaving most of the CPU to the refresh

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            proc = subprocess.run(
                [*INDEXER, "refresh", "--full", "--quiet", "--data-dir", str(data_dir)],
                capture_output=True,
                text=True,
                timeout=180,
                env=env,
            )
            deadline = time.time() + 5
            while time.time() < deadline:  # keep asking until the new generation has answered
                after = get_json(f"{base}/api/status")[1]["generation"]
                with lock:
                    if generations[after] >= 3:
                        break
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        after = get_json(f"{base}/api/status")[1]["generation"]
        pool = server.state.service.pool.snapshot()
    assert proc.returncode == 0, proc.stderr
    assert failures == []
    assert after != before
    assert generations[before] > 0 and generations[after] > 0, generations
    assert sum(generations.values()) > 10
    # readers of the old generation were closed once their requests were done
    assert pool["busy"] == {} and set(pool["idle"]) <= {after}, pool


# --- the static site -------------------------------------------------------------------------------


def test_write_site(tip_reader: IndexReader, tip_site: tuple[Path, dict[str, Any]]) -> None:
    out, summary = tip_site  # write_site(tip_reader's index, out), written once for the run
    binaries = tip_reader.binaries()
    assert summary["binaries"] == len(binaries) and summary["rules"] == len(tip_reader.state.files)
    assert (out / "index.html").is_file() and (out / "static" / "app.css").is_file()
    psr = (out / "binary" / "psr.exe.html").read_text(encoding="utf-8")
    assert PSR_TITLE in psr and "<mark>Psr.exe</mark>" in psr
    # as on the server: pwsh.exe's page shows its alias pwsh.dll's rows, marked
    pwsh = (out / "binary" / "pwsh.exe.html").read_text(encoding="utf-8")
    badge = '<span class="badge alias" title="found through pwsh.dll, an alias of pwsh.exe">alias pwsh.dll</span>'
    assert pwsh.count(badge) == len(tip_reader.search(["pwsh.dll"])) > 70
    # relative links that resolve to written files; no link to the server's routes
    checked = 0
    for page in [
        out / "index.html",
        out / "binary" / "psr.exe.html",
        out / "binary" / "certutil.exe.html",
        *sorted((out / "rule").iterdir())[:30],
        out / "coverage.html",
        out / "links.html",
    ]:
        text = page.read_text(encoding="utf-8")
        assert "<script" not in text
        for href in hrefs(text):
            if href.startswith("https://"):
                continue
            if href.startswith("#"):
                assert f'id="{href[1:]}"' in text, (page, href)
                continue
            assert not href.startswith("/"), (page, href)
            target = (page.parent / unquote(href.split("#", 1)[0])).resolve()
            assert target.is_file(), (page, href)
            checked += 1
    assert checked > 100
    # the site's pages say what show_target says (the same query functions, one read of the index)
    for name in ("psr.exe", "certutil.exe", "rundll32.exe"):
        page = (out / "binary" / f"{name}.html").read_text(encoding="utf-8")
        shown = show_target(tip_reader, "\\" + name)
        assert f'<strong class="n-detecting">{len(shown["detecting_rules"])}</strong>' in page, name
        linked = {unquote(h).rsplit("/", 1)[-1] for h in hrefs(page) if h.startswith("../rule/")}
        files = {rule_filename(m["source"], m["path"]) for m in shown["mentions"]}
        files |= {
            rule_filename("sigma", l["current_path"])
            for l in shown["lolbas_declared_detections"]
            if l.get("current_path")
        }
        assert linked == files, name
    for ref in (
        f"sigma:{PSR_RULE}",
        "lolbas:yml/OSBinaries/Psr.yml",
        "sigma:rules/windows/process_creation/proc_creation_win_certutil_download.yml",
    ):
        shown = show_target(tip_reader, ref)
        page = (out / "rule" / rule_filename(shown["source"], shown["path"])).read_text(encoding="utf-8")
        assert page.count('<tr class="m">') + page.count('<tr class="filter">') == len(shown["mentions"]), ref
        assert {unquote(h).rsplit("/", 1)[-1] for h in hrefs(page) if h.startswith("../binary/")} == {
            f"{b}.html" for b in shown["binaries"]
        }, ref


def test_write_site_replaces_its_own_site_only(hostile_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    with IndexReader(hostile_data_dir) as reader:
        first = write_site(reader, out)
        (out / "binary" / "stale.html").write_text("from an earlier index")
        assert write_site(reader, out)["pages"] == first["pages"]  # written again over itself
        assert not (out / "binary" / "stale.html").exists()
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        (foreign / "keep.txt").write_text("mine")
        with pytest.raises(FileExistsError):
            write_site(reader, foreign)  # a directory it did not write
        assert sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]
        empty = tmp_path / "empty"
        empty.mkdir()
        assert write_site(reader, empty)["pages"] == first["pages"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


# --- the CLI: `indexer serve` and `export --format html` --------------------------------------------


def _http11(base: str, requests: list[bytes]) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Several HTTP/1.1 requests on one kept-alive connection: (status line, headers, body) each."""
    parts = urlsplit(base)
    out = []
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        for request in requests:
            sock.sendall(request)
            status = stream.readline().rstrip()
            headers: dict[bytes, bytes] = {}
            while line := stream.readline().rstrip():
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            out.append((status, headers, stream.read(int(headers.get(b"content-length", b"0")))))
    return out


def test_cli_serve(tip_data_dir: Path) -> None:
    """The real `indexer serve` process, two uvicorn workers: HTTP/1.1 with keep-alive, gzip,
    the ETag of the generation and a 304, a clean stop on Ctrl-C."""
    import gzip
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}
    proc = subprocess.Popen(
        [*INDEXER, "serve", "--data-dir", str(tip_data_dir), "--port", "0", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = ""
        deadline = time.time() + 30
        while "serving" not in line and time.time() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert match and "2 workers" in line, line
        base = match.group(1)
        status, data = get_json(base + "/api/binary/psr.exe")
        assert status == 200 and data["binaries"] == ["psr.exe"]
        host = b"Host: 127.0.0.1\r\n"
        first, second, third = _http11(
            base,
            [
                b"GET /api/binary/cmd.exe HTTP/1.1\r\n" + host + b"Accept-Encoding: gzip\r\n\r\n",
                b"GET /api/status HTTP/1.1\r\n" + host + b"\r\n",
                b"GET /api/status HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n",
            ],
        )
        assert first[0] == b"HTTP/1.1 200 OK" and first[1][b"content-encoding"] == b"gzip"
        assert json.loads(gzip.decompress(first[2]))["binaries"] == ["cmd.exe"]
        assert second[0] == b"HTTP/1.1 200 OK" and json.loads(second[2])["generation"]  # same connection
        etag = second[1][b"etag"]
        assert etag.startswith(b'W/"gen-') and third[1][b"etag"] == etag
        (unchanged,) = _http11(
            base,
            [b"GET /binary/psr.exe HTTP/1.1\r\n" + host + b"If-None-Match: " + etag + b"\r\nConnection: close\r\n\r\n"],
        )
        assert unchanged[0] == b"HTTP/1.1 304 Not Modified" and unchanged[2] == b""
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_etag_gzip_cors(tip_data_dir: Path, app: TestClient) -> None:
    """An unchanged generation is a 304; answers are gzipped when asked; CORS only when opted in."""
    response = app.get("/api/binary/psr.exe")
    etag = response.headers["etag"]
    assert etag == f'W/"{response.headers["x-index-generation"]}-{__import__("indexer").__version__}"'
    again = app.get("/api/binary/psr.exe", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert again.headers["content-security-policy"].startswith("default-src 'none'")
    assert app.get("/api/binary/psr.exe", headers={"If-None-Match": 'W/"gen-old-0"'}).status_code == 200
    assert "etag" not in app.get("/api/binary/nosuch.exe").headers  # errors carry none
    big = app.get("/api/binary/cmd.exe", headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip" and big.json()["binaries"] == ["cmd.exe"]
    origin = {"Origin": "https://intranet.example"}
    assert "access-control-allow-origin" not in app.get("/api/status", headers=origin).headers
    cors = TestClient(
        create_app(tip_data_dir, cors_origins=("https://intranet.example",)).state.asgi, base_url="http://127.0.0.1"
    )
    assert cors.get("/api/status", headers=origin).headers["access-control-allow-origin"] == origin["Origin"]
    other = cors.get("/api/status", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = cors.options("/api/status", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    assert cors.post("/api/status", headers=origin).status_code == 405


def test_cli_export_html(hostile_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    proc = subprocess.run(
        [*INDEXER, "export", "--format", "html", "--output", str(out), "--data-dir", str(hostile_data_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["binaries"] >= 1 and (out / "binary" / "evil.exe.html").is_file()
    proc = subprocess.run(
        [*INDEXER, "export", "--format", "html", "--output", "-", "--data-dir", str(hostile_data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4 and "directory" in proc.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    proc = subprocess.run(
        [*INDEXER, "export", "--format", "html", "--output", str(foreign), "--data-dir", str(hostile_data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4 and "not written by" in proc.stderr


# --- issue 14: caches, unbounded answers, odd digits ---------------------------------------------


def test_spellings_of_a_heavy_binary_share_one_bounded_cache(app: TestClient) -> None:
    """Issue 14.17: every spelling of powershell.exe was cached apart (600 GETs, 1 GB)."""
    import gc
    import tracemalloc

    assert app.get("/api/binary/powershell.exe").status_code == 200  # warm: one entry may stay
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(12):
            spelling = quote(f"C:\\x{i}\\PowerShell.EXE", safe="")
            assert app.get(f"/api/binary/{spelling}").status_code == 200
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000, f"12 spellings of one binary kept {grown:,} bytes"


def test_the_cache_is_bounded_whatever_is_asked(tip_data_dir: Path) -> None:
    """Issue 14.17: many heavy binaries and searches keep at most CACHE_ENTRIES answers."""
    from indexer.web.app import CACHE_ENTRIES

    api = create_app(tip_data_dir)
    test_client = TestClient(api.state.asgi, base_url="http://127.0.0.1")
    heavy = [
        "cmd.exe",
        "powershell.exe",
        "rundll32.exe",
        "regsvr32.exe",
        "mshta.exe",
        "wscript.exe",
        "cscript.exe",
        "certutil.exe",
        "schtasks.exe",
        "reg.exe",
        "net.exe",
        "wmic.exe",
    ]
    for name in heavy:
        for target in (
            f"/api/binary/{name}",
            f"/binary/{quote('C:/x/' + name.upper(), safe='')}",
            f"/api/search?q={name}",
            f"/api/search?q={name}&role=process",
        ):
            assert test_client.get(target).status_code == 200, target
    info = api.state.service.cache.info()
    assert 0 < info["entries"] <= CACHE_ENTRIES and info["mentions"] <= api.state.service.cache.max_mentions


MANY = 3000  # executables one rule names (the rule had 150,000; the bound must not depend on it)


@pytest.fixture(scope="module")
def many_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("many-repo")
    git("init", "-q", "-b", "master", cwd=repo)
    path = repo / "rules" / "windows" / "process_creation" / "many.yml"
    path.parent.mkdir(parents=True)
    names = "".join(f"            - '\\many{i:05d}.exe'\n" for i in range(MANY))
    path.write_text(
        "title: Many executables\nid: 5d1c7e52-0000-4000-8000-000000000001\nstatus: test\n"
        "logsource:\n    category: process_creation\n    product: windows\n"
        f"detection:\n    selection:\n        Image|endswith:\n{names}    condition: selection\n"
        "level: low\n",
        encoding="utf-8",
    )
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "many", cwd=repo)
    data_dir = tmp_path_factory.mktemp("many-data")
    manifest = refresh(RefreshOptions(data_dir, [SourceSpec("sigma", url=str(repo), branch="master")]))
    assert manifest.exit_code == 0
    return data_dir


def test_a_rule_naming_thousands_of_executables_is_paged(many_data_dir: Path) -> None:
    """Issue 14.18: a rule naming 150,000 executables cost 21 s and 63 MB per view: answers
    and pages hold one page of it, whatever the rule holds."""
    app = client(many_data_dir)
    response = app.get("/api/rule/rules/windows/process_creation/many.yml")
    assert response.status_code == 200
    data = response.json()
    assert data["page"] == {"offset": 0, "limit": 100, "total": MANY}
    assert 0 < len(data["binaries"]) <= 200 and len(data["mentions"]) <= 200
    assert {m["binary"] for m in data["mentions"]} == set(data["binaries"])
    last = app.get("/api/rule/rules/windows/process_creation/many.yml?offset=2990&limit=50").json()
    assert last["binaries"] == [f"many{i:05d}.exe" for i in range(2990, MANY)]
    page = app.get("/rule/rules/windows/process_creation/many.yml")
    assert page.status_code == 200 and len(page.content) < 400_000
    assert page.content.count(b'href="/binary/many') <= 3 * 100  # list, detection item, lines
    assert b'href="/rule/sigma%3Arules/windows/process_creation/many.yml?offset=100"' in page.content  # next
    with_limit = app.get("/rule/rules/windows/process_creation/many.yml?offset=2990&limit=50").content
    assert with_limit.count(b'href="/binary/many') == 3 * 10
    assert b'href="/rule/sigma%3Arules/windows/process_creation/many.yml?limit=50&amp;offset=2940"' in with_limit


@pytest.mark.parametrize("limit", ["%C2%B2", "%E2%91%A0", "%D9%A3", "-1", "1e3", "51"])
def test_suggest_limit_odd_digits_are_a_4xx(app: TestClient, limit: str) -> None:
    """Issue 14.19: ² and ① pass str.isdigit() and fail int(): a 500."""
    response = app.get(f"/api/suggest?q=psr&limit={limit}")
    assert 400 <= response.status_code < 500, (limit, response.status_code)
    assert "limit" in response.json()["error"]
