"""The joins (issue 17 item 3, issue 18 item 6): `show NAME` grouped by kind of source,
`indexer gaps`, `indexer tests NAME`, and a name's counterpart on another platform.

Every expectation was checked by reading the real files of the bundles at their tips (the
comments say which lines).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.index import IndexReader
from indexer.joins import gaps, gaps_markdown
from indexer.joins import tests as atomic_tests
from indexer.navigator import gaps_layer
from indexer.query import counterparts, find_target, search
from indexer.sources import SOURCES
from repos import run_cli, split_row

WIN = "windows"


def _row(report, binary: str, platform: str):
    return next(r for r in report.rows if r.binary == binary and r.platform == platform)


# --- gaps -------------------------------------------------------------------------------------------


def test_gaps_are_binaries_attackers_use_that_no_rule_detects_running_or_invoked(tip_reader: IndexReader) -> None:
    report = gaps(tip_reader, rule_sets=["sigma"])  # Sigma's gaps, whatever other rule sets the index holds
    assert report.rule_sets == ("sigma",)
    assert {"atomic", "gtfobins", "hijacklibs", "lolbas", "loobins"} <= set(report.attack_sources)
    # OneDriveStandaloneUpdater.exe: LOLBAS yml/OSBinaries/OneDriveStandaloneUpdater.yml, atomic T1105's
    # test 3dd6a6cf (its input argument's default path), HijackLibs iphlpapi.yml L186 (a host). Sigma names
    # it in an image-load rule's filter (image_load_dll_rstrtmgr_uncommon_load.yml L57) and in the title
    # of a registry rule (registry_set_lolbin_onedrivestandaloneupdater.yml L1: it watches a key, not the process).
    onedrive = _row(report, "onedrivestandaloneupdater.exe", WIN)
    assert onedrive.sources == ("atomic", "hijacklibs", "lolbas")
    assert onedrive.detected_by == () and onedrive.verdicts == {"sigma": ("excluded", "mentioned")}
    assert "lolbas:yml/OSBinaries/OneDriveStandaloneUpdater.yml" in onedrive.named_in
    # Provlaunch.exe: both Sigma rules select it as ParentImage only (proc_creation_win_provlaunch_*.yml L25)
    provlaunch = _row(report, "provlaunch.exe", WIN)
    assert provlaunch.detected_by == () and provlaunch.verdicts == {"sigma": ("parent", "mentioned")}
    # aa-exec: a GTFOBins page (_gtfobins/aa-exec), named by no Sigma rule
    assert _row(report, "aa-exec", "linux").verdicts == {} and _row(report, "aa-exec", "linux").sources == ("gtfobins",)
    # certutil.exe runs in many Sigma rules: never a gap
    assert all(r.binary != "certutil.exe" for r in report.rows)
    # ranked: more sources naming it first, then more files
    windows = [r for r in report.rows if r.platform == WIN]
    keys = [(-len(r.sources), -r.files, r.binary) for r in windows]
    assert keys == sorted(keys) and len(windows[0].sources) == 3


def test_a_rule_counts_on_its_own_platform_only(tip_reader: IndexReader) -> None:
    """pkill: the one Sigma rule selecting it (rules-threat-hunting/linux/process_creation/
    proc_creation_lnx_susp_process_termination_via_kill.yml, Image|endswith '/pkill') is a Linux
    rule; LOOBins/pkill.yml and atomic macOS tests say attackers use it on macOS."""
    report = gaps(tip_reader, every=True, rule_sets=["sigma"])
    linux, macos = _row(report, "pkill", "linux"), _row(report, "pkill", "macos")
    assert linux.detected_by == ("sigma",) and "runs" in linux.verdicts["sigma"]
    assert macos.detected_by == () and macos.verdicts == {} and macos.sources == ("atomic", "loobins")
    only_macos = gaps(tip_reader, platform="macos", rule_sets=["sigma"])
    assert {r.platform for r in only_macos.rows} == {"macos"} and any(r.binary == "pkill" for r in only_macos.rows)


def test_gaps_summary_counts_each_rule_set_alone_and_together(tip_reader: IndexReader) -> None:
    report = gaps(tip_reader, every=True)
    assert "sigma" in report.rule_sets and set(report.rule_sets) <= {n for n, s in SOURCES.items() if s.detects}
    for s in report.summary:
        rows = [r for r in report.rows if r.platform == s.platform]
        assert s.binaries == len(rows) == s.detected + s.gaps
        assert s.gaps == sum(1 for r in rows if not r.detected_by)
        for rule_set in report.rule_sets:
            assert s.by_rule_set[rule_set] == sum(1 for r in rows if rule_set in r.detected_by)
        for rule_set in report.rule_sets:
            assert s.only[rule_set] == sum(1 for r in rows if r.detected_by == (rule_set,)) <= s.by_rule_set[rule_set]
            assert s.by_all <= s.by_rule_set[rule_set] <= s.detected
        assert s.by_all == sum(1 for r in rows if len(r.detected_by) == len(report.rule_sets))
    assert [s.platform for s in report.summary] == ["windows", "linux", "macos", ""]
    with pytest.raises(ValueError, match="'lolbas' is not a detection source of the index"):
        gaps(tip_reader, rule_sets=["lolbas"])


def test_min_sources_keeps_what_several_sources_name(tip_reader: IndexReader) -> None:
    report = gaps(tip_reader, min_sources=2, rule_sets=["sigma"])
    assert report.rows and all(len(r.sources) >= 2 for r in report.rows)
    # change.exe: LOLBAS yml/OSBinaries/Change.yml and HijackLibs hosts; no Sigma rule names it
    change = _row(report, "change.exe", WIN)
    assert change.sources == ("hijacklibs", "lolbas") and change.verdicts == {}
    # scp.exe (LOLBAS Scp.yml, an atomic test): Sigma names winscp.exe only, never scp.exe
    assert _row(report, "scp.exe", WIN).verdicts == {}
    every = gaps(tip_reader, every=True, rule_sets=["sigma"])
    for s in report.summary:
        assert s.binaries == sum(1 for r in every.rows if r.platform == s.platform and len(r.sources) >= 2)


def test_detection_sources_are_the_sources_that_detect(tip_reader: IndexReader) -> None:
    """`show` and `gaps` tell detection sources by their files' verdicts: that is Source.detects."""
    by_source: dict[str, set[str]] = {}
    for rule in tip_reader.all_rules():
        by_source.setdefault(rule.source, set()).add(rule.verdict)
    for name, verdicts in by_source.items():
        detection = not verdicts & {"documented", "tested"}
        assert detection == SOURCES[name].detects, (name, verdicts)


