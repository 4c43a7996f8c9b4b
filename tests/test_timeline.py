"""Time travel (issue 19): the history store (chronicle.py) against full builds of the real
bundles reset to past dates, `timeline` against `git log --follow`, an interrupted first build
resumed, and the CLI's errors.

The expectations come from git itself (the last first-parent commit before a date, the commit
that added a file) and from full builds of clones reset to those commits: nothing is copied
from the store's own answers.
"""

from __future__ import annotations

import calendar
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from indexer import chronicle, xref
from indexer.chronicle import AsOf, HistoryError, parse_date
from indexer.index import IndexReader
from indexer.query import search
from indexer.refresh import RefreshOptions, refresh
from indexer.sources import get
from indexer.timeline import timeline, timeline_lines
from indexer.verdicts import DETECTING

from conftest import ATLAS, CORPORA, LOLBAS_BUNDLE, specs
from repos import Upstream, git, run_cli

# every source, Splunk's detections read with its macros as they were at each commit (Source.shared)
SOURCES = ("sigma", "lolbas", *ATLAS)
# spread over the bundles' histories: before LOLDrivers, HijackLibs and LOOBins existed; with
# HijackLibs but not yet LOLDrivers; with every source
DATES = ("2019-07-01", "2022-06-15", "2025-03-01")
NAMES = [
    "psr.exe",
    "rundll32.exe",
    "certutil.exe",
    "mshta.exe",
    "regsvr32.exe",
    "powershell.exe",
    "cmd.exe",
    "wmic.exe",
    "bitsadmin.exe",
    "msbuild.exe",
    "comsvcs.dll",
    "pwsh.exe",
    "nltest.exe",
    "schtasks.exe",
    "installutil.exe",
    "curl",
    "bash",
    "python",
    "psr",  # a bare name: every binary of that stem then
    "cert*.exe",  # a pattern: the binaries named then
]
PSR_RULE = "rules/windows/process_creation/proc_creation_win_psr_capture_screenshots.yml"
PSR_ENTRY = "yml/OSBinaries/Psr.yml"


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory, bundles: tuple[Path, Path]) -> dict[str, Upstream]:
    folder = tmp_path_factory.mktemp("upstreams")
    return {name: Upstream(CORPORA / f"{name}.bundle", folder / name, get(name).branch) for name in SOURCES}


@pytest.fixture(scope="module")
def history_dir(tmp_path_factory: pytest.TempPathFactory, tip_data_dir: Path, bundles: tuple[Path, Path]) -> Path:
    """Every source indexed at its tip, with its whole history kept: a copy of conftest's tip
    index (the same bundles), refreshed with `history_since` (nothing new: the history is built)."""
    data_dir = tmp_path_factory.mktemp("history") / "data"
    shutil.copytree(tip_data_dir, data_dir, symlinks=True)
    manifest = refresh(RefreshOptions(data_dir, specs(*bundles), history_since=""))
    assert manifest.exit_code == 0, manifest.file_errors
    assert {outcome.mode for outcome in manifest.sources.values()} == {"unchanged"}
    assert chronicle.store_path(data_dir).is_file()
    return data_dir


@pytest.fixture(scope="module")
def built_then(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, Upstream]
) -> Callable[[str], tuple[Path, dict[str, str]]]:
    """`built_then(date)`: a full build of every source reset to its last first-parent commit at
    or before the date (those commits, by source), made once per date for the module's tests."""
    made: dict[str, tuple[Path, dict[str, str]]] = {}

    def build(date: str) -> tuple[Path, dict[str, str]]:
        if date not in made:
            when = calendar.timegm(time.strptime(date, "%Y-%m-%d"))
            existing = {name: c for name, up in upstreams.items() if (c := last_commit_before(up, when))}
            try:
                for name, commit in existing.items():
                    upstreams[name].move(commit)
                built = tmp_path_factory.mktemp(f"built-{date}")
                then = [get(name).spec(str(upstreams[name].path)) for name in existing]
                assert refresh(RefreshOptions(built, then)).exit_code in (0, 1)
            finally:
                for up in upstreams.values():
                    up.move(up.tip)
            made[date] = (built, existing)
        return made[date]

    return build


def last_commit_before(upstream: Upstream, when: int) -> str | None:
    """The last first-parent commit whose committer date is at or before `when` (from git)."""
    for line in git("-C", str(upstream.path), "log", "--first-parent", "--format=%H %ct", upstream.ref).split("\n"):
        if line and int(line.split()[1]) <= when:
            return line.split()[0]
    return None


def answer(result: object) -> dict[str, object]:
    return result.to_dict()  # type: ignore[attr-defined]


