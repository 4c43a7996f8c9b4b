"""Verdicts: what a rule file does with a binary, on real rules read by hand, and in `search`.

Every pair in REAL_PAIRS was written by opening the rule file in a clone of the Sigma (or
LOLBAS) bundle and reading its detection, title, description and false positives against the
order runs > parent > target > loads > invoked > artifact > excluded > mentioned (LOLBAS
entries: documented). `verdicts` is the whole set where no pending name fix (bare names in
descriptions, process values without extension) could change it; otherwise only the strongest
verdict is pinned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.index import META_FILE, IndexReader, current_generation
from indexer.query import search
from indexer.verdicts import (
    DETECTING,
    SIGMA_VERDICTS,
    VERDICTS,
    RuleVerdict,
    mention_verdict,
    parse_verdicts,
    rule_verdicts,
)
from repos import run_cli

ROOT = Path(__file__).resolve().parent.parent
PC = "rules/windows/process_creation/"

# (path, binary, verdict, verdicts or None, what the file says)
REAL_PAIRS = [
    (
        PC + "proc_creation_win_psr_capture_screenshots.yml",
        "psr.exe",
        "runs",
        ("runs", "mentioned"),
        "l.20 selection Image|endswith '\\Psr.exe'; title and description name it",
    ),
    (
        PC + "proc_creation_win_lolbin_diantz_ads.yml",
        "diantz.exe",
        "invoked",
        ("invoked", "mentioned"),
        "l.18-19 CommandLine|contains|all: diantz.exe; title 'Suspicious Diantz ...'",
    ),
    (
        PC + "proc_creation_win_setres_uncommon_child_process.yml",
        "setres.exe",
        "parent",
        ("parent", "mentioned"),
        "l.25 ParentImage|endswith '\\setres.exe'; title and description name Setres.EXE",
    ),
    (
        PC + "proc_creation_win_provlaunch_susp_child_process.yml",
        "provlaunch.exe",
        "parent",
        ("parent", "mentioned"),
        "l.25 ParentImage|endswith '\\provlaunch.exe'; title and description",
    ),
    (
        PC + "proc_creation_win_provlaunch_susp_child_process.yml",
        "mshta.exe",
        "runs",
        ("runs",),
        "l.31 selection_child Image|endswith '\\mshta.exe'",
    ),
    (
        "rules/windows/process_access/proc_access_win_lsass_dump_comsvcs_dll.yml",
        "lsass.exe",
        "target",
        ("target", "mentioned"),
        "l.19 TargetImage|endswith '\\lsass.exe'; title 'Lsass Memory Dump ...'",
    ),
    (
        "rules/windows/process_access/proc_access_win_lsass_dump_comsvcs_dll.yml",
        "comsvcs.dll",
        "loads",
        ("loads", "mentioned"),
        "l.21 CallTrace|contains 'comsvcs.dll' (a module in the caller's stack); description",
    ),
    (
        "rules/windows/process_access/proc_access_win_lsass_dump_comsvcs_dll.yml",
        "rundll32.exe",
        "runs",
        None,
        "l.20 SourceImage|endswith '\\rundll32.exe': the process opening lsass",
    ),
    (
        PC + "proc_creation_win_rundll32_process_dump_via_comsvcs.yml",
        "comsvcs.dll",
        "invoked",
        ("invoked", "mentioned"),
        "l.35-36 CommandLine|contains|all 'comsvcs' (a bare name in the command line); title 'Comsvcs.DLL'",
    ),
    (
        PC + "proc_creation_win_rundll32_process_dump_via_comsvcs.yml",
        "rundll32.exe",
        "runs",
        None,
        "l.31 Image|endswith '\\rundll32.exe', l.33 CommandLine|contains 'rundll32'",
    ),
    (
        "rules/windows/create_remote_thread/create_remote_thread_win_susp_uncommon_target_image.yml",
        "ping.exe",
        "target",
        ("target",),
        "l.27 TargetImage|endswith '\\ping.exe'",
    ),
    (
        "rules/windows/create_remote_thread/create_remote_thread_win_susp_uncommon_target_image.yml",
        "sethc.exe",
        "target",
        ("target", "excluded"),
        "l.28 selection TargetImage; l.41 filter_main_sethc TargetImage",
    ),
    (
        "rules/windows/create_remote_thread/create_remote_thread_win_susp_uncommon_target_image.yml",
        "csrss.exe",
        "excluded",
        ("excluded",),
        "l.33 only in filter_main_csrss SourceImage",
    ),
    (
        "rules/windows/create_remote_thread/create_remote_thread_win_susp_uncommon_target_image.yml",
        "vmtoolsd.exe",
        "excluded",
        ("excluded",),
        "l.47 only in filter_optional_vmtoolsd",
    ),
    (
        PC + "proc_creation_win_susp_sysnative.yml",
        "ngen.exe",
        "excluded",
        ("excluded",),
        "l.27 Image|endswith '\\ngen.exe' only in filter_main_ngen (condition: not 1 of filter_main_*)",
    ),
    (
        PC + "proc_creation_win_susp_sysnative.yml",
        "cmd.exe",
        "excluded",
        ("excluded",),
        "l.31 only in filter_optional_xampp CommandLine",
    ),
    (
        PC + "proc_creation_win_wab_unusual_parents.yml",
        "wab.exe",
        "runs",
        ("runs", "parent", "mentioned"),
        "l.26 Image, l.31 ParentImage in selection_child, description",
    ),
    (
        PC + "proc_creation_win_wab_unusual_parents.yml",
        "wmiprvse.exe",
        "parent",
        ("parent",),
        "l.22 ParentImage|endswith \\WmiPrvSE.exe",
    ),
    (
        "rules/windows/image_load/image_load_dll_dbghelp_dbgcore_unsigned_load.yml",
        "dbghelp.dll",
        "loads",
        ("loads", "mentioned"),
        "l.27 ImageLoaded|endswith '\\dbghelp.dll'; description l.9",
    ),
    (
        "rules/windows/image_load/image_load_dll_dbghelp_dbgcore_unsigned_load.yml",
        "lsass.exe",
        "mentioned",
        ("mentioned",),
        "only in the description (l.10 'Lsass.exe')",
    ),
    (
        "rules/windows/image_load/image_load_scrcons_wmi_scripteventconsumer.yml",
        "scrcons.exe",
        "runs",
        ("runs", "mentioned"),
        "l.22 Image|endswith '\\scrcons.exe' (the process loading); title, description",
    ),
    (
        "rules/windows/image_load/image_load_scrcons_wmi_scripteventconsumer.yml",
        "wshom.ocx",
        "loads",
        ("loads",),
        "l.26 ImageLoaded|endswith '\\wshom.ocx'",
    ),
    (
        "rules/windows/image_load/image_load_dll_credui_uncommon_process_load.yml",
        "wincredui.dll",
        "loads",
        ("loads",),
        "l.24 ImageLoaded|endswith and l.27 OriginalFileName: in an image_load event both name the loaded module",
    ),
    (
        "rules/windows/image_load/image_load_dll_credui_uncommon_process_load.yml",
        "regedit.exe",
        "excluded",
        ("excluded",),
        "l.39 Image only in filter_main_full",
    ),
    (
        PC + "proc_creation_win_wmic_susp_process_creation.yml",
        "wmic.exe",
        "mentioned",
        None,
        "title only ('... Via Wmic.EXE'): the detection never names wmic",
    ),
    (
        PC + "proc_creation_win_wmic_susp_process_creation.yml",
        "certutil.exe",
        "invoked",
        ("invoked",),
        "l.39 CommandLine|contains 'certutil'",
    ),
    (
        PC + "proc_creation_win_wmic_susp_process_creation.yml",
        "cmd.exe",
        "invoked",
        ("invoked",),
        "l.31 CommandLine|contains 'cmd.exe /c '",
    ),
    (
        "rules/windows/file/file_event/file_event_win_hktl_inveigh_artefacts.yml",
        "inveigh.ps1",
        "artifact",
        ("artifact",),
        "l.30 TargetFilename|endswith '\\Inveigh.ps1'",
    ),
    (
        "rules/windows/file/file_event/file_event_win_hktl_inveigh_artefacts.yml",
        "inveigh.exe",
        "artifact",
        ("artifact", "mentioned"),
        "l.29 TargetFilename|endswith '\\Inveigh.exe'; title 'HackTool - Inveigh ...'",
    ),
    (
        "rules/windows/registry/registry_set/registry_set_persistence_event_viewer_events_asp.yml",
        "svchost.exe",
        "excluded",
        ("excluded",),
        "l.28 and l.32 Image only in filter_default_redirect_*",
    ),
    (
        "rules/windows/registry/registry_set/registry_set_persistence_event_viewer_events_asp.yml",
        "helpctr.exe",
        "excluded",
        ("excluded",),
        "l.30 Details only in a filter",
    ),
    (
        "rules/windows/pipe_created/pipe_created_pua_paexec_default_pipe.yml",
        "paexec.exe",
        "artifact",
        None,
        "l.19 PipeName|startswith '\\PAExec': the pipe, not the process",
    ),
    (
        "rules/windows/builtin/application/application_error/win_application_error_lsass_crash.yml",
        "lsass.exe",
        "runs",
        None,
        "l.24 AppName: 'lsass.exe': the process that crashed",
    ),
    (
        "rules/windows/builtin/windefend/win_defender_asr_lsass_access.yml",
        "lsass.exe",
        "target",
        None,
        "l.19-20 EventID 1121 (ASR block) Path|endswith '\\lsass.exe': the process protected; ProcessName the accessor",
    ),
    (
        "rules/windows/builtin/windefend/win_defender_asr_lsass_access.yml",
        "thor64.exe",
        "excluded",
        ("excluded",),
        "l.24 ProcessName|endswith in filter_thor",
    ),
    (
        "rules/windows/builtin/taskscheduler/win_taskscheduler_lolbin_execution_via_task_scheduler.yml",
        "mshta.exe",
        "runs",
        ("runs",),
        "l.21-25 EventID 129 (Created Task Process) Path|endswith '\\mshta.exe': the process started",
    ),
    (
        "rules/linux/builtin/lnx_shell_clear_cmd_history.yml",
        "shred",
        "invoked",
        ("invoked",),
        "l.34 keyword 'shred *sh_history'",
    ),
    (
        "rules/linux/builtin/lnx_shell_clear_cmd_history.yml",
        "chattr",
        "invoked",
        ("invoked",),
        "l.23 keyword 'chattr +i*sh_history'",
    ),
    (
        "deprecated/windows/proc_creation_win_lolbin_findstr.yml",
        "findstr.exe",
        "runs",
        ("runs", "invoked", "mentioned"),
        "l.24 Image|endswith 'findstr.exe', l.23 CommandLine|contains findstr; title; retired (deprecated/)",
    ),
]
LOLBAS_PAIRS = [
    ("yml/OSBinaries/Diantz.yml", "diantz.exe"),
    ("yml/OSLibraries/comsvcs.yml", "comsvcs.dll"),
]


def _verdict(reader: IndexReader, path: str, binary: str) -> RuleVerdict:
    found = [r for r in reader.rules([binary]) if r.path == path]
    assert len(found) == 1, f"{path}: {len(found)} verdicts for {binary}"
    return found[0]


def test_real_pairs_cover_every_sigma_verdict():
    assert len(REAL_PAIRS) >= 25
    # masquerade is Elastic's (tests/golden/sources/rule_set_verdicts.yaml): no Sigma rule reads a signer
    assert {verdict for _, _, verdict, _, _ in REAL_PAIRS} == set(SIGMA_VERDICTS) - {"masquerade"}


@pytest.mark.parametrize(
    "path,binary,verdict,verdicts,why", REAL_PAIRS, ids=[f"{p.rsplit('/', 1)[-1]}:{b}" for p, b, *_ in REAL_PAIRS]
)
def test_verdict_of_a_real_rule(tip_reader, path, binary, verdict, verdicts, why):
    rule = _verdict(tip_reader, path, binary)
    assert rule.verdict == verdict, why
    if verdicts is not None:
        assert rule.verdicts == verdicts, why
    assert rule.source == "sigma" and rule.rule_id and rule.title
    assert rule.retired == path.startswith("deprecated/")


@pytest.mark.parametrize("path,binary", LOLBAS_PAIRS)
def test_lolbas_entry_documents_and_never_detects(tip_reader, path, binary):
    rule = _verdict(tip_reader, path, binary)
    assert rule.source == "lolbas" and rule.verdict == "documented" and not rule.detects


def test_stored_verdicts_are_the_function_of_the_stored_mentions(tip_reader):
    """The verdicts written at build time equal the pure function over each binary's mentions."""
    for binary in ("rundll32.exe", "comsvcs.dll", "lsass.exe", "cmd.exe", "winrm.vbs"):
        stored = sorted(tip_reader.rules([binary]), key=lambda r: (r.source, r.path))
        recomputed = sorted(rule_verdicts(tip_reader.stored(binary)), key=lambda r: (r.source, r.path))
        assert stored == recomputed and stored


