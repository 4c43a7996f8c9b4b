"""A binary's history: each rule's verdict on it over time, when each source gained and lost
detection, its LOLBAS entry's history (`indexer timeline`); and what changed between two dates
(`indexer changes --since --until`). Read from the history store (chronicle.py), no git.

A rule is followed through its renames as `git log --follow` follows a file: every version of
it descends from one commit that added it (the store's `added`), whatever its path at the time.
"""

from __future__ import annotations

import bisect
import calendar
import dataclasses
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .chronicle import FileRecord, HistoryError, iso, open_store, parse_date, stem_of
from .errors import NotFound
from .names import known_stems
from .shape import Record
from .verdicts import DETECTING, RuleVerdict, is_retired, rule_verdicts


@dataclass(frozen=True)
class Interval(Record):
    """A rule's verdict on the binary from one first-parent commit until another ("" still)."""

    verdict: str
    path: str  # the rule's path at the time
    start: str  # the first-parent commit from which it holds
    start_date: str  # that commit's author date
    stop: str  # the first-parent commit where it stopped holding ("": it still holds)
    stop_date: str
    made: str  # the commit that made this version of the file (on any branch)
    made_date: str


@dataclass(frozen=True)
class RuleHistory(Record):
    """One rule (or LOLBAS entry) through its renames: the commit that added it and its intervals."""

    source: str
    path: str  # its latest path
    title: str
    rule_id: str
    added: str  # the commit that added the file (git log --follow --diff-filter=A)
    added_date: str
    intervals: tuple[Interval, ...]

    @property
    def detects_now(self) -> bool:
        last = self.intervals[-1] if self.intervals else None
        return last is not None and not last.stop and last.verdict in DETECTING


@dataclass(frozen=True)
class DetectionChange(Record):
    """A source began or ceased to detect the binary (some rule with a detecting verdict, not retired)."""

    source: str
    change: str  # "gained" | "lost"
    commit: str
    date: str  # the first-parent commit's author date


@dataclass(frozen=True)
class Timeline(Record):
    """`indexer timeline NAME`: the binary's rules over time, strongest verdict now first."""

    query: str
    binaries: tuple[str, ...]
    since: str  # where the history starts ("" its beginning)
    rules: tuple[RuleHistory, ...]  # detection rules (Sigma and the other detecting sources)
    detection: tuple[DetectionChange, ...]
    lolbas: tuple[RuleHistory, ...]  # the LOLBAS entries' own history
    documents: tuple[RuleHistory, ...] = ()  # the other sources' documents (atomic tests, ...)


@dataclass
class _Item:
    """One span of one version of a rule file naming the binary, with its verdict."""

    start: int
    stop: int | None
    interval: Interval
    verdict: RuleVerdict
    record: FileRecord
    added_date: str


class _Commits:
    """A source's first-parent commits in the store: by number, and the one in force at a time."""

    def __init__(self, conn: sqlite3.Connection, source: str) -> None:
        rows = conn.execute("SELECT seq, sha, ctime, adate FROM commits WHERE source = ? ORDER BY seq", (source,))
        self.sha: dict[int, str] = {}
        self.adate: dict[int, str] = {}
        self.ctime: dict[int, int] = {}
        pairs = []
        for seq, sha, ctime, adate in rows:
            self.sha[seq], self.adate[seq], self.ctime[seq] = sha, adate, ctime
            pairs.append((ctime, seq))
        pairs.sort()
        self._times = [t for t, _ in pairs]
        self._latest: list[int] = []  # the highest seq among commits at or before each time
        top = -1
        for _, seq in pairs:
            top = max(top, seq)
            self._latest.append(top)

    def at(self, when: int) -> int:
        """The seq of the last first-parent commit at or before `when` (-1: none)."""
        i = bisect.bisect_right(self._times, when)
        return self._latest[i - 1] if i else -1


def _resolve(conn: sqlite3.Connection, text: str) -> list[str]:
    from .query import parse_query, resolve, suggest

    try:
        query = parse_query(text)
    except ValueError as exc:
        raise HistoryError(str(exc)) from None
    every = sorted(
        r[0] for r in conn.execute("SELECT DISTINCT substr(token, 3) FROM names WHERE token >= 'b:' AND token < 'b;'")
    )
    found = resolve(query, every)
    if not found:
        close = suggest(query, every)
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise NotFound(f"no rule ever named {text!r} in the history{hint}")
    return found


