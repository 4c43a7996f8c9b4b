"""ATT&CK Navigator layers (layer format 4.5, domain enterprise-attack) from the index.

A binary's layer scores each technique by the number of Sigma rules that detect the binary
running (verdict `runs`; deprecated and unsupported rules left out) and carry the technique's tag
(`attack.t1218.011`); the techniques its LOLBAS entries document (`MitreID: T1218.011`, kept as
tags on their mentions) are added too, so a technique abused through the binary with no such
rule shows with score 0.

The coverage layer scores each technique LOLBAS documents by its entries' coverage tiers
(`indexer coverage`): the share, in percent, of its entries that a Sigma rule detects (tier
`running` or `other`), with the count per tier in the comment and the metadata.

The layers are records (`Layer`...): `indexer/schemas/export-navigator.schema.json` is derived
from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from .export import selected_mentions, technique_ids
from .index import IndexReader
from .model import Mention
from .query import group_by_rule, search
from .records import TIERS
from .shape import Record
from .verdicts import rule_verdicts

__all__ = ["Layer", "binary_layer", "binaries_layer", "coverage_layer", "technique_ids", "write_layer"]

LAYER_VERSIONS = {"navigator": "5.2.0", "layer": "4.5"}


@dataclass(frozen=True)
class Versions(Record):
    """The layer format and Navigator version the layer is written for."""

    navigator: str
    layer: Literal["4.5"]


@dataclass(frozen=True)
class MetadataItem(Record):
    """A name and value shown with a technique or the layer."""

    name: str
    value: str


@dataclass(frozen=True)
class LayerLink(Record):
    """A link shown with a technique (a rule or LOLBAS entry at the indexed commit)."""

    label: str
    url: str


@dataclass(frozen=True)
class LayerTechnique(Record):
    """One technique's score and why."""

    techniqueID: str
    score: int
    comment: str
    enabled: bool
    metadata: tuple[MetadataItem, ...]
    links: tuple[LayerLink, ...]


@dataclass(frozen=True)
class Gradient(Record):
    """Colours from the lowest score to the highest."""

    colors: tuple[str, ...]
    minValue: int
    maxValue: int


@dataclass(frozen=True)
class LegendItem(Record):
    """A colour and what it means."""

    label: str
    color: str


@dataclass(frozen=True)
class Layer(Record):
    """An ATT&CK Navigator layer (format 4.5): save it as .json and open it in the Navigator."""

    name: str
    versions: Versions
    domain: Literal["enterprise-attack"]
    description: str
    sorting: int  # 3: by score, highest first
    techniques: tuple[LayerTechnique, ...]
    gradient: Gradient
    legendItems: tuple[LegendItem, ...]
    metadata: tuple[MetadataItem, ...]


def _sources(reader: IndexReader) -> tuple[MetadataItem, ...]:
    return tuple(
        MetadataItem(name="source", value=f"{s}@{info.get('commit', '')[:12]}")
        for s, info in sorted(reader.sources.items())
    )


def _mentions_layer(reader: IndexReader, names: list[str], mentions: list[Mention], max_links: int) -> Layer:
    """The layer of the rules that detect `names` running, and the techniques LOLBAS documents."""
    label = ", ".join(names)
    runs = {
        (v.source, v.path)
        for v in rule_verdicts(m.__dict__ for m in mentions)
        if v.source == "sigma" and v.verdict == "runs" and not v.retired
    }
    detecting: dict[str, list[Mention]] = {}  # technique -> first mention of each detecting rule
    documented: dict[str, list[Mention]] = {}  # technique -> first mention of each LOLBAS entry
    for (source, path), items in group_by_rule(mentions).items():
        tags = {t for m in items for t in m.tags}
        if (source, path) in runs:
            for technique in technique_ids(tags):
                detecting.setdefault(technique, []).append(items[0])
        elif source == "lolbas":
            for technique in technique_ids(tags):
                documented.setdefault(technique, []).append(items[0])
    techniques = []
    for technique in sorted(set(detecting) | set(documented)):
        rules = detecting.get(technique, [])
        entries = documented.get(technique, [])
        parts = [f"{len(rules)} Sigma rule{' detects' if len(rules) == 1 else 's detect'} {label} running"]
        if entries:
            parts.append("documented by LOLBAS " + ", ".join(m.path for m in entries))
        techniques.append(
            LayerTechnique(
                techniqueID=technique,
                score=len(rules),
                comment="; ".join(parts),
                enabled=True,
                metadata=tuple(MetadataItem(name="rule", value=m.title or m.path) for m in rules[:max_links]),
                links=tuple(
                    LayerLink(label=m.title or m.path, url=m.url.split("#", 1)[0])
                    for m in (rules + entries)[:max_links]
                    if m.url.startswith("https://")
                ),
            )
        )
    top = max((t.score for t in techniques), default=0)
    return Layer(
        name=f"{label}: Sigma rules that detect it running",
        versions=Versions(**LAYER_VERSIONS),
        domain="enterprise-attack",
        description=(
            f"Score: the number of Sigma rules that detect {label} running (verdict runs: "
            "Image, OriginalFileName or another process field in a selection; deprecated and "
            "unsupported rules left out) tagged with the technique; techniques its LOLBAS "
            "entries document are included, with score 0 when no such rule covers them."
        ),
        sorting=3,
        techniques=tuple(techniques),
        gradient=Gradient(colors=("#ffffff", "#66b1ff"), minValue=0, maxValue=max(top, 1)),
        legendItems=(),
        metadata=_sources(reader),
    )


