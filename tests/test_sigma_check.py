"""The Sigma plug-in's check hands a plain one-document rule straight to `SigmaRule.from_dict`:
its warnings must be the ones `SigmaCollection.from_dicts` gives for the same file."""

from __future__ import annotations

import copy

import pytest
import yaml
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaRuleLocation

from indexer.sources.sigma import _sigma_message, sigma_errors

RULE = """
title: Psr
id: 0b2d1d9c-2d4e-4a5b-8b9f-1d7c8e3f6a01
status: test
logsource: {category: process_creation, product: windows}
detection:
  sel:
    Image|endswith: '\\\\psr.exe'
  condition: sel
level: medium
"""
BROKEN = {
    "fine": RULE,
    "unknown modifier": RULE.replace("Image|endswith", "Image|notamodifier"),
    "no condition": RULE.replace("  condition: sel\n", ""),
    "condition names nothing": RULE.replace("condition: sel", "condition: other"),
    "bad status": RULE.replace("status: test", "status: nonsense"),
    "bad level": RULE.replace("level: medium", "level: extreme"),
    "bad id": RULE.replace("id: 0b2d1d9c-2d4e-4a5b-8b9f-1d7c8e3f6a01", "id: not-a-uuid"),
    "bad date": RULE + "date: 2024/13/45\n",
    "no logsource": RULE.replace("logsource: {category: process_creation, product: windows}\n", ""),
    "detection not a mapping": RULE.split("detection:")[0] + "detection: [a, b]\n",
    "bad regex": RULE.replace("Image|endswith: '\\\\psr.exe'", "Image|re: '(?<=x)psr'"),
    "tags not a list": RULE + "tags: attack.t1113\n",
    "several errors": RULE.replace("status: test", "status: x").replace("level: medium", "level: y"),
    "a correlation": "title: c\ncorrelation: {type: event_count, rules: [a], timespan: 1h}\n",
    "a filter": "title: f\nfilter: {rules: [a], selection: {User: x}, condition: selection}\nlogsource: {product: windows}\n",
    "an unknown action": "action: nonsense\ntitle: t\n",
    "global and rule": "action: global\ntitle: g\nlogsource: {product: windows}\n---\n" + RULE.split("logsource")[0],
}


def from_dicts(documents: list) -> list[str]:
    errors = SigmaCollection.from_dicts(
        documents,
        collect_errors=True,
        source=SigmaRuleLocation("r.yml"),
        collect_filters=True,
        resolve_references=False,
    ).errors
    return list(dict.fromkeys(_sigma_message(e) for e in errors))


@pytest.mark.parametrize("text", BROKEN.values(), ids=BROKEN.keys())
def test_the_warnings_are_the_collections(text: str) -> None:
    documents = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    assert sigma_errors("r.yml", copy.deepcopy(documents)) == from_dicts(copy.deepcopy(documents))


def test_the_broken_rules_do_warn() -> None:
    """The cases above are not all silent: the comparison is between real warnings."""
    warned = [
        k for k, text in BROKEN.items() if sigma_errors("r.yml", list(yaml.load_all(text, Loader=yaml.CSafeLoader)))
    ]
    assert "fine" not in warned and len(warned) >= 10, warned