@pytest.mark.parametrize("date", DATES)
def test_search_at_a_date_equals_a_full_build_of_the_sources_reset_to_then(
    date: str, built_then: Callable[[str], tuple[Path, dict[str, str]]], history_dir: Path
) -> None:
    when = calendar.timegm(time.strptime(date, "%Y-%m-%d"))
    built, existing = built_then(date)
    with IndexReader(built) as reader, AsOf(history_dir, when) as past:
        assert {name: s["commit"] for name, s in past.sources.items()} == existing
        assert {name: s["commit"] for name, s in reader.sources.items()} == existing
        assert {name: s["license"] for name, s in past.sources.items()} == {
            name: s["license"] for name, s in reader.sources.items()
        }
        assert past.binaries() == reader.binaries()  # every name, the inferred ones too
        assert past.aliases() == reader.aliases()
        found = 0
        for name in NAMES:
            expected = answer(search(reader, name))
            assert answer(search(past, name)) == expected, (date, name)
            found += bool(expected["mentions"])
        assert found >= 15  # the names are there to compare, not absent on both sides
        # the Sigma links LOLBAS declared then, resolved against Sigma then (search's lolbas_declared_detections)
        declared = [search(reader, n).to_dict()["lolbas_declared_detections"] for n in NAMES]
        assert sum(map(len, declared)) >= (3 if date >= "2021-11-15" else 0)  # LOLBAS's first Sigma link
        detecting = answer(search(reader, "rundll32.exe", detects=True, source="sigma", include_inferred=False))
        assert answer(search(past, "rundll32.exe", detects=True, source="sigma", include_inferred=False)) == detecting


def test_before_the_first_commit_a_source_is_absent_and_dates_are_checked(history_dir: Path) -> None:
    with AsOf(history_dir, parse_date("2017-06-01")) as past:
        assert set(past.sources) == {"sigma"}  # LOLBAS began in 2018, Atomic Red Team in October 2017
        assert "psr.exe" not in past.binaries()
    for bad in ("2019-13-01", "yesterday", "2019-02-30", ""):
        with pytest.raises(HistoryError, match="is not a date"):
            parse_date(bad)


def test_timeline_of_psr_gives_the_commits_that_added_the_rule_and_the_entry(
    history_dir: Path, upstreams: dict[str, Upstream]
) -> None:
    result = timeline(history_dir, "PSR.EXE")
    assert result.binaries == ("psr.exe",)
    sigma = upstreams["sigma"]
    [rule] = [h for h in result.rules if h.path == PSR_RULE]
    adds = git(
        "-C", str(sigma.path), "log", "--follow", "--diff-filter=A", "--format=%H %aI", sigma.ref, "--", PSR_RULE
    )
    assert f"{rule.added} {rule.added_date}" == adds.split("\n")[0]
    # the paths it had on the way, as git log --follow names them
    former = git("-C", str(sigma.path), "log", "--follow", "--name-only", "--format=", sigma.ref, "--", PSR_RULE)
    assert {i.path for i in rule.intervals} <= set(former.split())
    assert len({i.path for i in rule.intervals}) == 3  # renamed twice on the first-parent line
    assert rule.intervals[-1].stop == "" and rule.intervals[-1].verdict == "runs"
    # detection gained when the rule reached the first-parent line
    first = git(
        "-C",
        str(sigma.path),
        "log",
        "--first-parent",
        "--reverse",
        "--format=%H",
        sigma.ref,
        "--",
        *{i.path for i in rule.intervals},
    ).split()[0]
    assert [(c.source, c.change, c.commit) for c in result.detection if c.source == "sigma"][0] == (
        "sigma",
        "gained",
        first,
    )
    lolbas = upstreams["lolbas"]
    [entry] = [h for h in result.lolbas if h.path == PSR_ENTRY]
    adds = git(
        "-C", str(lolbas.path), "log", "--follow", "--diff-filter=A", "--format=%H %aI", lolbas.ref, "--", PSR_ENTRY
    )
    assert f"{entry.added} {entry.added_date}" == adds.split("\n")[0]  # the file as it is now: its last add
    assert {i.verdict for i in entry.intervals} == {"documented"}
    lines = timeline_lines(result, now="2026-12-01")
    assert any(PSR_RULE in line and "█" in line for line in lines)


