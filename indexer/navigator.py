"""ATT&CK Navigator layers (layer format 4.5) from the index.

A binary's layer scores each technique by the number of Sigma rules that detect the binary
running (verdict `runs`; deprecated and unsupported rules left out) and carry the technique's tag
(`attack.t1218.011`); the techniques its LOLBAS entries document (`MitreID: T1218.011`, kept as
tags on their mentions) are added too, so a technique abused through the binary with no such
rule shows with score 0.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from .index import IndexReader
from .model import Mention
from .query import group_by_rule, search

LAYER_VERSIONS = {"navigator": "5.2.0", "layer": "4.5"}
_TECHNIQUE_TAG = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


def technique_ids(tags: Iterable[str]) -> list[str]:
    """ATT&CK technique ids in tags: `attack.t1218.011` -> `T1218.011` (tactics and groups left out)."""
    found = (_TECHNIQUE_TAG.match(tag.strip()) for tag in tags)
    return sorted({m.group(1).upper() for m in found if m})


def binary_layer(reader: IndexReader, query: str, *, max_links: int = 10) -> dict[str, Any] | None:
    """The layer of what `query` names (as `search` reads it), or None when it names nothing indexed.

    max_links: rule permalinks kept per technique (the comment still counts them all).
    """
    result = search(reader, query)
    if not result.binaries:
        return None
    names = ", ".join(result.binaries)
    runs = {(r.source, r.path) for r in result.rules if r.source == "sigma" and r.verdict == "runs" and not r.retired}
    detecting: dict[str, list[Mention]] = {}   # technique -> first mention of each detecting rule
    documented: dict[str, list[Mention]] = {}  # technique -> first mention of each LOLBAS entry
    for (source, path), mentions in group_by_rule(result.mentions).items():
        tags = {t for m in mentions for t in m.tags}
        if (source, path) in runs:
            for technique in technique_ids(tags):
                detecting.setdefault(technique, []).append(mentions[0])
        elif source == "lolbas":
            for technique in technique_ids(tags):
                documented.setdefault(technique, []).append(mentions[0])
    techniques = []
    for technique in sorted(set(detecting) | set(documented)):
        rules = detecting.get(technique, [])
        entries = documented.get(technique, [])
        parts = [f"{len(rules)} Sigma rule{' detects' if len(rules) == 1 else 's detect'} {names} running"]
        if entries:
            parts.append("documented by LOLBAS " + ", ".join(m.path for m in entries))
        techniques.append({
            "techniqueID": technique,
            "score": len(rules),
            "comment": "; ".join(parts),
            "enabled": True,
            "metadata": [{"name": "rule", "value": m.title or m.path} for m in rules[:max_links]],
            "links": [{"label": m.title or m.path, "url": m.url.split("#", 1)[0]}
                      for m in (rules + entries)[:max_links] if m.url.startswith("https://")],
        })
    top = max((t["score"] for t in techniques), default=0)
    return {
        "name": f"{names}: Sigma rules that detect it running",
        "versions": dict(LAYER_VERSIONS),
        "domain": "enterprise-attack",
        "description": (f"Score: the number of Sigma rules that detect {names} running (verdict runs: "
                        "Image, OriginalFileName or another process field in a selection; deprecated and "
                        "unsupported rules left out) tagged with the technique; techniques its LOLBAS "
                        "entries document are included, with score 0 when no such rule covers them."),
        "sorting": 3,
        "techniques": techniques,
        "gradient": {"colors": ["#ffffff", "#66b1ff"], "minValue": 0, "maxValue": max(top, 1)},
        "metadata": [{"name": "source", "value": f"{s}@{info.get('commit', '')[:12]}"}
                     for s, info in sorted(reader.sources.items())],
    }
