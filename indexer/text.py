"""Text from rules, git and URLs made safe to show: no terminal control sequences, no credentials.

Every printer (the CLI's lines and Rich console, refresh logs, exports) passes text from a rule
through `printable`, and every URL or message that may hold one through `redact_text`.
Imports nothing heavy: the search path uses it.
"""

from __future__ import annotations

import re

# C0 and C1 controls (ESC, CSI 0x9b, BEL, ...), DEL, line/paragraph separators, and the bidi
# controls that reorder what a terminal shows (Trojan Source): each becomes U+FFFD.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = str.maketrans({"\t": " ", "\n": " "})


def printable(text: str) -> str:
    """One line of printable text: tabs and newlines as spaces, other control characters as U+FFFD."""
    if text.isprintable():  # none of them (all are Cc, Cf, Zl or Zp): most text, at C speed
        return text
    return _CONTROL.sub("\ufffd", text.replace("\r\n", " ").translate(_SPACES))


# scheme://userinfo@host...: the userinfo, up to the authority's last '@'
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/?#\s@]*@)+")
# scp form user@host:path (git's "TOKEN@github.com:org/repo"): the user part
_SCP_USER = re.compile(r"(?<![\w.:/@*-])[^\s@/'\"*]+@(?=[A-Za-z0-9.-]+:(?!//))")


def redact(url: str) -> str:
    """A URL without credentials: https://user:token@host/x -> https://***@host/x,
    TOKEN@host:path -> ***@host:path. Never raises, whatever the URL."""
    return _SCP_USER.sub("***@", _URL_USERINFO.sub(r"\1***@", url))


def redact_text(text: str) -> str:
    """Any message (a git error, an exception) with the credentials of every URL in it hidden."""
    return redact(text)