def test_search_at_imports_no_git_nor_pysigma(history_dir: Path) -> None:
    script = (
        "import sys\n"
        "sys.argv = ['indexer', 'search', 'psr.exe', '--at', '2021-01-01', '--data-dir', sys.argv[1]]\n"
        "from indexer.cli import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(history_dir)], capture_output=True, text=True, timeout=60)
    assert "Psr.exe" in done.stdout, done.stderr[-500:]
    modules = set(done.stderr.split())
    assert "indexer.chronicle" in modules and "sqlite3" in modules
    assert not modules & {"git", "sigma", "indexer.repository", "indexer.sources", "fastapi", "jinja2", "mcp"}


def test_cli_at_errors_are_one_line(history_dir: Path, tmp_path: Path) -> None:
    done = run_cli("search", "psr.exe", "--at", "last week", data_dir=history_dir)
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        "indexer: error: --at 'last week' is not a date: give YYYY-MM-DD or an ISO date and time (2024-05-01T12:00:00Z)"
    ]
    done = run_cli("timeline", "psr.exe", data_dir=tmp_path)
    assert done.returncode == 4 and len(done.stderr.strip().splitlines()) == 1
    assert "no history in" in done.stderr


def _dump(data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(chronicle.store_path(data_dir)) as conn:
        return {
            "commits": conn.execute("SELECT * FROM commits ORDER BY source, seq").fetchall(),
            "spans": conn.execute(
                "SELECT s.source, s.path, s.start, s.stop, f.blob, f.made, f.added FROM spans s "
                "JOIN files f ON f.id = s.file ORDER BY 1, 2, 3"
            ).fetchall(),
            "names": conn.execute("SELECT source, token, start, stop FROM names ORDER BY 1, 2, 3").fetchall(),
            "tokens": conn.execute(
                "SELECT f.path, f.blob, t.token FROM tokens t JOIN files f ON f.id = t.file ORDER BY 1, 2, 3"
            ).fetchall(),
            "licenses": conn.execute("SELECT * FROM licenses ORDER BY 1, 2").fetchall(),
        }


class _Interrupt:
    """A progress that stops the build (as Ctrl-C would) after `after` batches."""

    def __init__(self, after: int) -> None:
        self.after = after

    def stage(self, name: str, total: int) -> None: ...

    def log(self, message: str) -> None: ...

    def advance(self, count: int = 1) -> None:
        self.after -= 1
        if self.after == 0:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupted_first_build_resumes_to_the_same_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chronicle, "BATCH_COMMITS", 100)
    spec = [get("lolbas").spec(str(LOLBAS_BUNDLE))]
    whole, halted = tmp_path / "whole", tmp_path / "halted"
    refresh(RefreshOptions(whole, spec, history_since="2019-01-01"))
    refresh(RefreshOptions(halted, spec))  # no history kept yet
    from indexer.refresh import _extend_history

    with pytest.raises(KeyboardInterrupt):
        _extend_history(RefreshOptions(halted, spec, history_since="2019-01-01"), _Interrupt(2))  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="being built"):
        chronicle.open_store(halted)
    partial = sqlite3.connect(halted / "history" / chronicle.PARTIAL)
    assert partial.execute("SELECT count(*) FROM commits").fetchone()[0] == 200  # two batches kept
    partial.close()
    refresh(RefreshOptions(halted, spec))  # a plain refresh resumes it, at the depth asked
    assert _dump(halted) == _dump(whole)
    assert chronicle.history_since(halted) == "2019-01-01"
    # changes --since a date the history does not reach: one line, exit 4
    done = run_cli("changes", "--since", "2018-06-01", data_dir=halted)
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 4 and re.fullmatch(
        r"indexer: error: the history of lolbas starts at 2018-\d\d-\d\dT[\d:]+Z \(--history-since\): "
        r"nothing known of 2018-06-01T00:00:00Z",
        line,
    ), line


