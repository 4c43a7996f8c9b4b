"""Exports: the misuse table for a real binary, and hostile names parsed back from every format."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import pytest
from jsonschema import Draft202012Validator

from indexer.export import (
    LOOKUP_COLUMNS,
    clean,
    csv_cell,
    formula_like,
    md_code,
    render,
    lookup_rows,
    safe_filename,
    write_markdown,
)
from indexer.index import IndexReader
from indexer.model import Mention
from indexer.query import group_by_rule
from indexer.verdicts import SIGMA_VERDICTS
from indexer import schemas, xref
from indexer.navigator import binaries_layer, binary_layer, coverage_layer
from indexer.schema import Without, json_schema
from repos import run_cli, split_row

SOURCES = {
    "sigma": {
        "commit": "abc",
        "web_url": "https://github.com/SigmaHQ/sigma",
        "license": "DRL 1.1",
        "license_path": "LICENSE",
    }
}
HOSTILE = [
    "../../x.exe",
    "a|b.exe",
    "`x`.exe",
    "<script>.exe",
    "bell\x07.exe",
    "=cmd|' /c calc'!a.exe",
    "+x.exe",
    "@x.exe",
    "-x.exe",
    "new\nline.exe",
    "[x](http://evil).exe",
    "c:\\..\\..\\x.exe",
]


def hostile_mentions() -> list[Mention]:
    return [
        Mention(
            binary=name,
            source="sigma",
            path=f"rules/{i}|`x`.yml",
            line=i + 1,
            snippet=f"Image|endswith: '{name}' | `tick` <b>bold</b>",
            field="Image",
            role="process",
            title=f'=HYPERLINK("http://evil") {name}',
            commit="abc",
            url=f"https://github.com/SigmaHQ/sigma/blob/abc/rules/{i}.yml#L{i + 1}",
            license="DRL 1.1",
        )
        for i, name in enumerate(HOSTILE)
    ]


def test_markdown_for_psr_has_the_seed_layout_and_real_lines(tip_reader: IndexReader) -> None:
    mentions = tip_reader.search(["psr.exe"])
    text = render("markdown", mentions, tip_reader.sources)
    lines = text.splitlines()
    assert lines[0] == "# psr.exe" and "## Possible Misuse" in lines
    header = lines.index("Source | Source File | Example | License | Role | Verdict")
    rows = [split_row(r) for r in lines[header + 2 :] if r]
    assert len(rows) == len(mentions)
    assert all(len(r) == 6 for r in rows)
    assert "*1 Sigma rule files name `psr.exe`: 1 detect it, 1 of them running it" in text
    assert {r[5] for r in rows if r[0].startswith("[sigma]")} == {"runs"}
    assert {r[5] for r in rows if r[0].startswith("[LOLBAS]")} == {"documented"}
    image = next(r for r in rows if "Image" in r[2])
    assert image[2] == "`Image\\|endswith: '\\Psr.exe'`"
    assert image[1].endswith(
        f"/blob/{mentions[0].commit}/rules/windows/process_creation/proc_creation_win_psr_capture_screenshots.yml#L20)"
    )
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
    assert {line["verdict"] for line in ngen if line["role"] == "comment"} == {
        "mentioned"
    }  # two rules name it in a comment only
    rows = list(csv.DictReader(io.StringIO(render("csv", mentions, tip_reader.sources))))
    assert [r["verdict"] for r in rows] == [line["verdict"] for line in lines]
    objects = {o["binary"]: o for o in json.loads(render("json", mentions, tip_reader.sources))["binaries"]}
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
        # outside code spans, markup from a name or snippet is escaped (`\<script\>`), never raw
        prose = re.sub(r"(`+).*?\1", "", page.read_text())
        assert not re.search(r"(?<!\\)<", prose), prose
        # the heading is one line: a newline in a name never starts a new Markdown block
        assert lines[0].startswith("# ") and lines[1] == "" and lines[2] == "## Possible Misuse"
        assert "\x07" not in page.read_text()


def test_coverage_markdown_rows_never_start_a_list_or_a_rule() -> None:
    """A LOLBAS entry named '- x.exe' or '1. y.exe' began its row: GFM ends a table at a line that
    starts another block, so the row became a list item outside the table (markup from data)."""
    from markdown_it import MarkdownIt

    from indexer.export import TIERS, coverage_markdown

    names = ["ok.exe", "- x.exe", "1. y.exe", "2) z.exe", "---", "* w.exe", "> q.exe"]
    entries = [
        {
            "entry": n,
            "tier": "none",
            "categories": ["- Execute"],
            "running_rules": [],
            "other_rules": [],
            "mentioning_rules": [],
            "linked": [],
            "agree": True,
        }
        for n in names
    ]
    counts = {"entries": len(names), **{t: 0 for t in TIERS}}
    summary = {
        "entries": len(names),
        "include_retired": False,
        "tiers": {t: 0 for t in TIERS},
        "by_category": {"- Execute": counts},
        "by_mitre": {"1. T1218": counts},
    }
    html = MarkdownIt().enable("table").render(coverage_markdown({"entries": entries, "summary": summary}))
    assert "<li>" not in html and "<hr" not in html and "<blockquote>" not in html, html
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert all(n.replace(">", "&gt;") in cells for n in names) and "- Execute" in cells and "1. T1218" in cells, cells


def test_hostile_names_round_trip_through_csv_json_jsonl() -> None:
    mentions = hostile_mentions()
    rows = list(csv.DictReader(io.StringIO(render("csv", mentions, SOURCES))))
    assert len(rows) == len(mentions)
    for row, m in zip(rows, mentions):
        cell = row["binary"]
        assert not formula_like(cell) and cell.lstrip("'") == m.binary.replace("\n", " ").replace("\x07", "\ufffd")
        assert row["title"].startswith("'=HYPERLINK")
    lines = render("jsonl", mentions, SOURCES).splitlines()
    assert [json.loads(ln)["binary"] for ln in lines] == [m.binary for m in mentions]
    objects = json.loads(render("json", mentions, SOURCES))["binaries"]
    assert sorted(o["binary"] for o in objects) == sorted(m.binary for m in mentions)


@pytest.mark.parametrize("text", ["a`b", "``", "|", "`start", "end`", "x | y `z`"])
def test_code_spans_survive_backticks_and_pipes(text: str) -> None:
    span = md_code(text)
    fence = re.match(r"`+", span).group(0)
    inner = span[len(fence) : -len(fence)]
    assert fence not in inner and "|" not in inner.replace("\\|", "")


@pytest.mark.parametrize("name", HOSTILE + [".", "..", "", "CON.exe"])
def test_safe_filename(name: str) -> None:
    safe = safe_filename(name)
    assert re.fullmatch(r"[a-z0-9_][a-z0-9._-]*", safe) and "/" not in safe and not safe.startswith(".")


def test_json_rule_tags_are_the_union_over_its_mentions(tip_reader: IndexReader) -> None:
    """A LOLBAS entry's tags differ by command: cmd.exe in Bitsadmin.yml is named under T1564.004,
    T1105 and T1218; the rule object carries all of them, not its first mention's."""
    mentions = tip_reader.search(["cmd.exe"])
    objects = json.loads(render("json", mentions, tip_reader.sources))
    rules = {r["path"]: r for o in objects["binaries"] for r in o["rules"]}
    bitsadmin = rules["yml/OSBinaries/Bitsadmin.yml"]
    assert {"attack.t1564.004", "attack.t1105", "attack.t1218"} <= set(bitsadmin["tags"])
    for (_source, path), items in group_by_rule(mentions).items():
        tags = rules[path]["tags"]
        assert len(tags) == len(set(tags)) and set(tags) == {t for m in items for t in m.tags}, path


