"""Properties of the YAML-to-mentions path (`parsers.process_file`) on generated rule files.

Random Sigma-shaped documents (titles, detections with selections and filters, field names with
modifiers, values mixing paths, names, quotes, backslashes, unicode and control characters) are
dumped with yaml.safe_dump in every style; raw text, raw bytes and mutated dumps are fed as well.
For every file:

- process_file never raises, and the status is `indexed` or `error` (an error has a reason and
  no mentions);
- every mention's line is a line of the file, and its snippet is that line, stripped;
- every mention's binary is written (in any case) on its line; for regex values (`|re`), where
  a name is spelled with classes or groups, its stem is, or its letters stand there in order.

A line of the file is what editors, `git grep -n` and GitHub's `#L` anchors count: text between
CR, LF or CRLF. NEL, LS and PS (U+0085, U+2028, U+2029) are not line breaks there, though libyaml
counts them; the generators include them, and explicit `!!bool`/`!!timestamp` tags with bad values.

`FUZZ_EXAMPLES` sets the examples per property (default 150); `make fuzz` runs 5000.
"""

from __future__ import annotations

import os
import re
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.extract import FileContext
from indexer.model import ROLES, SNIPPET_CHARS
from indexer.parsers import process_file

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SIGMA = FileContext("sigma", "rules/f.yml")
LOLBAS = FileContext("lolbas", "yml/OSBinaries/X.yml")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Line breaks for YAML 1.1 and str.splitlines, not for editors, git or GitHub (known defect, below).
UNICODE_BREAKS = "\x85\u2028\u2029"


# --- the properties -------------------------------------------------------------------------------


def file_lines(text: str) -> list[str]:
    lines = _LINE_BREAK.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


_YAML_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_YAML_ESCAPED = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", "e": "\x1b"}
_YAML_ESCAPED |= {"N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}


def read_escapes(line: str) -> str:
    """A line with the escapes of a YAML double-quoted scalar read (`\\U000305CF` is one letter):
    PyYAML writes control characters and characters above U+FFFF so even with allow_unicode."""

    def char(escape: re.Match[str]) -> str:
        code = int(escape[1] or escape[2] or escape[3] or "-1", 16)
        return _YAML_ESCAPED.get(escape[4], escape[4]) if code < 0 else chr(code) if code <= 0x10FFFF else escape[0]

    return _YAML_ESCAPE.sub(char, line)


def is_subsequence(needle: str, haystack: str) -> bool:
    chars = iter(haystack)
    return all(c in chars for c in needle)


def check(ctx: FileContext, data: bytes) -> None:
    processed = process_file(ctx, data)  # must not raise
    report, extraction = processed.report, processed.extraction
    assert report.status in ("indexed", "error"), report
    if report.status == "error":
        assert report.reason and not extraction.mentions, report
        return
    text = data.decode("utf-8-sig")
    lines = file_lines(text)
    for m in extraction.mentions:
        assert (m.source, m.path) == (ctx.source, ctx.path)
        assert m.role in ROLES and m.context in ("", "selection", "filter"), m
        assert 1 <= m.line <= len(lines), (m.line, len(lines), m)
        line = lines[m.line - 1].strip()
        if len(line) <= SNIPPET_CHARS:
            assert m.snippet == line, (m.snippet, lines[m.line - 1], m)
        else:  # a long line: a window of it around the name
            window = m.snippet.removeprefix("\u2026").removesuffix("\u2026")
            assert window in line and len(window) <= SNIPPET_CHARS, (m.snippet, line, m)
        assert m.binary and m.binary == m.binary.lower() and not re.search(r"\s", m.binary), m.binary
        written = m.snippet.lower()
        stem = m.binary.rpartition(".")[0] or m.binary
        if "re" in m.modifiers:  # the line as written, or as a double-quoted scalar reads it
            spelled = {written, read_escapes(m.snippet).lower()} if '"' in m.snippet else {written}
            assert any(stem in w or is_subsequence(m.binary, w) for w in spelled), (m.binary, m.snippet)
        elif m.inferred:
            assert stem in written, (m.binary, m.snippet)
        elif '"' not in m.snippet:  # a double-quoted scalar may spell a name with escapes ("\x2e")
            assert m.binary in written, (m.binary, m.snippet)
    for cand in extraction.candidates:
        assert 1 <= cand.line <= len(lines) and cand.snippet == lines[cand.line - 1].strip(), cand


# --- strategies ------------------------------------------------------------------------------------

FIELDS = [
    "Image",
    "ParentImage",
    "OriginalFileName",
    "CommandLine",
    "ParentCommandLine",
    "TargetFilename",
    "ImageLoaded",
    "TargetImage",
    "TargetObject",
    "Details",
    "ScriptBlockText",
    "Hashes",
    "User",
    "DestinationHostname",
    "Path",
    "Name",
    "exe",
    "comm",
    "a0",
    "Payload",
    "ServiceFileName",
    "Data",
    "NewProcessName",
    "SourceImage",
    "query",
    "Keywords",
]
MODIFIERS = [
    "endswith",
    "startswith",
    "contains",
    "all",
    "re",
    "base64offset",
    "base64",
    "windash",
    "utf16le",
    "wide",
    "cidr",
    "exists",
    "i",
    "m",
    "s",
    "fieldref",
    "gt",
    "expand",
]
NAMES = st.from_regex(
    r"[A-Za-z0-9_$~+-][A-Za-z0-9_$~+.-]{0,10}\.(exe|EXE|dll|ps1|com|js|sh|bat|msi|cmd|vbs)", fullmatch=True
)
PIECES = st.one_of(
    NAMES,
    st.sampled_from(
        [
            "C:\\Windows\\System32\\",
            "\\",
            "/usr/bin/",
            "/",
            "\\\\host\\share\\",
            "%APPDATA%\\",
            "https://evil.example.com/",
            " ",
            "  ",
            "*",
            "?",
            ".",
            "..",
            "'",
            '"',
            "''",
            "`",
            "|",
            "(",
            ")",
            "[Cc]",
            "\\.",
            ".*",
            "(?i)",
            "^",
            "$",
            "{",
            "}",
            ",",
            ";",
            "&",
            "#",
            ": ",
            "- ",
            "!",
            "%",
            "@",
            "=",
            "+",
            "-",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "\x00",
            "\x07",
            "\x1b",
            "\x7f",
            "\ufeff",
            "\u00e9",
            "\u017f",
            "\u212a",
            "\u0130",
            "\U0001f600",
            "cmd",
            "rundll32 ",
            "powershell -enc ",
            "certutil.exe -urlcache",
            "node.js",
            "Config.Msi\\",
            "evil.com",
            "\\chcp.com",
        ]
    ),
    st.text(max_size=6),
)
VALUES = st.lists(PIECES, max_size=8).map("".join)
SCALARS = st.one_of(VALUES, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))


