"""The Elastic source (issue 18): elastic/detection-rules' TOML rules, their EQL, KQL, ES|QL and
Lucene queries read with real parsers, ECS fields as Sigma's roles, the same verdicts.

Expectations were written by reading the rule files at the tip of elastic.bundle.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from indexer.extract import FileContext
from indexer.index import IndexReader
from indexer.names import explicit_names, regex_names
from indexer.parsers import process_file
from indexer.sources import get
from indexer.sources.ecs import ecs_role
from indexer.sources.elastic import module_parts
from indexer.sources.esql import comparisons
from indexer.sources.queries import QueryError, kql_to_lucene, terms

from conftest import CORPORA, mentions_by_file
from repos import indexer

CERTUTIL_RULE = "rules/windows/defense_evasion_suspicious_certutil_commands.toml"


@pytest.fixture(scope="module")
def elastic_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain clone of the Elastic bundle (work tree at the tip)."""
    dest = tmp_path_factory.mktemp("elastic") / "detection-rules"
    subprocess.run(["git", "clone", "-q", str(CORPORA / "elastic.bundle"), str(dest)], check=True)
    return dest


def _read(ctx_path: str, text: str) -> Any:
    return process_file(FileContext("elastic", ctx_path), text.encode("utf-8"))


# --- fields and parsers --------------------------------------------------------------------------


def test_ecs_fields_take_sigmas_roles() -> None:
    expected = {
        "process.name": "process",
        "process.executable": "process",
        "?process.pe.original_file_name": "original_filename",
        "process.name.caseless": "process",
        "process.parent.name": "parent",
        "process.parent.executable": "parent",
        "process.command_line": "command_line",
        "process.args": "command_line",
        "dll.name": "loaded_module",
        "dll.path": "loaded_module",
        "file.name": "file",
        "file.path": "file",
        "registry.data.strings": "registry",
        "registry.path": "registry",
        "Target.process.name": "target",
        "winlog.event_data.ParentImage": "parent",
        "winlog.event_data.ServiceFileName": "command_line",
        "powershell.file.script_block_text": "command_line",
        "process.Ext.effective_parent.executable": "parent",
    }
    assert {f: ecs_role(f) for f in expected} == expected
    for never in (
        "host.os.type",
        "event.action",
        "dns.question.name",
        "user.name",
        "process.hash.sha256",
        "file.extension",
    ):
        assert ecs_role(never) is None, never


def test_esql_comparisons_know_quotes_lists_like_and_negation() -> None:
    query = (
        'from logs-endpoint.events.process-*\n| where process.name in ("cmd.exe", "a \\"b\\".exe")\n'
        '  and not (process.parent.name like "explorer*" or to_lower(process.executable) == "c:\\\\x\\\\y.exe")\n'
        '  and process.args != "-nop" and process.command_line not rlike ".*evil.*"\n'
        '  // process.name == "commented.exe"\n'
        '| eval x = "process.name == not_a_value.exe"'
    )
    got = [(c.field, c.value, c.op, c.negated) for c in comparisons(query)]
    assert got == [
        ("process.name", "cmd.exe", "in", False),
        ("process.name", 'a "b".exe', "in", False),
        ("process.parent.name", "explorer*", "like", True),
        ("process.executable", "c:\\x\\y.exe", "==", True),
        ("process.args", "-nop", "!=", True),
        ("process.command_line", ".*evil.*", "rlike", True),
    ]


def test_kql_is_rewritten_in_place() -> None:
    query = 'process.args : ("/tmp/x" or /var/lib/x/) and not process.command_line : "a \\"2>&1\\"" and x >= 3'
    rewritten = kql_to_lucene(query)
    assert len(rewritten) == len(query)
    got = [(t.field, t.value, t.negated) for t in terms("kuery", query)]
    assert got == [
        ("process.args", "/tmp/x", False),
        ("process.args", "/var/lib/x/", False),
        ("process.command_line", 'a "2>&1"', True),
    ]


def test_eql_sequences_keep_each_subquery_and_negations() -> None:
    query = (
        "sequence by host.id with maxspan=1m\n"
        '  [process where process.name : ("a.exe", "b.exe") and not process.parent.name != "c.exe"]\n'
        '  [library where not dll.name in~ ("d.dll") and not wildcard(process.executable, "*\\\\e.exe")]\n'
    )
    got = [(t.field, t.value, t.line, t.negated, t.part) for t in terms("eql", query)]
    assert got == [
        ("event.category", "process", 1, False, "sequence 1"),  # `process where`: the event type
        ("process.name", "a.exe", 1, False, "sequence 1"),
        ("process.name", "b.exe", 1, False, "sequence 1"),
        ("process.parent.name", "c.exe", 1, False, "sequence 1"),  # two negations
        ("event.category", "library", 2, False, "sequence 2"),
        ("dll.name", "d.dll", 2, True, "sequence 2"),
        ("process.executable", "*\\e.exe", 2, True, "sequence 2"),
    ]
    assert module_parts(terms("eql", query)) == {"sequence 2"}
    assert [(t.field, t.value) for t in terms("eql", 'any where file.name : "x.dll"')] == [("file.name", "x.dll")]
    with pytest.raises(QueryError):
        terms("eql", "process where process.name : (")