# --- CSV formula guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, formula",
    [
        ("=1+1", True),
        ("+x.exe", True),
        ("@SUM(A1)", True),
        ("\tx", True),
        ("\rx", True),
        ("- '\\certutil.exe'", False),
        ("-", False),
        ("- x", False),
        ("cmd.exe", False),
        ("", False),
        ("-1", True),
        ("-1+cmd|' /c calc'!A0", True),
        ("-(1)", True),
        ("-x.exe", True),
        ("-=1", True),
        ("- 1", True),
        ("- (1)", True),
        ("-  =cmd|' /c calc'!A0", True),
        ("- @x", True),
        ("- -1", True),
        ('- "x"', True),
        ("- cmd|' /c calc'!A0", True),
        ("- Image|endswith: '\\x.exe'", False),
        ("- x!", False),
    ],
)
def test_formula_guard_only_where_a_spreadsheet_evaluates(text: str, formula: bool) -> None:
    assert formula_like(text) is formula
    if text[:1] not in ("\t", "\r"):  # cells are printable first: a tab or CR becomes a space
        assert csv_cell(text) == ("'" + text if formula else text)
        assert csv_cell(text, guard=False) == text
    else:
        assert csv_cell(text) == clean(text) == csv_cell(text, guard=False) and not formula_like(clean(text))


