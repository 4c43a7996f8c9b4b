"""Which names are found, where, with which role (issue 13 item 4-6; issue 14 items 12 and 23).

Real rule files at the tip of the bundles (the shared index) and real strings from them.
"""

from __future__ import annotations

import pytest

from indexer.names import bare_names, explicit_names, is_homoglyph, regex_names, value_names


def found(reader, source: str, path: str) -> set[tuple[str, str, int, bool]]:
    return {(m.binary, m.role, m.line, m.inferred) for m in reader.file_mentions(source, path)}


def binaries_on(reader, source: str, path: str, line: int) -> set[str]:
    return {m.binary for m in reader.file_mentions(source, path) if m.line == line}


# --- process values without separator or extension ----------------------------------------


@pytest.mark.parametrize(
    "path, line, binary, inferred",
    [
        ("rules/linux/process_creation/proc_creation_lnx_crontab_removal.yml", 18, "crontab", False),
        ("rules/linux/process_creation/proc_creation_lnx_schedule_task_job_cron.yml", 20, "crontab", False),
        ("rules/windows/process_creation/proc_creation_win_python_base64_encoded_execution.yml", 26, "python", False),
        ("rules/windows/process_creation/proc_creation_win_hktl_impacket_tools.yml", 28, "smbexec", False),
        ("rules/windows/process_creation/proc_creation_win_dns_exfiltration_tools_execution.yml", 23, "dnscat2", False),
        ("rules/windows/process_creation/proc_creation_win_hktl_relay_attacks_tools.yml", 38, "localpotato", False),
        (
            "rules/windows/process_creation/proc_creation_win_remote_access_tools_renamed_meshagent_execution.yml",
            31,
            "meshagent",
            False,
        ),
        (
            "rules/macos/process_creation/proc_creation_macos_remote_access_tools_renamed_meshagent_execution.yml",
            31,
            "meshagent",
            False,
        ),
    ],
)
def test_process_values_without_extension(tip_reader, path, line, binary, inferred):
    """As written, on Windows too (the golden set's reading): `\\smbexec` is smbexec."""
    roles = {(b, i) for b, _, ln, i in found(tip_reader, "sigma", path) if ln == line}
    assert (binary, inferred) in roles, roles


def test_process_value_folders_and_pseudo_processes_give_nothing():
    # `Image: 'System'` is the kernel pseudo-process; `\AppData\` and `C:\Windows\` are folders
    for value in ("System", "\\AppData\\", "C:\\Windows\\", ":\\Program Files (x86)"):
        assert value_names(value, whole_value=True, process=True) == []


# --- Unix paths and logsources -----------------------------------------------------------------


def test_unix_path_tail_is_a_unix_name(tip_reader):
    path = "rules/application/kubernetes/audit/kubernetes_audit_potential_enumeration_activity.yml"
    names = {b for b, *_ in found(tip_reader, "sigma", path)}
    assert not {n for n in names if n.endswith(".exe")}, names
    assert {"curl", "bash"} <= names


def test_no_windows_names_inferred_outside_windows_rules(tip_reader):
    assert not binaries_on(tip_reader, "sigma", "rules/network/cisco/aaa/cisco_cli_discovery.yml", 27)
    assert "cmd.exe" not in binaries_on(tip_reader, "sigma", "rules/linux/builtin/lnx_shell_susp_rev_shells.yml", 35)
    windows = [
        m
        for m in tip_reader.all_mentions()
        if m.source == "sigma"
        and m.inferred
        and m.binary.endswith(".exe")
        and m.logsource.split("/")[0]
        in ("linux", "macos", "webserver", "proxy", "cisco", "aws", "azure", "kubernetes", "zeek", "dns")
    ]
    assert not windows, [(m.path, m.line, m.binary) for m in windows[:10]]


# --- words that are protocols, services, encodings or log sources ------------------------------