def timeline(data_dir: Path, text: str) -> Timeline:
    """Each rule's verdict on what `text` names over the history, per source the dates detection
    was gained and lost, and the LOLBAS entries' history."""
    conn = open_store(Path(data_dir))
    try:
        return _timeline(conn, text)
    finally:
        conn.close()


def _timeline(conn: sqlite3.Connection, text: str) -> Timeline:
    names = _resolve(conn, text)
    wanted = set(names)
    stems = {stem_of(n) for n in names}
    tokens = sorted({"b:" + n for n in names} | {"w:" + s for s in stems})
    commits = {source: _Commits(conn, source) for (source,) in conn.execute("SELECT source FROM sources")}
    vocabulary = _stem_names(conn, stems)
    rows = conn.execute(
        f"SELECT files.id, files.source, spans.path, spans.start, spans.stop, files.made, files.made_date, "
        f"files.added, files.added_date, files.born FROM files JOIN spans ON spans.file = files.id "
        f"WHERE files.id IN (SELECT file FROM tokens WHERE token IN ({','.join('?' * len(tokens))})) "
        f"ORDER BY files.source, spans.start",
        tokens,
    ).fetchall()
    records: dict[int, FileRecord] = {}
    judged: dict[tuple[int, tuple[str, ...]], list[RuleVerdict]] = {}
    groups: dict[tuple[str, str, str], list[_Item]] = {}  # one per file: (source, added, born)
    for file_id, source, path, start, stop, made, made_date, added, added_date, born in rows:
        if file_id not in records:
            payload = conn.execute("SELECT payload FROM files WHERE id = ?", (file_id,)).fetchone()[0]
            records[file_id] = FileRecord.decode(payload, wanted)
        record = records[file_id]
        when = commits[source].ctime[start]
        live = tuple(
            token for src, token, a, b in vocabulary if a <= commits[src].at(when) < (b if b is not None else 1 << 62)
        )
        if (file_id, live) not in judged:  # a version's verdict changes only with its stems' vocabulary
            mentions = [m for m in record.mentions_with(known_stems(live)) if m.binary in wanted]
            judged[(file_id, live)] = rule_verdicts(m.__dict__ for m in mentions)
        verdicts = judged[(file_id, live)]
        if not verdicts:
            continue
        verdict = sorted(verdicts, key=RuleVerdict.sort_key)[0]
        c = commits[source]
        interval = Interval(
            verdict.verdict,
            path,
            c.sha[start],
            c.adate[start],
            c.sha.get(stop, "") if stop is not None else "",
            c.adate.get(stop, "") if stop is not None else "",
            made,
            made_date,
        )
        groups.setdefault((source, added, born), []).append(_Item(start, stop, interval, verdict, record, added_date))
    histories = [_history(source, added, items) for (source, added, _), items in groups.items()]
    histories.sort(key=lambda h: (not h.detects_now, h.source != "sigma", h.source, h.added_date, h.path))
    detection = _detection(groups, commits)
    since = (conn.execute("SELECT value FROM meta WHERE key = 'since'").fetchone() or ("",))[0]
    return Timeline(
        text,
        tuple(names),
        since,
        tuple(h for h in histories if h.source not in ("lolbas",) and _detecting_source(h.source)),
        tuple(detection),
        tuple(h for h in histories if h.source == "lolbas"),
        tuple(h for h in histories if h.source != "lolbas" and not _detecting_source(h.source)),
    )


def _detecting_source(name: str) -> bool:
    from .sources import SOURCES

    source = SOURCES.get(name)
    return bool(source is not None and getattr(source, "detects", False))


def _stem_names(conn: sqlite3.Connection, stems: Iterable[str]) -> list[tuple[str, str, int, int | None]]:
    """The vocabulary's names with these stems, when each was in each source (bare names of
    these stems resolve against them alone: names.stem_map maps each stem on its own)."""
    out = []
    for source, token, start, stop in conn.execute(
        "SELECT source, token, start, stop FROM names WHERE token >= 'x:' AND token < 'x;'"
    ):
        if stem_of(token[2:]) in stems:
            out.append((source, token[2:], start, stop))
    return out


