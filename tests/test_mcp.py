"""`indexer mcp`: the SDK's own client against a real `indexer mcp` process over stdio, and against
the same server at /mcp of a real `indexer serve` (streamable HTTP)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from indexer import xref
from indexer.index import IndexReader
from indexer.navigator import technique_ids
from indexer.query import search

PSR_RULE = "rules/windows/process_creation/proc_creation_win_psr_capture_screenshots.yml"
PSR_RULE_ID = "2158f96f-43c2-43cb-952a-ab4580f32382"
TOOLS = {"search_binary", "show_rule", "coverage", "gaps", "atomic_tests", "links", "changes", "navigator_layer"}
INDEXER = str(Path(sys.executable).with_name("indexer"))


@asynccontextmanager
async def mcp_session(data_dir: Path, errlog: Any = sys.stderr) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=INDEXER, args=["mcp", "--data-dir", str(data_dir)])
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


class Client:
    """A stdio session driven from synchronous tests through an anyio portal."""

    def __init__(self, portal: BlockingPortal, session: ClientSession) -> None:
        self.portal, self.session = portal, session

    def call(self, tool: str, **arguments: Any) -> Any:
        return self.portal.call(self.session.call_tool, tool, arguments)

    def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = self.call(tool, **arguments)
        assert not result.is_error, result.content[0].text
        return result.structured_content

    def error(self, tool: str, **arguments: Any) -> str:
        result = self.call(tool, **arguments)
        assert result.is_error, result.structured_content
        return result.content[0].text


def _open(data_dir: Path, errlog: Any = sys.stderr) -> Iterator[Client]:
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(mcp_session(data_dir, errlog)) as session:
            yield Client(portal, session)


@pytest.fixture(scope="module")
def client(tip_data_dir: Path) -> Iterator[Client]:
    yield from _open(tip_data_dir)


def test_lists_the_tools_with_typed_input_and_output_schemas(client: Client) -> None:
    tools = {t.name: t for t in client.portal.call(client.session.list_tools).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.output_schema, tool.name
        assert tool.annotations and tool.annotations.read_only_hint, tool.name
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), (tool.name, name)
    schema = tools["search_binary"].input_schema
    assert schema["required"] == ["name"]
    assert schema["properties"]["name"]["type"] == "string"
    assert schema["properties"]["limit"]["maximum"] == 100 and schema["properties"]["limit"]["minimum"] == 1
    roles = schema["properties"]["roles"]["items"]
    assert "process" in roles["enum"] and "original_filename" in roles["enum"]
    assert schema["properties"]["source"]["anyOf"][0]["enum"][:2] == ["sigma", "lolbas"]
    assert "atomic" in schema["properties"]["source"]["anyOf"][0]["enum"]
    assert schema["properties"]["platform"]["anyOf"][0]["enum"] == ["windows", "linux", "macos"]
    assert tools["show_rule"].input_schema["required"] == ["rule"]
    assert tools["navigator_layer"].input_schema["required"] == ["binary"]
    assert "rules" in tools["search_binary"].output_schema["properties"]


def test_search_binary_gives_psr_exe_sigma_rule_line_20(client: Client, tip_reader: IndexReader) -> None:
    data = client.ok("search_binary", name="psr.exe")
    assert data["found"] and data["binaries"] == ["psr.exe"]
    rule = next(r for r in data["rules"] if r["path"] == PSR_RULE)
    assert rule["source"] == "sigma" and rule["rule_id"] == PSR_RULE_ID
    assert (rule["verdict"], rule["detects"], rule["retired"]) == ("runs", True, False)
    assert data["rules"][0] == rule  # the strongest verdict first
    line = next(l for l in rule["lines"] if l["line"] == 20)
    assert line["snippet"] == "Image|endswith: '\\Psr.exe'"
    assert (line["role"], line["field"], line["modifiers"], line["context"]) == (
        "process",
        "Image",
        ["endswith"],
        "selection",
    )
    commit = tip_reader.sources["sigma"]["commit"]
    assert rule["commit"] == commit
    assert line["url"] == f"https://github.com/SigmaHQ/sigma/blob/{commit}/{PSR_RULE}#L20"
    assert rule["url"] == f"https://github.com/SigmaHQ/sigma/blob/{commit}/{PSR_RULE}"
    # the same answer as the library (and the CLI's --json): every mention, every LOLBAS link
    same = search(tip_reader, "psr.exe")
    assert data["mentions_total"] == len(same.mentions)
    assert sum(r["lines_total"] for r in data["rules"]) == len(same.mentions)
    assert [(r["path"], r["verdict"], r["verdicts"]) for r in data["rules"]] == [
        (r.path, r.verdict, list(r.verdicts)) for r in same.rules
    ]
    assert {r["path"]: r["verdict"] for r in data["rules"]}["yml/OSBinaries/Psr.yml"] == "documented"
    assert [(l["lolbas_path"], l["line"], l["status"]) for l in data["lolbas_declared_detections"]] == [
        (l["lolbas_path"], l["line"], l["status"]) for l in same.declared_detections
    ]
    assert any(l["current_path"] == PSR_RULE for l in data["lolbas_declared_detections"])


def test_search_binary_filters_and_pages(client: Client) -> None:
    running = client.ok(
        "search_binary",
        name="certutil.exe",
        roles=["process", "original_filename"],
        context="selection",
        source="sigma",
        limit=100,
    )
    assert running["rules_total"] > 5
    assert all(r["source"] == "sigma" for r in running["rules"])
    assert {l["role"] for r in running["rules"] for l in r["lines"]} <= {"process", "original_filename"}
    pages, offset = [], 0
    while offset is not None:
        page = client.ok(
            "search_binary",
            name="certutil.exe",
            roles=["process", "original_filename"],
            context="selection",
            source="sigma",
            limit=4,
            offset=offset,
            lines_per_rule=1,
        )
        assert len(page["rules"]) <= 4 and all(len(r["lines"]) == 1 for r in page["rules"])
        pages += [r["path"] for r in page["rules"]]
        offset = page["next_offset"]
    assert pages == [r["path"] for r in running["rules"]]
    bare = client.ok("search_binary", name="rundll32", include_inferred=False, limit=100, lines_per_rule=50)
    assert not any(l["inferred"] for r in bare["rules"] for l in r["lines"])


def test_search_binary_by_verdict(client: Client, tip_reader: IndexReader) -> None:
    detecting = client.ok("search_binary", name="certutil.exe", detects=True, limit=100)
    expected = search(tip_reader, "certutil.exe", detects=True).rules
    assert detecting["rules_total"] == len(expected) > 20
    assert [r["path"] for r in detecting["rules"]] == [r.path for r in expected[:100]]
    assert all(r["detects"] for r in detecting["rules"])
    assert {r["verdict"] for r in detecting["rules"]} <= {"runs", "parent", "target", "loads", "invoked"}
    parent = client.ok("search_binary", name="certutil.exe", verdicts=["parent", "excluded"], limit=100)
    assert parent["rules_total"] == len(search(tip_reader, "certutil.exe", verdicts=["parent", "excluded"]).rules)
    assert parent["rules"] and {r["verdict"] for r in parent["rules"]} <= {"parent", "excluded"}


def test_unknown_binary_is_a_result_with_suggestions(client: Client) -> None:
    data = client.ok("search_binary", name="certutl.exe")
    assert not data["found"] and data["rules"] == [] and data["rules_total"] == 0
    assert "certutil.exe" in data["suggestions"]
    layer = client.ok("navigator_layer", binary="certutl.exe")
    assert not layer["found"] and layer["layer"] is None and "certutil.exe" in layer["suggestions"]


@pytest.mark.parametrize(
    "tool, arguments, names",
    [
        ("search_binary", {"name": "psr.exe", "roles": ["bogus"]}, "roles"),
        ("search_binary", {"name": "psr.exe", "limit": 0}, "limit"),
        ("search_binary", {"name": "psr.exe", "limit": 100_000}, "limit"),
        ("search_binary", {"name": "psr.exe", "source": "nosuch"}, "source"),
        ("search_binary", {"name": "psr.exe", "verdicts": ["detects"]}, "verdicts"),
        ("search_binary", {"name": "psr.exe", "detects": "sometimes"}, "detects"),
        ("search_binary", {"name": ""}, "name"),
        ("search_binary", {}, "name"),
        ("search_binary", {"name": "C:\\Windows\\"}, "names no file"),
        ("show_rule", {"rule": "x", "offset": -1}, "offset"),
        ("links", {"status": ["gone"]}, "status"),
        ("changes", {"since": "yesterday"}, "since"),
        ("navigator_layer", {"binary": "psr.exe", "max_links": "many"}, "max_links"),
    ],
)
def test_bad_arguments_are_tool_errors_naming_the_argument(
    client: Client, tool: str, arguments: dict[str, Any], names: str
) -> None:
    """Input validation errors are tool execution errors (isError), as the MCP specification
    asks, so the assistant can read them and correct its call; the server keeps serving."""
    assert names in client.error(tool, **arguments)
    assert client.ok("search_binary", name="psr.exe", limit=1)["found"]


def test_show_rule_by_id_and_by_path(client: Client, tip_reader: IndexReader) -> None:
    by_id = client.ok("show_rule", rule=PSR_RULE_ID)
    by_path = client.ok("show_rule", rule=PSR_RULE)
    assert by_id == {**by_path, "target": PSR_RULE_ID}
    assert by_id["found"] and by_id["path"] == PSR_RULE and by_id["binaries"] == ["psr.exe"]
    assert by_id["verdicts"] == [{"binary": "psr.exe", "verdict": "runs", "verdicts": ["runs", "mentioned"]}]
    assert any(m["line"] == 20 and m["role"] == "process" for m in by_id["mentions"])
    assert any(l["lolbas_path"] == "yml/OSBinaries/Psr.yml" for l in by_id["linked_from_lolbas"])
    entry = client.ok("show_rule", rule="yml/OSBinaries/Psr.yml", limit=2)
    assert entry["source"] == "lolbas" and len(entry["mentions"]) == 2 and entry["next_offset"] == 2
    assert entry["mentions_total"] == len(tip_reader.file_mentions("lolbas", "yml/OSBinaries/Psr.yml"))
    missing = client.ok("show_rule", rule="rules/windows/nothing_here.yml")
    assert not missing["found"] and "no rule" in missing["message"]


def test_coverage_filters_and_counts_as_the_library(client: Client, tip_reader: IndexReader) -> None:
    expected = xref.coverage(tip_reader)
    gaps = client.ok("coverage", detected=False, limit=100)
    assert gaps["total"] == expected["summary"]["undetected"] == gaps["summary"]["undetected"]
    assert gaps["entries"] and all(e["detecting_rules_total"] == 0 for e in gaps["entries"])
    psr = client.ok("coverage", entry="PSR.EXE")
    assert [e["path"] for e in psr["entries"]] == ["yml/OSBinaries/Psr.yml"]
    assert PSR_RULE in psr["entries"][0]["detecting_rules"] and PSR_RULE in psr["entries"][0]["running_rules"]
    assert psr["entries"][0]["tier"] == "running"
    assert gaps["summary"]["tiers"] == expected["summary"]["tiers"]
    for tier, count in expected["summary"]["tiers"].items():
        page = client.ok("coverage", tiers=[tier], limit=100, rules_per_entry=1)
        assert page["total"] == count and {e["tier"] for e in page["entries"]} <= {tier}
    retired = xref.coverage(tip_reader, include_retired=True)
    assert client.ok("coverage", include_retired=True, limit=1)["summary"]["tiers"] == retired["summary"]["tiers"]
    assert psr["entries"][0]["url"].endswith(f"/{tip_reader.sources['lolbas']['commit']}/yml/OSBinaries/Psr.yml")
    t1218 = client.ok("coverage", technique="t1218", limit=100, rules_per_entry=0)
    assert t1218["total"] == sum(1 for e in expected["entries"] if any(m.startswith("T1218") for m in e["mitre"]))
    assert all(e["detecting_rules"] == [] for e in t1218["entries"])


def test_links_by_status_and_entry(client: Client, tip_reader: IndexReader) -> None:
    deprecated = client.ok("links", status=["deprecated"])
    assert deprecated["total"] == len(xref.links(tip_reader, ["deprecated"])) > 0
    assert {l["status"] for l in deprecated["links"]} == {"deprecated"}
    assert all(l["current_path"].startswith("deprecated/") for l in deprecated["links"])
    psr = client.ok("links", entry="psr.exe")
    assert [(l["lolbas_path"], l["current_path"]) for l in psr["links"]] == [("yml/OSBinaries/Psr.yml", PSR_RULE)]
    everything = client.ok("links", limit=200)
    assert everything["total"] == len(xref.links(tip_reader)) and everything["next_offset"] == 200


def test_changes_lists_the_build_with_capped_lists(client: Client, tip_reader: IndexReader) -> None:
    data = client.ok("changes", max_items=3)
    build = data["refreshes"][0]
    sources = {s["name"]: s for s in build["sources"]}
    assert sources["sigma"]["after"] == tip_reader.sources["sigma"]["commit"]
    assert sources["sigma"]["mode"] == "full" and len(sources["sigma"]["added"]) == 3
    assert sources["sigma"]["added_total"] > 3000
    assert len(build["binaries"]) == 3 and build["binaries_total"] > 1000
    assert build["rules_added_total"] > 3000 and len(build["rules_added"]) == 3
    assert set(build["rules_added"][0]) == {"id"}  # a first build has no titles of rules added (nothing before)


def test_changes_in_verdicts_are_capped_most_changed_first(tmp_path: Path) -> None:
    """A refresh's detection changes (the manifest as refresh writes it), as the tool pages them."""
    (tmp_path / "manifests").mkdir()
    rule = lambda n, **extra: {"path": f"rules/windows/r{n}.yml", "title": f"Rule {n}", **extra}  # noqa: E731
    manifest = {
        "started": "2026-11-30T03:17:00Z",
        "finished": "2026-11-30T03:17:01Z",
        "duration_s": 0.8,
        "exit_code": 0,
        "full": False,
        "reason": "",
        "files_parsed": 3,
        "file_errors": [],
        "mentions_added": 4,
        "mentions_removed": 1,
        "mentions_total": 16000,
        "binaries": {},
        "rules_renamed": [],
        "generation": "gen-x",
        "sources": {
            "sigma": {
                "name": "sigma",
                "mode": "incremental",
                "before": "a" * 40,
                "after": "b" * 40,
                "error": "",
                "added": ["rules/windows/r1.yml", "rules/windows/r2.yml"],
                "modified": [],
                "deleted": [],
                "renamed": [["rules/old.yml", "rules/windows/r3.yml"]],
            }
        },
        "rules_added": ["id-1", "id-2"],
        "rules_removed": [],
        "rules_added_detail": [
            {"id": "id-1", "path": "rules/windows/r1.yml", "title": "Rule 1"},
            {"id": "id-2", "path": "rules/windows/r2.yml", "title": "Rule 2"},
        ],
        "rules_removed_detail": [],
        "detections": {
            "certutil.exe": {"before": 40, "after": 41, "gained": [rule(1, verdict="runs")], "lost": [], "changed": []},
            "mshta.exe": {
                "before": 9,
                "after": 9,
                "gained": [rule(2, verdict="runs")],
                "lost": [rule(3, verdict="invoked", now="mentioned")],
                "changed": [rule(4, before="invoked", after="runs")],
            },
        },
    }
    (tmp_path / "manifests" / "2026-11-30T031700Z-1.json").write_text(json.dumps(manifest), encoding="utf-8")
    for client in _open(tmp_path):
        data = client.ok("changes", max_items=1)
    [record] = data["refreshes"]
    assert record["detections_total"] == 2
    assert record["detections"] == [
        {
            "binary": "mshta.exe",
            "before": 9,
            "after": 9,
            "gained": [rule(2, verdict="runs")],
            "lost": [rule(3, verdict="invoked", now="mentioned")],
            "changed": [rule(4, before="invoked", after="runs")],
        }
    ]
    assert record["rules_added"] == [{"id": "id-1", "path": "rules/windows/r1.yml", "title": "Rule 1"}]
    assert record["rules_added_total"] == 2
    assert record["sources"][0]["renamed"] == [["rules/old.yml", "rules/windows/r3.yml"]]
    assert record["sources"][0]["added_total"] == 2 and len(record["sources"][0]["added"]) == 1


