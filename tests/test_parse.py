"""parse_yaml builds a document's data itself (strings, lists, mappings) and leaves every other
node to PyYAML: the data must be what PyYAML's own `yaml.load_all` gives, type for type."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.parse import RuleFileError, parse_yaml
from indexer.parse import _Loader as FastLoader
from indexer.sources import SOURCES, get


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down, mapping keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def pyyaml(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


TRICKY = {
    "plain": "title: x\ndetection:\n  sel:\n    Image|endswith: '\\\\psr.exe'\n  condition: sel\n",
    "scalars": "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: 2024-01-02\ng: 2024-01-02T03:04:05Z\nh: 0x1F\ni: .inf\nj: no\n",
    "quoted look-alikes stay strings": "a: '1'\nb: \"true\"\nc: '2024-01-02'\nd: 'null'\n",
    "tags": "a: !!str 12\nb: !!int '7'\nc: !!binary aGVsbG8=\nd: !!set {x, y}\ne: !!omap [{k: v}]\nf: !!float '1'\n",
    "anchors and aliases": "base: &b {Image: x.exe, list: [1, 2]}\nuse: *b\nseq: &s [a, b]\nagain: *s\n",
    "merge keys": "base: &b {a: 1, b: 2}\nchild:\n  <<: *b\n  b: 3\nmany:\n  <<: [*b, {c: 4}]\n",
    "non-string keys": "1: one\ntrue: yes\n2024-01-02: d\nnull: n\n1.5: f\n",
    "value key": "=: v\nk: w\n",
    "several documents": "action: global\ntitle: g\n---\ndetection: {sel: {a: b}, condition: sel}\n---\n",
    "nested lists": "a: [[1, [2, [x]]], {k: [v, {w: 1}]}]\nb: []\nc: {}\n",
    "block scalars": "d: |\n  line one\n  line two\nf: >-\n  folded\n  text\n",
    "unicode": "title: svсhost.exe ｃmd.exe \u2028 \u00e9\n",
}


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_the_data_is_what_pyyaml_builds(text: str) -> None:
    data = [d.data for d in parse_yaml("x.yml", text).documents]
    assert same(data, pyyaml(text))


def _tags(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return node.tag, node.value
    if isinstance(node, yaml.SequenceNode):
        return node.tag, [_tags(item) for item in node.value]
    return node.tag, [(_tags(k), _tags(v)) for k, v in node.value]


# plain scalars that look like every implicit type, and anything else
PLAIN = st.sampled_from(
    [
        "",
        "~",
        "null",
        "Null",
        "NULL",
        "true",
        "No",
        "off",
        "0x1F",
        "0o17",
        "-1_000",
        "+.5",
        ".inf",
        "-.Inf",
        ".nan",
        "1:20",
        "2024-01-02",
        "2024-01-02 03:04:05.1 +01:00",
        "<<",
        "=",
        "1e3",
        "12",
        "0b101",
        "1.5e-3",
        "x",
    ]
) | st.from_regex(r"[-+.0-9~<=a-zA-Z][-+.:_0-9a-zA-Z ]{0,12}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(PLAIN, min_size=1, max_size=6))
def test_tags_are_the_safe_loaders(values: list[str]) -> None:
    """The loader's own `resolve` gives every node the tag PyYAML's safe loader gives it."""
    text = "".join(f"k{n}: [{v!s}, '{v}', {{{v}: {v}}}]\n" for n, v in enumerate(v.strip() for v in values))
    try:
        expected = [_tags(n) for n in yaml.compose_all(text, Loader=yaml.SafeLoader)]
    except yaml.YAMLError:
        return
    assert [_tags(n) for n in yaml.compose_all(text, Loader=FastLoader)] == expected


def test_an_alias_gives_the_same_object_twice_as_in_pyyaml() -> None:
    (doc,) = parse_yaml("x.yml", TRICKY["anchors and aliases"]).documents
    assert doc.data["use"] is doc.data["base"] and doc.data["again"] is doc.data["seq"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: !!python/object:os.system x\n", "invalid YAML"),
        ("a: !!int notanumber\n", "invalid YAML value"),
        ("a: !!timestamp 2024-13-45\n", "invalid YAML value"),
        ("a: &a [*a]\n", "alias bomb"),
        ("? [a, [b]]\n: x\n? {k: v}\n: y\n", "invalid YAML"),
    ],
)
def test_what_pyyaml_refuses_is_a_file_error(text: str, reason: str) -> None:
    with pytest.raises(RuleFileError, match=reason):
        parse_yaml("x.yml", text)


def _tip_texts(data_dir: Path, name: str) -> list[tuple[str, str]]:
    """(path, text) of every file source `name` reads at its indexed tip."""
    source, clone = get(name), data_dir / "sources" / f"{name}.git"
    ref = f"refs/remotes/origin/{source.branch}"
    tree = subprocess.run(["git", "ls-tree", "-r", "--name-only", ref], cwd=clone, capture_output=True, text=True)
    paths = [p for p in tree.stdout.splitlines() if source.wants(p)]
    batch = "".join(f"{ref}:{p}\n" for p in paths).encode()
    blobs = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=clone, input=batch, capture_output=True, check=True
    ).stdout
    texts, pos = [], 0
    for path in paths:
        header_end = blobs.index(b"\n", pos)
        size = int(blobs[pos:header_end].split()[2])
        texts.append((path, blobs[header_end + 1 : header_end + 1 + size].decode("utf-8-sig")))
        pos = header_end + 2 + size
    return texts


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_real_file_gives_what_pyyaml_gives(tip_data_dir: Path, name: str) -> None:
    texts = [(p, t) for p, t in _tip_texts(tip_data_dir, name) if not p.endswith(".toml")]
    if not texts:
        pytest.skip(f"{name} has no YAML files in the shared test index")
    differ = [
        path for path, text in texts if not same([d.data for d in parse_yaml(path, text).documents], pyyaml(text))
    ]
    assert differ == [], f"{len(differ)} of {len(texts)} {name} files differ, e.g. {differ[:3]}"
