"""Splunk security_content: the SPL tokenizer, macro expansion, what a search selects on, the
plug-in on hand-written detections, and the real bundle (search, cross-check, macros moving
upstream, atomic tests)."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.extract import FileContext
from indexer import xref
from indexer.history import PathHistory
from indexer.index import IndexReader
from indexer.model import Mention
from indexer.parsers import process_file
from indexer.query import validated_by
from indexer.refresh import RefreshOptions, refresh
from indexer.repository import Repository, clone_path
from indexer.sources import get
from indexer.sources.spl import MacroDef, comparisons, expand, tokenize
from indexer.sources.splunk import CIM_ROLES, detection_platform, load_macros, splunk_level, splunk_role
from indexer.verdicts import rule_verdicts

from conftest import CORPORA, mentions_by_file
from repos import Upstream, git, indexer

BUNDLE = CORPORA / "splunk.bundle"
PROPERTY = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # splunk_macros: the same macros for every example
)
SPL_PIECES = [
    *"ab.ex *\\\"`()=!,|<>\n'",
    "```",
    "NOT",
    " IN ",
    "process_name",
    "cmd.exe",
    "`process_certutil`",
    "`loop_a`",
]


# --- the tokenizer -------------------------------------------------------------------------------


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind, t.value) for t in tokenize(text)]


def test_tokens_of_a_tstats_search() -> None:
    text = 'where Processes.process_name IN ("a.exe", b.exe) NOT x!="c \\"d\\"" `m(1, "x,y")` ```note```'
    assert kinds(text) == [
        ("word", "where"),
        ("word", "Processes.process_name"),
        ("word", "IN"),
        ("(", "("),
        ("string", "a.exe"),
        (",", ","),
        ("word", "b.exe"),
        (")", ")"),
        ("word", "NOT"),
        ("word", "x"),
        ("op", "!="),
        ("string", 'c "d"'),
        ("macro", "m"),
        ("comment", "note"),
    ]
    assert tokenize(text)[12].args == ("1", '"x,y"')


def test_backslashes_in_strings_are_unescaped_and_words_kept_as_written() -> None:
    # SPL as the YAML gives it: "*\\cmd.exe" is the string *\cmd.exe; unquoted words stay raw
    assert kinds('Image="*\\\\cmd.exe" TargetImage=*\\\\lsass.exe') == [
        ("word", "Image"),
        ("op", "="),
        ("string", "*\\cmd.exe"),
        ("word", "TargetImage"),
        ("op", "="),
        ("word", "*\\\\lsass.exe"),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"never closed', [("string", "never closed")]),
        ('"ends in a backslash\\"', [("string", 'ends in a backslash"')]),
        ("```open comment", [("comment", "open comment")]),
        ("`unclosed macro", [("other", "`"), ("word", "unclosed"), ("word", "macro")]),
        ("``", [("other", "``")]),
        ("a ! b", [("word", "a"), ("word", "!"), ("word", "b")]),  # `!` only joins `=`
    ],
)
def test_broken_searches_still_tokenize(text: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(text) == expected


@PROPERTY
@given(st.lists(st.sampled_from(SPL_PIECES), max_size=40).map("".join))
def test_tokens_never_overlap_and_cover_every_non_blank_character(text: str) -> None:
    tokens = tokenize(text)
    at = 0
    for token in tokens:
        assert token.start >= at and text[token.start : token.end] == token.text
        assert not text[at : token.start].strip()  # only blanks between tokens
        at = token.end
    assert not text[at:].strip()
    expand(text, lambda name, count: None)  # and expanding and walking them never raises
    comparisons(expand(text, lambda name, count: None).pieces)


@PROPERTY
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_a_quoted_string_reads_back_as_written(value: str) -> None:
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert kinds(f"field={quoted}") == [("word", "field"), ("op", "="), ("string", value)]


# --- macros --------------------------------------------------------------------------------------

CERTUTIL = MacroDef(
    "process_certutil", "(Processes.process_name=certutil.exe OR Processes.original_file_name=CertUtil.exe)"
)


def lookup(*macros: MacroDef):
    table = {(m.name, len(m.arguments)): m for m in macros}
    return lambda name, count: table.get((name, count))


def compared(text: str, *macros: MacroDef) -> list[tuple[str, str, list[str], bool, list[str]]]:
    """(field, op, values, negated, macros the first value came through) of each comparison."""
    found = comparisons(expand(text, lookup(*macros)).pieces)
    return [
        (
            c.field.token.value if c.field else "",
            c.op,
            [v.token.value for v in c.values],
            c.negated,
            [call.macro.name for call in c.values[0].chain] if c.values else [],
        )
        for c in found
    ]


def test_a_macro_call_expands_to_its_definition_and_remembers_it() -> None:
    search = "| tstats count from datamodel=Endpoint.Processes where `process_certutil` by Processes.dest"
    assert compared(search, CERTUTIL) == [
        ("Processes.process_name", "=", ["certutil.exe"], False, ["process_certutil"]),
        ("Processes.original_file_name", "=", ["CertUtil.exe"], False, ["process_certutil"]),
    ]


def test_macros_nest_take_arguments_and_unknown_ones_stay_calls() -> None:
    outer = MacroDef("lolbin", "`process_certutil` OR Processes.process_name=$name$", ("name",))
    expansion = expand("`lolbin(rundll32.exe)` `nosuch` `nosuch_filter`", lookup(outer, CERTUTIL))
    assert expansion.called == ["lolbin", "process_certutil", "nosuch", "nosuch_filter"]
    assert expansion.missing == ["nosuch", "nosuch_filter"] and not expansion.warnings
    assert compared("`lolbin(rundll32.exe)`", outer, CERTUTIL) == [
        ("Processes.process_name", "=", ["certutil.exe"], False, ["lolbin", "process_certutil"]),
        ("Processes.original_file_name", "=", ["CertUtil.exe"], False, ["lolbin", "process_certutil"]),
        ("Processes.process_name", "=", ["rundll32.exe"], False, ["lolbin"]),
    ]
    # a macro of another arity is another macro
    assert expand("`lolbin`", lookup(outer)).missing == ["lolbin"]


def test_a_macro_cycle_and_a_nesting_too_deep_are_refused_with_a_warning() -> None:
    a, b = MacroDef("a", "x=1 `b`"), MacroDef("b", "y=2 `a`")
    expansion = expand("`a`", lookup(a, b))
    assert expansion.warnings == ["macro cycle a -> b -> a: not expanded"]
    assert [p.token.text for p in expansion.pieces] == ["x", "=", "1", "y", "=", "2", "`a`"]
    chain = [MacroDef(f"m{i}", f"v{i}=1 `m{i + 1}`") for i in range(12)]
    deep = expand("`m0`", lookup(*chain), max_depth=10)
    assert deep.warnings == [
        "macros nested over 10 deep (m0 -> m1 -> m2 -> m3 -> m4 -> m5 -> m6 -> m7 -> m8 -> m9): not expanded"
    ]


# --- what a search selects on --------------------------------------------------------------------


def test_not_and_not_equal_and_not_in_are_filters() -> None:
    search = (
        'Image="*\\\\a.exe" NOT ParentImage IN ("*\\\\b.exe", c.exe) d!=e.exe NOT f!=g.exe '
        'NOT (h=i.exe OR NOT j=k.exe) | where NOT like(process, "%l.exe%") AND match(process, "m\\.exe") '
        '| eval n=if(o="p.exe", 1, 0) | stats count by q | search r.exe'
    )
    assert compared(search) == [
        ("Image", "=", ["*\\a.exe"], False, []),
        ("ParentImage", "IN", ["*\\b.exe", "c.exe"], True, []),
        ("d", "!=", ["e.exe"], True, []),
        ("f", "!=", ["g.exe"], False, []),  # NOT f!=g: f is g
        ("h", "=", ["i.exe"], True, []),
        ("j", "=", ["k.exe"], False, []),  # NOT (... NOT j=k)
        ("process", "like", ["%l.exe%"], True, []),
        ("process", "match", ["m\\.exe"], False, []),
        ("o", "=", ["p.exe"], False, []),  # eval's if() compares (n, the field eval sets, does not)
        ("", "term", ["r.exe"], False, []),  # stats selects nothing
    ]


def test_tstats_compares_only_in_its_where_clause_and_where_only_quoted_values() -> None:
    search = (
        "| tstats count from datamodel=Endpoint.Processes where Processes.process_name=a.exe by Processes.b "
        '| where process_name=parent_process_name OR process_name="c.exe" | regex process!="d\\.exe"'
    )
    assert compared(search) == [
        ("Processes.process_name", "=", ["a.exe"], False, []),
        ("process_name", "=", ["c.exe"], False, []),  # parent_process_name unquoted: a field, not a value
        ("process", "regex", ["d\\.exe"], True, []),
    ]


def test_cim_fields_have_roles_and_raw_fields_are_read_as_in_sigma() -> None:
    assert {f: splunk_role(f) for f in ("Processes.process_name", "process_name", "Processes.process")} == {
        "Processes.process_name": "process",
        "process_name": "process",
        "Processes.process": "command_line",
    }
    assert splunk_role("Processes.parent_process_name") == "parent"
    assert splunk_role("Processes.original_file_name") == "original_filename"
    assert splunk_role("Filesystem.file_name") == "file"
    assert splunk_role("Registry.registry_path") == splunk_role("Registry.action") == "registry"
    assert splunk_role("TargetImage") == "target" and splunk_role("ImageLoaded") == "loaded_module"
    assert splunk_role("Processes.loaded_file") == "loaded_module" and splunk_role("Image") == "process"
    assert splunk_role("Processes.dest") == "other" and splunk_role("user") is None
    assert set(CIM_ROLES.values()) <= {
        "process",
        "original_filename",
        "parent",
        "command_line",
        "file",
        "loaded_module",
        "registry",
    }


@pytest.mark.parametrize(
    "score, level",
    [
        (100, "critical"),
        (81, "critical"),
        (80, "high"),
        (63, "high"),
        (45, "medium"),
        (21, "low"),
        (9, "informational"),
        ("x", ""),
        (None, ""),
    ],
)
def test_risk_scores_become_sigma_levels_as_enterprise_security_ranks_risk(score: Any, level: str) -> None:
    assert splunk_level(score) == level


# --- the plug-in on hand-written files ------------------------------------------------------------

MACROS = {
    "macros/process_certutil.yml": b"definition: (Processes.process_name=certutil.exe OR\n"
    b"  Processes.original_file_name=CertUtil.exe)\ndescription: certutil\nname: process_certutil\n",
    "macros/loop_a.yml": b"definition: x=1 `loop_b`\nname: loop_a\n",
    "macros/loop_b.yml": b"definition: y=2 `loop_a`\nname: loop_b\n",
    "macros/broken.yml": b"definition: [unclosed\nname: broken\n",
}

DETECTION = """\
name: Office Spawning CertUtil
id: 11111111-2222-3333-4444-555555555555
status: production
description: Detects winword.exe starting `certutil.exe`.
search: '| tstats `security_content_summariesonly` count from datamodel=Endpoint.Processes
  where Processes.parent_process_name IN ("winword.exe","excel.exe") `process_certutil`
  NOT Processes.process="*\\\\ccm\\\\setup.exe*" Processes.process="* -urlcache *" ```bitsadmin.exe too?```
  by Processes.dest | `drop_dm_object_name(Processes)` | `office_spawning_certutil_filter`'