def test_navigator_layer_scores_the_rules_that_detect_it_running(client: Client, tip_reader: IndexReader) -> None:
    data = client.ok("navigator_layer", binary="certutil.exe")
    layer = data["layer"]
    assert layer["versions"]["layer"] == "4.5" and layer["domain"] == "enterprise-attack"
    scores = {t["techniqueID"]: t["score"] for t in layer["techniques"]}
    # recomputed from the verdicts and mentions: each live Sigma rule that runs certutil.exe, per technique tag
    found = search(tip_reader, "certutil.exe")
    mentions = found.mentions
    detecting = {r.path for r in found.rules if r.source == "sigma" and r.verdict == "runs" and not r.retired}
    assert any(r.verdict == "runs" and r.retired for r in found.rules)  # deprecated rules exist and are left out
    expected: dict[str, int] = {}
    for path in detecting:
        tags = {t for m in mentions if m.path == path for t in m.tags}
        for technique in technique_ids(tags):
            expected[technique] = expected.get(technique, 0) + 1
    assert {t: s for t, s in scores.items() if s} == expected
    lolbas = {t for m in mentions if m.source == "lolbas" for t in technique_ids(m.tags)}
    assert lolbas and lolbas <= set(scores)  # LOLBAS MitreIDs, with score 0 where no rule covers them
    assert layer["gradient"]["maxValue"] == max(expected.values())
    psr = client.ok("navigator_layer", binary="psr.exe")["layer"]
    t1113 = next(t for t in psr["techniques"] if t["techniqueID"] == "T1113")
    assert t1113["score"] == 1 and any(l["url"].endswith(PSR_RULE) for l in t1113["links"])


