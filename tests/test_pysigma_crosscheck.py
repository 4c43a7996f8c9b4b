"""Recall through pySigma's own model: every name pySigma's detection items spell is in the index.

The index walks the YAML nodes (for line numbers); this test walks pySigma's parsed rules
(`SigmaDetection` trees, `SigmaDetectionItem.original_value` as written) over the whole real
corpus and requires each explicit executable name it finds, with its field, among the file's
mentions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import yaml
from sigma.collection import SigmaCollection
from sigma.rule import SigmaDetection, SigmaDetectionItem
from sigma.types import SigmaString

from indexer.extract import field_role
from indexer.index import IndexReader
from indexer.names import explicit_names

from conftest import mentions_by_file


def detection_items(detection: SigmaDetection) -> Iterator[SigmaDetectionItem]:
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            yield from detection_items(item)
        else:
            yield item


def test_every_name_in_pysigmas_detection_items_is_indexed(tip_reader: IndexReader, sigma_checkout: Path) -> None:
    by_file = mentions_by_file(tip_reader, "sigma")
    checked, missing = 0, []
    for report in tip_reader.state.files.values():
        if report.source != "sigma" or report.status != "indexed" or report.warnings:
            continue
        text = (sigma_checkout / report.path).read_text(encoding="utf-8")
        collection = SigmaCollection.from_dicts(list(yaml.load_all(text, Loader=yaml.CSafeLoader)), collect_errors=True)
        indexed = {(m.binary, m.field.lower()) for m in by_file.get(report.path, [])}
        for rule in collection.rules:
            detections = getattr(getattr(rule, "detection", None), "detections", {})
            for detection in detections.values():
                for item in detection_items(detection):
                    field = item.field or ""
                    if field and field_role(field) is None:  # hosts, hashes, user agents: never names
                        continue
                    for value in item.original_value:
                        if not isinstance(value, SigmaString):
                            continue
                        for hit in explicit_names(value.to_plain()):
                            checked += 1
                            if (hit.name, field.lower()) not in indexed:
                                missing.append((report.path, field, hit.name))
    assert checked > 9000  # the corpus has ~9,850 such names: the walk did reach them
    assert missing == []
