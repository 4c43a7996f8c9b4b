"""The name matcher: boundaries, case, paths, quotes, regexes, bare names (examples and properties)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from indexer.names import (
    COMMON_WORDS,
    EXTENSIONS,
    bare_names,
    explicit_names,
    regex_literals,
    regex_names,
    stem_map,
    value_names,
)
from indexer.names import _NOT_FILES, _REVERSED_EXTENSIONS


def names(text: str) -> list[str]:
    return [h.name for h in explicit_names(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("cmd.exe /c whoami", ["cmd.exe"]),
        ("xcmd.exe", ["xcmd.exe"]),
        ("rundll32.exe,DllMain", ["rundll32.exe"]),
        ('"rundll32.exe"', ["rundll32.exe"]),
        ("C:\\Windows\\System32\\psr.exe", ["psr.exe"]),
        ("'\\Psr.exe'", ["psr.exe"]),
        ("*\\7z.exe", ["7z.exe"]),
        ("Microsoft.Workflow.Compiler.exe", ["microsoft.workflow.compiler.exe"]),
        ("file.exe.config", []),
        ("run cmd.exe.", ["cmd.exe"]),
        ("\\chcp.com", ["chcp.com"]),
        ("evil.com", []),
        ("\\\\live.sysinternals.com\\Tools\\bginfo.exe", ["bginfo.exe"]),
        ("https://evil.example.com/payload.exe", ["payload.exe"]),
        ("https://cdn.example.com/lib/jquery.js", []),
        ("written in node.js", []),
        ("x IVA.EXE y", []),  # "avi" backwards: the tail of a right-to-left override (a property assumes it away)
        ("C:\\Config.Msi\\x", []),
        ("-payload.exe", ["payload.exe"]),
        ("PowerShell.EXE -enc", ["powershell.exe"]),
        ("a.ps1;b.vbs", ["a.ps1", "b.vbs"]),
    ],
)
def test_explicit_names(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(
    "value, process, expected",
    [
        ("/curl", True, ["curl"]),
        ("/usr/bin/python3.", True, ["python3"]),
        ("/tmp/", True, []),
        ("MODE.COM", True, ["mode.com"]),
        ("MODE.COM", False, []),
        ("/curl", False, []),
        ("C:\\Windows\\System32\\", True, []),
    ],
)
def test_value_names_for_process_fields(value: str, process: bool, expected: list[str]) -> None:
    assert [h.name for h in value_names(value, whole_value=True, process=process)] == expected


@pytest.mark.parametrize(
    "pattern, expected",
    [
        (r"\\(cmd|powershell)\.exe", ["cmd.exe", "powershell.exe"]),
        (r"(?i)\\rundll32\.exe\s+\S+", ["rundll32.exe"]),
        (r"[a-z]{8}\.exe", []),
        (r"\\[Cc]md\.exe", ["cmd.exe"]),
        (r"\\pow[a-z]+shell\.exe", []),
        (r"\\cmd(\.exe)?\s", ["cmd.exe"]),
        (r"^(?:w|c)script\.exe$", ["wscript.exe", "cscript.exe"]),
        (r"\\(?!cmd)\w+\.exe", []),
    ],
)
def test_regex_literals_give_names_never_fragments(pattern: str, expected: list[str]) -> None:
    found = sorted({h.name for h in regex_names(pattern, whole_value=False)})
    assert found == sorted(expected)


STEMS = stem_map(["rundll32.exe", "cscript.exe", "remote.exe", "firefox.exe", "handle.exe", "cmd.exe"])


@pytest.mark.parametrize(
    "text, prose, expected",
    [
        ("rundll32 ", False, ["rundll32.exe"]),
        ("cscript c:\\ads\\file.txt:script.vbs", False, ["cscript.exe"]),
        ("Process Dump via Rundll32", True, ["rundll32.exe"]),
        ("Detected via Rundll32.", True, ["rundll32.exe"]),
        ("remote server", True, []),
        ("Firefox/3.6", False, []),
        ("xcmd /c", False, []),
        ("cmd.exe /c", False, []),
        ("@handle", False, []),
    ],
)
def test_bare_names(text: str, prose: bool, expected: list[str]) -> None:
    assert [h.name for h in bare_names(text, STEMS, in_prose=prose)] == expected


def test_common_words_never_become_stems() -> None:
    assert "remote" not in STEMS and "handle" not in STEMS
    assert stem_map(["file", "users", "find", "bash"]) == {"bash": "bash"}


def test_regex_fragments_are_not_names() -> None:
    assert [h.name for h in regex_names(r"\\pow[a-z]+shell\.exe", False)] == []
    assert [h.name for h in regex_names(r"x(?=y)rundll32\.exe", False)] == []
    assert [h.name for h in regex_names(r".*\\rundll32\.exe", False)] == ["rundll32.exe"]
    assert [h.name for h in regex_names(r"(?i)^cmd\.exe\s", False)] == ["cmd.exe"]


def test_boundaries_after_bare_names() -> None:
    stems = stem_map(["curl.exe", "wget.exe", "whoami.exe", "firefox.exe"])
    assert [h.name for h in bare_names("Curl/Wget Download", stems, in_prose=True)] == ["curl.exe", "wget.exe"]
    assert [h.name for h in bare_names("whoami*>", stems)] == ["whoami.exe"]
    assert list(bare_names("Mozilla Firefox/3.6", stems)) == []
    assert [h.name for h in explicit_names("ntdll.dll+0x9d234|kernelbase.dll+x")] == ["ntdll.dll", "kernelbase.dll"]


# --- properties -------------------------------------------------------------------------------

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
EXT = st.sampled_from([e for e in EXTENSIONS if e != "com"])
SEPARATOR = st.sampled_from([" ", "\\", "/", '"', "'", ",", ";", "(", ")", "=", "\t", "|"])


@settings(max_examples=300, deadline=None)
@given(NAME, EXT, SEPARATOR, SEPARATOR, st.booleans())
def test_a_name_between_separators_is_found_in_any_case(
    stem: str, ext: str, left: str, right: str, upper: bool
) -> None:
    assume(not (ext == "msi" and right == "\\"))  # C:\\Config.Msi\\ is a folder
    assume(stem not in _REVERSED_EXTENSIONS)  # `iva.exe`: the visible tail of a right-to-left override
    assume(f"{stem}.{ext}" not in _NOT_FILES)  # `node.js`: a framework, not a file
    written = f"{stem}.{ext}"
    text = f"x{left}{written.upper() if upper else written}{right}y"
    assert f"{stem}.{ext}" in names(text)


@settings(max_examples=300, deadline=None)
@given(NAME, EXT, st.from_regex(r"[a-z0-9_]", fullmatch=True))
def test_a_name_glued_to_a_word_is_not_the_shorter_name(stem: str, ext: str, glue: str) -> None:
    found = names(f"{glue}{stem}.{ext}")
    assert f"{stem}.{ext}" not in found or f"{glue}{stem}.{ext}" == f"{stem}.{ext}"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_matcher_never_fails_and_hits_are_substrings(text: str) -> None:
    for hit in explicit_names(text):
        assert text[hit.start : hit.end].lower() == hit.name
        assert re.fullmatch(r"[a-z0-9_$][a-z0-9_$~+.\-]*\.[a-z0-9]+", hit.name)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab\\.()|[]?*+^$cmdexe")), max_size=40))
def test_regex_literals_never_fail(pattern: str) -> None:
    for literal in regex_literals(pattern):
        assert isinstance(literal, str)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(STEMS)),
    st.sampled_from(list(" \t'\"\\/(=,;&|`")),
    st.sampled_from([" ", '"', "'", ",", ";", ")", ""]),
)
def test_bare_stem_between_separators_is_found(stem: str, left: str, right: str) -> None:
    assert [h.name for h in bare_names(f"x{left}{stem}{right}", STEMS)] == [STEMS[stem]]


def test_common_words_cover_the_issue_examples() -> None:
    assert {"remote", "handle", "security"} <= COMMON_WORDS