def test_gaps_cli_json_markdown_csv_and_navigator(tip_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run_cli("gaps", "--json", "--rule-set", "sigma", data_dir=tip_data_dir).stdout)
    assert set(data) == {"rule_sets", "attack_sources", "summary", "rows"}
    assert all(not r["detected_by"] for r in data["rows"])
    text = run_cli("gaps", "--platform", "windows", "--limit", "3", "--rule-set", "sigma", data_dir=tip_data_dir).stdout
    assert text.splitlines()[0].startswith("windows: ") and "by none: " in text.splitlines()[0]
    assert "onedrivestandaloneupdater.exe" in text and "... and " in text
    markdown = run_cli("gaps", "--markdown", "--platform", "linux", "--rule-set", "sigma", data_dir=tip_data_dir).stdout
    rows = [split_row(line) for line in markdown.splitlines() if line.startswith(tuple("0123456789"))]
    aa_exec = next(r for r in rows if r[1] == "`aa-exec`")
    assert aa_exec[2:5] == ["gtfobins", "1", "named by no rule"]
    csv = run_cli("gaps", "--csv", "--rule-set", "sigma", data_dir=tip_data_dir).stdout.splitlines()
    assert csv[0].startswith('"platform","binary","sources"') and len(csv) == len(data["rows"]) + 1
    bad = run_cli("gaps", "--rule-set", "nosuch", data_dir=tip_data_dir)
    assert bad.returncode == 4 and "not a detection source" in bad.stderr
    layer = json.loads(run_cli("gaps", "--navigator", "--rule-set", "sigma", data_dir=tip_data_dir).stdout)
    from mitreattack.navlayers import Layer as NavLayer

    nav = NavLayer(strict=True)
    capsys.readouterr()
    nav.from_dict(layer)
    assert capsys.readouterr().out == "" and nav.to_dict() is not None
    # T1105: OneDriveStandaloneUpdater.exe's atomic test is tagged T1105
    t1105 = next(t for t in layer["techniques"] if t["techniqueID"] == "T1105")
    assert "onedrivestandaloneupdater.exe (windows)" in t1105["comment"] and t1105["score"] >= 1


