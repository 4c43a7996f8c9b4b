"""Issue 2 acceptance: the whole pipeline on the real bundles at their tips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.index import IndexReader
from indexer.query import search
from repos import run_cli

PSR_RULE = "rules/windows/process_creation/proc_creation_win_psr_capture_screenshots.yml"
PSR_LOLBAS = "yml/OSBinaries/Psr.yml"


def test_search_psr_json_lists_rule_and_lolbas_lines(tip_data_dir: Path) -> None:
    done = run_cli("search", "psr.exe", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    (data,) = json.loads(done.stdout)  # one object per name searched for
    rows = {(m["path"], m["line"], m["role"]): m for m in data["mentions"]}
    assert rows[(PSR_RULE, 20, "process")]["snippet"] == "Image|endswith: '\\Psr.exe'"
    assert rows[(PSR_RULE, 20, "process")]["field"] == "Image"
    assert rows[(PSR_RULE, 20, "process")]["modifiers"] == ["endswith"]
    assert rows[(PSR_RULE, 1, "text")]["snippet"] == "title: Screen Capture Activity Via Psr.EXE"
    assert rows[(PSR_RULE, 4, "text")]["snippet"].startswith("description: Detects execution of Windows Problem Steps")
    lolbas = {(line, role) for (path, line, role) in rows if path == PSR_LOLBAS}
    assert {
        (2, "lolbas_entry"),
        (7, "lolbas_command"),
        (15, "lolbas_path"),
        (16, "lolbas_path"),
        (19, "lolbas_ioc"),
    } <= lolbas
    rule = rows[(PSR_RULE, 20, "process")]
    assert rule["rule_id"] == "2158f96f-43c2-43cb-952a-ab4580f32382"
    assert rule["level"] == "medium" and rule["status"] == "test"
    assert rule["logsource"] == "windows/process_creation"
    assert "attack.t1113" in rule["tags"]
    assert rule["license"] == "DRL 1.1"
    assert rule["url"].endswith(f"/blob/{rule['commit']}/{PSR_RULE}#L20")
    assert rows[(PSR_LOLBAS, 2, "lolbas_entry")]["license"] == "GPL-3.0"


@pytest.mark.parametrize("query", ["PSR.EXE", "psr", "C:\\Windows\\System32\\psr.exe", "'Psr.exe'", "/x/y/psr.exe"])
def test_query_forms_give_the_same_hits(tip_reader: IndexReader, query: str) -> None:
    expected = search(tip_reader, "psr.exe").mentions
    assert expected and search(tip_reader, query).mentions == expected


def test_wildcard_and_suggestions(tip_reader: IndexReader) -> None:
    result = search(tip_reader, "cert*.exe")
    assert "certutil.exe" in result.binaries and all(b.startswith("cert") for b in result.binaries)
    miss = search(tip_reader, "certutl.exe")
    assert miss.mentions == [] and miss.suggestions[0] == "certutil.exe"


def test_filters(tip_reader: IndexReader) -> None:
    only_lolbas = search(tip_reader, "psr.exe", source="lolbas").mentions
    assert only_lolbas and {m.source for m in only_lolbas} == {"lolbas"}
    image = search(tip_reader, "psr.exe", field="Image").mentions
    assert [(m.path, m.line) for m in image] == [(PSR_RULE, 20)]
    running = search(tip_reader, "certutil.exe", roles=["process"]).mentions
    assert running and {m.role for m in running} == {"process"}


def test_every_file_is_indexed_or_reported(
    tip_reader: IndexReader, sigma_checkout: Path, lolbas_checkout: Path
) -> None:
    files = tip_reader.state.files
    for source, checkout, count in (("sigma", sigma_checkout, 4040), ("lolbas", lolbas_checkout, 267)):
        tree = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=checkout, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert len(tree) == count
        reported = {r.path for r in files.values() if r.source == source}
        assert reported == set(tree)
        for report in files.values():
            if report.source == source and report.status != "indexed":
                assert report.reason, report
    assert files["sigma:LICENSE"].status == "skipped"
    assert files["lolbas:YML-Template.yml"].reason == "template, not an entry"
    indexed = [r for r in files.values() if r.status == "indexed"]
    assert len([r for r in indexed if r.source == "sigma"]) == 4039
    assert len([r for r in indexed if r.source == "lolbas"]) == 265


def test_stats_json(tip_data_dir: Path) -> None:
    done = run_cli("stats", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["files"]["sigma"]["seen"] == 4040 and data["files"]["lolbas"]["seen"] == 267
    assert data["sources"]["sigma"]["license"] == "DRL 1.1"
    assert data["sources"]["lolbas"]["license"] == "GPL-3.0"
    assert data["mentions"] == sum(data["mentions_by_source"].values()) == sum(data["mentions_by_role"].values())
    assert data["binaries"] > 1000


def test_show_rule_by_id_and_path(tip_data_dir: Path) -> None:
    by_id = json.loads(run_cli("show", "2158f96f-43c2-43cb-952a-ab4580f32382", "--json", data_dir=tip_data_dir).stdout)
    by_path = json.loads(run_cli("show", PSR_RULE, "--json", data_dir=tip_data_dir).stdout)
    assert (by_id.pop("matched_by"), by_path.pop("matched_by")) == ("id", "path")
    assert by_id == by_path
    assert by_id["kind"] == "rule" and by_id["binaries"] == ["psr.exe"] and by_id["other_matches"] == []
    binary = json.loads(run_cli("show", "psr", "--json", data_dir=tip_data_dir).stdout)
    assert binary["kind"] == "binary" and PSR_RULE in binary["detecting_rules"]
    assert PSR_LOLBAS in binary["lolbas_entries"]


def test_miss_exits_1_with_suggestion(tip_data_dir: Path) -> None:
    done = run_cli("search", "certutl.exe", data_dir=tip_data_dir)
    assert done.returncode == 1
    assert "did you mean: certutil.exe" in done.stderr  # into a pipe: results on stdout, the hint on stderr


def test_missing_index_is_one_line_error(tmp_path: Path) -> None:
    done = run_cli("search", "psr.exe", data_dir=tmp_path)
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [f"indexer: error: no index in {tmp_path}: run 'indexer refresh' first"]


SEARCH_AND_LIST_MODULES = """
import sys
sys.argv = ["indexer", "search", "psr.exe", "--data-dir", sys.argv[1]]
from indexer.cli import run
try:
    run()