@st.composite
def field_keys(draw: st.DrawFn) -> str:
    name = draw(
        st.one_of(st.sampled_from(FIELDS), st.text(alphabet=string.ascii_letters + "|_-", min_size=1, max_size=12))
    )
    modifiers = draw(st.lists(st.sampled_from(MODIFIERS), max_size=3))
    return "|".join([name, *modifiers])


FIELD_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))
SELECTION = st.one_of(
    st.dictionaries(field_keys(), FIELD_VALUES, max_size=5),
    st.lists(VALUES, max_size=4),  # keywords
    st.lists(st.dictionaries(field_keys(), FIELD_VALUES, max_size=3), max_size=3),
)
ITEM_NAMES = st.sampled_from(
    ["selection", "selection_img", "selection_cli", "filter", "filter_main_x", "filter_optional_y", "keywords", "sel"]
)
CONDITIONS = st.sampled_from(
    [
        "selection",
        "selection and not filter",
        "1 of selection_* and not 1 of filter_*",
        "all of them",
        "keywords",
        "not (filter or sel)",
        "sel |",
        "",
    ]
)


@st.composite
def detections(draw: st.DrawFn) -> dict:
    items = draw(st.dictionaries(ITEM_NAMES, SELECTION, max_size=4))
    if draw(st.booleans()):
        items["condition"] = draw(st.one_of(CONDITIONS, st.lists(CONDITIONS, max_size=2), VALUES))
    return items


JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(VALUES, inner, max_size=3)),
    max_leaves=12,
)


@st.composite
def sigma_docs(draw: st.DrawFn) -> object:
    doc: dict = {}
    for key, strategy in (
        ("title", VALUES),
        ("id", st.uuids().map(str)),
        ("status", st.sampled_from(["test", "stable"])),
        ("description", VALUES),
        ("references", st.lists(VALUES, max_size=2)),
        (
            "logsource",
            st.fixed_dictionaries(
                {},
                optional={
                    "product": st.sampled_from(["windows", "linux", "macos"]),
                    "category": st.sampled_from(["process_creation", "image_load", "file_event"]),
                },
            ),
        ),
        ("detection", detections()),
        ("falsepositives", st.one_of(VALUES, st.lists(VALUES, max_size=2))),
        ("level", st.sampled_from(["low", "high"])),
        ("tags", st.lists(VALUES, max_size=2)),
        ("action", st.just("global")),
        ("filter", detections()),
    ):
        if draw(st.integers(0, 9)) < (8 if key in ("title", "detection") else 3):
            doc[key] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:
        doc[draw(VALUES)] = draw(JUNK)
    detection = doc.get("detection")
    if isinstance(detection, dict) and len(detection) >= 2 and draw(st.integers(0, 4)) == 0:
        first, second = sorted(detection)[:2]
        detection[second] = detection[first]  # one object twice: dumped as an anchor and an alias
    if draw(st.integers(0, 19)) == 0:
        return draw(JUNK)  # a document that is not a mapping
    return doc