known_false_positives: None.
tags:
  atomic_guid:
  - 6A8B5C2B-0000-4000-8000-000000000001
  mitre_attack_id:
  - T1105
  risk_score: 63
  security_domain: endpoint
"""


@pytest.fixture()
def splunk_macros():
    source = get("splunk")
    before = source.macros
    source.share(MACROS)
    try:
        yield source
    finally:
        source.macros = before


def read(path: str, text: str):
    return process_file(FileContext("splunk", path), textwrap.dedent(text).encode())


def test_a_detection_s_mentions_through_its_macro_keep_the_call_s_line_and_name_the_macro(splunk_macros) -> None:
    done = read("detections/endpoint/office_spawning_certutil.yml", DETECTION)
    assert done.report.status == "indexed", done.report.reason
    got = {
        (m.binary, m.line, m.role, m.context, m.field, m.modifiers) for m in done.extraction.mentions if not m.inferred
    }
    assert got == {
        ("winword.exe", 4, "text", "", "description", ()),
        ("certutil.exe", 4, "text", "", "description", ()),
        ("winword.exe", 6, "parent", "selection", "Processes.parent_process_name", ()),
        ("excel.exe", 6, "parent", "selection", "Processes.parent_process_name", ()),
        (
            "certutil.exe",
            6,
            "process",
            "selection",
            "Processes.process_name",
            ("macro:process_certutil", "via:macros/process_certutil.yml#L1"),
        ),
        (
            "certutil.exe",
            6,
            "original_filename",
            "selection",
            "Processes.original_file_name",
            ("macro:process_certutil", "via:macros/process_certutil.yml#L2"),
        ),
        ("setup.exe", 7, "command_line", "filter", "Processes.process", ("contains",)),
        ("bitsadmin.exe", 7, "comment", "", "comment", ()),
    }
    first = done.extraction.mentions[0]
    assert (first.rule_id, first.title, first.level, first.status, first.platform) == (
        "11111111-2222-3333-4444-555555555555",
        "Office Spawning CertUtil",
        "high",
        "production",
        "windows",
    )
    assert first.tags == ("attack.t1105", "atomic:6a8b5c2b-0000-4000-8000-000000000001")
    assert done.report.entry == {"atomic_guids": ["6a8b5c2b-0000-4000-8000-000000000001"]}
    assert done.report.depends == [
        "macros/drop_dm_object_name.yml",
        "macros/office_spawning_certutil_filter.yml",
        "macros/process_certutil.yml",
        "macros/security_content_summariesonly.yml",
    ]
    verdicts = {v.binary: v.verdict for v in rule_verdicts(m.__dict__ for m in done.extraction.mentions)}
    assert verdicts == {
        "certutil.exe": "runs",
        "winword.exe": "parent",
        "excel.exe": "parent",
        "setup.exe": "excluded",
        "bitsadmin.exe": "mentioned",
    }


def test_a_macro_file_is_indexed_on_its_own_as_a_definition_not_a_detection(splunk_macros) -> None:
    done = read("macros/process_certutil.yml", MACROS["macros/process_certutil.yml"].decode())
    got = [(m.binary, m.line, m.role, m.context) for m in done.extraction.mentions if not m.inferred]
    assert got == [("certutil.exe", 1, "process", ""), ("certutil.exe", 2, "original_filename", "")]
    assert {v.verdict for v in rule_verdicts(m.__dict__ for m in done.extraction.mentions)} == {"mentioned"}
    assert done.report.depends == [] and done.report.rule_ids == []


def test_bad_macros_and_detections_give_one_line_reasons_naming_the_file(splunk_macros) -> None:
    cycle = read("detections/endpoint/x.yml", "name: X\nsearch: '`loop_a` process_name=a.exe'\n")
    assert cycle.report.status == "indexed"
    assert cycle.report.warnings == [
        "macro cycle loop_a -> loop_b -> loop_a: not expanded"
    ]  # stats --errors: with the path
    assert [m.binary for m in cycle.extraction.mentions] == ["a.exe"]
    # a macro file that is no YAML is left out of the macros; read on its own, it is a file error
    assert ("broken", 0) not in get("splunk").macros
    broken = read("macros/broken.yml", MACROS["macros/broken.yml"].decode())
    assert broken.report.status == "error" and broken.report.reason.startswith("line 2: invalid YAML")
    for text in ("- a list\n", "name: [x\n", "search: 3\nname: 4\n", "search: '\"`\\'\n"):
        done = read("detections/endpoint/bad.yml", text)
        assert "\n" not in done.report.reason and "Traceback" not in done.report.reason


@PROPERTY
@given(st.lists(st.sampled_from(SPL_PIECES), max_size=40).map("".join), st.sampled_from(["plain", "'", '"', "|", ">"]))
def test_any_search_in_any_yaml_style_is_read_with_mentions_on_real_lines(splunk_macros, spl: str, style: str) -> None:
    if style == "plain":
        text = yaml.safe_dump({"name": "X", "search": spl}, width=30)
    elif style in "|>":
        text = "name: X\nsearch: " + style + "-\n" + "".join(f"  {line}\n" for line in spl.split("\n"))
    else:
        text = yaml.safe_dump({"name": "X", "search": spl}, default_style=style, width=30)
    done = process_file(FileContext("splunk", "detections/endpoint/x.yml"), text.encode())
    lines = text.split("\n")
    if done.report.status == "error":
        assert done.report.reason and "\n" not in done.report.reason
        return
    for m in done.extraction.mentions:
        assert 0 < m.line <= len(lines) and m.snippet == lines[m.line - 1].strip(), (m, text)


def test_macro_definitions_that_are_no_mapping_are_left_out() -> None:
    assert load_macros({"macros/a.yml": b"- x\n", "macros/b.yml": b"name: b\n", "macros/c.yml": b"\xff"}) == {}


# --- the real bundle -----------------------------------------------------------------------------


def _search(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    done = indexer("search", *args, "--json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_search_certutil_lists_splunk_detections_with_sigma_s_verdicts(tip_data_dir: Path) -> None:
    answer = _search(tip_data_dir, "certutil.exe", "--source", "splunk")[0]
    rules = {r["path"]: r for r in answer["rules"]}
    office = rules["detections/endpoint/office_product_spawning_certutil.yml"]
    assert (office["verdict"], office["level"], office["status"], office["retired"]) == (
        "runs",
        "high",
        "production",
        False,
    )
    assert office["title"] == "Office Product Spawning CertUtil"
    assert rules["macros/process_certutil.yml"]["verdict"] == "mentioned"  # a definition, not a detection
    via = [
        m
        for m in answer["mentions"]
        if m["path"] == "detections/endpoint/office_product_spawning_certutil.yml" and m["role"] == "process"
    ]
    assert [
        (m["line"], m["modifiers"], m["url"].endswith("office_product_spawning_certutil.yml#L13")) for m in via
    ] == [(13, ["macro:process_certutil", "via:macros/process_certutil.yml#L1"], True)]
    assert via[0]["license"] == "Apache-2.0" and "attack.t1566.001" in via[0]["tags"]
    detecting = _search(tip_data_dir, "certutil.exe", "--source", "splunk", "--detects")[0]["rules"]
    assert detecting and {r["verdict"] for r in detecting} <= {"runs", "parent", "target", "loads", "invoked"}
    assert "macros/process_certutil.yml" not in {r["path"] for r in detecting}
    assert len(detecting) < len(answer["rules"])
    everything = _search(tip_data_dir, "certutil.exe")[0]["rules"]
    assert {"sigma", "splunk", "lolbas"} <= {r["source"] for r in everything}


def test_deprecated_detections_are_retired(tip_data_dir: Path) -> None:
    rules = _search(tip_data_dir, "rundll32.exe", "--source", "splunk")[0]["rules"]
    rename = next(r for r in rules if r["path"] == "detections/deprecated/suspicious_rundll32_rename.yml")
    assert rename["retired"] and rename["status"] == "deprecated"
    assert rename["verdicts"] == ["runs", "excluded", "mentioned"]  # OriginalFileName runs; process_name != filters
    assert not any(r["retired"] for r in rules if not r["path"].startswith("detections/deprecated/"))


def test_an_atomic_test_s_splunk_detections_come_from_their_atomic_guid_tags(tip_reader) -> None:
    # atomics/T1090.001/T1090.001.yaml line 81: "auto_generated_guid: b8223ea9-4be2-44a6-b50a-9657a3d4e72a"
    guid = "b8223ea9-4be2-44a6-b50a-9657a3d4e72a"
    assert guid in tip_reader.state.files["atomic:atomics/T1090.001/T1090.001.yaml"].rule_ids
    found = validated_by(tip_reader, guid.upper())
    assert [(r.source, r.path, r.title) for r in found] == [  # `grep -rl <guid> detections` at the tip
        ("splunk", "detections/endpoint/windows_proxy_via_netsh.yml", "Windows Proxy Via Netsh"),
        ("splunk", "detections/endpoint/windows_proxy_via_registry.yml", "Windows Proxy Via Registry"),
    ]
    netsh = tip_reader.file_mentions("splunk", "detections/endpoint/windows_proxy_via_netsh.yml")
    assert all(f"atomic:{guid}" in m.tags for m in netsh)
    assert validated_by(tip_reader, "00000000-0000-0000-0000-000000000000") == []


# --- LOLBAS links to Splunk detections ------------------------------------------------------------
# Checked by hand against git in a clone of splunk.bundle (the links pin upstream commits the
# filtered bundle does not hold, so each resolves through the path's history):
#   `git cat-file -e HEAD:<linked path>` holds for 44 of the 48 links: ok. Certutil.yml line 67:
#     detections/endpoint/certutil_download_with_urlcache_and_split_arguments.yml, `id:` 415b4306-...;
#     Netsh.yml line 22 links detections/deprecated/processes_created_by_netsh.yml, still there
#     (`id:` b89919ed-..., `status: deprecated`): ok, its current path under deprecated/.
#   Mshta.yml line 68 links stories/suspicious_mshta_activity.yml, Regasm.yml line 33 a page under
#     docs/_stories/, Sqlps.yml and Sqltoolsps.yml a docs/_posts/ page: not detection files.
SPLUNK_LINKS = {
    ("yml/OSBinaries/Certutil.yml", 67): (
        "ok",
        "detections/endpoint/certutil_download_with_urlcache_and_split_arguments.yml",
        "415b4306-8bfb-11eb-85c4-acde48001122",
    ),
    ("yml/OSBinaries/Netsh.yml", 22): (
        "ok",
        "detections/deprecated/processes_created_by_netsh.yml",
        "b89919ed-fe5f-492c-b139-95dbb162041e",
    ),
    ("yml/OSLibraries/comsvcs.yml", 22): (
        "ok",
        "detections/endpoint/dump_lsass_via_comsvcs_dll.yml",
        "8943b567-f14d-4ee8-a0bb-2121d4ce3184",
    ),
    ("yml/OSBinaries/Mshta.yml", 68): ("unresolvable", None, None),
    ("yml/OSBinaries/Regasm.yml", 33): ("unresolvable", None, None),
    ("yml/OtherMSBinaries/Sqlps.yml", 26): ("unresolvable", None, None),
    ("yml/OtherMSBinaries/Sqltoolsps.yml", 20): ("unresolvable", None, None),
}


def test_lolbas_links_to_splunk_detections_are_resolved_through_its_history(tip_data_dir: Path) -> None:
    done = indexer("links", "--source", "splunk", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    links = {(l["lolbas_path"], l["line"]): l for l in json.loads(done.stdout)}
    assert len(links) == 48 and {l["rule_set"] for l in links.values()} == {"splunk"}
    pinned = {
        key: (l["status"], l.get("current_path"), l.get("rule_id")) for key, l in links.items() if key in SPLUNK_LINKS
    }
    assert pinned == SPLUNK_LINKS
    # the four that are not detection files are the only links not ok
    assert {key for key, l in links.items() if l["status"] != "ok"} == {
        key for key, (status, _, _) in SPLUNK_LINKS.items() if status != "ok"
    }
    assert links[("yml/OSBinaries/Mshta.yml", 68)]["reason"] == "not a rule file"
    ok = links[("yml/OSBinaries/Certutil.yml", 67)]
    assert ok["linked_ref"] == "3f77e24974239fcb7a339080a1a483e6bad84a82" and "the path's content at" in ok["basis"]


# Renames and deletions in the bundle's history (`git log --raw -M develop`), checked by hand:
#   windows_schedule_task_dll_module_loaded.yml: R096 to windows_scheduled_task_dll_module_loaded.yml
#     in 63342ef8 (2024-09-25); its `id:` bc5b2304-... is that file's at the tip: moved
#   detect_mimikatz_using_loaded_images.yml: R100 to detections/deprecated/ in 3f046335 (2023-04-24),
#     `id:` 29e307ba-...: deprecated
#   ssa___appinstaller_exe.yml: D in b932fcd4 (2023-01-03); `git grep` of its `id:` 057c06c7-... finds
#     no file at the tip: deleted
SPLUNK_HISTORY = {
    "windows_schedule_task_dll_module_loaded.yml": (
        "moved",
        "detections/endpoint/windows_scheduled_task_dll_module_loaded.yml",
        "bc5b2304-f241-419b-874a-e927f667b7b6",
        "63342ef8b344",
    ),
    "detect_mimikatz_using_loaded_images.yml": (
        "deprecated",
        "detections/deprecated/detect_mimikatz_using_loaded_images.yml",
        "29e307ba-40af-4ab2-91b2-3c6b392bbba0",
        "3f046335488e",
    ),
    "ssa___appinstaller_exe.yml": ("deleted", None, "057c06c7-ef31-4749-b5c9-199152e53a06", "b932fcd4eb22"),
}


@pytest.mark.parametrize("name", sorted(SPLUNK_HISTORY))
def test_a_link_to_a_detection_that_moved_was_retired_or_deleted(tip_data_dir: Path, tip_reader, name: str) -> None:
    status, current, rule_id, commit = SPLUNK_HISTORY[name]
    history = PathHistory.from_json((tip_data_dir / "history" / "splunk.json").read_text(encoding="utf-8"))
    source = get("splunk")
    repo = Repository(source.spec(str(BUNDLE)), clone_path(tip_data_dir, "splunk"))
    try:
        rules, paths = xref._tip(tip_reader.state, "splunk")
        url = f"https://github.com/splunk/security_content/blob/{'0' * 40}/detections/endpoint/{name}"
        target = xref.LinkTarget("splunk", source.repositories(), source.wants)
        found = xref.resolve_link(url, target, repo, history, rules, paths)
    finally:
        repo.close()
    assert (found["status"], found.get("current_path"), found["rule_id"]) == (status, current, rule_id)
    assert commit in found["basis"]


_PROCESS_NAME = re.compile(r"process_name\s*=\s*\"?([\w.\-]+\.exe)\b", re.IGNORECASE)
_EXECUTABLE = re.compile(r"^[^*%\\/]+\.(exe|dll|com|scr|cpl|msc|ps1|bat|cmd|vbs|js|hta|sys)$", re.IGNORECASE)


def test_cross_check_every_process_name_value_after_expansion_is_in_the_index(tip_reader, tip_data_dir: Path) -> None:
    """Every `process_name=X` / `process_name IN (...)` value of a detection at the tip (macros
    expanded by the tokenizer, negated or not) that is an executable's file name is indexed
    for that detection with its field, role and context."""
    commit = tip_reader.sources["splunk"]["commit"]
    clone = str(tip_data_dir / "sources" / "splunk.git")
    tree = git("--git-dir", clone, "ls-tree", "-r", "--name-only", commit).split()
    blobs = _blobs(clone, commit, [p for p in tree if p.startswith(("macros/", "detections/"))])
    macros = load_macros({p: blob for p, blob in blobs.items() if p.startswith("macros/")})
    by_file = mentions_by_file(tip_reader, "splunk")
    checked, regex_checked, missing, detections = 0, 0, [], 0
    for path in (p for p in tree if p.startswith("detections/")):
        data = yaml.load(blobs[path], Loader=yaml.CSafeLoader)  # the C loader: 10x the pure-Python one
        detections += 1
        expected = set()
        for c in comparisons(expand(str(data.get("search") or ""), lambda n, k: macros.get((n, k))).pieces):
            if c.field is None or not c.field.token.value.lower().endswith("process_name"):
                continue
            for value in c.values:
                if _EXECUTABLE.match(value.token.value):
                    context = "filter" if c.negated else "selection"
                    expected.add((value.token.value.lower(), c.field.token.value, context))
        got = {(m.binary, m.field, m.context) for m in by_file.get(path, [])}
        checked += len(expected)
        missing += [(path, *e) for e in sorted(expected - got)]
        # and without the tokenizer: a regex over the search and the definitions of the macros it calls
        text = str(data.get("search") or "")
        text += " ".join(m.definition for (name, _), m in macros.items() if f"`{name}`" in text)
        plain = {name.lower() for name in _PROCESS_NAME.findall(text)}
        regex_checked += len(plain)
        missing += [
            (path, name, "regex") for name in sorted(plain - {b for b, f, _ in got if f.endswith("process_name")})
        ]
    assert detections == 1711 and checked > 1000 and regex_checked > 500, (detections, checked, regex_checked)
    assert missing == [], f"{len(missing)} of {checked} process names not indexed, e.g. {missing[:5]}"


def _blobs(clone: str, commit: str, paths: list[str]) -> dict[str, bytes]:
    """Each file at the commit (one `git cat-file --batch` for all of them)."""
    import subprocess

    out = subprocess.run(
        ["git", "--git-dir", clone, "cat-file", "--batch"],
        input="".join(f"{commit}:{path}\n" for path in paths).encode(),
        check=True,
        capture_output=True,
    ).stdout
    blobs, at = {}, 0
    for path in paths:
        end = out.index(b"\n", at)
        _sha, kind, size = out[at:end].split()
        assert kind == b"blob", (path, kind)
        blobs[path], at = out[end + 1 : end + 1 + int(size)], end + 2 + int(size)
    assert at == len(out)
    return blobs


@pytest.mark.slow
def test_a_macro_changed_upstream_reads_its_detections_again_and_equals_a_full_build(tmp_path: Path) -> None:
    """The real bundle: b8db3a8b (32 first-parent commits before the tip) changes only
    macros/linux_hosts.yml, which two detections call. Indexed the commit before, then moved to
    it, the refresh reads the macro and those two detections and gives what a full build gives
    (tests/test_refresh.py moves every atlas source, Splunk too, 10 commits back and to the tip)."""
    upstream = Upstream(BUNDLE, tmp_path / "splunk.git", "develop")
    changed = upstream.back(32)
    assert [c.path for c in upstream.diff(upstream.back(33), changed)] == ["macros/linux_hosts.yml"]
    users = sorted(
        p
        for p in git(
            "--git-dir", str(upstream.path), "grep", "-l", "`linux_hosts`", changed, "--", "detections"
        ).split()
    )
    assert len(users) == 2
    spec = [get("splunk").spec(str(upstream.path))]
    upstream.move(upstream.back(33))
    data_dir = tmp_path / "data"
    first = refresh(RefreshOptions(data_dir, spec))
    # then, a deprecated detection had a duplicate key (fixed before the tip): reported, the rest indexed
    assert [e["reason"] for e in first.file_errors] == ["line 35: duplicate key 'asset_type'"]
    upstream.move(changed)
    manifest = refresh(RefreshOptions(data_dir, spec))
    assert manifest.sources["splunk"].mode == "incremental"
    assert manifest.files_parsed == 3  # the macro, and the two detections that call it
    full_dir = tmp_path / "full"
    assert refresh(RefreshOptions(full_dir, spec)).exit_code == 1  # the duplicate key, still there
    assert _everything(data_dir) == _everything(full_dir)


def _everything(data_dir: Path) -> tuple[list[Mention], dict[str, tuple[str, str, list[str]]]]:
    with IndexReader(data_dir) as reader:
        mentions = sorted(m for r in reader.state.files.values() for m in reader.file_mentions(r.source, r.path))
        files = {k: (r.status, r.reason, r.depends) for k, r in sorted(reader.state.files.items())}
    return mentions, files


def test_only_a_macro_changes_in_a_small_repository(tmp_path: Path) -> None:
    """A repository of one macro and two detections (one calls it): the macro alone changes
    upstream (certutil -> bitsadmin); the incremental refresh reads the macro and its caller,
    not the other detection, and equals a full build."""
    repo = tmp_path / "security_content"
    repo.mkdir()
    git("init", "-q", "-b", "develop", cwd=repo)
    files = {
        "macros/process_lolbin.yml": "definition: (Processes.process_name=certutil.exe)\nname: process_lolbin\n",
        "detections/endpoint/a.yml": "name: A\nsearch: '| tstats count where `process_lolbin` by x'\n",
        "detections/endpoint/b.yml": "name: B\nsearch: '| tstats count where Processes.process_name=whoami.exe'\n",
    }
    for step, text in enumerate(
        (files["macros/process_lolbin.yml"], files["macros/process_lolbin.yml"].replace("certutil", "bitsadmin"))
    ):
        files["macros/process_lolbin.yml"] = text
        for path, content in files.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(content, encoding="utf-8")
        git("add", "-A", cwd=repo)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", f"step {step}", cwd=repo)
        manifest = refresh(RefreshOptions(tmp_path / "data", [get("splunk").spec(str(repo))]))
        assert manifest.exit_code == 0, manifest.file_errors
    assert manifest.sources["splunk"].mode == "incremental" and manifest.files_parsed == 2
    assert _search(tmp_path / "data", "bitsadmin.exe")[0]["rules"][0]["path"] == "detections/endpoint/a.yml"
    assert indexer("search", "certutil.exe", data_dir=tmp_path / "data").returncode == 1
    assert refresh(RefreshOptions(tmp_path / "full", [get("splunk").spec(str(repo))])).exit_code == 0
    assert _everything(tmp_path / "data") == _everything(tmp_path / "full")


def test_names_without_extension_feed_the_bare_names_of_their_platform_only() -> None:
    """Found on the real bundle: a Windows detection's `original_file_name=procdump` made
    `procdump` a Unix name (inferred in Linux rules); an auditd detection's
    `LIKE(process_exec, "%pass%")` (process_exec holds the command line there) made `pass` an
    executable; CIM's placeholder `unknown` became a program."""
    windows = read(
        "detections/endpoint/w.yml",
        """\
        name: W
        tags:
          security_domain: endpoint
        search: '| tstats count where Processes.original_file_name=procdump Processes.original_file_name!="unknown" by x'
        """,
    )
    assert windows.report.executables == []  # Splunk's names feed no bare-name inference (Source.feeds_stems)
    assert windows.extraction.executables() == {"windows:procdump"}
    assert [(m.binary, m.context) for m in windows.extraction.mentions] == [("procdump", "selection")]
    linux = read(
        "detections/endpoint/linux_auditd_x.yml",
        """\
        name: L
        search: '`linux_auditd` | where LIKE (process_exec, "%pass %") OR process_name="curl"'
        """,
    )
    assert linux.extraction.executables() == {"curl"}
    assert splunk_role("process_exec") == "command_line"


