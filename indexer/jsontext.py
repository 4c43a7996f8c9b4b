"""JSON text as the standard library writes and reads it (`json.dumps(value, separators=(",", ":"),
ensure_ascii=False)`, `json.loads`), by orjson: 6 times faster to write the 32,000 stored mentions
and verdicts of a build of Sigma and LOLBAS (0.16 -> 0.025 s CPU), twice as fast to read them.

Strings, integers, booleans, None, lists and string-keyed dicts give the same text; floats give the
same value (orjson writes 1e-7 where json writes 1e-07). What orjson refuses goes to `json`: lone
surrogates, keys that are not strings, integers over 64 bits, NaN and infinities (which orjson
would write as null). Reading is the same for integers that fit 64 bits: the project writes no
other (lines, sizes, times).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """Compact JSON text of `value`, non-ASCII kept."""
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, UnicodeDecodeError):
        return _JSON.encode(value)
    if "null" in text and _has_nonfinite(value):
        return _JSON.encode(value)
    return text


def loads(text: str | bytes) -> Any:
    """The value of JSON text this project wrote, whose integers fit 64 bits (orjson reads larger
    ones as floats); for text that is not JSON, `json`'s error (a ValueError)."""
    try:
        return orjson.loads(text)
    except ValueError:
        return json.loads(text)


def _has_nonfinite(value: Any) -> bool:
    """Whether a float NaN or infinity is anywhere in `value` (orjson writes them as null)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_has_nonfinite, value.values()))
    if isinstance(value, (list, tuple)):
        return any(map(_has_nonfinite, value))
    return False