@pytest.mark.parametrize(
    "path, line, binary",
    [
        ("rules/web/webserver_generic/web_sql_injection_in_access_logs.yml", 1, "strings.exe"),
        ("rules/windows/builtin/security/win_security_rdp_reverse_tunnel.yml", 1, "ssh.exe"),
        ("rules/windows/process_creation/proc_creation_win_winrm_susp_child_process.yml", 1, "winrm.vbs"),
        ("rules/linux/process_creation/proc_creation_lnx_base64_decode.yml", 1, "base64"),
        ("rules/windows/process_creation/proc_creation_win_pua_seatbelt.yml", 46, "chromium.exe"),
        ("rules/windows/process_creation/proc_creation_win_mmc_rlo_abuse_pattern.yml", 26, "cod.msc"),
        ("rules/windows/process_creation/proc_creation_win_mmc_rlo_abuse_pattern.yml", 27, "fdp.msc"),
        ("rules/windows/process_creation/proc_creation_win_mmc_rlo_abuse_pattern.yml", 29, "lmth.msc"),
        (
            "rules/windows/registry/registry_set/registry_set_asep_reg_keys_modification_internet_explorer.yml",
            26,
            "explorer.exe",
        ),
    ],
)
def test_false_names_are_gone(tip_reader, path, line, binary):
    assert binary not in binaries_on(tip_reader, "sigma", path, line)


@pytest.mark.parametrize(
    "source, path, line, binary",
    [
        # English words that are programs' stems, used as words
        ("sigma", "rules/web/proxy_generic/proxy_ua_apt.yml", 4, "apt"),  # APT malware
        ("sigma", "rules/application/kubernetes/audit/kubernetes_audit_hostpath_mount.yml", 7, "who"),  # Attackers who
        ("sigma", "rules/windows/image_load/image_load_dll_unsigned_node_load.yml", 8, "electron.exe"),  # Electron apps
        (
            "sigma",
            "rules/windows/builtin/windefend/win_defender_antimalware_platform_expired.yml",
            24,
            "antimalware.exe",
        ),  # a comment
        ("sigma", "rules/linux/process_creation/proc_creation_lnx_susp_exec_from_dev_shm.yml", 6, "touch"),
        (
            "sigma",
            "rules-emerging-threats/2026/Malware/Axios-NPM-Compromise/file_event_lnx_axios_npm_compromise_indicators.yml",
            5,
            "javascript",
        ),  # the language
        # a service's web API, a package format, the .NET framework
        (
            "sigma",
            "rules/windows/network_connection/net_connection_win_domain_notion_api_susp_communication.yml",
            4,
            "notion.exe",
        ),
        ("lolbas", "yml/OtherMSBinaries/Squirrel.yml", 3, "nuget.exe"),
        ("lolbas", "yml/OtherMSBinaries/Squirrel.yml", 8, "nuget.exe"),
        ("lolbas", "yml/OSBinaries/Cscript.yml", 28, "dotnet.exe"),
        # names of services and organisations, not of programs
        (
            "sigma",
            "rules/windows/builtin/security/win_security_service_install_remote_access_software.yml",
            46,
            "teamviewer",
        ),
        (
            "sigma",
            "rules/windows/process_creation/proc_creation_win_remote_access_tools_anydesk.yml",
            30,
            "anydesk.exe",
        ),
        # a product's name in PE metadata, an application, the value of `name=`
        ("sigma", "rules/windows/process_creation/proc_creation_win_pua_pingcastle.yml", 156, "ping.exe"),
        ("sigma", "rules/windows/process_creation/proc_creation_win_browsers_tor_execution.yml", 19, "tor.exe"),
        (
            "sigma",
            "rules-threat-hunting/windows/network_connection/net_connection_win_susp_azurefd_connection.yml",
            43,
            "explorer.exe",
        ),
        ("sigma", "rules/windows/process_creation/proc_creation_win_netsh_fw_delete_rule.yml", 26, "dropbox.exe"),
    ],
)
def test_words_that_are_not_the_program(tip_reader, source, path, line, binary):
    assert binary not in binaries_on(tip_reader, source, path, line)