def test_csv_cell_neutralises_formulas() -> None:
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("cmd.exe") == "cmd.exe"
    assert csv_cell(["a", "b"]) == "a;b" and csv_cell(True) == "true"
    # after a `;` (where a `;`-locale spreadsheet splits) as at the start
    assert csv_cell("x;=2+3; @SUM(A1);- y;-1") == "x;'=2+3; '@SUM(A1);- y;'-1"
    assert csv_cell("x;=2+3", guard=False) == "x;=2+3"


def test_yaml_list_lines_are_not_guarded(tip_reader: IndexReader) -> None:
    """The guard prefixed 69% of snippets when every `- ` counted; YAML list lines are text."""
    mentions = tip_reader.search(["certutil.exe", "cmd.exe", "powershell.exe"])
    rows = list(csv.DictReader(io.StringIO(render("csv", mentions, tip_reader.sources))))
    listed = [r["snippet"] for r, m in zip(rows, mentions) if m.snippet.startswith("- '")]
    assert len(listed) > 100 and all(s.startswith("- '") for s in listed)
    # guarded: what the CSV changed (an atomic test's line may start with a quote of its own)
    guarded = [r["snippet"] for r, m in zip(rows, mentions) if r["snippet"] != clean(m.snippet)]
    assert len(guarded) < len(rows) / 100, guarded[:5]
    assert all(s.startswith("'") and formula_like(s[1:]) for s in guarded)
    raw = list(csv.DictReader(io.StringIO(render("csv", mentions, tip_reader.sources, guard=False))))
    assert [r["snippet"] for r in raw] == [clean(m.snippet) for m in mentions]


def test_csv_cells_stay_cells_in_a_semicolon_locale(tmp_path: Path) -> None:
    """Read as a `;`-locale spreadsheet would (split on `;`), no piece is a formula: Python's csv
    module and DuckDB agree."""
    import duckdb

    mentions = [
        dataclasses.replace(
            m, snippet=f"x;=2+3; @SUM(A1);-1;- y {m.snippet}", tags=("attack.t1059", "=cmd|' /c calc'!A0", "-2+3")
        )
        for m in hostile_mentions()
    ]
    path = tmp_path / "x.csv"
    path.write_text(render("csv", mentions, SOURCES), encoding="utf-8")
    pieces = [cell for row in csv.reader(io.StringIO(path.read_text()), delimiter=";") for cell in row]
    con = duckdb.connect()
    table = con.sql(
        f"select * from read_csv('{path}', delim=';', quote='', header=false, all_varchar=true, "
        "null_padding=true, strict_mode=false)"
    ).fetchall()
    cells = [cell for row in table for cell in row if cell is not None]
    assert len(pieces) > 5 * len(mentions) and len(cells) > 5 * len(mentions)
    for piece in pieces + cells:
        assert not formula_like(piece.lstrip(' "')), piece
    # read with `,` they are the cells written
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows[0]["tags"] == "attack.t1059;'=cmd|' /c calc'!A0;'-2+3"


# --- the lookup: one row per binary -----------------------------------------------------------------

SENTINEL_WATCHLIST_BYTES = 3_800_000  # Microsoft Sentinel's limit for a watchlist file uploaded


