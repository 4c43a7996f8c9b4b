"""LOLBAS coverage by three rule sets (issue 18 item 6): `coverage`'s tier of an entry by Sigma,
Elastic and Splunk each, `gaps`' rule sets that detect a binary running or invoked, and
`search NAME --json` across the three.

Every expectation was written by reading the real rules at the tips of sigma.bundle,
elastic.bundle and splunk.bundle (`grep -rniF NAME` over each clone's rule folders, then the
lines cited). Tiers as `indexer coverage` defines them: running (a rule selects the process
itself), other (parent, target, loaded module, or named in a command line: invoked), mentioned
(only named: text, filters, artifacts, a masquerade's list), none. `gaps` counts runs and invoked only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer.index import IndexReader
from indexer.joins import gaps, rule_set_coverage
from repos import run_cli

SETS = ("elastic", "sigma", "splunk")  # the detection sources, as `coverage` and `gaps` order them

# entry path -> (binary, tiers by elastic, sigma, splunk; the rule sets `gaps` says detect it on Windows)
EXPECTED: dict[str, tuple[str, tuple[str, str, str], tuple[str, ...]]] = {
    # sigma: rules/windows/process_creation/proc_creation_win_certutil_decode.yml L23 Image|endswith '\certutil.exe';
    # elastic: rules/windows/defense_evasion_suspicious_certutil_commands.toml L154 process.name : "certutil.exe";
    # splunk: detections/endpoint/office_product_spawning_certutil.yml L13 calls `process_certutil`
    #   (macros/process_certutil.yml: Processes.process_name=certutil.exe)
    "yml/OSBinaries/Certutil.yml": ("certutil.exe", ("running", "running", "running"), SETS),
    # sigma: proc_creation_win_mshta_http.yml L19 Image|endswith '\mshta.exe'; elastic:
    # rules/windows/execution_windows_fakecaptcha_cmd_ps.toml L50 process.name : (..., "mshta.exe");
    # splunk: detections/endpoint/suspicious_mshta_spawn.yml calls `process_mshta` (process_name=mshta.exe)
    "yml/OSBinaries/Mshta.yml": ("mshta.exe", ("running", "running", "running"), SETS),
    # A DLL: sigma proc_creation_win_rundll32_susp_activity.yml L89 CommandLine|contains 'comsvcs.dll' (invoked);
    # elastic: rules/windows/credential_access_suspicious_comsvcs_imageload.toml L37-38: Sysmon's image load
    #   (`event.code == "7"`) of file.pe.original_file_name "COMSVCS.DLL" (loads; the masquerading DLL
    #   rule's dll.name list is `masquerade`) and rules/windows/credential_access_cmdline_dump_tool.toml L68: rundll32 with
    #   process.command_line : "*comsvcs*#*24*" (invoked, as Sigma's 'comsvcs' in
    #   proc_creation_win_rundll32_process_dump_via_comsvcs.yml L36);
    # splunk: detections/endpoint/dump_lsass_via_comsvcs_dll.yml L13 Processes.process=*comsvcs.dll* (invoked)
    "yml/OSLibraries/comsvcs.yml": ("comsvcs.dll", ("other", "other", "other"), SETS),
    # sigma: proc_creation_win_rundll32_advpack_obfuscated_ordinal_call.yml (CommandLine 'advpack', invoked);
    # elastic: only rules/windows/defense_evasion_masquerading_windows_dll.toml L102, its list of 2,609
    #   dll.name values kept only when not signed by Microsoft (L91-99 under `not`): masquerade;
    # splunk: detect_rundll32_application_control_bypass___advpack.yml L13 Processes.process=*advpack* (invoked)
    "yml/OSLibraries/Advpack.yml": ("advpack.dll", ("mentioned", "other", "other"), ("sigma", "splunk")),
    # sigma: proc_creation_win_rundll32_susp_activity.yml names ieadvpack.dll in a command line (invoked);
    # elastic: only the masquerading DLL rule's list (L102: masquerade); splunk: the advpack rule's
    #   description says "advpack.dll or ieadvpack.dll" (text) and its search names advpack only: mentioned
    "yml/OSLibraries/Ieadvpack.yml": ("ieadvpack.dll", ("mentioned", "other", "mentioned"), ("sigma",)),
    # Elastic only: rules_building_block/execution_wmi_wbemtest.toml L43 process.name : "wbemtest.exe";
    # `grep -i wbemtest` finds no Sigma rule and no Splunk detection
    "yml/OSBinaries/Wbemtest.yml": ("wbemtest.exe", ("running", "none", "none"), ("elastic",)),
    # Named by one Elastic building block only: rules_building_block/
    # defense_evasion_masquerading_windows_system32_exe.toml L39 lists 640 System32 names in
    # process.name, kept only when not signed by Microsoft (L41-46 under `not`): masquerade, a fake
    # change.exe; `grep -ri change.exe` finds no other Elastic rule (two hits are "change executable"
    # and "pbx_exchange.exe"), no Sigma rule, no Splunk detection
    "yml/OSBinaries/Change.yml": ("change.exe", ("mentioned", "none", "none"), ()),
    # Sigma only: proc_creation_win_gfxdownloadwrapper_arbitrary_file_download.yml L18
    # Image|endswith '\GfxDownloadWrapper.exe'; named by no Elastic or Splunk rule
    "yml/HonorableMentions/GfxDownloadWrapper.yml": ("gfxdownloadwrapper.exe", ("none", "running", "none"), ("sigma",)),
    # Splunk only: detections/endpoint/windows_debugger_tool_execution.yml L14 Processes.process_name = "windbg.exe";
    # sigma: proc_creation_win_lolbin_remote.yml L4 "Remote.exe is part of WinDbg" (text); no Elastic rule
    "yml/OtherMSBinaries/WinDbg.yml": ("windbg.exe", ("none", "mentioned", "running"), ("splunk",)),
    # sigma selects mavinject32.exe/mavinject64.exe (proc_creation_win_renamed_mavinject.yml L28) and
    #   ' /INJECTRUNNING ' (proc_creation_win_lolbin_mavinject_process_injection.yml), naming
    #   Mavinject in its title and description only: mentioned;
    # elastic: only the System32 masquerading building block's list (masquerade); splunk:
    #   windows_binary_proxy_execution_mavinject_dll_injection.yml L13 Processes.process_name=mavinject.exe
    "yml/OSBinaries/Mavinject.yml": ("mavinject.exe", ("mentioned", "mentioned", "running"), ("splunk",)),
    # sigma names pscp.exe (unsupported/) and winscp.exe, never scp.exe; elastic:
    # rules/windows/defense_evasion_obf_args_unicode_modified_letters.toml L57 process.name : (..., "scp.exe");
    # splunk: detections/endpoint/winrm_spawning_a_process.yml L21 Processes.process_name IN (..., "scp.exe")
    "yml/OSBinaries/Scp.yml": ("scp.exe", ("running", "none", "running"), ("elastic", "splunk")),
    # none: `grep -ri ntsd` / `grep -ri dsdbutil` find no rule in any of the three
    "yml/OtherMSBinaries/Ntsd.yml": ("ntsd.exe", ("none", "none", "none"), ()),
    "yml/OtherMSBinaries/Dsdbutil.yml": ("dsdbutil.exe", ("none", "none", "none"), ()),
}


@pytest.fixture(scope="module")
def coverage_by_set(tip_data_dir: Path):
    with IndexReader(tip_data_dir) as reader:
        return rule_set_coverage(reader)


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_an_entry_s_tier_by_each_rule_set(coverage_by_set, path: str) -> None:
    assert coverage_by_set.rule_sets == SETS
    entry = next(e for e in coverage_by_set.entries if e.path == path)
    assert tuple(entry.tiers[s] for s in SETS) == EXPECTED[path][1]


def test_only_all_and_none_count_the_entries_so(coverage_by_set) -> None:
    def detecting(tiers: dict[str, str], wanted: tuple[str, ...]) -> set[str]:
        return {s for s, t in tiers.items() if t in wanted}

    for wanted, only, every, none in (
        (("running",), "running_only", "running_by_all", "running_by_none"),
        (("running", "other"), "detected_only", "detected_by_all", "detected_by_none"),
    ):
        hits = [detecting(e.tiers, wanted) for e in coverage_by_set.entries]
        assert getattr(coverage_by_set, only) == {s: hits.count({s}) for s in SETS}
        assert getattr(coverage_by_set, every) == hits.count(set(SETS))
        assert getattr(coverage_by_set, none) == hits.count(set())
    # the hand-checked entries in those counts: running by Elastic only (Wbemtest), by Sigma only
    # (GfxDownloadWrapper), by Splunk only (WinDbg, Mavinject), by all three (Certutil, Mshta), by
    # none (Change: only a masquerading rule names it), detected by none (Ntsd, Dsdbutil)
    by_path = {e.path: detecting(e.tiers, ("running",)) for e in coverage_by_set.entries}
    assert by_path["yml/OSBinaries/Wbemtest.yml"] == {"elastic"}
    assert by_path["yml/OSBinaries/Mavinject.yml"] == {"splunk"} and by_path["yml/OSBinaries/Change.yml"] == set()
    assert by_path["yml/HonorableMentions/GfxDownloadWrapper.yml"] == {"sigma"}
    assert by_path["yml/OtherMSBinaries/WinDbg.yml"] == {"splunk"}
    assert by_path["yml/OSBinaries/Certutil.yml"] == by_path["yml/OSBinaries/Mshta.yml"] == set(SETS)


def test_gaps_name_the_rule_sets_that_detect_each_binary(tip_reader: IndexReader) -> None:
    report = gaps(tip_reader, every=True, platform="windows")
    assert report.rule_sets == SETS
    rows = {r.binary: r for r in report.rows}
    found = {binary: rows[binary].detected_by for binary, _, _ in EXPECTED.values()}
    assert found == {binary: detected for binary, _, detected in EXPECTED.values()}
    # comsvcs.dll: Elastic's rules load it (Sysmon's image load of a renamed COMSVCS.DLL), invoke it
    # (the dump tool rule) and list it among the names of impostors (the masquerading DLL rule)
    assert rows["comsvcs.dll"].verdicts["elastic"][:2] == ("loads", "invoked")
    assert "masquerade" in rows["comsvcs.dll"].verdicts["elastic"]
    assert rows["ntsd.exe"].verdicts == {} and not rows["ntsd.exe"].detected_by


def test_coverage_cli_counts_each_rule_set_alone_and_together(tip_data_dir: Path) -> None:
    data = json.loads(run_cli("coverage", "--json", data_dir=tip_data_dir).stdout)["rule_sets"]
    tiers = {e["path"]: e["tiers"] for e in data["entries"]}
    for path, (_, expected, _) in EXPECTED.items():
        assert tuple(tiers[path][s] for s in SETS) == expected, path
    text = " ".join(run_cli("coverage", data_dir=tip_data_dir).stdout.split())  # lines wrapped to the terminal
    for name in SETS:
        assert f"detected running by {name} alone: {data['running_only'][name]}," in text
    assert f"detected running by all 3 rule sets: {data['running_by_all']}, by none: {data['running_by_none']}" in text


def test_search_certutil_lists_rules_of_all_three_rule_sets_with_verdicts(tip_data_dir: Path) -> None:
    done = run_cli("search", "certutil.exe", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    rules = {(r["source"], r["path"]): r for r in json.loads(done.stdout)[0]["rules"]}
    assert {"sigma", "elastic", "splunk"} <= {source for source, _ in rules}
    expected = {
        ("sigma", "rules/windows/process_creation/proc_creation_win_certutil_decode.yml"): "runs",
        ("elastic", "rules/windows/defense_evasion_suspicious_certutil_commands.toml"): "runs",
        ("splunk", "detections/endpoint/office_product_spawning_certutil.yml"): "runs",
        # L88 `"C:\\Windows\\Sys?????\\certutil.exe"` in a list under `not process.executable : (...)`
        ("elastic", "rules/windows/defense_evasion_msiexec_child_proc_netcon.toml"): "excluded",
        # L68 "an alternative to certutil." in the description only
        ("elastic", "rules/windows/command_and_control_remote_file_copy_desktopimgdownldr.toml"): "mentioned",
        ("splunk", "macros/process_certutil.yml"): "mentioned",  # a macro's definition, not a detection
    }
    assert {key: rules[key]["verdict"] for key in expected} == expected
    assert rules[("splunk", "detections/endpoint/office_product_spawning_certutil.yml")]["level"] == "high"
    assert rules[("elastic", "rules/windows/defense_evasion_suspicious_certutil_commands.toml")]["level"] == "medium"


GOLDEN_VERDICTS = yaml.safe_load(
    (Path(__file__).resolve().parent / "golden" / "sources" / "rule_set_verdicts.yaml").read_text(encoding="utf-8")
)


@pytest.mark.parametrize(
    "pair",
    GOLDEN_VERDICTS,
    ids=[f"{p['source']}:{p['rule'].rsplit('/', 1)[-1]}:{p['binary']}" for p in GOLDEN_VERDICTS],
)
def test_hand_read_verdicts_of_elastic_and_splunk_rules(tip_reader: IndexReader, pair: dict[str, Any]) -> None:
    """tests/golden/sources/rule_set_verdicts.yaml: module loads give `loads` whatever the rule set
    calls the event (Splunk's Sysmon event 7, ECS's library events and Sysmon image loads)."""
    found = [r for r in tip_reader.rules([pair["binary"]]) if (r.source, r.path) == (pair["source"], pair["rule"])]
    assert [(r.verdict, list(r.verdicts)) for r in found] == [(pair["verdict"], pair["verdicts"])]