def test_prose_words_stay_programs_where_quoted_or_run_with_options():
    stems = {"who": "who", "env": "env", "crontab": "crontab", "notion": "notion.exe"}
    assert [h.name for h in bare_names('Detects the execution of "who" on the host', stems, in_prose=True)] == ["who"]
    assert [h.name for h in bare_names("Detects the use of the env command", stems, in_prose=True)] == ["env"]
    assert [h.name for h in bare_names("removes it with crontab -r", stems, in_prose=True)] == ["crontab"]
    assert [h.name for h in bare_names("who -a", stems)] == ["who"]  # a command line is no prose
    assert not list(bare_names("modification of the crontab file", stems, in_prose=True))
    assert not list(bare_names("Legitimate modification of crontab", stems, in_prose=True))
    assert [h.name for h in bare_names("modification of Notion settings", stems, in_prose=True)] == ["notion.exe"]
    cme = {"crackmapexec": "crackmapexec.exe", "apt": "apt"}
    assert not list(bare_names("# https://github.com/byt3bl33d3r/CrackMapExec/blob/3c3e41", cme, in_prose=True))
    assert [h.name for h in bare_names("see CrackMapExec (https://x.org/a)", cme, in_prose=True)] == [
        "crackmapexec.exe"
    ]
    assert not list(bare_names("Diamond Sleet APT Process Activity", cme, in_prose=True))
    ps = {"powershell": "powershell.exe"}
    assert not list(bare_names("netsh advfirewall firewall add rule name=powershell dir=in", ps))
    assert [h.name for h in bare_names("HostApplication=powershell", ps)] == ["powershell.exe"]
    assert [h.name for h in bare_names("Notion File Upload", stems, in_prose=True)] == ["notion.exe"]


def test_lolbas_ioc_sysmon_event_is_no_program(tip_reader):
    assert "sysmon.exe" not in binaries_on(tip_reader, "lolbas", "yml/OSBinaries/Fsutil.yml", 36)


def test_powershell_title_suffix_is_the_logsource(tip_reader):
    titled = [
        m
        for m in tip_reader.all_mentions()
        if m.field == "title"
        and m.binary == "powershell.exe"
        and m.inferred
        and m.snippet.rstrip().lower().endswith("- powershell")
        and "powershell" not in m.snippet.lower().rsplit("- powershell", 1)[0]
    ]
    assert not titled, [(m.path, m.snippet) for m in titled[:5]]


# --- bare names the program means ---------------------------------------------------------------


@pytest.mark.parametrize(
    "source, path, line, binary",
    [
        ("sigma", "rules/windows/builtin/security/win_security_rdp_reverse_tunnel.yml", 4, "svchost.exe"),
        (
            "sigma",
            "rules/windows/process_creation/proc_creation_win_certutil_certificate_installation.yml",
            10,
            "certutil.exe",
        ),
        ("lolbas", "yml/OSBinaries/Netsh.yml", 3, "netsh.exe"),
        ("lolbas", "yml/OSBinaries/Netsh.yml", 8, "netsh.exe"),
        ("lolbas", "yml/OSBinaries/Diskshadow.yml", 16, "diskshadow.exe"),
        ("sigma", "rules/windows/image_load/image_load_win_susp_dbgcore_dbghelp_load.yml", 1, "dbghelp.dll"),
        ("sigma", "rules/windows/image_load/image_load_win_susp_dbgcore_dbghelp_load.yml", 1, "dbgcore.dll"),
        # "X DLL" names X.dll where a rule loads it, even when X is a common word ("CLR DLL")
        ("sigma", "rules/windows/image_load/image_load_susp_script_dotnet_clr_dll_load.yml", 1, "clr.dll"),
        ("sigma", "rules/windows/image_load/image_load_susp_script_dotnet_clr_dll_load.yml", 4, "clr.dll"),
    ],
)
def test_bare_names_meaning_the_program(tip_reader, source, path, line, binary):
    assert binary in binaries_on(tip_reader, source, path, line)


def test_lolbas_own_stem_counts_in_its_entry(tip_reader):
    for path, binary in (
        ("yml/OSBinaries/Expand.yml", "expand.exe"),
        ("yml/OSBinaries/Print.yml", "print.exe"),
        ("yml/OSBinaries/Sc.yml", "sc.exe"),
    ):
        commands = {m.binary for m in tip_reader.file_mentions("lolbas", path) if m.role == "lolbas_command"}
        assert binary in commands, (path, commands)