def test_a_file_naming_a_binary_has_exactly_one_verdict_for_it(tip_reader):
    for binary in ("powershell.exe", "certutil.exe", "svchost.exe"):
        files = {(m.source, m.path) for m in tip_reader.search([binary])}
        rules = tip_reader.rules([binary])
        assert sorted((r.source, r.path) for r in rules) == sorted(files)


# --- the pure function ---------------------------------------------------------------------------


def _m(**values):
    base = {
        "source": "sigma",
        "path": "r.yml",
        "binary": "x.exe",
        "role": "process",
        "context": "selection",
        "field": "Image",
        "logsource": "windows/process_creation",
    }
    return {**base, **values}


def test_filters_never_detect():
    for role in (
        "process",
        "parent",
        "original_filename",
        "target",
        "loaded_module",
        "command_line",
        "keyword",
        "file",
        "registry",
        "other",
        "a_role_not_invented_yet",
    ):
        assert mention_verdict(_m(role=role, context="filter")) == "excluded", role


def test_unknown_and_comment_roles_are_mentions():
    assert mention_verdict(_m(role="comment", context="")) == "mentioned"
    assert mention_verdict(_m(role="comment", context="selection")) == "mentioned"
    assert mention_verdict(_m(role="a_role_not_invented_yet")) == "mentioned"
    assert mention_verdict(_m(role="text", context="")) == "mentioned"


