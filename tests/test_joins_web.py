"""The joins on the web: the binary page grouped by kind of source, the search form's source and
platform filters, the coverage page's rule sets, /gaps and /api/gaps, /api/tests/NAME, and the
static site (expectations checked against the real files: tests/test_joins.py says where)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.index import IndexReader
from indexer.joins import gaps
from test_serve import assert_inert, client


@pytest.fixture(scope="module")
def app(tip_data_dir: Path) -> TestClient:
    return client(tip_data_dir)


def test_binary_page_groups_every_source(app: TestClient) -> None:
    page = app.get("/binary/certutil.exe").text
    for rule_set in ("sigma", "elastic", "splunk"):  # certutil.exe: every rule set has rules that run it
        assert f"<h2>What the {rule_set} rules do with it</h2>" in page
    for kind, title in (
        ("abuse", "Abuse: LOLBAS, GTFOBins, LOOBins"),
        ("tests", "Tests: atomic-red-team"),
        ("sideloading", "Side-loading: HijackLibs"),
    ):
        assert f'<section class="kind kind-{kind}" id="{kind}"><h2>{title}</h2>' in page
    assert "dd3b61dd-7bbc-48cd-ab51-49ad1a776df0" in page  # atomics/T1105/T1105.yaml's certutil download test
    assert 'side-loads <a href="/binary/version.dll">version.dll</a>' in page  # HijackLibs version.yml L20
    assert_inert(page)
    drivers = app.get("/binary/rtcore64.sys").text
    assert '<section class="kind kind-drivers" id="drivers">' in drivers
    assert "<code>md5:3ecd3ca61ffc54b0d93f8b19161b83da</code>" in drivers
    curl = app.get("/binary/curl.exe").text
    assert 'On another platform: <a href="/binary/curl">curl</a>' in curl
    api = app.get("/api/binary/curl.exe?limit=1").json()
    assert api["counterparts"] == ["curl"] and api["sections"]["tests"]


def test_search_filters_by_any_source_and_platform(app: TestClient) -> None:
    page = app.get("/search?q=curl&source=gtfobins&platform=linux").text
    assert '<option value="gtfobins" selected>' in page and '<option value="linux" selected>' in page
    assert "_gtfobins/curl" in page
    api = app.get("/api/search?q=curl&platform=macos").json()
    assert api["mentions"] and {m["platform"] for m in api["mentions"]} == {"macos"}
    assert api["counterparts"] == {"curl": ["curl.exe"], "curl.exe": ["curl"]}
    bad = app.get("/api/search?q=curl&platform=beos")
    assert bad.status_code == 400


def test_coverage_page_shows_the_tiers_by_rule_set(app: TestClient) -> None:
    page = app.get("/coverage").text
    assert '<h2 id="by-rule-set">By rule set</h2>' in page
    assert "<tr><td>sigma</td><td>169</td><td>34</td><td>11</td><td>29</td>" in page
    data = app.get("/api/coverage?limit=1").json()
    assert data["rule_sets"]["tiers"]["sigma"] == {"running": 169, "other": 34, "mentioned": 11, "none": 29}


def test_gaps_page_and_api(app: TestClient, tip_reader: IndexReader) -> None:
    report = gaps(tip_reader, platform="macos").to_dict()
    data = app.get("/api/gaps?platform=macos&limit=3").json()
    assert data["rows"] == report["rows"][:3] and data["page"]["total"] == len(report["rows"])
    assert data["summary"] == report["summary"]
    page = app.get("/gaps?platform=macos").text
    first = report["rows"][0]  # kextstat at the tip: atomic and LOOBins only, named by no rule
    assert first["verdicts"] == {} and not first["detected_by"]
    assert f'<a href="/binary/{first["binary"]}">{first["binary"]}</a>' in page and "named by no rule" in page
    assert_inert(page)
    assert app.get("/api/gaps?platform=beos").status_code == 400


def test_tests_api(app: TestClient) -> None:
    data = app.get("/api/tests/certutil.exe").json()
    unicode = next(t for t in data["tests"] if t["guid"] == "e68b945c-52d0-4dd9-a5e8-d173d70c448f")
    assert any(r["path"].endswith("proc_creation_win_certutil_decode.yml") for r in unicode["expected"])
    missing = app.get("/api/tests/certutl.exe")
    assert missing.status_code == 404 and "certutil.exe" in missing.json()["suggestions"]


def test_static_site_has_the_gaps_and_grouped_pages(tip_site: tuple[Path, dict[str, Any]]) -> None:
    site, _summary = tip_site  # write_site of the tip's index (conftest)
    gaps_page = (site / "gaps.html").read_text(encoding="utf-8")
    assert "onedrivestandaloneupdater.exe" in gaps_page
    coverage = (site / "coverage.html").read_text(encoding="utf-8")
    assert "By rule set" in coverage
