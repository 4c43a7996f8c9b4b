"""Server-side SVG charts for the coverage page: geometry only (the template draws it, the
stylesheet colours it; no script, no inline style, so the CSP holds).

A waffle chart: one square per LOLBAS entry, coloured by its coverage tier and linked to the
entry's page, in one row per category or ATT&CK technique."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

CELL = 12  # square side, px
GAP = 3
PER_LINE = 48  # squares before a row wraps
LABEL_WIDTH = 250
ROW_GAP = 10
WIDTH = LABEL_WIDTH + PER_LINE * (CELL + GAP) + 90


@dataclass
class Cell:
    x: int
    y: int
    tier: str
    href: str | None
    title: str


@dataclass
class Row:
    label: str
    href: str | None
    y: int
    height: int
    counts: dict[str, int]
    cells: list[Cell] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.cells)

    @property
    def text_y(self) -> int:
        return self.y + CELL - 1


@dataclass
class Waffle:
    rows: list[Row]
    width: int
    height: int


def waffle(
    entries: Iterable[Mapping[str, Any]],
    key: str,
    tiers: tuple[str, ...],
    entry_href: Callable[[Mapping[str, Any]], str | None],
    label_href: Callable[[str], str | None] = lambda _: None,
    limit: int | None = None,
) -> Waffle:
    """Rows of squares: the entries grouped by each value of `key` (a list field: categories,
    mitre), most entries first; in a row, by tier then name. `limit`: at most this many rows."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        for value in entry.get(key) or ["(none)"]:
            groups.setdefault(str(value), []).append(entry)
    order = {t: i for i, t in enumerate(tiers)}
    labels = sorted(groups, key=lambda g: (-len(groups[g]), g.lower()))[:limit]
    rows, y = [], 0
    for label in labels:
        members = sorted(
            groups[label], key=lambda e: (order.get(e.get("tier", ""), len(tiers)), str(e.get("entry", "")).lower())
        )
        lines = (len(members) + PER_LINE - 1) // PER_LINE or 1
        height = lines * (CELL + GAP) - GAP
        row = Row(label, label_href(label), y, height, {t: 0 for t in tiers})
        for i, entry in enumerate(members):
            tier = str(entry.get("tier", ""))
            row.counts[tier] = row.counts.get(tier, 0) + 1
            row.cells.append(
                Cell(
                    LABEL_WIDTH + (i % PER_LINE) * (CELL + GAP),
                    y + (i // PER_LINE) * (CELL + GAP),
                    tier,
                    entry_href(entry),
                    f"{entry.get('entry', '')}: {tier}",
                )
            )
        rows.append(row)
        y += height + ROW_GAP
    return Waffle(rows, WIDTH, max(y - ROW_GAP, 0))


@dataclass
class Segment:
    tier: str
    count: int
    x: float
    width: float
    href: str


def stacked(counts: Mapping[str, int], tiers: tuple[str, ...], width: int = 1000) -> list[Segment]:
    """One bar of all entries, a segment per tier (its width the tier's share)."""
    total = sum(counts.get(t, 0) for t in tiers) or 1
    out, x = [], 0.0
    for tier in tiers:
        n = counts.get(tier, 0)
        w = width * n / total
        out.append(Segment(tier, n, round(x, 1), round(w, 1), f"#tier-{tier}"))
        x += w
    return out