def test_gaps_markdown_escapes_names(tip_reader: IndexReader) -> None:
    report = gaps(tip_reader, platform="linux", rule_sets=["sigma"])
    text = gaps_markdown(report)
    assert text.count("\n## linux\n") == 1 and "Rank | Binary" in text
    assert gaps_layer(tip_reader, report).techniques == gaps_layer(tip_reader, report).techniques


# --- tests ------------------------------------------------------------------------------------------


def test_tests_lists_the_rules_that_should_fire(tip_reader: IndexReader) -> None:
    report = atomic_tests(tip_reader, "certutil.exe", rule_sets=["sigma"])
    by_guid = {t.guid: t for t in report.tests}
    # atomics/T1027/T1027.yaml, test e68b945c (manual, certutil with Unicode characters): tagged T1027;
    # rules/windows/process_creation/proc_creation_win_certutil_decode.yml L17 attack.t1027, L23 Image '\certutil.exe'
    unicode = by_guid["e68b945c-52d0-4dd9-a5e8-d173d70c448f"]
    assert unicode.technique == "T1027" and unicode.executor == "manual" and unicode.platforms == ("windows",)
    decode = next(
        r for r in unicode.expected if r.path == "rules/windows/process_creation/proc_creation_win_certutil_decode.yml"
    )
    assert decode.verdict == "runs" and decode.techniques == ("T1027",) and decode.binary == "certutil.exe"
    # atomics/T1003.002/T1003.002.yaml test eeb9751a (HiveNightmare with certutil): no Sigma rule naming
    # certutil carries attack.t1003.002
    assert by_guid["eeb9751a-d598-42d3-b11c-c122d9c3f6c7"].expected == ()
    # atomics/T1105/T1105.yaml test dd3b61dd runs `cmd /c certutil -urlcache ...`: both binaries
    download = by_guid["dd3b61dd-7bbc-48cd-ab51-49ad1a776df0"]
    assert download.binaries == ("certutil.exe", "cmd.exe") and all("T1105" in r.techniques for r in download.expected)
    for test in report.tests:
        assert all(not r.path.startswith(("deprecated/", "unsupported/")) for r in test.expected)
        for proven in test.proven:  # detections naming the test's guid (Splunk's atomic_guid), when indexed
            tags = {t for m in tip_reader.file_mentions(proven.source, proven.path) for t in m.tags}
            assert f"atomic:{test.guid}" in tags


def test_tests_cli(tip_data_dir: Path) -> None:
    found = run_cli("tests", "certutil.exe", data_dir=tip_data_dir)
    assert found.returncode == 0 and "should fire: runs" in found.stdout
    data = json.loads(run_cli("tests", "certutil.exe", "--json", data_dir=tip_data_dir).stdout)
    assert data["binaries"] == ["certutil.exe"] and len(data["tests"]) >= 3
    missing = run_cli("tests", "certutl.exe", data_dir=tip_data_dir)
    assert missing.returncode == 1 and "did you mean: certutil.exe" in missing.stdout


# --- show NAME, grouped -----------------------------------------------------------------------------


