"""The sources: one `Source` plug-in per repository the index reads, in a registry.

Everything above the sources (the parsers, the refresh, the CLI) loops over `SOURCES` and
never names a source itself. Adding a source is one module in this package that calls
`register(...)`, imported below.
"""

from __future__ import annotations

from .base import Source

SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    """Add a source to the registry (in registration order); its name must be new."""
    if source.name in SOURCES:
        raise ValueError(f"a source named {source.name!r} is registered already")
    if not source.name.isidentifier() or source.name != source.name.lower():
        raise ValueError(f"a source name is a lower-case identifier, not {source.name!r}")
    SOURCES[source.name] = source
    return source


def get(name: str) -> Source:
    """The registered source `name`; KeyError if there is none."""
    return SOURCES[name]


def names() -> tuple[str, ...]:
    """The registered sources' names, in registration order."""
    return tuple(SOURCES)


# the plug-ins register themselves when imported, in this order
from . import sigma, lolbas, atomic, loldrivers, hijacklibs, gtfobins, loobins, elastic, splunk  # noqa: E402,F401