except SystemExit:
    pass
sys.stderr.write("\\n".join(sorted(sys.modules)))
"""


def test_search_imports_nothing_it_does_not_need(tip_data_dir: Path) -> None:
    """The search path: no pySigma, GitPython, PyYAML, Whoosh query machinery, pydantic, the MCP
    SDK, the web stack (FastAPI, Starlette, uvicorn, Jinja2), or Rich when the output is not a
    terminal (issue 6: start-up is most of a search)."""
    done = subprocess.run(
        [sys.executable, "-c", SEARCH_AND_LIST_MODULES, str(tip_data_dir)], capture_output=True, text=True, timeout=60
    )
    assert "Psr.exe" in done.stdout, done.stderr[-500:]
    modules = set(done.stderr.split())
    assert "indexer.index" in modules and "whoosh.reading" in modules  # the listing is real
    unwanted = {
        "sigma",
        "git",
        "yaml",
        "pydantic",
        "rich",
        "whoosh.query",
        "whoosh.searching",
        "indexer.refresh",
        "indexer.parsers",
        "indexer.extract",
        "indexer.sources",
        "mcp",
        "indexer.mcp_server",
        "anyio",
        "starlette",
        "fastapi",
        "uvicorn",
        "jinja2",
        "markupsafe",
        "indexer.web",
    }
    assert not unwanted & modules, sorted(unwanted & modules)


def test_stored_fields_are_uncompressed_and_older_segments_still_read(tmp_path: Path) -> None:
    """The index's codec pickles stored fields without zlib; a segment Whoosh's own codec wrote
    (a generation from before) is read with it, and merges with the new ones."""
    import pickle

    from whoosh import index as whoosh_index
    from whoosh.codec.whoosh3 import W3Codec

    from indexer.index import _CODEC, _schema

    ix = whoosh_index.create_in(str(tmp_path), _schema())
    old = ix.writer(codec=W3Codec())
    old.add_document(binary="old.exe", data='[{"x": "old"}]', rules="[]")
    old.commit()
    new = ix.writer(codec=_CODEC)
    new.add_document(binary="new.exe", data='[{"x": "new"}]', rules="[]")
    new.commit(merge=False)
    stored = {"binary": "new.exe", "data": '[{"x": "new"}]', "rules": "[]"}
    segments = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.suffix == ".seg")
    assert pickle.dumps(stored, 2)[2:] in segments  # as pickled, not compressed
    for optimize in (False, True):
        if optimize:
            ix.writer(codec=_CODEC).commit(optimize=True)
        with ix.searcher() as searcher:
            found = {f["binary"]: f["data"] for f in searcher.all_stored_fields()}
        assert found == {"old.exe": '[{"x": "old"}]', "new.exe": '[{"x": "new"}]'}