def test_show_groups_every_source_by_kind(tip_reader: IndexReader) -> None:
    certutil = find_target(tip_reader, "certutil.exe")
    sections = certutil["sections"]
    sigma = next(s for s in sections["detection"] if s["source"] == "sigma")
    assert sigma["running"] == len(certutil["running_rules"])
    assert {s["source"] for s in sections["detection"]} <= {n for n, s in SOURCES.items() if s.detects}
    # yml/OSBinaries/Certutil.yml: Categories Download, ADS, Encode, Decode
    (lolbas,) = [i for i in sections["abuse"] if i["source"] == "lolbas" and i["path"].startswith("yml/")]
    assert set(lolbas["functions"]) == {"Download", "ADS", "Encode", "Decode"} and "T1105" in lolbas["techniques"]
    download = next(i for i in sections["tests"] if i["id"] == "dd3b61dd-7bbc-48cd-ab51-49ad1a776df0")
    assert download["executor"] == "command_prompt" and download["techniques"] == ["T1105"]
    # HijackLibs yml/microsoft/built-in/version.yml L20: Path '%SYSTEM32%\certutil.exe'
    assert any(i["dlls"] == ["version.dll"] for i in sections["sideloading"])
    # version.dll's own page: the DLL with its 42 hosts (VulnerableExecutables)
    version = find_target(tip_reader, "version.dll")["sections"]["sideloading"]
    (dll,) = [i for i in version if "sideload_target" in i["roles"]]
    assert "certutil.exe" in dll["hosts"] and len(dll["hosts"]) == 42
    # RTCore64.sys: LOLDrivers entries with the samples' hashes
    drivers = find_target(tip_reader, "rtcore64.sys")["sections"]["drivers"]
    assert drivers and all(i["hashes"] and "vulnerable_driver" in i["roles"] for i in drivers)
    assert "md5:3ecd3ca61ffc54b0d93f8b19161b83da" in {h for i in drivers for h in i["hashes"]}
    # curl: GTFOBins's page is abuse on Linux
    curl = find_target(tip_reader, "curl")["sections"]["abuse"]
    assert [(i["source"], i["path"], i["platform"]) for i in curl] == [("gtfobins", "_gtfobins/curl", "linux")]


def test_show_table_prints_the_groups(tip_data_dir: Path) -> None:
    text = run_cli("show", "certutil.exe", data_dir=tip_data_dir).stdout
    lines = text.splitlines()
    heads = [l for l in lines if not l.startswith(" ")]
    assert heads == [
        "binary certutil.exe",
        "detection",
        "abuse (LOLBAS, GTFOBins, LOOBins)",
        "tests (atomic-red-team)",
        "side-loading (HijackLibs)",
    ]
    assert any(l.startswith("  sigma: ") and "run it" in l for l in lines)
    assert any("side-loads version.dll" in l for l in lines)


# --- names across platforms -------------------------------------------------------------------------


def test_curl_and_curl_exe_are_paired(tip_reader: IndexReader, tip_data_dir: Path) -> None:
    binaries = tip_reader.binaries()
    assert counterparts("curl", binaries) == ["curl.exe"] and counterparts("curl.exe", binaries) == ["curl"]
    assert counterparts("certutil.exe", binaries) == []  # no Unix certutil
    windows = search(tip_reader, "curl.exe")
    assert windows.counterparts == {"curl.exe": ["curl"]}
    assert {"linux", "macos"} <= set(windows.platforms["curl"])
    # curl.exe: Windows rules, and Elastic's cross-platform ones (several OS tags: no one platform)
    assert "windows" in windows.platforms["curl.exe"] and not {"linux", "macos"} & set(windows.platforms["curl.exe"])
    unix = search(tip_reader, "curl", source="gtfobins")
    assert unix.counterparts == {"curl": ["curl.exe"], "curl.exe": ["curl"]}
    assert find_target(tip_reader, "curl.exe")["counterparts"] == ["curl"]
    data = json.loads(run_cli("search", "curl.exe", "--json", data_dir=tip_data_dir).stdout)[0]
    assert data["counterparts"] == {"curl.exe": ["curl"]}


def test_search_table_shows_platforms_and_the_counterpart(tip_reader: IndexReader) -> None:
    from rich.console import Console

    from indexer.report import print_search

    console = Console(width=300, record=True)
    print_search(console, search(tip_reader, "curl.exe", source="hijacklibs"))
    text = console.export_text()
    assert "also indexed on another platform: curl (no platform, linux, macos, windows) (indexer search curl)" in text
    assert "yml/microsoft/built-in/mswsock.yml  (windows)" in text
    console = Console(width=300, record=True)
    print_search(console, search(tip_reader, "curl", source="gtfobins"))
    text = console.export_text()
    assert "the same program on two platforms: curl (" in text and "_gtfobins/curl  (linux)" in text