@st.composite
def lolbas_docs(draw: st.DrawFn) -> object:
    command = st.fixed_dictionaries(
        {},
        optional={
            "Command": VALUES,
            "Description": VALUES,
            "Usecase": VALUES,
            "Category": st.sampled_from(["Execute", "Download"]),
            "Privileges": st.just("User"),
            "MitreID": st.sampled_from(["T1218", "T1105"]),
            "OperatingSystem": VALUES,
        },
    )
    doc = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "Name": st.one_of(NAMES, VALUES, st.sampled_from(["..", "-rf", "+x", ".bashrc"])),
                "Description": VALUES,
                "Aliases": st.lists(
                    st.one_of(st.fixed_dictionaries({"Alias": st.one_of(NAMES, VALUES)}), VALUES), max_size=2
                ),
                "Commands": st.one_of(st.lists(st.one_of(command, VALUES), max_size=3), VALUES),
                "Full_Path": st.lists(st.one_of(st.fixed_dictionaries({"Path": VALUES}), VALUES), max_size=3),
                "Detection": st.lists(
                    st.dictionaries(st.sampled_from(["Sigma", "IOC", "Elastic", "Splunk"]), VALUES, max_size=2),
                    max_size=3,
                ),
            },
        )
    )
    if draw(st.integers(0, 19)) == 0:
        return draw(JUNK)
    return doc


@st.composite
def dumped(draw: st.DrawFn, docs: st.SearchStrategy) -> bytes:
    """Documents written by yaml.safe_dump in any style, one or several per file."""
    documents = draw(st.lists(docs, min_size=1, max_size=3))
    options = dict(
        allow_unicode=True,  # escapes ("\u017f") would spell names differently from their values
        sort_keys=False,
        default_style=draw(st.sampled_from([None, None, '"', "'", "|", ">"])),
        default_flow_style=draw(st.sampled_from([False, None, True])),
        width=draw(st.sampled_from([20, 80, 10_000])),
        indent=draw(st.sampled_from([2, 4, 7])),
        canonical=draw(st.integers(0, 9)) == 0,
        explicit_start=draw(st.booleans()),
        line_break=draw(st.sampled_from(["\n", "\n", "\r\n", "\r"])),
    )
    text = yaml.safe_dump_all(documents, **options)
    if draw(st.integers(0, 9)) == 0:
        text = "\ufeff" + text
    return text.encode("utf-8")


@st.composite
def mutated(draw: st.DrawFn, docs: st.SearchStrategy) -> bytes:
    """A dumped file with a few characters inserted, deleted or replaced."""
    text = bytearray(draw(dumped(docs)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(
            st.one_of(
                st.sampled_from(
                    [
                        b"\t",
                        b"\n",
                        b"  ",
                        b"- ",
                        b": ",
                        b"&a ",
                        b"*a",
                        b"[",
                        b"{",
                        b"'",
                        b'"',
                        b"\\",
                        b"|",
                        b"#",
                        b"!!str ",
                        b"\xff",
                        b"\xc3",
                    ]
                ),
                st.binary(max_size=3),
            )
        )
        if action == "insert":
            text[pos:pos] = piece
        elif action == "delete":
            del text[pos : pos + len(piece)]
        else:
            text[pos : pos + len(piece)] = piece
    return bytes(text)


# --- Sigma ----------------------------------------------------------------------------------------


@FUZZ
@given(dumped(sigma_docs()))
def test_sigma_documents(data: bytes) -> None:
    check(SIGMA, data)


@FUZZ
@given(mutated(sigma_docs()))
def test_sigma_documents_mutated(data: bytes) -> None:
    check(SIGMA, data)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.lists(
            st.one_of(
                PIECES,
                st.sampled_from(
                    ["\n", "  ", "    ", "- ", "Image|endswith: ", "title: ", "detection:\n", "selection:\n"]
                ),
            ),
            max_size=40,
        ).map(lambda parts: "".join(parts).encode()),
    )
)
def test_sigma_raw_text_and_bytes(data: bytes) -> None:
    check(SIGMA, data)


# --- LOLBAS ---------------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(dumped(lolbas_docs()), mutated(lolbas_docs())))
def test_lolbas_documents(data: bytes) -> None:
    check(LOLBAS, data)