def test_module_loads_are_the_subqueries_of_library_driver_and_image_load_events() -> None:
    """There `file.*` is the module loaded (ECS maps Sysmon's ImageLoaded to `file.path`)."""

    def parts(language: str, query: str) -> frozenset[str]:
        return module_parts(terms(language, query))

    assert parts("eql", 'library where dll.name : "a.dll"') == {""}
    image_load = 'any where event.category == "process" and event.action : "Image loaded*" and file.name : "a.dll"'
    assert parts("eql", image_load) == {""}
    assert parts("kuery", 'event.category:driver and file.name:"a.sys"') == {""}
    # credential_access_suspicious_comsvcs_imageload.toml: Sysmon's event 7 is a process event in ECS
    assert parts("eql", 'sequence [process where true] [process where event.code == "7"]') == {"sequence 2"}
    assert parts("eql", 'any where event.code == "7" and file.name : "a.dll"') == set()  # code 7 of another log
    assert parts("eql", 'any where event.category : ("library", "file") and file.name : "a.dll"') == set()
    assert parts("eql", 'any where not event.category == "library" and file.name : "a.dll"') == set()
    assert parts("eql", 'process where event.action == "download"') == set()


# --- bad input -------------------------------------------------------------------------------------


def test_invalid_toml_is_a_file_error_with_its_line() -> None:
    done = _read("rules/windows/x.toml", '[rule]\nname = "x" y\n')
    assert (done.report.status, done.report.reason) == (
        "error",
        "line 2: invalid TOML: Expected newline or end of document after a statement",
    )
    done = _read("rules/windows/x.toml", '[rule]\nname = "x"\nquery = """\nunterminated\n')
    assert (done.report.status, done.report.reason) == (
        "error",
        "invalid TOML: Unterminated string (at end of document)",
    )
    done = _read("rules/windows/y.toml", '[metadata]\nmaturity = "production"\n')
    assert (done.report.status, done.report.reason) == ("error", "no [rule] table in the TOML file")


def test_a_query_that_does_not_parse_fails_its_file_at_the_querys_line() -> None:
    text = "[rule]\nname = \"x\"\nlanguage = \"eql\"\nquery = '''\nprocess where\n  process.name : (\"a.exe\"\n'''\n"
    done = _read("rules/windows/z.toml", text)
    assert done.report.status == "error"
    assert done.report.reason.startswith("line 6: eql query does not parse: EQL syntax error"), done.report.reason


# --- the real rules ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_certutil_rule_mentions_with_lines_roles_and_rule_fields(elastic_checkout: Path) -> None:
    text = (elastic_checkout / CERTUTIL_RULE).read_text(encoding="utf-8")
    done = _read(CERTUTIL_RULE, text)
    assert done.report.status == "indexed" and done.report.title == "Suspicious CertUtil Commands"
    got = {(m.binary, m.line, m.role, m.field, m.context) for m in done.extraction.mentions}
    assert got == {
        ("certutil.exe", 36, "text", "description", ""),
        ("certutil.exe", 59, "text", "note", ""),  # the investigation guide: `certutil.exe` twice
        ("certutil.exe", 61, "text", "note", ""),
        ("certutil.exe", 154, "process", "process.name", "selection"),
        ("certutil.exe", 154, "original_filename", "process.pe.original_file_name", "selection"),
    }
    m = done.extraction.mentions[1]
    assert (m.rule_id, m.level, m.status, m.platform) == (
        "fd70c98a-c410-42dc-a2e3-761c71848acf",
        "medium",
        "production",
        "windows",
    )
    assert m.tags == (
        "attack.ta0005",
        "attack.t1140",
        "attack.ta0011",
        "attack.t1105",
        "attack.ta0006",
        "attack.t1552",
        "attack.t1552.004",
    )


@pytest.mark.slow
def test_every_rule_at_the_tip_is_indexed(tip_reader: IndexReader, elastic_checkout: Path) -> None:
    reports = [r for r in tip_reader.state.files.values() if r.source == "elastic" and r.status != "skipped"]
    languages: dict[str, int] = {}
    for path in sorted(elastic_checkout.glob("rules*/**/*.toml")):
        rule = tomllib.loads(path.read_text(encoding="utf-8"))["rule"]
        languages[rule.get("language", "")] = languages.get(rule.get("language", ""), 0) + 1
    assert languages == {"eql": 1081, "kuery": 792, "esql": 212, "lucene": 1, "": 106}  # "": machine learning jobs
    assert len(reports) == 2192
    assert [(r.path, r.reason) for r in reports if r.status != "indexed"] == []
    assert tip_reader.sources["elastic"]["license"] == "Elastic-2.0"