def test_simulation_and_logsource_definition_are_read(tip_reader):
    found_at = found(
        tip_reader, "sigma", "rules/windows/process_creation/proc_creation_win_at_interactive_execution.yml"
    )
    assert ("at.exe", "text", 29, False) in found_at  # simulation: `name: At.exe Scheduled task`
    path = "rules-emerging-threats/2026/Exploits/CVE-2026-31431/lnx_auditd_exploit_cve_2026_31431_af_alg_socket_creation.yml"
    assert ("auditctl", "text", 30, True) in found(tip_reader, "sigma", path)  # logsource.definition


# --- comments ---------------------------------------------------------------------------------------


def test_names_in_yaml_comments(tip_reader):
    path = "rules/windows/builtin/taskscheduler/win_taskscheduler_lolbin_execution_via_task_scheduler.yml"
    assert ("rundll32.exe", "comment", 29, False) in found(tip_reader, "sigma", path)
    path = "deprecated/windows/proc_creation_win_possible_applocker_bypass.yml"  # `#- '\\regsvr32.exe'  # too many FPs`
    assert ("regsvr32.exe", "comment", 29, False) in found(tip_reader, "sigma", path)


def test_hash_inside_values_is_no_comment(tip_reader):
    # `#` inside quoted and block scalars is text of the value: no comment mention on such lines
    for m in tip_reader.all_mentions():
        if m.role == "comment":
            assert "#" in m.snippet, (m.path, m.line)


# --- regexes -----------------------------------------------------------------------------------


def test_regex_with_unescaped_dots():
    assert {h.name for h in regex_names("(?i).*appvlp.exe.*(cmd.exe|powershell.exe).*", False)} == {
        "appvlp.exe",
        "cmd.exe",
        "powershell.exe",
    }
    assert {h.name for h in regex_names("(%COMSPEC%|cmd.exe|regsvr32.exe)", False)} == {"cmd.exe", "regsvr32.exe"}
    assert [h.name for h in regex_names("c:\\\\windows\\\\system32\\\\a.b", False)] == []  # `a.b`: no extension


def test_regex_too_complex_to_expand_keeps_the_first_letter():
    # issue 14 item 12: the fallback for a regex with over 64 expansions
    pattern = "(a|b|c|d)(e|f|g|h)(i|j|k|l)(m|n|o|p)\\\\rundll32\\.exe"
    assert {h.name for h in regex_names(pattern, True, True)} == {"rundll32.exe"}


# --- roles ----------------------------------------------------------------------------------------


def test_roles_of_task_content_new_and_wer_data(tip_reader):
    task = tip_reader.file_mentions(
        "sigma", "rules/windows/builtin/security/win_security_susp_scheduled_task_update.yml"
    )
    assert {m.role for m in task if m.field == "TaskContentNew"} == {"command_line"}
    wer = tip_reader.file_mentions(
        "sigma", "rules/windows/builtin/application/windows_error_reporting/win_application_msmpeng_crash_wer.yml"
    )
    assert {m.role for m in wer if m.field == "Data"} == {"other"}
    classic = tip_reader.file_mentions(
        "sigma", "rules/windows/powershell/powershell_classic/posh_pc_renamed_powershell.yml"
    )
    assert {m.role for m in classic if m.field == "Data"} == {"command_line"}


# --- non-ASCII letters (issue 14 item 23) ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, name, homoglyph",
    [
        ("svсhost.exe", "svсhost.exe", True),  # Cyrillic с
        ("C:\\ｃmd.exe /c", "ｃmd.exe", True),  # fullwidth ｃ
        ("\\naïve.exe", "naïve.exe", False),
        ("rundll32.exe", "rundll32.exe", False),
    ],
)
def test_non_ascii_letters_stay_inside_names(text, name, homoglyph):
    assert [h.name for h in explicit_names(text)] == [name]
    assert is_homoglyph(name) is homoglyph


def test_no_name_is_a_fragment_of_a_longer_word_in_any_script():
    stems = {"host": "host.exe", "cmd": "cmd.exe", "whoami": "whoami.exe"}
    for text in ("svсhost -k", "ｃmd /c", "αwhoami", "whoamiж", "Öcmd"):
        assert list(bare_names(text, stems)) == [], text
    for text in ("αhost.exe", "host.exeж", "ßcmd.exe"):
        assert [h.name for h in explicit_names(text)] in ([], [text.lower()]), text
        assert "host.exe" not in [h.name for h in explicit_names(text)]
        assert "cmd.exe" not in [h.name for h in explicit_names(text)]