# --- examples that pin the properties down -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "title: Runs certutil.exe\ndetection:\n  sel:\n    Image|endswith: '\\certutil.exe'\n  condition: sel\n",
        "title: x\r\ndetection:\r\n  sel:\r\n    CommandLine|contains: |\r\n      a\r\n      rundll32.exe b\r\n",
        "title: x\rdetection:\r  sel:\r    Image: '\\cmd.exe'\r",
        "title: x\ndetection:\n  sel:\n    CommandLine|re: '\\\\(cmd|powershell)\\.exe'\n    Image|re: '[Cc]md\\.exe'\n",
        "\ufefftitle: BOM then psr.exe\n",
        "Name: Foo.exe\nCommands:\n  - Command: foo.exe /x\nFull_Path:\n  - Path: C:\\Windows\\foo.exe\n",
        '\ufeff""\n---\n"Aliases":\n- |-\n  +\n',  # found by hypothesis: a block-scalar alias
        # found by hypothesis: PyYAML writes a character above U+FFFF as an escape in a double-quoted
        # scalar even with allow_unicode, and a letter of any script belongs to a name
        '"detection":\n  "sel":\n    "CommandLine|re": "\\U000305CFx\\\\.exe"\n',
    ],
)
def test_examples_hold_the_properties(text: str) -> None:
    check(SIGMA, text.encode())
    check(LOLBAS, text.encode())


def test_lolbas_block_scalar_alias_is_named_on_its_own_line() -> None:
    text = "Name: Foo.exe\nAliases:\n- |-\n  foo\n- |-\n  +\n"
    mentions = process_file(LOLBAS, text.encode()).extraction.mentions
    assert sorted((m.binary, m.line) for m in mentions if m.field == "Alias") == [("foo", 4)]


# --- known defects, kept as regression tests ------------------------------------------------------


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"], ids=["NEL", "LS", "PS"])
def test_unicode_line_separators_do_not_shift_lines(char: str) -> None:
    text = f"description: 'a{char}b'\ntitle: Runs certutil.exe\n"
    mentions = process_file(SIGMA, text.encode()).extraction.mentions
    assert [(m.binary, m.line, m.snippet) for m in mentions] == [("certutil.exe", 2, "title: Runs certutil.exe")]


def test_names_keep_their_letters_and_extensions_are_ascii() -> None:
    # issue 14 item 23: a letter of another script belongs to the name (never a fragment such as
    # `vchost.exe`); an extension is ASCII (`x.ſh`, long s, is no `.sh` file)
    text = (
        "title: x\ndetection:\n  sel:\n    Image|endswith:\n      - '\\\u017fvchost.exe'\n"
        "      - '\\\u0130cmd.exe'\n    CommandLine|contains: 'run x.\u017fh'\n  condition: sel\n"
    )
    mentions = process_file(SIGMA, text.encode()).extraction.mentions
    assert {(m.binary, m.homoglyph) for m in mentions} == {("\u017fvchost.exe", True), ("\u0130cmd.exe".lower(), True)}


@pytest.mark.parametrize("text", ["title: !!bool x\n", "title: !!timestamp x\n", "Image: !!bool |\n  false\n"])
def test_bad_values_under_explicit_tags_are_file_errors(text: str) -> None:
    report = process_file(SIGMA, text.encode()).report
    assert report.status == "error" and "invalid YAML" in report.reason, report


@pytest.mark.parametrize(
    "value, named",
    [
        ('"a\\U000305CF\\\n      b.exe"', "a\U000305cfb.exe"),  # continued after an escape, as PyYAML writes it
        ('"run\n      \\x63md.exe"', "cmd.exe"),  # an escape on a later line
    ],
    ids=["continuation", "escape"],
)
def test_a_double_quoted_value_across_lines_names_what_it_reads(value: str, named: str) -> None:
    # `_Collector.scalar_lines` gives a value on one line as YAML reads it, but the lines of one
    # spanning several as they are written: escapes stay unread (`\x63md.exe` gives x63md.exe) and
    # a trailing `\` (no space: one word) splits a name (`a𰗏\` + `b.exe` gives b.exe). None of the
    # corpora's Sigma, LOLBAS or atomic values is such a scalar (LOLDrivers' are publishers and
    # subjects; Splunk maps its searches' offsets itself, ValueLines).
    text = f"detection:\n  sel:\n    CommandLine|contains: {value}\n  condition: sel\n"
    mentions = process_file(SIGMA, text.encode()).extraction.mentions
    assert [(m.binary, m.line) for m in mentions] == [(named, 3 if "\\\n" in value else 4)]