def _history(source: str, added: str, items: list[_Item]) -> RuleHistory:
    """One rule's intervals in order, those that continue each other with the same verdict and
    path joined (a new version of the file that changes nothing for the binary)."""
    items.sort(key=lambda item: item.start)
    merged: list[Interval] = []
    for item in items:
        last, interval = (merged[-1] if merged else None), item.interval
        if last and last.stop == interval.start and (last.verdict, last.path) == (interval.verdict, interval.path):
            merged[-1] = dataclasses.replace(last, stop=interval.stop, stop_date=interval.stop_date)
        else:
            merged.append(interval)
    latest = items[-1]
    rule_id = latest.record.rule_ids[0] if latest.record.rule_ids else ""
    return RuleHistory(
        source, latest.interval.path, latest.record.title, rule_id, added, items[0].added_date, tuple(merged)
    )


def _detection(groups: dict[tuple[str, str, str], list[_Item]], commits: dict[str, _Commits]) -> list[DetectionChange]:
    """Per source, the commits where the number of rules detecting the binary (not retired)
    rose from zero or fell to it."""
    out: list[DetectionChange] = []
    steps: dict[str, dict[int, int]] = {}
    for (source, _, _), items in groups.items():
        for item in items:
            if item.verdict.verdict in DETECTING and not is_retired(item.interval.path, item.verdict.status):
                totals = steps.setdefault(source, {})
                totals[item.start] = totals.get(item.start, 0) + 1
                if item.stop is not None:
                    totals[item.stop] = totals.get(item.stop, 0) - 1
    for source, totals in sorted(steps.items()):
        count, c = 0, commits[source]
        for seq in sorted(totals):
            before = count
            count += totals[seq]
            if before == 0 and count > 0:
                out.append(DetectionChange(source, "gained", c.sha[seq], c.adate[seq]))
            elif before > 0 and count == 0:
                out.append(DetectionChange(source, "lost", c.sha[seq], c.adate[seq]))
    return out


STRIP = 48  # characters of the terminal's strip, from the first interval to today


def timeline_lines(result: Timeline, now: str | None = None) -> list[str]:
    """The timeline for a person: per rule a strip over the years (█ detects, ▒ names it
    otherwise, · nothing) and its intervals; per source when detection was gained and lost."""
    everything = [*result.rules, *result.lolbas, *result.documents]
    dates = [i.start_date[:10] for h in everything for i in h.intervals]
    if not dates:
        return [f"{result.query}: no rule names it in the history"]
    first, last = min(dates), now or time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        f"{', '.join(result.binaries)}: {len(result.rules)} rules, {len(result.lolbas)} LOLBAS entries, "
        f"{len(result.documents)} other documents; history from {result.since or first} ({first} .. {last}, "
        "█ detects, ▒ names it, · no)"
    ]
    for change in result.detection:
        lines.append(f"  {change.source}: detection {change.change} {change.date[:10]} ({change.commit[:10]})")
    for title, group in (
        ("rules", result.rules),
        ("LOLBAS entries", result.lolbas),
        ("other documents", result.documents),
    ):
        if not group:
            continue
        lines.append(f"{title}:")
        for h in group:
            lines.append(
                f"  {_strip(h, first, last)}  {h.source}:{h.path}  added {h.added_date[:10]} ({h.added[:10]})"
                + (f"  {h.title}" if h.title else "")
            )
            for i in h.intervals:
                until = i.stop_date[:10] if i.stop else "now       "
                moved = f"  (then {i.path})" if i.path != h.path else ""
                lines.append(f"      {i.start_date[:10]} .. {until}  {i.verdict:<10} {i.start[:10]}{moved}")
    return lines


def _strip(history: RuleHistory, first: str, last: str) -> str:
    """One character per period from `first` to `last`: the strongest verdict in it."""
    start, end = _day(first), max(_day(last), _day(first) + 1)
    width = (end - start) / STRIP
    cells = ["·"] * STRIP
    for i in history.intervals:
        a = _day(i.start_date[:10])
        b = _day(i.stop_date[:10]) if i.stop else end
        mark = "█" if i.verdict in DETECTING else "▒"
        for cell in range(int((a - start) / width), min(STRIP, int((b - start) / width) + 1)):
            if 0 <= cell < STRIP and cells[cell] != "█":
                cells[cell] = mark
    return "".join(cells)


