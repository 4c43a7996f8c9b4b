"""Exports: the misuse table for a real binary, and hostile names parsed back from every format."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from indexer.export import csv_cell, md_code, render, safe_filename, write_markdown
from indexer.index import IndexReader
from indexer.model import Mention
from indexer.query import group_by_rule
from repos import split_row

SOURCES = {"sigma": {"commit": "abc", "web_url": "https://github.com/SigmaHQ/sigma", "license": "DRL 1.1",
                     "license_path": "LICENSE"}}
HOSTILE = ["../../x.exe", "a|b.exe", "`x`.exe", "<script>.exe", "bell\x07.exe", "=cmd|' /c calc'!a.exe",
           "+x.exe", "@x.exe", "-x.exe", "new\nline.exe", "[x](http://evil).exe", "c:\\..\\..\\x.exe"]


def hostile_mentions() -> list[Mention]:
    return [Mention(binary=name, source="sigma", path=f"rules/{i}|`x`.yml", line=i + 1,
                    snippet=f"Image|endswith: '{name}' | `tick` <b>bold</b>", field="Image", role="process",
                    title=f"=HYPERLINK(\"http://evil\") {name}", commit="abc",
                    url=f"https://github.com/SigmaHQ/sigma/blob/abc/rules/{i}.yml#L{i + 1}", license="DRL 1.1")
            for i, name in enumerate(HOSTILE)]



def test_markdown_for_psr_has_the_seed_layout_and_real_lines(tip_reader: IndexReader) -> None:
    mentions = tip_reader.search(["psr.exe"])
    text = render("markdown", mentions, tip_reader.sources)
    lines = text.splitlines()
    assert lines[0] == "# psr.exe" and "## Possible Misuse" in lines
    header = lines.index("Source | Source File | Example | License | Role | Verdict")
    rows = [split_row(r) for r in lines[header + 2:] if r]
    assert len(rows) == len(mentions)
    assert all(len(r) == 6 for r in rows)
    assert "*1 Sigma rule files name `psr.exe`: 1 detect it, 1 of them running it" in text
    assert {r[5] for r in rows if r[0].startswith("[sigma]")} == {"runs"}
    assert {r[5] for r in rows if r[0].startswith("[LOLBAS]")} == {"documented"}
    image = next(r for r in rows if "Image" in r[2])
    assert image[2] == "`Image\\|endswith: '\\Psr.exe'`"
    assert image[1].endswith(f"/blob/{mentions[0].commit}/rules/windows/process_creation/"
                             "proc_creation_win_psr_capture_screenshots.yml#L20)")
    assert image[3].startswith("[DRL 1.1](https://github.com/SigmaHQ/sigma/blob/") and image[4] == "process"


def test_every_export_carries_the_verdict(tip_reader: IndexReader) -> None:
    """ngen.exe: every Sigma rule selecting on it only excludes it (tests/golden/coverage.yaml)."""
    mentions = tip_reader.search(["ngen.exe", "setres.exe"])
    stored = {(r.source, r.path, r.binary): r.verdict for r in tip_reader.rules(["ngen.exe", "setres.exe"])}
    lines = [json.loads(line) for line in render("jsonl", mentions, tip_reader.sources).splitlines()]
    assert len(lines) == len(mentions)
    assert all(line["verdict"] == stored[(line["source"], line["path"], line["binary"])] for line in lines)
    ngen = [line for line in lines if line["binary"] == "ngen.exe" and line["source"] == "sigma"]
    assert {line["verdict"] for line in ngen if line["role"] != "comment"} == {"excluded"}
    assert {line["verdict"] for line in ngen if line["role"] == "comment"} == {"mentioned"}  # two rules name it in a comment only
    rows = list(csv.DictReader(io.StringIO(render("csv", mentions, tip_reader.sources))))
    assert [r["verdict"] for r in rows] == [line["verdict"] for line in lines]
    objects = {o["binary"]: o for o in json.loads(render("json", mentions, tip_reader.sources))}
    setres = {r["path"]: r for r in objects["setres.exe"]["rules"]}
    rule = setres["rules/windows/process_creation/proc_creation_win_setres_uncommon_child_process.yml"]
    assert (rule["verdict"], rule["verdicts"], rule["retired"]) == ("parent", ["parent", "mentioned"], False)


def test_hostile_names_stay_data_in_markdown(tmp_path: Path) -> None:
    by_binary = {m.binary: [m] for m in hostile_mentions()}
    written = write_markdown(by_binary, SOURCES, tmp_path / "pages")
    for page in written:
        assert page.resolve().parent == (tmp_path / "pages").resolve()
        assert not page.name.startswith(".")
    for page in written[:-1]:
        lines = page.read_text().splitlines()
        table = [ln for ln in lines if ln.startswith("[sigma]")]
        assert len(table) == 1 and len(split_row(table[0])) == 6, table
        assert "<script>" not in page.read_text() or "`" in page.read_text()
        assert "\x07" not in page.read_text() and "\n\n" not in lines[0]


def test_hostile_names_round_trip_through_csv_json_jsonl() -> None:
    mentions = hostile_mentions()
    rows = list(csv.DictReader(io.StringIO(render("csv", mentions, SOURCES))))
    assert len(rows) == len(mentions)
    for row, m in zip(rows, mentions):
        cell = row["binary"]
        assert cell[0] not in "=+-@" and cell.lstrip("'") == m.binary.replace("\n", " ").replace("\x07", "\ufffd")
        assert row["title"].startswith("'=HYPERLINK")
    lines = render("jsonl", mentions, SOURCES).splitlines()
    assert [json.loads(ln)["binary"] for ln in lines] == [m.binary for m in mentions]
    objects = json.loads(render("json", mentions, SOURCES))
    assert sorted(o["binary"] for o in objects) == sorted(m.binary for m in mentions)


@pytest.mark.parametrize("text", ["a`b", "``", "|", "`start", "end`", "x | y `z`"])
def test_code_spans_survive_backticks_and_pipes(text: str) -> None:
    span = md_code(text)
    fence = re.match(r"`+", span).group(0)
    inner = span[len(fence):-len(fence)]
    assert fence not in inner and "|" not in inner.replace("\\|", "")


@pytest.mark.parametrize("name", HOSTILE + [".", "..", "", "CON.exe"])
def test_safe_filename(name: str) -> None:
    safe = safe_filename(name)
    assert re.fullmatch(r"[a-z0-9_][a-z0-9._-]*", safe) and "/" not in safe and not safe.startswith(".")


def test_csv_cell_neutralises_formulas() -> None:
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("cmd.exe") == "cmd.exe"
    assert csv_cell(["a", "b"]) == "a;b" and csv_cell(True) == "true"


def test_json_rule_tags_are_the_union_over_its_mentions(tip_reader: IndexReader) -> None:
    """A LOLBAS entry's tags differ by command: cmd.exe in Bitsadmin.yml is named under T1564.004,
    T1105 and T1218; the rule object carries all of them, not its first mention's."""
    mentions = tip_reader.search(["cmd.exe"])
    objects = json.loads(render("json", mentions, tip_reader.sources))
    rules = {r["path"]: r for o in objects for r in o["rules"]}
    bitsadmin = rules["yml/OSBinaries/Bitsadmin.yml"]
    assert {"attack.t1564.004", "attack.t1105", "attack.t1218"} <= set(bitsadmin["tags"])
    for (source, path), items in group_by_rule(mentions).items():
        tags = rules[path]["tags"]
        assert len(tags) == len(set(tags)) and set(tags) == {t for m in items for t in m.tags}, path