def binary_layer(reader: IndexReader, query: str, *, max_links: int = 10) -> dict[str, Any] | None:
    """The layer of what `query` names (as `search` reads it), or None when it names nothing indexed.

    max_links: rule permalinks kept per technique (the comment still counts them all).
    """
    result = search(reader, query)
    if not result.binaries:
        return None
    return _mentions_layer(reader, result.binaries, result.mentions, max_links).to_dict()


def binaries_layer(reader: IndexReader, queries: Iterable[str], *, max_links: int = 10) -> Layer:
    """One layer for several binaries (names as `export --binary` reads them); ValueError for a
    name that is not indexed."""
    mentions = selected_mentions(reader, queries)
    names = sorted({m.binary for m in mentions})
    return _mentions_layer(reader, names, mentions, max_links)


def coverage_layer(reader: IndexReader, *, include_retired: bool = False, max_links: int = 10) -> Layer:
    """LOLBAS coverage per technique: score = % of the technique's entries a Sigma rule detects."""
    from .xref import coverage

    data = coverage(reader, include_retired=include_retired)
    web = reader.sources.get("lolbas", {})
    base = f"{web.get('web_url', '')}/blob/{web.get('commit', '')}/" if web.get("web_url") else ""
    by_technique: dict[str, list[dict[str, Any]]] = {}
    for row in data["entries"]:
        for technique in technique_ids(row["mitre"]):
            by_technique.setdefault(technique, []).append(row)
    techniques = []
    for technique, rows in sorted(by_technique.items()):
        tiers = {tier: [r["entry"] for r in rows if r["tier"] == tier] for tier in TIERS}
        detected = len(tiers["running"]) + len(tiers["other"])
        techniques.append(
            LayerTechnique(
                techniqueID=technique,
                score=round(100 * detected / len(rows)),
                comment=f"{detected} of {len(rows)} LOLBAS entries detected by Sigma rules: "
                + ", ".join(f"{tier} {len(names)}" for tier, names in tiers.items()),
                enabled=True,
                metadata=tuple(
                    MetadataItem(name=tier, value=", ".join(names)) for tier, names in tiers.items() if names
                ),
                links=tuple(
                    LayerLink(label=r["entry"], url=base + r["path"])
                    for r in sorted(rows, key=lambda r: TIERS.index(r["tier"]), reverse=True)[:max_links]
                    if base
                ),
            )
        )
    retired = "counted" if include_retired else "not counted"
    return Layer(
        name="LOLBAS coverage by Sigma rules",
        versions=Versions(**LAYER_VERSIONS),
        domain="enterprise-attack",
        description=(
            "Score: the percentage of the LOLBAS entries documenting the technique that a Sigma rule "
            "detects (coverage tier running: a rule detects the binary running; other: as a parent, "
            f"target, loaded module or in a command line). Deprecated and unsupported rules are {retired}; "
            "the comment counts the entries per tier (mentioned: named by rules that do not detect it; "
            "none: named by no rule)."
        ),
        sorting=2,
        techniques=tuple(techniques),
        gradient=Gradient(colors=("#ff6666", "#ffe766", "#8ec843"), minValue=0, maxValue=100),
        legendItems=(
            LegendItem(label="no entry detected", color="#ff6666"),
            LegendItem(label="every entry detected", color="#8ec843"),
        ),
        metadata=_sources(reader),
    )


def gaps_layer(reader: IndexReader, report: Any, *, max_links: int = 10) -> Layer:
    """The techniques of the binaries attackers use that no rule detects (joins.GapsReport):
    each scored by how many such binaries the atomic tests and LOLBAS entries naming them tag
    with it, the binaries in the comment and metadata."""
    by_technique: dict[str, list[Any]] = {}
    for row in report.rows:
        if not row.detected_by:
            for technique in row.techniques:
                by_technique.setdefault(technique, []).append(row)
    techniques = []
    for technique, rows in sorted(by_technique.items()):
        names = list(dict.fromkeys(f"{r.binary} ({r.platform or '-'})" for r in rows))
        techniques.append(
            LayerTechnique(
                techniqueID=technique,
                score=len(names),
                comment=f"{len(names)} binaries attackers use with this technique that no rule detects: "
                + ", ".join(names[:max_links])
                + (" ..." if len(names) > max_links else ""),
                enabled=True,
                metadata=tuple(MetadataItem(name="binary", value=n) for n in names[:max_links]),
                links=(),
            )
        )
    top = max((t.score for t in techniques), default=0)
    sets = ", ".join(report.rule_sets) or "no rule set"
    return Layer(
        name=f"Undetected binaries attackers use ({sets})",
        versions=Versions(**LAYER_VERSIONS),
        domain="enterprise-attack",
        description=(
            "Score: the number of binaries that atomic tests or LOLBAS entries tagged with the technique "
            f"name and that no rule of {sets} (deprecated and unsupported left out) detects running or "
            "invoked on its platform (indexer gaps)."
        ),
        sorting=3,
        techniques=tuple(techniques),
        gradient=Gradient(colors=("#ffffff", "#ff6666"), minValue=0, maxValue=max(top, 1)),
        legendItems=(),
        metadata=_sources(reader),
    )


def write_layer(reader: IndexReader, output: str, binaries: Iterable[str] = ()) -> dict[str, Any]:
    """`export --format navigator`: the layer of `binaries`, or the LOLBAS coverage layer without
    them, to a path or stdout ("-")."""
    import sys

    wanted = list(binaries)
    layer = binaries_layer(reader, wanted) if wanted else coverage_layer(reader)
    text = json.dumps(layer.to_dict(), ensure_ascii=False, indent=1) + "\n"
    summary: dict[str, Any] = {
        "format": "navigator",
        "output": output,
        "layer": layer.name,
        "techniques": len(layer.techniques),
    }
    if output == "-":
        sys.stdout.write(text)
    else:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        summary["bytes"] = path.stat().st_size
    return summary