def test_search_no_comments_leaves_them_out(tip_data_dir):
    import json
    import subprocess
    import sys

    def rows(*extra: str) -> set[tuple[str, int, str]]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "indexer",
                "search",
                "rundll32.exe",
                "--json",
                *extra,
                "--data-dir",
                str(tip_data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return {(m["path"], m["line"], m["role"]) for m in json.loads(done.stdout)[0]["mentions"]}

    path = "rules/windows/builtin/taskscheduler/win_taskscheduler_lolbin_execution_via_task_scheduler.yml"
    everything, without = rows(), rows("--no-comments")
    assert (path, 29, "comment") in everything
    assert without == {r for r in everything if r[2] != "comment"}


# --- aliases (issue 13 item 6) ----------------------------------------------------------------------


def test_aliases_derived_from_the_rules(tip_reader):
    aliases = tip_reader.aliases()
    assert "pwsh.dll" in aliases["pwsh.exe"] and "pwsh.exe" in aliases["pwsh.dll"]
    assert "nltestrk.exe" in aliases["nltest.exe"]  # paired alone in two rules
    assert "wsmwmipl.dll" not in aliases.get("svchost.exe", [])  # paired once: no alias


def test_search_returns_alias_mentions_marked(tip_data_dir):
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "indexer", "search", "pwsh.exe", "--json", "--data-dir", str(tip_data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (data,) = json.loads(done.stdout)
    dll = [m for m in data["mentions"] if m["binary"] == "pwsh.dll"]
    assert len({m["path"] for m in dll}) >= 70 and all(m["alias_of"] == "pwsh.exe" for m in dll)
    assert all(m["alias_of"] == "" for m in data["mentions"] if m["binary"] == "pwsh.exe")
    assert data["binaries"] == ["pwsh.exe"] and data["aliases"] == {"pwsh.dll": "pwsh.exe"}


# --- session 5: bare-name recall by class (issue 13; issue 17's GTFOBins/LOOBins vocabulary) ----

EQUATION = "rules/linux/builtin/lnx_apt_equationgroup_lnx.yml"
MACOS_BROWSER = "rules/macos/process_creation/proc_creation_macos_susp_browser_child_process.yml"


def test_gtfobins_and_loobins_names_are_unix_names(tip_reader):
    # chown is named by no Sigma process field: GTFOBins' _gtfobins/chown makes it a Unix program
    assert "chown" in binaries_on(tip_reader, "sigma", EQUATION, 20)  # 'cp /bin/sh .;chown'
    assert "chown" in binaries_on(tip_reader, "sigma", EQUATION, 23)  # 'chown root:root /tmp/.scsi/dev/bin/'
    # sendmail: GTFOBins names no sendmail; still unknown, still nothing
    assert "sendmail" not in binaries_on(tip_reader, "sigma", EQUATION, 75)


def test_english_words_of_unix_vocabularies_stay_words_in_prose():
    stems = {"sort": "sort", "screen": "screen", "wall": "wall", "curl": "curl"}
    assert not list(bare_names("Sort by the number of events on the wall of the screen", stems, in_prose=True))
    assert [h.name for h in bare_names("sort -u /etc/passwd", stems)] == ["sort"]
    assert [h.name for h in bare_names('Detects "screen" sessions', stems, in_prose=True)] == ["screen"]


def test_two_letter_unix_names_count_where_a_command_starts(tip_reader):
    assert {"cp", "sh"} <= binaries_on(tip_reader, "sigma", EQUATION, 20)  # 'cp /bin/sh .;chown'
    assert "sh" in binaries_on(tip_reader, "sigma", EQUATION, 48)  # 'sh >/dev/tcp/* <&1 2>&1'
    assert "nc" in binaries_on(tip_reader, "sigma", EQUATION, 51)  # 'nc -vv -l -p * <'
    assert "rm" in binaries_on(tip_reader, "sigma", EQUATION, 45)  # '> /var/log/audit/audit.log; rm -f .'
    padding = "rules/linux/auditd/execve/lnx_auditd_binary_padding.yml"
    assert "dd" in binaries_on(tip_reader, "sigma", padding, 27)  # keyword 'dd'
    assert "dd" not in binaries_on(tip_reader, "sigma", padding, 6)  # prose: "using dd and truncate"
    stems = {"sh": "sh", "id": "id", "ps": "ps"}
    assert [h.name for h in bare_names("ps aux | grep x; id", stems)] == ["ps", "id"]
    assert not list(bare_names("the id of the user, ps: see", stems))  # not where a command starts
    assert not list(bare_names("run id", stems, in_prose=True))


def test_a_log_source_word_is_the_program_where_it_is_the_subject(tip_reader):
    crash = "rules/windows/builtin/system/application_popup/win_system_application_sysmon_crash.yml"
    assert "sysmon.exe" in binaries_on(tip_reader, "sigma", crash, 1)  # "Sysmon Application Crashed"
    update = "rules/windows/process_creation/proc_creation_win_sysinternals_sysmon_config_update.yml"
    assert "sysmon.exe" in binaries_on(tip_reader, "sigma", update, 4)  # "updates to Sysmon's configuration"
    assert "sysmon.exe" in binaries_on(tip_reader, "sigma", update, 27)  # "update Sysmon configuration"
    stems = {"sysmon": "sysmon.exe"}
    for text in ("IOC: Sysmon Event ID 1", 'Triggers on any Sysmon "FileBlockShredding" event', "Sysmon logs"):
        assert not list(bare_names(text, stems, in_prose=True)), text


def test_program_folders_name_unix_programs_by_their_tail(tip_reader):
    # '.../Microsoft AutoUpdate.app/Contents/MacOS/msupdate': msupdate is named by no process field
    assert "msupdate" in binaries_on(tip_reader, "sigma", MACOS_BROWSER, 47)
    from indexer.names import unix_program_paths

    assert [h.name for h in unix_program_paths("exec /usr/local/bin/frpc -c x; /opt/x/libexec/helper")] == [
        "frpc",
        "helper",
    ]
    assert not unix_program_paths("https://example.com/bin/tool and /usr/bin/ and C:\\bin\\x")


def test_windows_programs_named_in_unix_prose(tip_reader):
    assert "tor" in binaries_on(tip_reader, "sigma", MACOS_BROWSER, 45)  # "# Informs tor to use default config file"
    assert "chrome" in binaries_on(tip_reader, "sigma", MACOS_BROWSER, 53)  # "# Install the Google Chrome browser"
    assert "tor.exe" not in binaries_on(tip_reader, "sigma", MACOS_BROWSER, 45)  # never the Windows name


def test_tools_known_from_one_platform_named_in_windows_prose(tip_reader):
    pipe = "rules/windows/pipe_created/pipe_created_hktl_cobaltstrike.yml"
    assert "cobaltstrike" in binaries_on(tip_reader, "sigma", pipe, 1)  # "CobaltStrike Named Pipe"
    assert "cobaltstrike" in binaries_on(tip_reader, "sigma", pipe, 9)  # "as used by CobaltStrike"


def test_auditd_a0_is_the_program_run(tip_reader):
    # EXECVE a0 is argv[0]: its value is the program, even a common word or an unknown name
    users = "rules/linux/auditd/execve/lnx_auditd_user_discovery.yml"
    assert "last" in binaries_on(tip_reader, "sigma", users, 24)
    assert "users" in binaries_on(tip_reader, "sigma", users, 26)
    assert not binaries_on(tip_reader, "sigma", users, 27)  # 'w': one letter
    compressed = "rules/linux/auditd/execve/lnx_auditd_data_compressed.yml"
    assert "zip" in binaries_on(tip_reader, "sigma", compressed, 20)
    reload = "rules/linux/auditd/execve/lnx_auditd_susp_service_reload_or_restart.yml"
    assert "service" in binaries_on(tip_reader, "sigma", reload, 22)  # a0|contains: 'service'
    assert not binaries_on(tip_reader, "sigma", reload, 24)  # a1|contains: 'reload': an argument
