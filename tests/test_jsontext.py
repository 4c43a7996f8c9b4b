"""jsontext writes and reads JSON as the standard library does (orjson, with `json` for what it refuses)."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.jsontext import dumps, loads

SETTINGS = settings(max_examples=300, deadline=None)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# every code point, lone surrogates and control characters included
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | TEXT
NO_FLOATS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT | st.integers(-5, 5), inner, max_size=4),
    max_leaves=20,
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


@SETTINGS
@given(NO_FLOATS)
def test_the_text_is_the_standard_librarys(value: object) -> None:
    assert dumps(value) == _json(value)


@SETTINGS
@given(st.lists(FLOATS | SCALARS, max_size=5))
def test_floats_keep_their_value_and_nan_stays_nan(value: list[object]) -> None:
    written = dumps(value)
    back = json.loads(written)
    for original, read in zip(value, back, strict=True):
        if isinstance(original, float) and math.isnan(original):
            assert isinstance(read, float) and math.isnan(read)  # not null, as orjson alone writes it
        else:
            assert read == original


INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what we write (orjson reads larger ones as floats)
WRITTEN = st.recursive(
    st.none() | st.booleans() | INT64 | TEXT | FLOATS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(WRITTEN)
def test_reading_gives_what_json_reads(value: object) -> None:
    text = _json(value)
    assert _json(loads(text)) == _json(json.loads(text))


def test_text_that_is_not_json_raises_jsons_error() -> None:
    for text in ("", "[1,", "{'a': 1}", "nul"):
        try:
            json.loads(text)
        except ValueError as expected:
            try:
                loads(text)
            except ValueError as got:
                assert str(got) == str(expected)
            else:
                raise AssertionError(f"{text!r} read")