@pytest.mark.slow
def test_search_certutil_lists_elastic_rules_with_sigmas_verdicts(tip_data_dir: Path) -> None:
    done = indexer("search", "certutil.exe", "--json", "--source", "elastic", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)
    rules = {r["path"]: r for r in answer["rules"]}
    rule = rules[CERTUTIL_RULE]
    assert (rule["verdict"], rule["verdicts"], rule["title"], rule["retired"]) == (
        "runs",
        ["runs", "mentioned"],
        "Suspicious CertUtil Commands",
        False,
    )
    # `process.executable : "C:\\Windows\\Sys?????\\certutil.exe"` only under `not`: excluded
    assert rules["rules/windows/defense_evasion_msiexec_child_proc_netcon.toml"]["verdict"] == "excluded"
    # the certutil network connection building block: `network where process.name : "certutil.exe"`
    assert rules["rules_building_block/command_and_control_certutil_network_connection.toml"]["verdict"] == "runs"
    detecting = indexer("search", "certutil.exe", "--json", "--source", "elastic", "--detects", data_dir=tip_data_dir)
    (kept,) = json.loads(detecting.stdout)
    kept_paths = {r["path"] for r in kept["rules"]}
    assert CERTUTIL_RULE in kept_paths
    assert "rules/windows/defense_evasion_msiexec_child_proc_netcon.toml" not in kept_paths
    assert all(r["verdict"] in ("runs", "parent", "target", "loads", "invoked") for r in kept["rules"])


@pytest.mark.slow
def test_a_deprecated_rule_is_retired(tip_reader: IndexReader, elastic_checkout: Path) -> None:
    path = "rules/_deprecated/persistence_web_server_sus_child_spawned.toml"
    rule = tomllib.loads((elastic_checkout / path).read_text(encoding="utf-8"))
    assert rule["metadata"]["maturity"] == "deprecated"
    verdicts = [v for v in tip_reader.rules(["bash"]) if v.path == path]
    assert verdicts and all(v.retired and v.status == "deprecated" for v in verdicts)


# --- the EQL cross-check ----------------------------------------------------------------------------

PROCESS_NAME_FIELDS = {
    "process.name",
    "process.executable",
    "process.pe.original_file_name",
    "process.parent.name",
    "process.parent.executable",
    "process.name.caseless",
    "process.parent.name.caseless",
    "target.process.name",
    "target.process.executable",
    "dll.name",
    "dll.path",
    "dll.pe.original_file_name",
}


def _eql_literals(node: Any, found: list[tuple[str, str, bool]]) -> None:
    """(field, string, is a regex) of every comparison, set and string function (`:` and `like`
    are `wildcard`, `regex` is `match`) of an `eql` AST."""
    import eql.ast as ast

    def field_name(f: Any) -> str | None:
        return ".".join([f.base, *map(str, f.path)]) if isinstance(f, ast.Field) else None

    for child in node if isinstance(node, ast.BaseNode) else ():
        if isinstance(child, ast.Comparison) and field_name(child.left) and isinstance(child.right, ast.String):
            found.append((field_name(child.left), child.right.value, False))  # type: ignore[arg-type]
        elif isinstance(child, ast.InSet) and field_name(child.expression):
            found += [
                (field_name(child.expression), v.value, False)  # type: ignore[misc]
                for v in child.container
                if isinstance(v, ast.String)
            ]
        elif isinstance(child, ast.FunctionCall) and child.arguments and field_name(child.arguments[0]):
            regex = child.name.lower() in ("match", "matchlite")
            found += [
                (field_name(child.arguments[0]), a.value, regex)  # type: ignore[misc]
                for a in child.arguments[1:]
                if isinstance(a, ast.String)
            ]