def test_technique_ids_from_tags() -> None:
    assert technique_ids(
        [
            "attack.t1218.011",
            "attack.defense-evasion",
            "attack.T1105",
            "attack.g0010",
            "lolbas.download",
            "cve.2021-1675",
            "attack.t1218.011",
        ]
    ) == ["T1105", "T1218.011"]


def test_every_answer_is_bounded(client: Client) -> None:
    """The largest answers the tools can give stay far from megabytes."""
    biggest = [
        client.call("search_binary", name="*", limit=100, lines_per_rule=50),
        client.call("search_binary", name="powershell.exe", limit=100, lines_per_rule=50),
        client.call("coverage", limit=100, rules_per_entry=100),
        client.call("links", limit=200),
        client.call("changes", last=20, include_unchanged=True, max_items=100),
        client.call("navigator_layer", binary="rundll32.exe", max_links=50),
    ]
    for result in biggest:
        assert not result.is_error, result.content[0].text
        assert len(json.dumps(result.structured_content)) < 600_000
    everything = biggest[0].structured_content
    assert everything["binaries_total"] > 1000 and len(everything["binaries"]) == 100
    assert all(len(l["snippet"]) <= 300 for r in everything["rules"] for l in r["lines"])


def test_without_an_index_every_tool_answers_with_a_clear_error(tmp_path: Path, tip_data_dir: Path) -> None:
    errlog = (tmp_path / "stderr.txt").open("w+")
    empty = tmp_path / "empty"
    for client in _open(empty, errlog):
        for _ in range(2):  # the server keeps serving
            text = client.error("search_binary", name="psr.exe")
            assert f"no index in {empty}: run 'indexer refresh' first" in text
        assert "no index in" in client.error("coverage")
        assert client.ok("changes") == {"refreshes": [], "history": None}  # no history kept: the refreshes
        # an index published meanwhile (as a refresh does: the generation, then CURRENT) shows at the next call
        shutil.copytree(tip_data_dir / "index", empty / "index")
        assert client.ok("search_binary", name="psr.exe")["found"]
    errlog.seek(0)
    assert f"indexer: warning: no index in {empty} yet" in errlog.read()


