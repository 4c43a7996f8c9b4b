"""LOLDrivers (magicsword-io/LOLDrivers): a vulnerable or malicious Windows driver per file.

The driver's names are its `Tags` and its samples' `Filename` and `OriginalFilename` (explicit
names only: a hash or a bare `SANDRA` written there names no file). Role `vulnerable_driver`
or `malicious_driver` from `Category`. A sample's names carry its MD5, SHA1 and SHA256 as tags
(`sha256:03e0...`); the entry keeps every sample's names and hashes.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..extract import Extraction, FileContext
from ..names import value_names
from ..parse import ParsedFile, RuleFileError, child, mapping_items, parse_yaml, scalar_text, scalars, split_lines
from . import register
from .base import Source
from .atlas import Collector, require_mapping

SAMPLE_NAMES = ("Filename", "OriginalFilename")
HASHES = ("MD5", "SHA1", "SHA256")


# What the extraction reads. A file is 90% certificates, imports and section hashes (19.6 MB at the
# tip, 2.7 s to parse whole): the rest is blanked before parsing, lines kept.
TOP_KEYS = frozenset({"Id", "Tags", "Category", "MitreID", "KnownVulnerableSamples"})
SAMPLE_KEYS = frozenset((*SAMPLE_NAMES, *HASHES))
_KEY = re.compile(r"([A-Za-z_][\w-]*)\s*:(?:\s|$)")


def prune(text: str) -> str:
    """The file with every line the extraction does not read blanked (line numbers kept).

    Top-level keys other than TOP_KEYS, and sample keys other than SAMPLE_KEYS, go with
    everything under them. YAML's block structure is indentation: a key's subtree is every
    following line indented deeper, or as deep when it is a `- ` item of the key's own list.
    """
    lines = text.split("\n")
    out: list[str] = []
    drop: int | None = None  # blanking the subtree of a key at this column
    samples = False
    sample_col: int | None = None  # the column of a sample's keys
    for line in lines:
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if not body or body.startswith("#"):
            out.append("")
            continue
        dash = body.startswith("-") and body[1:2] in (" ", "")
        if drop is not None and (indent > drop or (indent == drop and dash)):
            out.append("")
            continue
        drop = None
        if indent == 0 and not dash:
            key = _KEY.match(body)
            name = key.group(1) if key else ""
            samples = name == "KnownVulnerableSamples"
            sample_col = None
            if name not in TOP_KEYS:
                drop = 0
                out.append("")
            else:
                out.append(line)
            continue
        if not samples:
            out.append(line)
            continue
        rest = body[1:].lstrip(" ") if dash else body
        col = len(line) - len(rest)
        if dash and (sample_col is None or indent < sample_col):  # a new sample
            sample_col = col
        elif sample_col is None or col > sample_col:
            out.append(line)
            continue
        key = _KEY.match(rest)
        if key and key.group(1) in SAMPLE_KEYS or not key:
            out.append(line)
        else:
            drop = col
            out.append(line[: len(line) - len(body)] + "-" if dash else "")
    return "\n".join(out)


def parse_driver(path: str, text: str) -> ParsedFile:
    """Parse the part of a driver file the extraction reads; the whole file if that part is no YAML.

    Snippets and lines are the file's own.
    """
    try:
        parsed = parse_yaml(path, prune(text))
    except RuleFileError:
        return parse_yaml(path, text)
    parsed.yaml_lines, parsed.lines, _ = split_lines(text)
    return parsed


def driver_role(category: str) -> str:
    """`malicious_driver` for Category `malicious`, `vulnerable_driver` otherwise."""
    return "malicious_driver" if category.strip().lower().startswith("malicious") else "vulnerable_driver"


def extract_loldrivers(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """Mentions of the driver in Tags and in its samples' file names; hashes into the entry."""
    col = Collector(ctx, parsed, "windows")
    for doc in parsed.documents:
        if not isinstance(doc.data, dict):
            continue
        data, node = doc.data, doc.node
        category = str(data.get("Category") or "")
        role = driver_role(category)
        mitre = str(data.get("MitreID") or "").strip()
        rule_id = str(data.get("Id") or "").strip()
        tag_nodes = [t for t in scalars(child(node, "Tags")) if scalar_text(t)]
        title = tag_nodes[0].value.strip() if tag_nodes else ""
        tags = tuple(t for t in (f"attack.{mitre.lower()}" if mitre else "", "loldrivers." + role) if t)
        meta = {"role": role, "rule_id": rule_id, "title": title, "tags": tags}
        template = col.make(field="Tags", **meta)
        for tag in tag_nodes:
            col.scan(tag, template, lambda text: value_names(text, whole_value=True, process=True))
        samples: list[dict[str, Any]] = []
        sample_nodes = child(node, "KnownVulnerableSamples")
        for sample in sample_nodes.value if isinstance(sample_nodes, yaml.SequenceNode) else []:
            items = [
                (key, value)
                for key, _, value in mapping_items(sample)
                if isinstance(value, yaml.ScalarNode) and scalar_text(value).strip()
            ]
            found = {key.lower(): value.value.strip().lower() for key, value in items if key in HASHES}
            # a sample's names carry its hashes: `search rtcore64.sys` shows which file is which
            sample_tags = (*tags, *(f"{kind}:{digest}" for kind, digest in found.items()))
            for key, value in items:
                if key in SAMPLE_NAMES:
                    col.scan(
                        value,
                        col.make(field=key, **{**meta, "tags": sample_tags}),
                        lambda text: value_names(text, whole_value=True, process=True),
                    )
                    found[key.lower()] = value.value.strip()
            if found:
                samples.append(found)
        if rule_id:
            col.out.rule_ids.append(rule_id)
        col.out.entry = {
            "name": title,
            "category": category,
            "mitre": [mitre] if mitre else [],
            "names": sorted({m.binary for m in col.out.mentions}),
            "samples": samples,
        }
    return col.out


class Loldrivers(Source):
    name = "loldrivers"
    default_url = "https://github.com/magicsword-io/LOLDrivers.git"
    web_url = "https://github.com/magicsword-io/LOLDrivers"
    branch = "main"
    paths = re.compile(r"^yaml/[^/]+\.yaml$", re.DOTALL)  # yaml/<guid>.yaml

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_loldrivers(ctx, parsed)

    def parse(self, path: str, text: str) -> ParsedFile:
        return require_mapping(parse_driver(path, text))

    def title(self, parsed: ParsedFile) -> str:
        """The driver's first tag (`RTCore64.sys`)."""
        for doc in parsed.documents:
            tags = doc.data.get("Tags") if isinstance(doc.data, dict) else None
            if isinstance(tags, list) and tags:
                return str(tags[0])
        return ""


register(Loldrivers())
