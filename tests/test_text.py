"""printable: what every printer shows of text from rules."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.text import printable

# the rule, as written before printable took its fast path for text with nothing to replace
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _reference(text: str) -> str:
    return _CONTROL.sub("\ufffd", text.replace("\r\n", " ").replace("\t", " ").replace("\n", " "))


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=())) | st.text("ab \t\r\n\x1b\x9b\u2028\u202e\u200b\ufeff"))
def test_printable_replaces_exactly_the_control_characters(text: str) -> None:
    assert printable(text) == _reference(text)


def test_examples() -> None:
    assert printable("a\tb\r\nc\nd") == "a b c d"
    assert printable("\x1b[31mred\u202e") == "\ufffd[31mred\ufffd"
    assert printable("svсhost.exe \u200b") == "svсhost.exe \u200b"  # not a control character: kept