@pytest.mark.parametrize(
    "path, data, platform",
    [
        (
            "detections/deprecated/dump_lsass_via_procdump_rename.yml",
            {"search": "`sysmon` OriginalFileName=procdump"},
            "windows",
        ),
        ("detections/endpoint/linux_x.yml", {"data_source": ["Sysmon for Linux EventID 1"]}, "linux"),
        ("detections/endpoint/macos_x.yml", {}, "macos"),
        ("detections/endpoint/x.yml", {}, "windows"),
        ("detections/cloud/aws_x.yml", {"tags": {"security_domain": "threat"}}, ""),
    ],
)
def test_a_detection_s_platform(path: str, data: dict[str, Any], platform: str) -> None:
    assert detection_platform(path, data) == platform


def test_a_macro_file_has_the_platform_of_what_it_defines(splunk_macros) -> None:
    """Found by test_joins (curl.exe named on no platform by macros/process_curl.yml): a macro
    of Windows process names (an original file name: a PE header) is windows, a linux_ one linux."""
    certutil = read("macros/process_certutil.yml", MACROS["macros/process_certutil.yml"].decode())
    assert {m.platform for m in certutil.extraction.mentions} == {"windows"}
    shells = read(
        "macros/linux_shells.yml", 'definition: (Processes.process_name IN ("bash", "zsh"))\nname: linux_shells\n'
    )
    assert [(m.binary, m.platform) for m in shells.extraction.mentions] == [("bash", "linux"), ("zsh", "linux")]
    other = read(
        "macros/cloudtrail.yml", "definition: sourcetype=aws:cloudtrail\ndescription: uses curl.exe\nname: x\n"
    )
    assert [(m.binary, m.platform) for m in other.extraction.mentions] == [("curl.exe", "")]
