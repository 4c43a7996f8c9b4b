"""The atlas (issue 17): atomic-red-team, LOLDrivers, HijackLibs, GTFOBins and LOOBins beside
Sigma and LOLBAS, indexed from their bundles: what `stats` and `search` say of them, the roles'
verdicts, the LOLDrivers shortcut and GTFOBins' front matter on real files.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from indexer import cli
from indexer.extract import FileContext
from indexer.model import ROLES
from indexer.parse import parse_yaml
from indexer.repository import env_var
from indexer.sources import get, names
from indexer.sources.gtfobins import parse_front_matter
from indexer.sources.loldrivers import extract_loldrivers, parse_driver
from indexer.verdicts import ATLAS_VERDICTS, DETECTING, mention_verdict

from repos import indexer

ATLAS = ("atomic", "loldrivers", "hijacklibs", "gtfobins", "loobins")
# The files each bundle keeps, as ../shared/README.md states them, and each repository's license.
LAYOUT = {
    "atomic": ("atomics/T*/T*.yaml", "MIT"),
    "loldrivers": ("yaml/*.yaml", "Apache-2.0"),
    "hijacklibs": ("yml/*.yml", "GPL-3.0"),
    "gtfobins": ("_gtfobins/*", "GPL-3.0"),
    "loobins": ("LOOBins/*.yml", "GPL-3.0"),
}


def _git(data_dir: Path, source: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(data_dir / "sources" / f"{source}.git"), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _search(data_dir: Path, name: str, *options: str) -> dict[str, Any]:
    done = indexer("search", name, "--json", *options, data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)  # one object per name
    return answer


# --- the vocabulary -------------------------------------------------------------------------


def test_the_atlas_sources_are_registered_after_sigma_and_lolbas() -> None:
    assert names()[: 2 + len(ATLAS)] == ("sigma", "lolbas", *ATLAS)


def test_atlas_roles_have_verdicts_that_never_detect() -> None:
    for role, verdict in ATLAS_VERDICTS.items():
        assert role in ROLES
        for context in ("", "selection"):
            got = mention_verdict({"source": "atomic", "role": role, "context": context, "field": "Image"})
            assert got == verdict and got not in DETECTING, (role, got)
    assert ATLAS_VERDICTS["tested_by"] == "tested" and set(ATLAS_VERDICTS.values()) == {"tested", "documented"}


# --- stats: every source, its files and license ------------------------------------------------


def test_stats_lists_every_source_with_its_files_mentions_and_license(tip_data_dir: Path) -> None:
    done = indexer("stats", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert set(stats["sources"]) == set(names())
    for source, (pattern, license_name) in LAYOUT.items():
        tree = _git(tip_data_dir, source, "ls-tree", "-r", "--name-only", stats["sources"][source]["commit"])
        files = [
            p
            for p in tree.splitlines()
            if fnmatch.fnmatch(p, pattern) or (source == "hijacklibs" and fnmatch.fnmatch(p, "yml/*/*.yml"))
        ]
        assert stats["files"][source]["indexed"] == len(files) > 50, source
        assert stats["files"][source]["error"] == 0, stats["problems"]
        assert stats["mentions_by_source"][source] >= len(files) // 2, source
        assert stats["sources"][source]["license"] == license_name, source


# --- search: what the acceptance of issue 17 asks ------------------------------------------------


def test_search_rundll32_has_atomic_tests(tip_data_dir: Path) -> None:
    answer = _search(tip_data_dir, "rundll32.exe")
    tested = [r for r in answer["rules"] if r["source"] == "atomic"]
    assert tested and all(r["verdict"] == "tested" and not r["retired"] for r in tested)
    assert any(r["path"] == "atomics/T1218.011/T1218.011.yaml" for r in tested)
    # T1218.011's first test, line 20: `rundll32.exe javascript:"\..\mshtml,RunHTMLApplication ";...`
    first = [m for m in answer["mentions"] if m["path"] == "atomics/T1218.011/T1218.011.yaml" and m["line"] == 20]
    assert len(first) == 1 and first[0]["role"] == "tested_by"
    assert (first[0]["rule_id"], first[0]["title"]) == (
        "57ba4ce9-ee7a-4f27-9928-3c70c489b59d",
        "Rundll32 execute JavaScript Remote Payload With GetObject",
    )
    assert (first[0]["field"], first[0]["detection"], first[0]["tags"]) == (
        "command",
        "command_prompt",
        ["attack.t1218.011"],
    )
    assert first[0]["platform"] == "windows"
    # a test is no detection
    assert not [r for r in _search(tip_data_dir, "rundll32.exe", "--detects")["rules"] if r["source"] == "atomic"]


def test_search_rtcore64_has_the_loldrivers_entries_with_their_hashes(tip_data_dir: Path) -> None:
    answer = _search(tip_data_dir, "RTCore64.sys")
    drivers = {r["path"] for r in answer["rules"] if r["source"] == "loldrivers"}
    assert {
        "yaml/275c80c5-a67c-4536-b29e-4e481242cb01.yaml",
        "yaml/e32bc3da-4db1-4858-a62c-6fbe4db6afbd.yaml",
    } <= drivers
    sample = next(
        m
        for m in answer["mentions"]
        if m["path"] == "yaml/275c80c5-a67c-4536-b29e-4e481242cb01.yaml" and m["line"] == 23
    )
    # lines 24-26 of the file: the first sample's MD5, SHA1 and SHA256
    assert {
        "md5:3ecd3ca61ffc54b0d93f8b19161b83da",
        "sha1:4f376b1d1439477a426ef3c52e8c1c69c2cb5305",
        "sha256:03e0581432f5c8cc727a8aa387f5b69ff84d38d0df6f1226c19c6e960a81e1e9",
    } <= set(sample["tags"])
    assert sample["role"] == "vulnerable_driver" and "attack.t1068" in sample["tags"]


def test_search_version_dll_lists_the_hijacklibs_hosts(tip_data_dir: Path) -> None:
    answer = _search(tip_data_dir, "version.dll")
    target = [m for m in answer["mentions"] if m["source"] == "hijacklibs" and m["role"] == "sideload_target"]
    assert [(m["path"], m["line"]) for m in target] == [("yml/microsoft/built-in/version.yml", 2)]
    hosts = {t.removeprefix("host:") for t in target[0]["tags"] if t.startswith("host:")}
    assert {"certutil.exe", "psr.exe", "wscript.exe", "microsoft.sharepoint.exe", "ccleanerbugreport.exe"} <= hosts
    # and a host's search finds the DLL it loads
    psr = _search(tip_data_dir, "psr.exe")
    assert any(
        m["source"] == "hijacklibs" and m["role"] == "sideload_host" and m["title"] == "version.dll"
        for m in psr["mentions"]
    )


def test_search_curl_has_gtfobins_and_sigma_linux_rules(tip_data_dir: Path) -> None:
    answer = _search(tip_data_dir, "curl")
    assert "curl" in answer["binaries"]
    gtfo = [m for m in answer["mentions"] if m["source"] == "gtfobins"]
    assert {m["field"] for m in gtfo} >= {"download", "upload", "file-read"} and gtfo[0]["path"] == "_gtfobins/curl"
    assert {m["platform"] for m in gtfo} == {"linux"}
    linux = {m["path"] for m in answer["mentions"] if m["source"] == "sigma" and m["platform"] == "linux"}
    assert any(p.startswith("rules/linux/") for p in linux)
    # --platform macos: only macOS lines (macOS rules, atomic tests on macOS), no GTFOBins one
    macos = _search(tip_data_dir, "curl", "--platform", "macos")
    assert macos["mentions"] and {m["platform"] for m in macos["mentions"]} == {"macos"}
    assert not any(m["binary"] == "curl.exe" and m["source"] == "gtfobins" for m in answer["mentions"])


# --- parsing real files ----------------------------------------------------------------------------


def test_loldrivers_pruned_parse_reads_what_the_whole_file_says(tip_data_dir: Path, tip_reader) -> None:
    """The shortcut (blank what the extraction never reads, then parse) against the whole file,
    on every driver at the tip: same mentions, same hashes, same ids."""
    commit = tip_reader.sources["loldrivers"]["commit"]
    paths = [
        p
        for p in _git(tip_data_dir, "loldrivers", "ls-tree", "-r", "--name-only", commit).splitlines()
        if get("loldrivers").wants(p)
    ]
    stream = subprocess.run(
        ["git", "--git-dir", str(tip_data_dir / "sources" / "loldrivers.git"), "cat-file", "--batch"],
        input="".join(f"{commit}:{p}\n" for p in paths).encode(),
        capture_output=True,
        check=True,
    )
    data, offset, differ = stream.stdout, 0, []
    for path in paths:
        header_end = data.index(b"\n", offset)
        size = int(data[offset:header_end].split()[2])
        text = data[header_end + 1 : header_end + 1 + size].decode("utf-8-sig")
        offset = header_end + 2 + size
        ctx = FileContext("loldrivers", path)
        whole, pruned = (
            extract_loldrivers(ctx, parse_yaml(path, text)),
            extract_loldrivers(ctx, parse_driver(path, text)),
        )
        if (whole.mentions, whole.entry, whole.rule_ids) != (pruned.mentions, pruned.entry, pruned.rule_ids):
            differ.append(path)
    assert len(paths) > 600 and not differ, differ[:5]


def test_gtfobins_front_matter_of_a_2018_page_keeps_its_lines(tip_data_dir: Path, tip_reader) -> None:
    """The first layout (`_gtfobins/awk.md`, front matter then a Markdown body): the body is not
    YAML and is left out; the code lines keep their numbers in the file."""
    tip = tip_reader.sources["gtfobins"]["commit"]
    first = _git(tip_data_dir, "gtfobins", "log", "--reverse", "--format=%H", tip, "--", "_gtfobins/awk.md").split()[0]
    text = _git(tip_data_dir, "gtfobins", "show", f"{first}:_gtfobins/awk.md")
    lines = text.split("\n")
    parsed = parse_front_matter("_gtfobins/awk.md", text)
    source = get("gtfobins")
    found = source.extract(FileContext("gtfobins", "_gtfobins/awk.md"), parsed)
    assert found.mentions and {m.binary for m in found.mentions} == {"awk"}
    for m in found.mentions:
        assert "awk" in lines[m.line - 1] and m.snippet == lines[m.line - 1].strip()
    assert source.title(parsed) == "awk"


def test_gtfobins_page_without_front_matter_is_a_clear_error() -> None:
    with pytest.raises(Exception) as err:
        get("gtfobins").parse("_gtfobins/x", "just text\n")
    assert str(err.value) == "_gtfobins/x:1: no YAML front matter (the file does not start with ---)"


# --- which sources a refresh reads -------------------------------------------------------------------


def test_a_refresh_reads_the_sources_the_data_dir_has_and_those_given_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every source in a new data directory; in one filled before, its own and those given a URL:
    `--sigma-url x --lolbas-url y` or a plain refresh of a data dir made from mirrors never
    fetches the others from GitHub."""
    for name in names():
        monkeypatch.delenv(env_var(name), raising=False)
    assert cli._default_sources(tmp_path, set()) == list(names())
    assert cli._default_sources(tmp_path, {"sigma", "lolbas"}) == ["sigma", "lolbas"]
    for name in ("sigma", "lolbas", "gtfobins"):  # clones made by an earlier refresh
        (tmp_path / "sources" / f"{name}.git").mkdir(parents=True)
    assert cli._default_sources(tmp_path, set()) == ["sigma", "lolbas", "gtfobins"]
    monkeypatch.setenv(env_var("atomic"), "atomic.bundle")
    assert cli._default_sources(tmp_path, {"sigma"}) == ["sigma", "lolbas", "atomic", "gtfobins"]