def test_strongest_wins_and_order_is_documented():
    mentions = [
        _m(role="text", context=""),
        _m(role="command_line", field="CommandLine"),
        _m(role="process", context="filter"),
        _m(role="parent", field="ParentImage"),
    ]
    (rule,) = rule_verdicts(mentions)
    assert rule.verdict == "parent" and rule.verdicts == ("parent", "invoked", "excluded", "mentioned")
    assert VERDICTS[:9] == (
        *("runs", "parent", "target", "loads", "invoked", "artifact", "masquerade", "excluded", "mentioned"),
    )
    assert DETECTING == set(VERDICTS[:5])


def test_pe_metadata_names_the_module_in_image_load_events():
    assert mention_verdict(_m(role="other", field="Product")) == "runs"
    assert mention_verdict(_m(role="other", field="Product", logsource="windows/image_load")) == "loads"
    assert mention_verdict(_m(role="other", field="PipeName")) == "artifact"
    assert (
        mention_verdict(_m(role="original_filename", field="OriginalFileName", logsource="windows/image_load"))
        == "loads"
    )
    assert mention_verdict(_m(role="original_filename", field="OriginalFileName")) == "runs"


def test_record_round_trips_and_ignores_unknown_keys():
    (rule,) = rule_verdicts([_m(path="deprecated/windows/x.yml", status="deprecated", title="T", rule_id="1")])
    data = rule.to_dict()
    assert data["retired"] is True and data["verdicts"] == ["runs"]
    assert RuleVerdict.from_dict({**data, "homoglyph": True}) == rule


