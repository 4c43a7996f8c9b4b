"""The JSON Schemas of the exports, shipped as package data (`*.schema.json` beside this file).

Each is derived from the records of its export by `indexer.schema.json_schema`; a test checks
the files equal what `export_schemas()` generates. Regenerate them with `make schemas`
(`python -m indexer.schemas`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..schema import json_schema

HERE = Path(__file__).resolve().parent


def export_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every export that has one."""
    from ..export import JsonExport, LookupRow, MentionLine
    from ..navigator import Layer

    return {
        "export-json.schema.json": json_schema(JsonExport, "export-json/1", "indexer export --format json"),
        "export-jsonl.schema.json": json_schema(
            MentionLine, "export-jsonl/1", "indexer export --format jsonl: one line"
        ),
        "export-lookup.schema.json": json_schema(
            LookupRow, "export-lookup/1", "indexer export --format lookup: one row (lists before joining)"
        ),
        "export-navigator.schema.json": json_schema(
            Layer, "export-navigator/1", "indexer export --format navigator: an ATT&CK Navigator layer"
        ),
    }


def dumps(schema: dict[str, Any]) -> str:
    """A schema file's text (stable: the test compares files byte for byte)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = HERE) -> list[Path]:
    """Write every export's schema into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in export_schemas().items():
        (directory / name).write_text(dumps(schema), encoding="utf-8")
        written.append(directory / name)
    return written


def load(name: str) -> dict[str, Any]:
    """A shipped schema, e.g. `load("export-json.schema.json")`."""
    return json.loads((HERE / name).read_text(encoding="utf-8"))
