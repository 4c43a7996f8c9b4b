"""LOLBAS -> Sigma links, coverage, former paths and LOLBAS references at the bundles' tips.

Every expectation in tests/golden/links.yaml and tests/golden/coverage.yaml was checked by hand
against git (see the comments there), not copied from the tool. Where the tool disagrees with git
the git answer is kept and the case is marked xfail(strict=True) with the defect as the reason.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from indexer import xref
from indexer.query import show_target

GOLDEN = Path(__file__).resolve().parent / "golden"
LINKS = yaml.safe_load((GOLDEN / "links.yaml").read_text(encoding="utf-8"))
COVERAGE = yaml.safe_load((GOLDEN / "coverage.yaml").read_text(encoding="utf-8"))

ALLOWED = {"ok", "moved", "deprecated", "deleted", "unresolvable"}


def _param(item: dict, id_: str):
    marks = [pytest.mark.xfail(strict=True, reason=item["xfail"])] if item.get("xfail") else []
    return pytest.param(item, id=id_, marks=marks)


def _by_key(links: list[dict]) -> dict[tuple[str, int], dict]:
    return {(l["lolbas_path"], l["line"]): l for l in links}


def _distinct(paths: list[str]) -> list[str]:
    return list(dict.fromkeys(paths))


# --- links ---------------------------------------------------------------------------------------


def test_every_link_has_an_allowed_status(tip_reader):
    links = xref.links(tip_reader, sources=["sigma"])  # Elastic's: tests/test_elastic.py
    assert len(links) == LINKS["total"] == 295
    assert set(xref.LINK_STATUSES) == ALLOWED
    bad = [(l["lolbas_path"], l["line"], l["status"]) for l in links if l["status"] not in ALLOWED]
    assert not bad
    assert len(_by_key(links)) == len(links), "one link per (entry, line)"


def test_status_counts(tip_reader):
    counts = Counter(l["status"] for l in xref.links(tip_reader, sources=["sigma"]))
    expected = {s: n for s, n in LINKS["counts"].items() if n}
    assert dict(counts) == expected == {"ok": 211, "moved": 74, "deprecated": 5, "unresolvable": 5}
    assert counts["deleted"] == 0


@pytest.mark.parametrize("status", ["deprecated", "unresolvable", "deleted"])
def test_all_links_of_rare_statuses_are_pinned(tip_reader, status):
    got = {(l["lolbas_path"], l["line"]) for l in xref.links(tip_reader, [status], ["sigma"])}
    pinned = {(p["lolbas_path"], p["line"]) for p in LINKS["links"] if p["status"] == status}
    assert got == pinned


@pytest.mark.parametrize("pin", [_param(p, f"{p['status']}:{p['lolbas_path']}:{p['line']}") for p in LINKS["links"]])
def test_pinned_link(tip_reader, pin):
    link = _by_key(xref.links(tip_reader)).get((pin["lolbas_path"], pin["line"]))
    assert link is not None, "link not found"
    assert link["url"] == pin["url"]
    assert link["status"] == pin["status"]
    assert link.get("current_path") == pin.get("current_path")
    if pin["status"] in ("moved", "deprecated"):
        assert link["rule_id"] == pin["rule_id"]
        assert link["current_path"].startswith("deprecated/") == (pin["status"] == "deprecated")
    if pin["status"] == "unresolvable":
        assert link.get("reason")


def test_pinned_counts_meet_the_minimum():
    per = Counter(p["status"] for p in LINKS["links"])
    assert per["ok"] >= 15 and per["moved"] >= 15
    assert per["deprecated"] == LINKS["counts"]["deprecated"]
    assert per["unresolvable"] == LINKS["counts"]["unresolvable"]


def test_basis_names_the_commit_that_removed_the_linked_path(tip_reader, sigma_checkout):
    """The basis names the commit that deleted or renamed the path; its parent still has the path."""
    key = ("yml/OSBinaries/Aspnet_Compiler.yml", 21)
    link = _by_key(xref.links(tip_reader))[key]
    sha = re.search(r"before ([0-9a-f]{7,40}) (deleted|renamed)", link["basis"]).group(1)

    def has(rev: str) -> bool:
        return (
            subprocess.run(
                ["git", "-C", str(sigma_checkout), "cat-file", "-e", f"{rev}:{link['linked_path']}"],
                capture_output=True,
            ).returncode
            == 0
        )

    assert has(f"{sha}^") and not has(sha), link["basis"]


# --- coverage ------------------------------------------------------------------------------------


def _rows(reader) -> dict[str, dict]:
    return {r["path"]: r for r in xref.coverage(reader)["entries"]}


@pytest.mark.parametrize("pin", [_param(p, p["entry"]) for p in COVERAGE["running"]])
def test_entry_with_a_rule_that_runs_it(tip_reader, pin):
    row = _rows(tip_reader)[pin["path"]]
    assert row["entry"] == pin["entry"] and row["tier"] == "running"
    assert pin["rule"] in row["running_rules"] and pin["rule"] in row["detecting_rules"]
    assert pin["rule"] not in row["mentioning_rules"]
    assert pin["entry"] in xref.coverage(tip_reader)["summary"]["entries_by_tier"]["running"]


@pytest.mark.parametrize("pin", [_param(p, f"{p['entry']}:{p['rule'].rsplit('/', 1)[-1]}") for p in COVERAGE["other"]])
def test_entry_detected_otherwise(tip_reader, pin):
    row = _rows(tip_reader)[pin["path"]]
    assert row["entry"] == pin["entry"] and row["tier"] == "other"
    assert row["running_rules"] == [] and pin["rule"] in row["other_rules"]
    assert {r["path"]: r["verdict"] for r in row["rules"]}[pin["rule"]] == pin["verdict"]
    assert pin["entry"] in xref.coverage(tip_reader)["summary"]["entries_by_tier"]["other"]


@pytest.mark.parametrize("tier", ["mentioned", "none"])
def test_entry_without_a_detecting_rule(tip_reader, tier):
    cov = xref.coverage(tip_reader)
    for pin in COVERAGE[tier]:
        row = _rows(tip_reader)[pin["path"]]
        assert (row["entry"], row["tier"]) == (pin["entry"], tier)
        assert row["detecting_rules"] == [] and (row["rules"] == []) == (tier == "none")
        assert pin["entry"] in cov["summary"]["entries_by_tier"][tier]


def test_coverage_pin_counts():
    assert len(COVERAGE["running"]) >= 6 and len(COVERAGE["other"]) >= 9
    assert len(COVERAGE["mentioned"]) + len(COVERAGE["none"]) >= 6


def test_tier_counts_add_up_per_technique_and_category(tip_reader):
    cov = xref.coverage(tip_reader)
    s = cov["summary"]
    assert sum(s["tiers"].values()) == s["entries"] == len(cov["entries"])
    assert s["tiers"] == {t: sum(r["tier"] == t for r in cov["entries"]) for t in xref.TIERS}
    for key, field in (("by_mitre", "mitre"), ("by_category", "categories")):
        for name, counts in s[key].items():
            rows = [r for r in cov["entries"] if name in (r[field] or ["(none)"])]
            tiers = {t: sum(r["tier"] == t for r in rows) for t in xref.TIERS}
            assert counts == {
                "entries": len(rows),
                "detected": tiers["running"] + tiers["other"],
                "undetected": tiers["mentioned"] + tiers["none"],
                **tiers,
            }


def test_retired_rules_count_only_when_asked(tip_reader):
    """CL_Invocation.ps1: the only rules that invoke it are retired (read by hand: l.21
    ScriptBlockText|contains|all 'CL_Invocation.ps1' in deprecated/windows/posh_ps_cl_invocation_lolscript.yml,
    and unsupported/windows/posh_ps_cl_invocation_lolscript_count.yml); the process_creation rule names
    it in its title only."""
    default = {r["entry"]: r for r in xref.coverage(tip_reader)["entries"]}
    asked = {r["entry"]: r for r in xref.coverage(tip_reader, include_retired=True)["entries"]}
    row, with_retired = default["CL_Invocation.ps1"], asked["CL_Invocation.ps1"]
    assert row["tier"] == "mentioned" and with_retired["tier"] == "other"
    assert row["retired_rules"] == [
        "deprecated/windows/posh_ps_cl_invocation_lolscript.yml",
        "unsupported/windows/posh_ps_cl_invocation_lolscript_count.yml",
    ]
    assert set(row["retired_rules"]) <= set(with_retired["other_rules"])
    assert not set(row["retired_rules"]) & set(row["detecting_rules"] + row["mentioning_rules"])


# --- former paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("pin", [_param(p, p["path"]) for p in COVERAGE["former_paths"]])
def test_former_paths(tip_reader, pin):
    shown = show_target(tip_reader, pin["path"])
    assert shown is not None and shown["kind"] == "rule" and shown["path"] == pin["path"]
    assert _distinct([f["path"] for f in shown["former_paths"]]) == pin["former"]


# --- Sigma -> LOLBAS references ------------------------------------------------------------------


@pytest.mark.parametrize("pin", [_param(p, f"{p['sigma_path']}:{p['line']}") for p in COVERAGE["references"]])
def test_reference_resolves_to_entry(tip_reader, pin):
    refs = {(r["sigma_path"], r["line"]): r for r in xref.references(tip_reader)}
    ref = refs.get((pin["sigma_path"], pin["line"]))
    assert ref is not None, "reference not found"
    assert ref["url"] == pin["url"]
    assert ref["status"] == "ok"
    assert ref["entry_path"] == pin["entry_path"]


def test_coverage_csv_and_markdown_carry_the_tiers(tip_reader):
    import csv
    import io

    from indexer.export import coverage_csv, coverage_markdown

    cov = xref.coverage(tip_reader)
    rows = list(csv.DictReader(io.StringIO(coverage_csv(cov))))
    assert [(r["path"], r["tier"]) for r in rows] == [(e["path"], e["tier"]) for e in cov["entries"]]
    diantz = next(r for r in rows if r["path"] == "yml/OSBinaries/Diantz.yml")
    assert (diantz["running"], diantz["other"]) == ("0", "2")
    t = cov["summary"]["tiers"]
    text = coverage_markdown(cov)
    assert (
        f"Of {cov['summary']['entries']} LOLBAS entries, {t['running']} have a Sigma rule that detects the binary "
        f"running (tier `running`), {t['other']} a rule"
    ) in text
    assert "Diantz.exe | other | " in text