def test_the_timeline_page_plots_the_intervals_and_escapes_names(history_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from indexer.web.app import create_app

    with TestClient(create_app(history_dir)) as client:
        page = client.get("/timeline/psr.exe")
        assert page.status_code == 200
        assert '<svg class="chart timeline"' in page.text and "<script" not in page.text
        expected = timeline(history_dir, "psr.exe")
        bars = sum(len(h.intervals) for h in (*expected.rules, *expected.lolbas, *expected.documents))
        assert page.text.count('<rect class="cell tier-') == bars
        assert PSR_RULE in page.text
        missing = client.get("/timeline/%3Cb%3Eno.exe")
        assert missing.status_code == 404 and "<b>no.exe" not in missing.text


@pytest.mark.slow
def test_a_later_refresh_extends_the_history_as_a_whole_build_makes_it(tmp_path: Path) -> None:
    """LOLBAS indexed 60 first-parent commits back with its history, then at its tip: the store
    extended by the second refresh equals one built whole at the tip."""
    upstream = Upstream(LOLBAS_BUNDLE, tmp_path / "lolbas.git", get("lolbas").branch)
    spec = [get("lolbas").spec(str(upstream.path))]
    grown, whole = tmp_path / "grown", tmp_path / "whole"
    upstream.move(upstream.back(60))
    refresh(RefreshOptions(grown, spec, history_since="2020-01-01"))
    with sqlite3.connect(chronicle.store_path(grown)) as conn:
        assert conn.execute("SELECT tip FROM sources").fetchone() == (upstream.back(60),)
    upstream.move(upstream.tip)
    refresh(RefreshOptions(grown, spec))  # no --history-since: the data dir keeps its history
    refresh(RefreshOptions(whole, spec, history_since="2020-01-01"))
    assert _dump(grown) == _dump(whole)


@pytest.mark.slow
def test_a_history_step_that_fails_keeps_the_store_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while extending (here: a file that cannot be read) leaves the store as its last
    complete batch left it, readable, and the refresh's index published."""
    upstream = Upstream(LOLBAS_BUNDLE, tmp_path / "lolbas.git", get("lolbas").branch)
    spec = [get("lolbas").spec(str(upstream.path))]
    data = tmp_path / "data"
    upstream.move(upstream.back(30))
    refresh(RefreshOptions(data, spec, history_since="2020-01-01"))
    before = _dump(data)
    upstream.move(upstream.tip)

    def broken(item: object) -> object:
        raise OSError("disk gone")

    monkeypatch.setattr(chronicle, "_extract_one", broken)
    manifest = refresh(RefreshOptions(data, spec))
    assert manifest.exit_code == 0  # the index is published; the history is logged as not extended
    assert _dump(data) == before
    with IndexReader(data) as reader, chronicle.open_at(data, "2030-01-01") as past:
        assert past.sources["lolbas"]["commit"] == upstream.back(30) != reader.sources["lolbas"]["commit"]


@pytest.mark.parametrize("date", DATES[1:])
def test_show_at_a_date_equals_a_full_build_then(
    date: str, built_then: Callable[[str], tuple[Path, dict[str, str]]], history_dir: Path
) -> None:
    """`show TARGET --at DATE`: a rule by the id or path it had then (metadata, mentions, former
    paths, links), a LOLBAS entry, a binary, as the full build of the sources reset to then shows them."""
    from indexer.query import find_target

    when = calendar.timegm(time.strptime(date, "%Y-%m-%d"))
    built, _ = built_then(date)
    with IndexReader(built) as reader, AsOf(history_dir, when) as past:
        files = sorted(reader.state.files.values(), key=lambda r: (r.source, r.path))
        naming = {(m.source, m.path) for m in search(reader, "psr.exe").mentions}
        rules = [r for r in files if (r.source, r.path) in naming and r.rule_ids]
        by_source = {r.source: r for r in files if r.status == "indexed" and r.source != "sigma"}
        targets = [r.rule_ids[0] for r in rules[:3]] + [r.path for r in rules[:2]] + ["psr.exe", "rundll32.exe"]
        targets += [r.path for r in by_source.values()]
        assert len(targets) >= 10 and any(r.source == "sigma" for r in rules)
        for target in targets:
            expected = find_target(reader, target)
            assert expected is not None, target
            assert find_target(past, target) == expected, (date, target)
        rule_id = rules[0].rule_ids[0]
        done = run_cli("show", rule_id, "--at", date, "--json", data_dir=history_dir)
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert shown.pop("as_of") == past.as_of()
        assert shown == json.loads(json.dumps(find_target(reader, rule_id), default=str))
    gone = run_cli("show", "no-such-rule.yml", "--at", date, data_dir=history_dir)
    assert (gone.returncode, gone.stderr.strip()) == (
        1,
        f"indexer: error: no rule or binary 'no-such-rule.yml' in the index as of {date}",
    )


@pytest.mark.parametrize("date", DATES[1:2])
def test_export_and_coverage_at_a_date_equal_the_full_build_then(
    date: str, built_then: Callable[[str], tuple[Path, dict[str, str]]], history_dir: Path, tmp_path: Path
) -> None:
    """Every mention (export --at) and each LOLBAS entry's tier and rules (coverage --at) as of
    the date, against a full build of the sources reset to then."""
    from indexer import joins

    when = calendar.timegm(time.strptime(date, "%Y-%m-%d"))
    built, _existing = built_then(date)
    with IndexReader(built) as reader, AsOf(history_dir, when) as past:
        expected = sorted(json.dumps(m.to_dict(), sort_keys=True) for m in reader.all_mentions())
        assert sorted(json.dumps(m.to_dict(), sort_keys=True) for m in past.all_mentions()) == expected
        now, then = xref.coverage(reader), joins.coverage(past)  # type: ignore[arg-type]
        assert [(e["path"], e["tier"], e["running_rules"], e["other_rules"]) for e in then["entries"]] == [
            (e["path"], e["tier"], e["running_rules"], e["other_rules"]) for e in now["entries"]
        ]
        assert then["summary"]["tiers"] == now["summary"]["tiers"]
        # the links each entry declared then and the rules citing it then, resolved against the rule sets then
        assert [(e["path"], e["linked"], e["citing_rules"]) for e in then["entries"]] == [
            (e["path"], e["linked"], e["citing_rules"]) for e in now["entries"]
        ]
        assert sum(len(e["linked"]) for e in now["entries"]) >= 100 and any(e["citing_rules"] for e in now["entries"])
        # every link to Sigma, Elastic and Splunk then with its status, basis and rule id; the references
        assert xref.load(past).links == xref.load(reader).links  # type: ignore[arg-type]
        assert xref.load(past).references == xref.load(reader).references  # type: ignore[arg-type]
        # the tiers by each rule set then (Sigma, Elastic, Splunk as they were)
        assert then["rule_sets"] == joins.coverage(reader)["rule_sets"]
        assert then["rule_sets"]["rule_sets"] == ["elastic", "sigma", "splunk"]
        # the lookup and the ATT&CK layers as of the date: the full build's then, byte for byte
        from indexer.export import export_index
        from indexer.navigator import write_layer

        for name, write in (
            ("lookup.csv", lambda r, out: export_index(r, "lookup", out)),
            ("layer.json", lambda r, out: write_layer(r, out)),
            ("psr-layer.json", lambda r, out: write_layer(r, out, ["psr.exe"])),
        ):
            write(past, str(tmp_path / f"past-{name}"))
            write(reader, str(tmp_path / f"built-{name}"))
            assert (tmp_path / f"past-{name}").read_bytes() == (tmp_path / f"built-{name}").read_bytes(), name


FOOTER_TAIL = re.compile(
    r' · (?:built [^<]*· <span class="gen">[^<]*</span>|<span class="as-of">[^<]*</span>)</footer>'
)


@pytest.mark.parametrize("date", DATES[1:2])
def test_the_static_site_at_a_date_equals_the_full_build_s_then(
    date: str, built_then: Callable[[str], tuple[Path, dict[str, str]]], history_dir: Path, tmp_path: Path
) -> None:
    """`export --format html --at DATE` writes every page the full build of the sources reset to
    then gives, byte for byte (the whole site: every file compared), but the footer's last words:
    the build's time and generation there, the date here. Rule pages show pySigma's warnings
    then, former paths then, and the files the build skipped (license files)."""
    from indexer.web.site import SITE_MARKER, write_site

    built, _ = built_then(date)
    with IndexReader(built) as reader:
        write_site(reader, tmp_path / "built")
    done = run_cli("export", "--format", "html", "--at", date, "--output", str(tmp_path / "past"), data_dir=history_dir)
    assert done.returncode == 0, done.stderr
    files = {p.relative_to(tmp_path / "built") for p in (tmp_path / "built").rglob("*") if p.is_file()}
    assert {p.relative_to(tmp_path / "past") for p in (tmp_path / "past").rglob("*") if p.is_file()} == files
    differ, pages = [], {}
    for rel in sorted(files - {Path(SITE_MARKER)}):
        then, now = (tmp_path / "past" / rel).read_bytes(), (tmp_path / "built" / rel).read_bytes()
        if rel.suffix == ".html":
            pages[rel] = text = then.decode()
            assert f'<span class="as-of">as of {date}T00:00:00Z, read from the history</span></footer>' in text, rel
            then, now = FOOTER_TAIL.sub("</footer>", text).encode(), FOOTER_TAIL.sub("</footer>", now.decode()).encode()
        if then != now:
            differ.append(str(rel))
    assert not differ, differ[:10]
    assert len(pages) >= 5000
    rules = [text for rel, text in pages.items() if rel.parts[0] == "rule"]
    assert sum("<th>Warnings</th><td>pySigma: " in text for text in rules) >= 10  # 14 at 2022-06-15
    assert sum("<h2>Former paths" in text for text in rules) >= 100
    assert sum("<td>skipped — license file" in text for text in rules) >= 5  # files a full build skips
    assert (tmp_path / "past" / SITE_MARKER).read_text() == f"as of {date}T00:00:00Z\n"


def test_changes_between_two_dates_from_the_history(history_dir: Path, upstreams: dict[str, Upstream]) -> None:
    """November 2019: the Psr rule reached Sigma's first-parent line (2019-11-12): psr.exe gained
    a detecting rule; the commits and the rule files added and renamed are git's."""
    from indexer.timeline import changes_between

    result = changes_between(history_dir, "2019-11-01", "2019-12-01")
    sigma = upstreams["sigma"]
    before = last_commit_before(sigma, calendar.timegm(time.strptime("2019-11-01", "%Y-%m-%d")))
    after = last_commit_before(sigma, calendar.timegm(time.strptime("2019-12-01", "%Y-%m-%d")))
    [span] = [s for s in result.sources if s.source == "sigma"]
    count = git("-C", str(sigma.path), "rev-list", "--first-parent", "--count", f"{before}..{after}")
    assert (span.before, span.after, span.commits) == (before, after, int(count))
    psr = "rules/windows/process_creation/win_susp_psr_capture_screenshots.yml"
    assert [(g.path, g.before, g.after) for g in result.gained if g.binary == "psr.exe"] == [(psr, "", "runs")]
    diff = git("-C", str(sigma.path), "diff", "--name-status", "-M", before, after).splitlines()
    added = {line.split("\t")[1] for line in diff if line.startswith("A") and "rules/" in line}
    renamed = {tuple(line.split("\t")[1:]) for line in diff if line.startswith("R") and "rules/" in line}
    assert psr in added and added <= {m.path for m in result.rules if m.change == "added"}
    assert renamed == {(m.old_path, m.path) for m in result.rules if m.change == "renamed"}
    assert result.gained and all(g.after in DETECTING for g in result.gained)


def test_changes_since_a_date_alone_answers_from_the_history_that_covers_it(
    history_dir: Path, upstreams: dict[str, Upstream]
) -> None:
    """`changes --since DATE` without --until: what changed from then to the commits indexed,
    from the history (not the refreshes this data directory happened to see)."""
    done = run_cli("changes", "--since", "2026-06-01", "--json", data_dir=history_dir)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["since"] == "2026-06-01T00:00:00Z"
    with IndexReader(history_dir) as reader:
        tips = {name: s["commit"] for name, s in reader.sources.items()}
    assert {s["source"]: s["after"] for s in answer["sources"]} == tips
    sigma = upstreams["sigma"]
    before = last_commit_before(sigma, calendar.timegm(time.strptime("2026-06-01", "%Y-%m-%d")))
    count = git("-C", str(sigma.path), "rev-list", "--first-parent", "--count", f"{before}..{sigma.tip}")
    assert [(s["before"], s["commits"]) for s in answer["sources"] if s["source"] == "sigma"] == [(before, int(count))]


def test_changes_since_without_history_reads_the_refreshes_and_says_so(tip_data_dir: Path) -> None:
    done = run_cli("changes", "--since", "2999-01-01", data_dir=tip_data_dir)
    assert done.returncode == 0
    assert done.stderr.strip().splitlines() == [
        "indexer: note: no history kept here: these are the refreshes recorded since 2999-01-01 "
        "('indexer refresh --history-since DATE' keeps the history)"
    ]
    assert "no refresh recorded since 2999-01-01" in done.stdout


def test_the_web_answers_as_of_a_date_and_checks_the_date(history_dir: Path) -> None:
    """?at=DATE on the search and binary pages and their JSON: the history's answer (the commits
    then), the date checked as the CLI checks it."""
    from fastapi.testclient import TestClient

    from indexer.web.app import create_app

    with AsOf(history_dir, parse_date("2020-01-01")) as past:
        expected = search(past, "psr.exe")
        commit = past.sources["sigma"]["commit"]
    rows = sorted((m.source, m.path, m.line, m.binary, m.commit) for m in expected.mentions)
    assert rows and all(c == commit for s, *_, c in rows if s == "sigma")
    with TestClient(create_app(history_dir)) as client:
        answer = client.get("/api/search", params={"q": "psr.exe", "at": "2020-01-01", "limit": 100})
        assert answer.status_code == 200, answer.text
        assert (
            sorted((m["source"], m["path"], m["line"], m["binary"], m["commit"]) for m in answer.json()["mentions"])
            == rows
        )
        binary = client.get("/api/binary/psr.exe", params={"at": "2020-01-01", "limit": 100})
        assert binary.status_code == 200, binary.text
        assert (
            sorted((m["source"], m["path"], m["line"], m["binary"], m["commit"]) for m in binary.json()["mentions"])
            == rows
        )
        for url in ("/search?q=psr.exe&at=2020-01-01", "/binary/psr.exe?at=2020-01-01"):
            page = client.get(url)
            assert page.status_code == 200 and "as of 2020-01-01" in page.text, url
            assert f"/blob/{commit}/" in page.text
        bad = client.get("/api/search", params={"q": "psr.exe", "at": "last week"})
        assert bad.status_code == 400
        assert bad.json()["error"] == (
            "--at 'last week' is not a date: give YYYY-MM-DD or an ISO date and time (2024-05-01T12:00:00Z)"
        ).replace("--at", "at")
        assert client.get("/binary/psr.exe?at=2017-01-01").status_code == 404  # nothing named it then


def test_the_mcp_search_tool_answers_as_of_a_date(history_dir: Path) -> None:
    from test_mcp import _open

    with AsOf(history_dir, parse_date("2020-01-01")) as past:
        expected = search(past, "psr.exe")
        commit = past.sources["sigma"]["commit"]
    for client in _open(history_dir):
        result = client.ok("search_binary", name="psr.exe", at="2020-01-01", limit=100)
        assert result["mentions_total"] == len(expected.mentions)
        assert {r["path"] for r in result["rules"]} == {r.path for r in expected.rules}
        assert {r["commit"] for r in result["rules"] if r["source"] == "sigma"} == {commit}
        assert "is not a date" in client.error("search_binary", name="psr.exe", at="yesterday")


def test_a_macro_change_gives_its_unchanged_callers_a_new_version(
    history_dir: Path, upstreams: dict[str, Upstream]
) -> None:
    """A Splunk detection left as it was by a commit that changed a macro it calls gets a new
    version from that commit (a new interval), when its mentions changed: checked against git."""
    with sqlite3.connect(chronicle.store_path(history_dir)) as conn:
        rows = conn.execute(
            "SELECT s.path, s.start, f.blob, f.context, f.payload, c.sha, s.stop FROM spans s "
            "JOIN files f ON f.id = s.file "
            "JOIN commits c ON c.source = s.source AND c.seq = s.start WHERE s.source = 'splunk' ORDER BY s.path, s.start"
        ).fetchall()
    again = [
        (path, sha, json.loads(context), payload, before[4])
        for before, (path, start, blob, context, payload, sha, _) in zip(rows, rows[1:])
        if before[0] == path and before[2] == blob and before[6] == start  # the next version, same blob
    ]
    assert len(again) >= 20  # real macro changes re-read their callers
    splunk = upstreams["splunk"]
    for path, sha, context, payload, previous in again[:: max(1, len(again) // 15)]:
        changed = set(git("-C", str(splunk.path), "diff-tree", "-r", "--name-only", f"{sha}^1", sha).split())
        assert path not in changed, (path, sha)  # the detection itself is the same blob
        assert changed & set(context), (path, sha)  # ... and a macro file it reads changed then
        assert payload != previous  # what it says changed with it


def test_answers_at_a_date_are_the_cli_s_on_the_web_and_mcp(history_dir: Path) -> None:
    """?at= on the web's coverage, gaps and links (API and pages) and `at` on the MCP tools give
    what `coverage --at`, `gaps --at`, `links --at`, `tests --at`, `export --format navigator
    --at` and `changes --since --until` print for that date, and MCP's `show_rule` what `show`
    gives of the rule file then (the library's answers as of a date are compared with full
    builds above)."""
    from fastapi.testclient import TestClient

    from indexer.query import show_target
    from indexer.web.app import create_app
    from test_mcp import _open

    date = "2022-01-15"  # LOLBAS's links (since November 2021), atomic tests with guids; cheaper than later
    cli = {
        name: json.loads(run_cli(*args, "--json", data_dir=history_dir).stdout)
        for name, args in {
            "coverage": ("coverage", "--at", date),
            "gaps": ("gaps", "--at", date),
            "links": ("links", "--at", date),
            "tests": ("tests", "certutil.exe", "--at", date),
            "changes": ("changes", "--since", "2021-11-01", "--until", date),
        }.items()
    }
    assert cli["links"] and cli["coverage"]["entries"] and cli["gaps"]["rows"] and cli["tests"]["tests"]
    assert cli["changes"]["gained"] and cli["changes"]["rules"]
    with AsOf(history_dir, parse_date(date)) as past:
        assert cli["links"] == [l.to_dict() for l in xref.load(past).links]  # type: ignore[arg-type]
        # a Sigma rule LOLBAS links to then that moved before then, found by its path then and by its id
        moved = [l for l in cli["links"] if l["status"] == "moved" and l["rule_set"] == "sigma" and l.get("rule_id")]
        rule = next(
            r
            for l in moved
            if (r := show_target(past, l["current_path"], kind="rule"))["former_paths"]  # type: ignore[arg-type, index]
        )
        by_id = show_target(past, rule["rule_ids"][0], kind="rule")  # type: ignore[arg-type]
        as_of = past.as_of()
    assert by_id is not None and by_id["path"] == rule["path"] and rule["linked_from_lolbas"]
    with TestClient(create_app(history_dir)) as client:
        for name in ("coverage", "gaps"):
            got = client.get(f"/api/{name}", params={"at": date, "limit": 500})
            assert got.status_code == 200, got.text
            data = got.json()
            assert data["as_of"]["at"] == f"{date}T00:00:00Z"
            key = "entries" if name == "coverage" else "rows"
            assert data[key] == cli[name][key][:500] and data["page"]["total"] == len(cli[name][key]), name
            assert data["summary"] == cli[name]["summary"], name
            page = client.get(f"/{name}", params={"at": date})
            assert page.status_code == 200 and f"as of {date}" in page.text, name
        got = client.get("/api/links", params={"at": date, "limit": 500})
        assert got.status_code == 200, got.text
        assert got.json()["links"] == cli["links"][:500] and got.json()["page"]["total"] == len(cli["links"])
        assert got.json()["as_of"] == as_of
        only = client.get("/api/links", params={"at": date, "status": "moved", "limit": 500}).json()["links"]
        assert only and only == [l for l in cli["links"] if l["status"] == "moved"][:500]
        page = client.get("/links", params={"at": date})
        assert page.status_code == 200 and f"as of {date}" in page.text
        assert (
            f'<span class="status status-moved">moved</span> {len([l for l in cli["links"] if l["status"] == "moved"])}'
            in page.text
        )
        assert client.get("/api/coverage", params={"at": "yesterday"}).status_code == 400
        assert client.get("/api/links", params={"at": "yesterday"}).status_code == 400
    for mcp in _open(history_dir):
        coverage = mcp.ok("coverage", at=date, limit=100)
        assert coverage["total"] == len(cli["coverage"]["entries"])
        assert coverage["summary"]["tiers"] == cli["coverage"]["summary"]["tiers"]
        assert [(e["path"], e["tier"], len(e["linked"])) for e in coverage["entries"]] == [
            (e["path"], e["tier"], len(e["linked"])) for e in cli["coverage"]["entries"][:100]
        ]
        gaps = mcp.ok("gaps", at=date, limit=200)
        assert gaps["rows_total"] == len(cli["gaps"]["rows"]) and gaps["rows"] == cli["gaps"]["rows"][:200]
        links = mcp.ok("links", at=date, limit=200)
        assert links["total"] == len(cli["links"])
        assert [l["url"] for l in links["links"]] == [l["url"] for l in cli["links"][:200]]
        tests = mcp.ok("atomic_tests", name="certutil.exe", at=date, limit=50)
        assert tests["tests_total"] == len(cli["tests"]["tests"])
        layer = mcp.ok("navigator_layer", binary="psr.exe", at=date)
        out = history_dir.parent / "psr-at.json"
        run_cli(
            "export", "--format", "navigator", "--binary", "psr.exe", "--at", date, "-o", str(out), data_dir=history_dir
        )
        assert layer["layer"]["techniques"] == json.loads(out.read_text())["techniques"]
        assert "is not a date" in mcp.error("coverage", at="yesterday")
        shown = mcp.ok("show_rule", rule=rule["rule_ids"][0], at=date, limit=200)
        assert shown["as_of"] == as_of and (shown["path"], shown["title"]) == (rule["path"], rule["title"])
        assert (shown["status"], shown["warnings"], shown["rule_ids"]) == (
            rule["status"],
            rule["warnings"],
            rule["rule_ids"],
        )
        assert shown["binaries"] == rule["binaries"] and shown["mentions_total"] == len(rule["mentions"])
        assert [(m["line"], m["binary"], m["url"]) for m in shown["mentions"]] == [
            (m["line"], m["binary"], m["url"]) for m in rule["mentions"][:200]
        ]
        assert shown["former_paths"] == rule["former_paths"]
        assert [l["lolbas_path"] for l in shown["linked_from_lolbas"]] == [
            l["lolbas_path"] for l in rule["linked_from_lolbas"]
        ]
        assert not mcp.ok("show_rule", rule=PSR_RULE, at="2019-07-01")["found"]  # its path today: later
        changes = mcp.ok("changes", since="2021-11-01", until=date, max_items=100)
        assert changes["refreshes"] == [] and changes["history"]["sources"] == cli["changes"]["sources"]
        for key in ("gained", "lost", "rules"):
            assert changes["history"][key] == cli["changes"][key][:100], key
            assert changes["history"][f"{key}_total"] == len(cli["changes"][key]), key
        assert "until needs since" in mcp.error("changes", until=date)