def test_verdict_option_values():
    assert parse_verdicts(["runs,parent", "loads", "runs"]) == ["runs", "parent", "loads"]
    with pytest.raises(ValueError, match="choose from runs, parent"):
        parse_verdicts(["detects"])


# --- search --------------------------------------------------------------------------------------


RULE_KEYS = {"path", "source", "rule_id", "title", "level", "status", "verdict", "verdicts", "binary", "retired"}


def test_search_json_keeps_mentions_and_adds_rules(tip_data_dir):
    done = run_cli("search", "setres.exe", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    (data,) = json.loads(done.stdout)
    assert data["mentions"] and data["rules"]
    assert {(m["source"], m["path"]) for m in data["mentions"]} == {(r["source"], r["path"]) for r in data["rules"]}
    assert all(set(r) == RULE_KEYS for r in data["rules"])
    by_path = {r["path"]: r for r in data["rules"]}
    assert by_path[PC + "proc_creation_win_setres_uncommon_child_process.yml"]["verdict"] == "parent"
    assert by_path["yml/OSBinaries/Setres.yml"]["verdict"] == "documented"


def test_search_detects_keeps_detecting_rules_and_their_mentions(tip_data_dir, tip_reader):
    done = run_cli("search", "comsvcs.dll", "--detects", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    (data,) = json.loads(done.stdout)
    everything = search(tip_reader, "comsvcs.dll")
    assert data["rules"] and all(r["verdict"] in DETECTING for r in data["rules"])
    assert len(data["rules"]) == sum(r.detects for r in everything.rules) < len(everything.rules)
    kept = {r["path"] for r in data["rules"]}
    assert {m["path"] for m in data["mentions"]} == kept
    assert "rules/windows/process_creation/proc_creation_win_rundll32_process_dump_via_comsvcs.yml" in kept


def test_search_verdict_filter_and_its_errors(tip_data_dir):
    done = run_cli("search", "ngen.exe", "--verdict", "excluded,mentioned", "--json", data_dir=tip_data_dir)
    (data,) = json.loads(done.stdout)
    assert done.returncode == 0 and data["rules"]
    assert {r["verdict"] for r in data["rules"]} <= {"excluded", "mentioned"}
    assert PC + "proc_creation_win_susp_sysnative.yml" in {r["path"] for r in data["rules"]}
    bad = run_cli("search", "ngen.exe", "--verdict", "detected", data_dir=tip_data_dir)
    assert bad.returncode == 4 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "indexer: error: unknown verdict 'detected' (choose from " + ", ".join(VERDICTS) + ")"
    ]


def test_search_detects_on_a_binary_only_mentioned_finds_nothing(tip_data_dir):
    # eudcedit.exe: a LOLBAS entry no Sigma file names (Elastic's System32 masquerading list runs it)
    done = run_cli("search", "eudcedit.exe", "--detects", "--source", "sigma", "--json", data_dir=tip_data_dir)
    assert done.returncode == 1 and json.loads(done.stdout)[0]["rules"] == []


def test_stale_index_format_asks_for_a_refresh(tip_data_dir, tmp_path):
    """An index written before verdicts were stored reads as 'run refresh', exit 4."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(tip_data_dir / "index", copy / "index")
    meta_path = current_generation(copy) / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["format"] = 5
    meta_path.write_text(json.dumps(meta))
    for args in (("search", "psr.exe", "--json"), ("show", "psr.exe"), ("coverage", "--json")):
        done = run_cli(*args, data_dir=copy)
        assert done.returncode == 4 and "Traceback" not in done.stderr, args
        assert "refresh" in done.stderr and done.stderr.count("\n") == 1, done.stderr


# --- show ----------------------------------------------------------------------------------------


def test_show_name_is_one_line_per_rule_strongest_first_retired_last(tip_data_dir, tip_reader):
    done = run_cli("show", "findstr.exe", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    rules = [r for r in tip_reader.rules(["findstr.exe"]) if r.source == "sigma"]
    lines = [ln for ln in done.stdout.splitlines() if ln.split()[:1] and ln.split()[0] in VERDICTS and " sigma:" in ln]
    assert len(lines) == len(rules) > 20  # the detection block: one line per Sigma rule file (Elastic's beside)
    verdicts = [ln.split()[0] for ln in lines]
    active = [v for v, ln in zip(verdicts, lines) if not ln.endswith("]")]
    assert active == sorted(active, key=VERDICTS.index) and active[0] == "runs"
    # deprecated/windows/proc_creation_win_lolbin_findstr.yml (status: deprecated, l.24 Image) is last, marked
    assert lines[-1].startswith("  runs ") and lines[-1].endswith(
        "sigma:deprecated/windows/proc_creation_win_lolbin_findstr.yml  [deprecated]"
    )
    assert "Abusing Findstr for Defense Evasion" in lines[-1] and " deprecated " in lines[-1]
    # the LOLBAS entry is abuse documentation: in its own block, after the detections
    text = done.stdout.splitlines()
    abuse = text.index("abuse (LOLBAS, GTFOBins, LOOBins)")
    assert abuse > text.index(lines[-1]) and any("lolbas:yml/OSBinaries/Findstr.yml L" in ln for ln in text[abuse:])


def test_show_name_json_rules_and_counts(tip_data_dir):
    data = json.loads(run_cli("show", "setres.exe", "--json", data_dir=tip_data_dir).stdout)
    setres = PC + "proc_creation_win_setres_uncommon_child_process.yml"
    sigma = [r for r in data["rules"] if r["source"] == "sigma"]  # Elastic's masquerading list runs it too
    assert sigma[0]["path"] == setres and sigma[0]["verdict"] == "parent"
    assert data["running_rules"] == [] and data["detecting_rules"] == [setres]


def test_show_rule_says_which_items_are_filters(tip_data_dir):
    path = PC + "proc_creation_win_setres_uncommon_child_process.yml"
    text = run_cli("show", path, data_dir=tip_data_dir).stdout
    assert "  item selection (selection): setres.exe, choice" in text.splitlines()  # `Image|contains: '\\choice'`
    assert "  item filter_main_legit_location (filter: excludes): choice.exe" in text.splitlines()
    assert "  setres.exe: parent (mentioned too)" in text.splitlines()
    data = json.loads(run_cli("show", path, "--json", data_dir=tip_data_dir).stdout)
    assert data["detection_items"] == [
        {"name": "selection", "context": "selection", "binaries": ["setres.exe", "choice"]},
        {"name": "filter_main_legit_location", "context": "filter", "binaries": ["choice.exe"]},
    ]
    assert [(v["binary"], v["verdict"]) for v in data["verdicts"]] == [
        ("choice", "runs"),
        ("setres.exe", "parent"),
        ("choice.exe", "excluded"),
    ]


def test_search_detects_says_the_filters_left_nothing(tip_data_dir):
    # ngen.exe: 5 Sigma rules name it, all only in filters (tests/golden/coverage.yaml)
    done = run_cli("search", "ngen.exe", "--detects", data_dir=tip_data_dir)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "ngen.exe: indexed, but no rule passes the filters\n"
