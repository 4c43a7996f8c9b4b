"""tests/golden/verdicts.yaml: (rule, binary) verdicts read by hand in the real rule files,
compared with the verdicts the index stores.

Pairs whose right answer needs the names work of issue 13 (items 4-6: process values without
extension, comments, bare names in text, logsource.definition, false names) are strict xfails
listed in PENDING_NAMES: each turns red the day the index gets it right; then drop it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer.verdicts import VERDICTS

GOLDEN = yaml.safe_load((Path(__file__).resolve().parent / "golden" / "verdicts.yaml").read_text(encoding="utf-8"))

# (rule file name, binary) -> what the index still lacks
PENDING_NAMES = {
    ("proc_creation_win_setres_uncommon_child_process.yml", "choice"): "process value without extension",
    ("proc_creation_win_remote_access_tools_renamed_meshagent_execution.yml", "meshagent"): "process value without extension",
    ("proc_creation_win_apt_mint_sandstorm_manage_engine_susp_child_process.yml", "java"): "process value without extension",
    ("proc_creation_lnx_crontab_removal.yml", "crontab"): "process value without extension",
    ("proc_creation_win_rundll32_process_dump_via_comsvcs.yml", "rundll32.exe"): "bare name in the description",
    ("proc_creation_win_hktl_meterpreter_getsystem.yml", "cmd.exe"): "bare name in text",
    ("proc_creation_win_winrm_execution_via_scripting_api_winrm_vbs.yml", "cscript.exe"): "bare name in a comment",
    ("win_taskscheduler_lolbin_execution_via_task_scheduler.yml", "rundll32.exe"): "YAML comments",
    ("image_load_dll_amsi_suspicious_process.yml", "regsvr32.exe"): "YAML comments",
    ("win_security_susp_scheduled_task_update.yml", "schtasks.exe"): "YAML comments",
    ("proc_access_win_malware_verclsid_shellcode.yml", "vbe7.dll"): "logsource.definition is text",
    ("image_load_office_kerberos_dll_load.yml", "kerberos.dll"): "DLL names in text",
    ("proc_creation_win_malware_lummac_more_vbc.yml", "more.com"): "'More.com' in the title is the program",
    ("proc_creation_win_pua_seatbelt.yml", "chromium.exe"): "key=value argument is no name",
    ("cisco_cli_discovery.yml", "arp.exe"): "no Windows names in network rules",
    ("lnx_shell_susp_rev_shells.yml", "cmd.exe"): "no Windows names in Linux rules",
    ("web_sql_injection_in_access_logs.yml", "strings.exe"): "English word in a title",
    ("proc_creation_win_winrm_susp_child_process.yml", "winrm.vbs"): "WinRM the service",
    ("kubernetes_audit_potential_enumeration_activity.yml", "curl.exe"): "a Unix path's tail is a Unix name",
}


def _params() -> list[Any]:
    out = []
    for pair in GOLDEN:
        key = (pair["rule"].rsplit("/", 1)[-1], pair["binary"])
        marks = [pytest.mark.xfail(strict=True, reason=f"issue 13 names: {PENDING_NAMES[key]}")] if key in PENDING_NAMES else []
        out.append(pytest.param(pair, id=f"{key[0]}:{key[1]}", marks=marks))
    return out


def test_golden_verdicts_file_is_well_formed():
    assert len(GOLDEN) >= 50
    keys = {(p["rule"].rsplit("/", 1)[-1], p["binary"]) for p in GOLDEN}
    assert len(keys) == len(GOLDEN) and set(PENDING_NAMES) <= keys
    for pair in GOLDEN:
        assert pair["verdict"] in (None, *VERDICTS) and all(v in VERDICTS for v in pair["verdicts"])
        assert (pair["verdict"] is None) == (pair["verdicts"] == []) and pair["evidence"]
        if pair["verdict"]:
            assert pair["verdicts"][0] == pair["verdict"]


@pytest.mark.parametrize("pair", _params())
def test_golden_verdict(tip_reader, pair):
    found = [r for r in tip_reader.rules([pair["binary"]]) if r.path == pair["rule"]]
    got = (found[0].verdict, list(found[0].verdicts)) if found else (None, [])
    assert got == (pair["verdict"], pair["verdicts"]), f"{pair['rule']} {pair['binary']}: {pair.get('note', '')}"