@pytest.fixture(scope="module")
def lookup_csv(tip_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lookup") / "lolbins.csv"
    done = run_cli("export", "--format", "lookup", "--output", str(path), "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == summary["binaries"] and summary["bytes"] == path.stat().st_size
    return path


def test_lookup_loads_in_duckdb_one_row_per_binary(lookup_csv: Path, tip_reader: IndexReader) -> None:
    import duckdb

    con = duckdb.connect()
    table = f"read_csv('{lookup_csv}')"
    columns = [row[0] for row in con.sql(f"describe select * from {table}").fetchall()]
    assert tuple(columns) == LOOKUP_COLUMNS
    rows, distinct = con.execute(f"select count(*), count(distinct executable) from {table}").fetchall()[0]
    assert rows == distinct == len(tip_reader.binaries())
    # column names are no keyword of DuckDB or SQLite: each selected unquoted
    keywords = {k for (k,) in con.sql("select keyword_name from duckdb_keywords()").fetchall()}
    assert not keywords & set(columns) and "binary" in keywords  # (the check can fail)
    con.sql(f"select {', '.join(columns)} from {table} limit 1").fetchall()
    lite = sqlite3.connect(":memory:")
    lite.execute(f"create table lookup ({', '.join(columns)})")
    lite.execute(f"select {', '.join(columns)} from lookup")
    with pytest.raises(sqlite3.OperationalError):
        lite.execute("create table t (commit)")  # the check above can fail
    # lists split back on `;` to as many items as the counts say
    assert con.sql(
        f"select count(*) from {table} where rules_detecting > 0 and ("
        "len(string_split(detecting_rule_ids, ';')) != rules_detecting or "
        "len(string_split(detecting_rule_titles, ';')) != rules_detecting or "
        "len(string_split(detecting_rule_urls, ';')) != rules_detecting)"
    ).fetchall()[0] == (0,)


def test_lookup_rows_hold_real_values(lookup_csv: Path, tip_reader: IndexReader) -> None:
    import duckdb

    con = duckdb.connect()
    psr = con.sql(f"select * from read_csv('{lookup_csv}') where executable = 'psr.exe'").fetchall()
    assert len(psr) == 1
    row = dict(zip(LOOKUP_COLUMNS, psr[0]))
    path = "rules/windows/process_creation/proc_creation_win_psr_capture_screenshots.yml"
    commit = tip_reader.sources["sigma"]["commit"]
    assert row["rules_runs"] >= 1 and row["rules_detecting"] >= row["rules_runs"]
    assert "Screen Capture Activity Via Psr.EXE" in row["detecting_rule_titles"].split(";")
    assert f"https://github.com/SigmaHQ/sigma/blob/{commit}/{path}" in row["detecting_rule_urls"].split(";")
    assert row["lolbas_entries"] == "Psr.exe" and row["lolbas_categories"] == "Reconnaissance"
    assert "T1113" in row["attack_ids"].split(";")
    # the sources naming psr.exe (Sigma, LOLBAS, an atomic test, HijackLibs hosts), each at its commit
    naming = sorted({m.source for m in tip_reader.search(["psr.exe"])})
    assert {"sigma", "lolbas"} < set(naming)
    assert row["source_commits"] == ";".join(f"{n}@{tip_reader.sources[n]['commit']}" for n in naming)
    # the counts are the stored verdicts of the active Sigma rules, for every binary
    stored: dict[str, dict[str, int]] = {}
    for rule in tip_reader.all_rules():
        if rule.source == "sigma" and not rule.retired:
            counts = stored.setdefault(rule.binary, {})
            counts[rule.verdict] = counts.get(rule.verdict, 0) + 1
    verdicts = ", ".join(f"rules_{v}" for v in SIGMA_VERDICTS)
    for name, *counts in con.sql(f"select executable, {verdicts} from read_csv('{lookup_csv}')").fetchall():
        assert dict(zip(SIGMA_VERDICTS, counts)) == {v: stored.get(name, {}).get(v, 0) for v in SIGMA_VERDICTS}, name
    # an alias pair and a LOLBAS entry with several categories
    aliases = tip_reader.aliases()
    name = next(iter(sorted(aliases)))
    (got,) = con.execute(
        f"select aliases from read_csv('{lookup_csv}', all_varchar=true) where executable = ?", [name]
    ).fetchall()[0]
    assert got.split(";") == aliases[name]


def test_lookup_fits_the_siem_limits(lookup_csv: Path) -> None:
    """One row per binary: Splunk's max_matches (100) and Elastic enrich's (128) are never reached;
    the whole file is under Sentinel's 3.8 MB watchlist upload limit."""
    size = lookup_csv.stat().st_size
    assert 0 < size < SENTINEL_WATCHLIST_BYTES, size


# --- JSON Schemas, derived from the records ---------------------------------------------------------


def test_shipped_schemas_are_the_generated_ones() -> None:
    """indexer/schemas/*.json are what the records give (after changing a record: make schemas)."""
    generated = schemas.export_schemas()
    assert sorted(p.name for p in schemas.HERE.glob("*.json")) == sorted(generated)
    for name, schema in generated.items():
        assert (schemas.HERE / name).read_text(encoding="utf-8") == schemas.dumps(schema), f"{name}: run make schemas"
        Draft202012Validator.check_schema(schema)


@dataclasses.dataclass(frozen=True)
class _Inner:
    """An inner record."""

    name: str
    drop: int


@dataclasses.dataclass(frozen=True)
class _Outer:
    """A record of every kind of field."""

    kind: Literal["a", "b"]
    count: int
    flag: bool
    names: tuple[str, ...]
    pair: tuple[str, int]
    by_name: dict[str, _Inner]
    maybe: str | None
    inner: Annotated[_Inner, Without("drop")]
    inners: list[_Inner]
    optional: int | None = None  # may be left out


def test_schema_from_type_hints() -> None:
    schema = json_schema(_Outer, "toy/1", "toy")
    outer, inner, less = (schema["$defs"][n] for n in ("_Outer", "_Inner", "_Inner-drop"))
    assert schema["$ref"] == "#/$defs/_Outer" and schema["$id"] == "urn:indexer:schema:toy/1"
    assert (
        outer["required"] == [f.name for f in dataclasses.fields(_Outer)][:-1]
        and outer["additionalProperties"] is False
    )
    props = outer["properties"]
    assert props["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert props["names"] == {"type": "array", "items": {"type": "string"}}
    assert props["pair"]["prefixItems"] == [{"type": "string"}, {"type": "integer"}]
    assert props["by_name"] == {"type": "object", "additionalProperties": {"$ref": "#/$defs/_Inner"}}
    assert props["maybe"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["inner"] == {"$ref": "#/$defs/_Inner-drop"} and less["required"] == ["name"]
    assert inner["required"] == ["name", "drop"] and inner["description"] == "An inner record."
    valid = {
        "kind": "a",
        "count": 1,
        "flag": True,
        "names": ["x"],
        "pair": ["x", 1],
        "by_name": {"k": {"name": "n", "drop": 2}},
        "maybe": None,
        "inner": {"name": "n"},
        "inners": [],
    }
    Draft202012Validator(schema).validate(valid)
    Draft202012Validator(schema).validate({**valid, "optional": 1})
    for bad in (
        {**valid, "kind": "c"},
        {**valid, "zzz": 1},
        {**valid, "inner": {"name": "n", "drop": 1}},
        {k: v for k, v in valid.items() if k != "count"},
        {**valid, "names": [1]},
        {**valid, "pair": ["x"]},
        {**valid, "optional": "1"},
    ):
        assert not Draft202012Validator(schema).is_valid(bad), bad


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schemas.load(name))


EXPORTED = ["psr.exe", "cmd.exe", "certutil.exe", "comsvcs.dll", "pwsh.exe", "ngen.exe"]


def test_every_export_validates_against_its_schema(tip_reader: IndexReader) -> None:
    mentions = tip_reader.search(EXPORTED)
    data = json.loads(render("json", mentions, tip_reader.sources))
    _validator("export-json.schema.json").validate(data)
    assert data["schema"] == schemas.load("export-json.schema.json")["$id"] and data["tool"] == "indexer"
    assert data["sources"]["sigma"]["commit"] == tip_reader.sources["sigma"]["commit"]
    assert datetime.fromisoformat(data["generated"]).tzinfo is not None
    assert sorted(o["binary"] for o in data["binaries"]) == sorted(EXPORTED)
    psr = next(o for o in data["binaries"] if o["binary"] == "psr.exe")["rules"]
    sigma = next(r for r in psr if r["path"].endswith("proc_creation_win_psr_capture_screenshots.yml"))
    assert (sigma["platform"], sigma["attack"]) == ("windows", ["T1113"])  # given once, on the rule
    assert all("platform" not in m and "commit" not in m for r in psr for m in r["mentions"])
    lines = _validator("export-jsonl.schema.json")
    for line in render("jsonl", mentions, tip_reader.sources).splitlines():
        lines.validate(json.loads(line))
    assert not lines.is_valid({"zzz": 1})  # the web API's Mention model took this once
    good = json.loads(render("jsonl", mentions[:1], tip_reader.sources))
    assert not lines.is_valid({**good, "verdict": "detected"}) and not lines.is_valid({**good, "line": "20"})
    rows = lookup_rows(
        tip_reader.all_mentions(), tip_reader.sources, tip_reader.aliases(), xref.coverage(tip_reader)["entries"]
    )
    assert len(rows) == len(tip_reader.binaries())
    lookup = _validator("export-lookup.schema.json")
    for row in rows:
        lookup.validate(row.to_dict())
    layers = _validator("export-navigator.schema.json")
    layers.validate(binaries_layer(tip_reader, ["psr.exe", "certutil.exe"]).to_dict())
    layers.validate(coverage_layer(tip_reader).to_dict())
    layers.validate(binary_layer(tip_reader, "rundll32.exe"))  # the MCP tool's layer


def test_hostile_exports_validate_against_their_schemas() -> None:
    data = json.loads(render("json", hostile_mentions(), SOURCES))
    _validator("export-json.schema.json").validate(data)
    for line in render("jsonl", hostile_mentions(), SOURCES).splitlines():
        _validator("export-jsonl.schema.json").validate(json.loads(line))


# --- ATT&CK Navigator layers ------------------------------------------------------------------------


def _navlayers_round_trip(layer: dict, capsys: pytest.CaptureFixture[str]) -> dict:
    """The layer loaded by mitreattack-python's navlayers (strict), which prints what it refuses."""
    from mitreattack.navlayers import Layer as NavLayer

    nav = NavLayer(strict=True)
    capsys.readouterr()
    nav.from_dict(layer)
    printed = capsys.readouterr().out
    loaded = nav.to_dict()  # None when it refused the layer
    assert printed == "" and loaded is not None, printed
    return loaded


def test_navigator_layer_of_binaries_loads_in_navlayers(
    tip_reader: IndexReader, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = binaries_layer(tip_reader, ["psr.exe", "certutil.exe"]).to_dict()
    loaded = _navlayers_round_trip(layer, capsys)
    assert loaded["versions"]["layer"] == "4.5" and loaded["domain"] == "enterprise-attack"
    assert {t["techniqueID"]: t["score"] for t in loaded["techniques"]} == {
        t["techniqueID"]: t["score"] for t in layer["techniques"]
    }
    scores = {t["techniqueID"]: t for t in layer["techniques"]}
    assert scores["T1113"]["score"] == 1 and "Screen Capture Activity Via Psr.EXE" in [
        m["value"] for m in scores["T1113"]["metadata"]
    ]
    # score = the rules that detect them running with the tag, from the stored verdicts
    runs = {
        r.path
        for r in tip_reader.rules(["psr.exe", "certutil.exe"])
        if r.source == "sigma" and r.verdict == "runs" and not r.retired
    }
    tagged = {
        path: {t for m in items for t in m.tags}
        for (source, path), items in group_by_rule(tip_reader.search(["psr.exe", "certutil.exe"])).items()
    }
    assert scores["T1105"]["score"] == sum("attack.t1105" in tagged[p] for p in runs) > 0
    broken = {**layer, "domain": "no-such-domain"}
    nav_printed = _refused(broken, capsys)
    assert "domain" in nav_printed.lower() or "malformed" in nav_printed.lower()  # the check can fail


def _refused(layer: dict, capsys: pytest.CaptureFixture[str]) -> str:
    from mitreattack.navlayers import Layer as NavLayer

    nav = NavLayer(strict=True)
    capsys.readouterr()
    nav.from_dict(layer)
    assert nav.to_dict() is None
    return capsys.readouterr().out


def test_navigator_coverage_layer_scores_tiers_per_technique(
    tip_reader: IndexReader, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = coverage_layer(tip_reader).to_dict()
    loaded = _navlayers_round_trip(layer, capsys)
    assert len(loaded["techniques"]) == len(layer["techniques"]) > 20
    by_mitre = xref.coverage(tip_reader)["summary"]["by_mitre"]
    for technique in layer["techniques"]:
        counts = by_mitre[technique["techniqueID"]]
        assert technique["score"] == round(100 * counts["detected"] / counts["entries"])
        assert technique["comment"].startswith(f"{counts['detected']} of {counts['entries']} LOLBAS entries")


def test_export_navigator_command(tip_data_dir: Path, tmp_path: Path) -> None:
    done = run_cli("export", "-f", "navigator", "-b", "psr.exe", data_dir=tip_data_dir)
    assert done.returncode == 0 and json.loads(done.stdout)["name"] == "psr.exe: Sigma rules that detect it running"
    done = run_cli("export", "-f", "navigator", "-o", str(tmp_path / "cov.json"), "--json", data_dir=tip_data_dir)
    assert done.returncode == 0 and json.loads(done.stdout)["techniques"] > 20
    assert json.loads((tmp_path / "cov.json").read_text())["name"] == "LOLBAS coverage by Sigma rules"
    done = run_cli("export", "-f", "navigator", "-b", "nosuch.exe", data_dir=tip_data_dir)
    assert done.returncode == 1 and "no binary 'nosuch.exe'" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("export", "-f", "lookup", "--no-formula-guard", "-b", "psr.exe", data_dir=tip_data_dir)
    assert done.returncode == 0 and done.stdout.startswith('"executable","aliases"')
    assert len(list(csv.DictReader(io.StringIO(done.stdout)))) == 1