def test_a_damaged_index_is_a_clear_error(tmp_path: Path, tip_data_dir: Path) -> None:
    shutil.copytree(tip_data_dir / "index", tmp_path / "index")
    generation = tmp_path / "index" / (tmp_path / "index" / "CURRENT").read_text().strip()
    (generation / "state.json").write_text('{"files": ', encoding="utf-8")  # cut short
    for client in _open(tmp_path):
        text = client.error("show_rule", rule=PSR_RULE)
        assert f"the index in {tmp_path} is damaged" in text and "run 'indexer refresh --full'" in text
        assert client.ok("search_binary", name="psr.exe")["found"]  # what does not need the state still answers


# --- the same server at /mcp of `indexer serve` (streamable HTTP) --------------------------------


@contextmanager
def serving(data_dir: Path, *options: str) -> Iterator[str]:
    """A real `indexer serve --port 0` process: its base URL until the block ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}
    proc = subprocess.Popen(
        [INDEXER, "serve", "--data-dir", str(data_dir), "--port", "0", *options],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line, deadline = "", time.time() + 60
        while "serving" not in line and time.time() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert match, line
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _over_http(url: str) -> tuple[set[str], list[dict[str, Any]], str]:
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            answers = []
            for _ in range(6):  # stateless: each request stands alone (whichever worker takes it)
                result = await session.call_tool("search_binary", {"name": "psr.exe", "limit": 1})
                assert not result.is_error, result.content[0].text
                answers.append(result.structured_content)
            bad = await session.call_tool("search_binary", {"name": "psr.exe", "limit": 0})
            assert bad.is_error
            return tools, answers, bad.content[0].text


def test_the_same_server_at_mcp_of_indexer_serve(tip_data_dir: Path) -> None:
    with serving(tip_data_dir, "--workers", "2") as base:
        tools, answers, bad = anyio.run(_over_http, f"{base}/mcp")
        assert tools == TOOLS
        assert all(a == answers[0] for a in answers)
        rule = answers[0]["rules"][0]
        assert rule["path"] == PSR_RULE and any(l["line"] == 20 and l["role"] == "process" for l in rule["lines"])
        assert "limit" in bad
        # the web's guard still stands in front: another Host is refused (DNS rebinding), the API unchanged
        request = urllib.request.Request(
            f"{base}/mcp",
            data=b"{}",
            method="POST",
            headers={"Host": "attacker.example", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 421
        with urllib.request.urlopen(f"{base}/api/binary/psr.exe", timeout=10) as response:
            assert json.load(response)["binaries"] == ["psr.exe"]
        with pytest.raises(urllib.error.HTTPError) as post_api:
            urllib.request.urlopen(
                urllib.request.Request(f"{base}/api/binary/psr.exe", data=b"", method="POST"), timeout=10
            )
        assert post_api.value.code == 405  # POST is for /mcp only


def test_gaps_and_atomic_tests_tools(client: Client, tip_reader: IndexReader) -> None:
    """The same answers as `indexer gaps` and `indexer tests` (tests/test_joins.py checks those
    against the real files), paged."""
    from indexer.joins import gaps, tests as atomic_tests

    data = client.ok("gaps", platform="windows", limit=5)
    report = gaps(tip_reader, platform="windows").to_dict()
    assert data["rows"] == report["rows"][:5] and data["rows_total"] == len(report["rows"])
    assert data["next_offset"] == 5 and data["summary"] == report["summary"]
    assert "onedrivestandaloneupdater.exe" in [r["binary"] for r in data["rows"]]
    assert "nosuch" in client.error("gaps", rule_sets=["nosuch"])
    found = client.ok("atomic_tests", name="certutil.exe", limit=50)
    assert found["tests"] == atomic_tests(tip_reader, "certutil.exe").to_dict()["tests"]
    unicode = next(t for t in found["tests"] if t["guid"] == "e68b945c-52d0-4dd9-a5e8-d173d70c448f")
    assert "rules/windows/process_creation/proc_creation_win_certutil_decode.yml" in [
        r["path"] for r in unicode["expected"]
    ]
    shown = client.ok("search_binary", name="curl.exe", limit=1)
    assert shown["counterparts"] == {"curl.exe": ["curl"]}
    assert next(s for s in shown["rule_sets"] if s["source"] == "sigma")["running"] > 0
    assert {i["source"] for i in shown["sections"]["tests"]} == {"atomic"}
    assert client.ok("coverage", limit=1)["rule_sets"]["tiers"]["sigma"]["running"] == 169