@pytest.mark.slow
def test_every_process_name_in_eqls_own_ast_is_indexed(tip_reader: IndexReader, elastic_checkout: Path) -> None:
    """The index walks eql's grammar tokens (for lines); this walks the `eql` library's AST
    (`eql.parse_query`, Elastic syntax, no optimizer) of every EQL rule and requires each
    executable name a process or module field holds, with that field, among the file's mentions."""
    import eql

    checked, missing, unparsed = 0, [], []
    flags = (
        eql.parser.elasticsearch_syntax,
        eql.parser.ignore_missing_functions,
        eql.parser.allow_runs,
        eql.parser.allow_negation,
        eql.parser.allow_sample,
        eql.parser.skip_optimizations,
    )
    by_file = mentions_by_file(tip_reader, "elastic")
    for report in tip_reader.state.files.values():
        if report.source != "elastic" or report.status != "indexed":
            continue
        rule = tomllib.loads((elastic_checkout / report.path).read_text(encoding="utf-8"))["rule"]
        if rule.get("language") != "eql":
            continue
        try:
            with flags[0], flags[1], flags[2], flags[3], flags[4], flags[5]:
                tree = eql.parse_query(rule["query"])
        except eql.EqlError as exc:
            unparsed.append((report.path, str(exc).splitlines()[0]))
            continue
        found: list[tuple[str, str, bool]] = []
        for node in tree:
            _eql_literals(node, found)
        indexed = {(m.binary, m.field.lower()) for m in by_file.get(report.path, [])}
        for field, value, regex in found:
            if field.lower() not in PROCESS_NAME_FIELDS:
                continue
            for hit in regex_names(value, True, True) if regex else explicit_names(value):
                checked += 1
                if (hit.name, field.lower()) not in indexed:
                    missing.append((report.path, field, hit.name))
    print(f"EQL cross-check: {checked} names checked, {len(missing)} missing, {len(unparsed)} rules eql refused")
    assert unparsed == []
    assert checked > 10000
    assert missing == []


def test_the_source_is_registered_with_its_upstream() -> None:
    source = get("elastic")
    assert (source.default_url, source.branch) == ("https://github.com/elastic/detection-rules.git", "main")
    assert source.wants("rules/windows/x.toml") and source.wants("rules_building_block/x.toml")
    assert not source.wants("rules/README.md") and not source.wants("detection_rules/etc/x.toml")


# --- LOLBAS links to Elastic rules -------------------------------------------------------------------
# Checked by hand against git in a clone of elastic.bundle: `git cat-file -e HEAD:<linked path>` for
# the 83 ok; for the three others `git log --all --full-history --diff-filter=DR -M -- <path>`:
#   command_and_control_certutil_network_connection.toml: R088 to rules_building_block/ in d87efa76
#     (2023-10-26); its rule_id 3838e0e3-... is that file's at the tip: moved
#   defense_evasion_msbuild_beacon_sequence.toml, defense_evasion_msxsl_beacon.toml: D in fdeeb897
#     (2023-12-12); `grep -rlF` of their rule_ids (9dc6ed5d-..., 870d1753-...) finds no file: deleted
# Rdrleakdiag.yml links a page of elastic.co (not a rule file): unresolvable.
ELASTIC_LINKS = {
    ("yml/OSBinaries/Certutil.yml", 66): (
        "moved",
        "rules_building_block/command_and_control_certutil_network_connection.toml",
        "3838e0e3-1850-4850-a411-2e8c5ba40ba8",
    ),
    ("yml/OSBinaries/Msbuild.yml", 67): ("deleted", None, "9dc6ed5d-62a9-4feb-a903-fafa1d33b8e9"),
    ("yml/OtherMSBinaries/Msxsl.yml", 63): ("deleted", None, "870d1753-1078-403e-92d4-735f142edcca"),
    ("yml/OSBinaries/Rdrleakdiag.yml", 33): ("unresolvable", None, None),
}


@pytest.mark.slow
def test_lolbas_links_to_elastic_rules_are_resolved_through_its_history(tip_data_dir: Path) -> None:
    done = indexer("links", "--source", "elastic", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    links = json.loads(done.stdout)
    counts: dict[str, int] = {}
    for link in links:
        counts[link["status"]] = counts.get(link["status"], 0) + 1
    assert len(links) == 87 and counts == {"ok": 83, "moved": 1, "deleted": 2, "unresolvable": 1}
    assert {l["rule_set"] for l in links} == {"elastic"}
    pinned = {
        (l["lolbas_path"], l["line"]): (l["status"], l.get("current_path"), l.get("rule_id"))
        for l in links
        if l["status"] != "ok"
    }
    assert pinned == ELASTIC_LINKS
    ok = next(l for l in links if l["lolbas_path"] == "yml/OSBinaries/Msbuild.yml" and l["status"] == "ok")
    assert ok["current_path"] == ok["linked_path"] and ok["current_path"].startswith("rules/windows/")
    # the table names the rule set; Sigma's links are untouched (tests/golden/links.yaml)
    table = indexer("links", "--status", "moved", "--source", "elastic", data_dir=tip_data_dir)
    assert "elastic" in table.stdout and "rules_building_block/command_and_control_certutil" in table.stdout
    bad = indexer("links", "--source", "nosuch", data_dir=tip_data_dir)
    assert bad.returncode == 4 and "sigma, elastic, splunk" in bad.stderr, bad.stderr
