"""Records: to_dict/from_dict round trips, damaged stored values refused, the field lists
derived from the declarations (CSV columns, stored keys, the change key, the API's models)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from repos import run_cli

from indexer import codec, export, records
from indexer.index import IndexMissing, IndexReader, IndexWriter, State
from indexer.model import PLATFORMS, RULE, SAYS, FileReport, Mention
from indexer.shape import Record
from indexer.verdicts import RuleVerdict

# Every record class that crosses a module boundary, and where the JSON may hold anything.
RECORDS = [
    Mention,
    FileReport,
    RuleVerdict,
    records.Link,
    records.Reference,
    records.FormerPath,
    records.LinkState,
    records.CoverageRule,
    records.CoverageEntry,
    records.CoverageRow,
    records.Tally,
    records.CoverageSummary,
    records.XrefData,
    records.MentionRow,
    records.DetectionItem,
    records.RuleRecord,
    records.BinaryRecord,
    records.FileCounts,
    records.Problem,
    records.IndexStats,
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
)
SMALL = settings(max_examples=25, deadline=None)


def _values(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a record field's type, small (two items a collection: nested records stay small)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    simple = {
        str: st.text(max_size=6),
        int: st.integers(-2, 10**6),
        bool: st.booleans(),
        float: st.floats(allow_nan=False, allow_infinity=False),
        Any: JSON_VALUES,
    }
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and issubclass(hint, Record):
        return _strategy(hint)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([st.none() if a is type(None) else _values(a) for a in args])
    if origin is tuple:
        return st.lists(_values(args[0]), max_size=2).map(tuple)
    if origin is list:
        return st.lists(_values(args[0]), max_size=2)
    if origin is dict:
        return st.dictionaries(_values(args[0]), _values(args[1]), max_size=2)
    raise TypeError(hint)


def _strategy(cls: type) -> st.SearchStrategy[Any]:
    """Records of `cls`, every field drawn from its declared type."""
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: _values(hints[f.name]) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_round_trip_through_json(cls: type[Record]) -> None:
    @SMALL
    @given(_strategy(cls))
    def check(record: Any) -> None:
        data = json.loads(json.dumps(record.to_dict()))
        assert cls.from_dict(data) == record

    check()


def _bad_field(cls: type) -> list[str]:
    """The fields a damaged value must be refused in (all but those typed Any)."""
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] is not Any]


@pytest.mark.parametrize("cls", [c for c in RECORDS if c is not records.MentionRow], ids=lambda c: c.__name__)
def test_a_damaged_value_is_refused_naming_the_field(cls: type[Record]) -> None:
    @SMALL
    @given(_strategy(cls), st.data())
    def check(record: Any, data: st.DataObject) -> None:
        stored = json.loads(json.dumps(record.to_dict()))
        name = data.draw(st.sampled_from(_bad_field(cls)))
        # [[1]] is no str, int, bool, enum value, list of str or of records, object or record
        with pytest.raises(ValueError, match=f"not a {cls.__name__}: {name}"):
            cls.from_dict({**stored, name: [[1]]})
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if required:
            missing = data.draw(st.sampled_from(required))
            with pytest.raises(ValueError, match=f"{missing}: missing"):
                cls.from_dict({k: v for k, v in stored.items() if k != missing})

    check()


def test_shapes_refused_and_unknown_keys_ignored() -> None:
    good = Mention(
        "psr.exe",
        "sigma",
        "rules/x.yml",
        3,
        "Image|endswith: '\\psr.exe'",
        role="process",
        context="selection",
        modifiers=("endswith",),
        platform="windows",
    )
    data = good.to_dict()
    for bad in (
        {"zzz": 1},
        [],
        "psr.exe",
        {**data, "role": "bogus"},
        {**data, "platform": "solaris"},
        {**data, "line": "3"},
        {**data, "inferred": 1},
        {**data, "line": True},
        {**data, "tags": "ab"},
        {**data, "modifiers": [1]},
        {**data, "context": None},
    ):
        with pytest.raises(ValueError, match="not a Mention"):
            Mention.from_dict(bad)  # type: ignore[arg-type]
    assert Mention.from_dict({**data, "alias_of": "x", "verdict": "runs"}) == good  # answers' extra keys
    link = records.Link(
        "yml/OSBinaries/Psr.yml",
        "Psr.exe",
        30,
        "https://github.com/SigmaHQ/sigma/blob/x.yml",
        "deleted",
        reason="no rule with this id at the tip",
    )
    assert link.to_dict() == {
        "lolbas_path": "yml/OSBinaries/Psr.yml",
        "entry": "Psr.exe",
        "line": 30,
        "url": link.url,
        "status": "deleted",
        "rule_set": "sigma",
        "reason": "no rule with this id at the tip",
    }
    assert records.LinkState("u", "ok", None, None).to_dict() == {
        "url": "u",
        "status": "ok",
        "current_path": None,
        "reason": None,
    }


def test_field_lists_come_from_the_declaration() -> None:
    names = [f.name for f in dataclasses.fields(Mention)]
    assert list(export.CSV_COLUMNS) == names + ["verdict"]
    assert set(codec.STORED) == set(names) - set(codec.PER_SOURCE)
    assert Mention.fields_of(SAYS)[0] == "binary"  # the change summary groups by (file, binary)
    assert "platform" in Mention.fields_of(RULE) and PLATFORMS == ("windows", "linux", "macos")
    row = codec.mention_row(Mention("psr.exe", "sigma", "p.yml", 1, "psr.exe", tags=("a",), platform="linux"))
    assert json.loads(row[2])["platform"] == "linux" and row[0] == "psr.exe"


def test_the_api_models_follow_the_records() -> None:
    from pydantic import ValidationError

    from indexer.web.models import BinaryAnswer, MentionModel, RuleAnswer

    assert set(MentionModel.model_fields) == {*Mention.columns(), "alias_of"}
    assert set(BinaryAnswer.model_fields) == {*records.BinaryRecord.columns(), "page", "as_of"}  # as_of: ?at=DATE
    assert set(RuleAnswer.model_fields) == {*records.RuleRecord.columns(), "page"}
    row = {**Mention("a.exe", "sigma", "p.yml", 1, "a.exe").to_dict(), "alias_of": ""}
    MentionModel.model_validate(row)
    for bad in ({"zzz": 1}, {**row, "platform": "solaris"}, {k: v for k, v in row.items() if k != "platform"}):
        with pytest.raises(ValidationError):
            MentionModel.model_validate(bad)


def _one_generation(data_dir: Path, text: str) -> None:
    """An index whose only document is `text` (the stored mentions of psr.exe)."""
    writer = IndexWriter(data_dir, None)
    writer.replace_files({}, [("psr.exe", (), text[1:-1])])
    writer.commit({})
    writer.write_state(State())
    writer.publish()


def test_a_damaged_stored_mention_is_a_damaged_index(tmp_path: Path) -> None:
    mention = Mention("psr.exe", "sigma", "rules/x.yml", 3, "psr.exe", role="process", context="selection")
    good = "[" + codec.mention_row(mention)[2] + "]"
    _one_generation(tmp_path / "good", good)
    with IndexReader(tmp_path / "good") as reader:
        assert reader.search(["psr.exe"]) == [mention]
    _one_generation(tmp_path / "bad", good.replace('"role":"process"', '"role":"bogus"'))
    with IndexReader(tmp_path / "bad") as reader, pytest.raises(IndexMissing, match="damaged"):
        reader.search(["psr.exe"])


# --- Mention.platform on the real corpora ----------------------------------------------------------

SHAI_HULUD = "rules-emerging-threats/2025/Malware/Shai-Hulud/proc_creation_lnx_mal_shai_hululd_exfiltration.yml"
APPLET = "rules/macos/process_creation/proc_creation_macos_suspicious_applet_behaviour.yml"
DNS_TXT = "rules/network/dns/net_dns_susp_txt_exec_strings.yml"  # logsource category dns: no host platform


def test_platform_comes_from_the_logsource_product(tip_reader: IndexReader) -> None:
    platforms = {(m.source, m.path): m.platform for m in tip_reader.search(["psr.exe", "curl", "applet", "cmd.exe"])}
    assert (
        platforms[("sigma", "rules/windows/process_creation/proc_creation_win_psr_capture_screenshots.yml")]
        == "windows"
    )
    assert platforms[("lolbas", "yml/OSBinaries/Psr.yml")] == "windows"
    assert platforms[("sigma", SHAI_HULUD)] == "linux"  # logsource product: linux
    assert platforms[("sigma", APPLET)] == "macos"  # product: macos
    assert platforms[("sigma", DNS_TXT)] == ""  # category: dns


def test_search_platform_filter_and_json(tip_data_dir: Path) -> None:
    done = run_cli("search", "curl", "--platform", "linux", "--json", data_dir=tip_data_dir)
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)  # one object per name searched for
    mentions = answer["mentions"]
    assert SHAI_HULUD in {m["path"] for m in mentions} and {m["platform"] for m in mentions} == {"linux"}
    (everything,) = [
        a["mentions"] for a in json.loads(run_cli("search", "curl", "--json", data_dir=tip_data_dir).stdout)
    ]
    assert {m["platform"] for m in everything} > {"linux"}  # the filter left others out
    bad = run_cli("search", "curl", "--platform", "solaris", data_dir=tip_data_dir)
    assert bad.returncode == 4 and "solaris" in bad.stderr and "Traceback" not in bad.stderr


def test_a_rule_citing_the_lolbas_home_page_validates(tip_reader: IndexReader) -> None:
    """Its reference is `unresolvable` (no entry page): the hand-written API model allowed only
    ok and unknown, so /api/rule answered this rule with a validation error."""
    from indexer.query import show_target
    from indexer.web.models import RuleAnswer

    path = "deprecated/windows/win_susp_esentutl_activity.yml"
    shown = show_target(tip_reader, path, kind="rule")
    assert shown is not None
    assert [(l["url"], l["status"]) for l in shown["links"]] == [("https://lolbas-project.github.io/", "unresolvable")]
    RuleAnswer.model_validate({**shown, "page": {"offset": 0, "limit": 100, "total": len(shown["binaries"])}})


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@SMALL
@given(_JSON_VALUES)
def test_the_index_encodes_json_as_the_standard_library_does(value) -> None:
    # codec.encode builds the C encoder once; what it writes must not differ in a byte
    assert codec.encode(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