def _day(date: str) -> int:
    return int(calendar.timegm(time.strptime(date, "%Y-%m-%d")) // 86400)


@dataclass(frozen=True)
class SourceRange(Record):
    """A source's first-parent commits at the two dates ("" where it did not exist yet)."""

    source: str
    before: str
    after: str
    commits: int  # first-parent commits between them


@dataclass(frozen=True)
class VerdictChange(Record):
    """A rule file's verdict on a binary at the two dates ("" where it named it not)."""

    binary: str
    source: str
    path: str
    title: str
    before: str
    after: str


@dataclass(frozen=True)
class RuleMove(Record):
    """A rule file added, removed or renamed between the two dates."""

    source: str
    path: str
    title: str
    change: str  # "added" | "removed" | "renamed"
    old_path: str = ""


@dataclass(frozen=True)
class HistoryChanges(Record):
    """`indexer changes --since --until`: what changed between two dates, read from the history."""

    since: str
    until: str
    sources: tuple[SourceRange, ...]
    gained: tuple[VerdictChange, ...]  # a rule began to detect the binary (runs, parent, target, loads, invoked)
    lost: tuple[VerdictChange, ...]  # a rule ceased to
    rules: tuple[RuleMove, ...]


def changes_between(data_dir: Path, since: str, until: str) -> HistoryChanges:
    """What changed in detection between the sources at `since` and at `until` (dates as typed):
    rule files whose verdict on a binary became or ceased to be detecting (retired rules do not
    detect), rule files added, removed and renamed. Files not changed between the dates are
    judged again only where a bare name changed meaning (the vocabulary of each date)."""
    from .chronicle import AsOf

    start, end = parse_date(since, "--since"), parse_date(until, "--until")
    if end < start:
        raise HistoryError(f"--until {until} is before --since {since}")
    with AsOf(data_dir, start) as before, AsOf(data_dir, end) as after:
        old = {k: v for k, v in before.live_files().items() if _detecting_source(k[0])}
        new = {k: v for k, v in after.live_files().items() if _detecting_source(k[0])}
        changed_stems = _changed_stems(before.stems(), after.stems())
        rejudged = before.files_with_words(changed_stems) if changed_stems else set()
        rules = {k for k in old.keys() | new.keys() if old.get(k, ("", 0))[1] != new.get(k, ("", 0))[1]}
        rules |= {k for k, (_, file) in (old | new).items() if file in rejudged}
        gained: list[VerdictChange] = []
        lost: list[VerdictChange] = []

        def order(key: tuple[str, str]) -> tuple[str, str, str]:
            """By source and path; a path removed and added again: by identity, whatever the hash seed."""
            return key[0], (new.get(key) or old[key])[0], key[1]

        for key in sorted(rules, key=order):
            was = {v.binary: v for v in before.verdicts(old[key][1])} if key in old else {}
            now = {v.binary: v for v in after.verdicts(new[key][1])} if key in new else {}
            path = (new.get(key) or old[key])[0]
            for binary in sorted(was.keys() | now.keys()):
                a, b = was.get(binary), now.get(binary)
                if _detects(a) != _detects(b):
                    title = (b or a).title  # type: ignore[union-attr]
                    item = VerdictChange(binary, key[0], path, title, a.verdict if a else "", b.verdict if b else "")
                    (gained if _detects(b) else lost).append(item)
        moves = []
        for key in sorted(old.keys() | new.keys(), key=order):
            if key not in old:
                moves.append(RuleMove(key[0], new[key][0], after.record(new[key][1]).title, "added"))
            elif key not in new:
                moves.append(RuleMove(key[0], old[key][0], before.record(old[key][1]).title, "removed"))
            elif old[key][0] != new[key][0]:
                moves.append(RuleMove(key[0], new[key][0], after.record(new[key][1]).title, "renamed", old[key][0]))
        ranges = tuple(
            SourceRange(
                name,
                before.sources.get(name, {}).get("commit", ""),
                after.sources.get(name, {}).get("commit", ""),
                after.seqs.get(name, -1) - before.seqs.get(name, -1),
            )
            for name in sorted(before.sources.keys() | after.sources.keys())
        )
    return HistoryChanges(iso(start), iso(end), ranges, tuple(gained), tuple(lost), tuple(moves))


def _detects(verdict: RuleVerdict | None) -> bool:
    return verdict is not None and verdict.detects and not verdict.retired


def _changed_stems(old: tuple[dict[str, str], ...], new: tuple[dict[str, str], ...]) -> set[str]:
    """Bare stems that resolve differently at the two dates."""
    return {stem for a, b in zip(old, new) for stem in a.keys() | b.keys() if a.get(stem) != b.get(stem)}


def changes_lines(result: HistoryChanges, limit: int | None = 15) -> list[str]:
    """The changes between two dates for a person (the first `limit` of each list, or all)."""
    lines = [f"changes from {result.since} to {result.until} (from the history)"]
    for r in result.sources:
        lines.append(f"  {r.source}: {r.before[:10] or '(none)'} .. {r.after[:10] or '(none)'}, {r.commits} commits")
    for title, items in (("gained detection", result.gained), ("lost detection", result.lost)):
        binaries = sorted({i.binary for i in items})
        lines.append(f"{title}: {len(binaries)} binaries, {len(items)} (rule, binary) pairs")
        for item in items[:limit]:
            lines.append(f"  {item.binary}: {item.before or '-'} -> {item.after or '-'}  {item.source}:{item.path}")
        if limit is not None and len(items) > limit:
            lines.append(f"  ... {len(items) - limit} more (--all)")
    for change in ("added", "removed", "renamed"):
        items = [r for r in result.rules if r.change == change]
        lines.append(f"rules {change}: {len(items)}")
        for r in items[:limit]:
            was = f" (from {r.old_path})" if r.old_path else ""
            lines.append(f"  {r.source}:{r.path}{was}  {r.title}")
        if limit is not None and len(items) > limit:
            lines.append(f"  ... {len(items) - limit} more (--all)")
    return lines


# -- the web page's plot: geometry only (web/templates/timeline.html draws it, no script) --

PLOT_LABEL = 300  # px for the row labels
PLOT_WIDTH = 760  # px for the time axis
PLOT_ROW = 18


@dataclass
class Bar:
    x: int
    width: int
    tier: str  # the stylesheet's colours: tier-running (runs), tier-other (detects otherwise), tier-mentioned
    title: str


@dataclass
class PlotRow:
    label: str
    source: str
    path: str
    y: int
    bars: list[Bar]


@dataclass
class Plot:
    rows: list[PlotRow]
    ticks: list[tuple[int, str]]  # (x, year)
    width: int
    height: int
    label_width: int = PLOT_LABEL


def plot(result: Timeline, now: str | None = None) -> Plot:
    """One row per rule and LOLBAS entry, one bar per interval, coloured by verdict; years marked."""
    everything = [*result.rules, *result.lolbas, *result.documents]
    dates = [i.start_date[:10] for h in everything for i in h.intervals]
    last = now or time.strftime("%Y-%m-%d", time.gmtime())
    first = min(dates) if dates else last
    start, end = _day(first), max(_day(last), _day(first) + 1)
    scale = PLOT_WIDTH / (end - start)

    def x(day: int) -> int:
        return PLOT_LABEL + int((day - start) * scale)

    rows = []
    for n, h in enumerate(everything):
        bars = []
        for i in h.intervals:
            a, b = _day(i.start_date[:10]), _day(i.stop_date[:10]) if i.stop else end
            tier = "running" if i.verdict == "runs" else "other" if i.verdict in DETECTING else "mentioned"
            until = i.stop_date[:10] if i.stop else "now"
            bars.append(Bar(x(a), max(2, x(b) - x(a)), tier, f"{i.verdict} {i.start_date[:10]} .. {until}: {i.path}"))
        rows.append(PlotRow(h.title or h.path.rsplit("/", 1)[-1], h.source, h.path, 24 + n * PLOT_ROW, bars))
    first_year, last_year = int(first[:4]), int(last[:4])
    ticks = [(x(_day(f"{year}-01-01")), str(year)) for year in range(first_year + 1, last_year + 1)]
    return Plot(rows, ticks, PLOT_LABEL + PLOT_WIDTH + 10, 30 + len(rows) * PLOT_ROW)
