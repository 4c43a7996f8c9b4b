"""Extraction on small rule files written here: shapes the real corpus lacks, and bad input."""

from __future__ import annotations

import textwrap

import pytest

from indexer.extract import FileContext, infer, negated_items
from indexer.names import stem_map
from indexer.parsers import process_file


def extract(text: str, source: str = "sigma", path: str = "rules/x.yml"):
    processed = process_file(FileContext(source, path), textwrap.dedent(text).lstrip("\n").encode())
    return processed.report, processed.extraction


def rows(extraction) -> set[tuple]:
    return {(m.binary, m.role, m.line, m.context) for m in extraction.mentions}


def test_multi_document_rule_with_global_and_block_description() -> None:
    report, ex = extract("""
        action: global
        title: Shared Title
        id: 11111111-1111-1111-1111-111111111111
        description: |
            First line.
            Runs certutil.exe to download.
        detection:
            selection_parent:
                ParentImage|endswith: '\\winword.exe'
            condition: selection_parent and selection
        level: high
        ---
        logsource:
            category: process_creation
            product: windows
        detection:
            selection:
                Image|endswith:
                    - '\\cmd.exe'
                    - '\\powershell.exe'
        ---
        logsource:
            category: file_event
            product: windows
        detection:
            selection:
                TargetFilename|endswith: '\\evil.dll'
        """)
    assert report.status == "indexed", report
    assert rows(ex) == {
        ("certutil.exe", "text", 6, ""),
        ("winword.exe", "parent", 9, "selection"),
        ("cmd.exe", "process", 19, "selection"),
        ("powershell.exe", "process", 20, "selection"),
        ("evil.dll", "file", 27, "selection"),
    }
    cmd = next(m for m in ex.mentions if m.binary == "cmd.exe")
    assert cmd.title == "Shared Title" and cmd.level == "high" and cmd.logsource == "windows/process_creation"
    assert cmd.snippet == "- '\\cmd.exe'" and cmd.modifiers == ("endswith",)


def test_filters_keywords_encodings_windash_regex() -> None:
    report, ex = extract("""
        title: Test
        logsource:
            product: windows
            category: process_creation
        detection:
            selection:
                CommandLine|contains|windash: '-exec bypass -file run.ps1'
                CommandLine|base64offset|contains: 'mshta.exe'
                CommandLine|re: '\\\\(cmd|powershell)\\.exe /c'
            keywords:
                - 'regsvr32.exe /s'
            filter_main_system:
                Image|startswith: 'C:\\Windows\\System32\\svchost.exe'
            filter_optional:
                ParentImage: 'C:\\Program Files\\Tool\\tool.exe'
            condition: (selection or keywords) and not filter_main_system and not 1 of filter_optional*
        """)
    assert report.status == "indexed"
    assert rows(ex) == {
        ("run.ps1", "command_line", 7, "selection"),
        ("mshta.exe", "command_line", 8, "selection"),
        ("cmd.exe", "command_line", 9, "selection"),
        ("powershell.exe", "command_line", 9, "selection"),
        ("regsvr32.exe", "keyword", 11, "selection"),
        ("svchost.exe", "process", 13, "filter"),
        ("tool.exe", "parent", 15, "filter"),
    }
    assert next(m for m in ex.mentions if m.binary == "mshta.exe").encoded
    assert next(m for m in ex.mentions if m.binary == "run.ps1").modifiers == ("contains", "windash")


def test_correlation_and_filter_rules() -> None:
    report, ex = extract("""
        title: Many rundll32.exe starts
        correlation:
            type: event_count
            rules:
                - some-rule
            group-by:
                - Computer
            timespan: 1h
            condition:
                gte: 10
        ---
        title: Filter out the backup agent
        logsource:
            product: windows
        filter:
            rules:
                - some-rule
            selection:
                Image|endswith: '\\backupagent.exe'
            condition: not selection
        """)
    assert report.status == "indexed", report
    assert rows(ex) == {("rundll32.exe", "text", 1, ""), ("backupagent.exe", "process", 19, "filter")}


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("selection and not filter", {"filter"}),
        ("selection and not 1 of filter_*", {"filter_a", "filter_b"}),
        ("not (a or b) and c", {"a", "b"}),
        ("not not a", set()),
        ("all of selection_* and not filter_a", {"filter_a"}),
        ("1 of them", set()),
    ],
)
def test_negated_items(condition: str, expected: set[str]) -> None:
    names = ["selection", "selection_x", "filter", "filter_a", "filter_b", "a", "b", "c"]
    assert negated_items(condition, names) == expected


def test_bare_names_are_inferred_from_known_executables() -> None:
    _, ex = extract("""
        title: Process Dump via Rundll32
        logsource:
            product: windows
        detection:
            selection:
                Image|endswith: '\\rundll32.exe'
                CommandLine|contains:
                    - 'rundll32 comsvcs'
                    - 'remote server'
            condition: selection
        """)
    stems = stem_map(["rundll32.exe", "remote.exe"])
    inferred = infer(ex.candidates, stems, {}, ex.mentions)
    assert {(m.binary, m.line, m.role) for m in inferred} == {
        ("rundll32.exe", 1, "text"),
        ("rundll32.exe", 8, "command_line"),
    }
    assert all(m.inferred for m in inferred)


def test_lolbas_old_and_new_layouts() -> None:
    _, new = extract(
        """
        Name: Foo.exe
        Description: Foo tool
        Aliases:
          - Alias: Foo64.exe
        Commands:
          - Command: foo.exe /run {PATH:.dll}
            Description: Runs a DLL with foo.exe
            Usecase: Execute
            Category: Execute
            Privileges: User
            MitreID: T1218
        Full_Path:
          - Path: C:\\Windows\\System32\\foo.exe
        Detection:
          - Sigma: https://github.com/SigmaHQ/sigma/blob/master/rules/windows/x.yml
          - IOC: foo.exe spawning cmd.exe
        Acknowledgement:
          - Person: Someone
            Handle: '@handle'
        """,
        source="lolbas",
        path="yml/OSBinaries/Foo.yml",
    )
    assert rows(new) == {
        ("foo.exe", "lolbas_entry", 1, ""),
        ("foo64.exe", "lolbas_entry", 4, ""),
        ("foo.exe", "lolbas_command", 6, ""),
        ("foo.exe", "text", 7, ""),
        ("foo.exe", "lolbas_path", 13, ""),
        ("foo.exe", "lolbas_ioc", 16, ""),
        ("cmd.exe", "lolbas_ioc", 16, ""),
    }
    command = next(m for m in new.mentions if m.role == "lolbas_command")
    assert command.tags == ("lolbas.execute", "attack.t1218")
    _, old = extract(
        """
        ---
        Name: Bar.exe
        Commands:
          - Command: bar.exe /x
            Description: Does x.
        Full_Path:
          - C:\\Windows\\System32\\Bar.exe
        Detection: []
        """,
        source="lolbas",
        path="Archive-Old-Version/OSBinaries/Bar.yml",
    )
    assert rows(old) == {
        ("bar.exe", "lolbas_entry", 2, ""),
        ("bar.exe", "lolbas_command", 4, ""),
        ("bar.exe", "lolbas_path", 7, ""),
    }


@pytest.mark.parametrize(
    "text, reason",
    [
        ("title: x\n  bad: [unclosed\n", "line 2: invalid YAML"),
        ("title: a\ntitle: b\n", "line 2: duplicate key 'title'"),
        ("date: 2024-13-45\ntitle: x\n", "invalid YAML value"),
        ("- a\n- b\n", "no YAML mapping in the file (documents: list)"),
        ("just a scalar\n", "no YAML mapping in the file (documents: str)"),
        ("", "no YAML mapping in the file (documents: empty)"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
                for i in range(8)
            ),
            "alias bomb",
        ),
        ("title: " + "[" * 5000 + "]" * 5000 + "\n", "maximum nesting depth"),
    ],
)
def test_bad_files_are_file_errors_with_a_reason(text: str, reason: str) -> None:
    report, ex = extract(text)
    assert report.status == "error" and reason in report.reason, report
    assert ex.mentions == []


def test_invalid_utf8_and_size_limit() -> None:
    processed = process_file(FileContext("sigma", "rules/x.yml"), b"title: caf\xe9\n")
    assert processed.report.status == "error" and "not valid UTF-8" in processed.report.reason
    processed = process_file(FileContext("sigma", "rules/x.yml"), b"title: x\n" * 100, max_bytes=100)
    assert processed.report.status == "error" and "over the 100-byte limit" in processed.report.reason


def test_pysigma_rejection_keeps_the_raw_mentions() -> None:
    report, ex = extract("""
        title: Broken rule naming psexec.exe
        logsource:
            product: windows
        detection:
            selection:
                Image|endswith: '\\psexec.exe'
                CommandLine|re: '(?<=x)cmd\\.exe'
            condition: selection and
        """)
    assert report.status == "indexed"
    assert report.warnings and all(w.startswith("pySigma: ") for w in report.warnings)
    assert ("psexec.exe", "process", 6, "selection") in rows(ex)
