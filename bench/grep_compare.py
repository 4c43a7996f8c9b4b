"""The index against a plain grep: every indexed name, case-insensitive substring, every rule line.

    python bench/grep_compare.py DATA_DIR SIGMA_CHECKOUT LOLBAS_CHECKOUT

Prints how many (file, line, name) hits each finds that the other does not, each difference
sorted into a class that explains it, with an example per class. A grep hit that no class
explains is a candidate miss of the index (`unexplained`).
"""

from __future__ import annotations

import bisect
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from indexer.extract import field_role
from indexer.index import IndexReader

_NAME_CHAR = re.compile(r"[a-z0-9_$~+\-]")
_KEY = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w|.-]*)\s*:")
_NOT_SCANNED = {
    "id",
    "related",
    "author",
    "date",
    "modified",
    "tags",
    "references",
    "fields",
    "type",
    "status",
    "level",
    "logsource",
    "product",
    "service",
    "category",
    "definition",
    "condition",
    "timeframe",
    "resources",
    "link",
    "acknowledgement",
    "person",
    "handle",
    "created",
    "code_sample",
    "code",
    "sigma",
    "elastic",
    "splunk",
    "blockrule",
    "usecase_link",
    "privileges",
    "operatingsystem",
    "mitreid",
    "name",
}


def grep_hits(files: dict[str, str], names: list[str]) -> set[tuple[str, int, str]]:
    """(file, line, name) for every case-insensitive substring occurrence of every name."""
    hits: set[tuple[str, int, str]] = set()
    for ref, text in files.items():
        low = text.lower()
        starts = [0] + [i + 1 for i, ch in enumerate(low) if ch == "\n"]
        for name in names:
            pos = low.find(name)
            while pos != -1:
                hits.add((ref, bisect.bisect_right(starts, pos), name))
                pos = low.find(name, pos + 1)
    return hits


def classify_grep_only(line: str, name: str, key_path: str) -> str:
    """Why a grep hit is not a mention."""
    low = line.lower()
    free = []  # occurrences on word boundaries
    for match in re.finditer(re.escape(name), low):
        before = low[match.start() - 1 : match.start()]
        after = low[match.end() : match.end() + 1]
        glued = (
            bool(before and (_NAME_CHAR.match(before) or before == "."))
            or bool(after and _NAME_CHAR.match(after))
            or (after == "." and low[match.end() + 1 : match.end() + 2].isalnum())
        )
        if not glued:
            free.append(match.start())
    if not free:
        return "part of a longer word or name (xcmd.exe, ScreenConnect.Service.exe, 'at' in 'data')"
    comment = line.find(" #") if not line.lstrip().startswith("#") else 0
    if comment != -1 and all(pos > comment for pos in free):
        return "in a YAML comment"
    if re.search(r"https?://\S*" + re.escape(name), low):
        return "inside a URL"
    key = key_path.lower()
    if key in _NOT_SCANNED:
        return f"a key the policy does not read for names ({key})"
    field = key.split("|")[0]
    if field and field_role(field) is None:
        return "a field that never holds file names (hosts, hashes, user agents, accounts)"
    if "." not in name:
        return "a bare name where the policy does not infer one (prose, common word, process field value)"
    if name.endswith(".com"):
        return "a .com name outside a path (written like a domain: Format.com in a title)"
    return "unexplained"


def compare(data_dir: Path, checkouts: dict[str, Path]) -> dict[str, Any]:
    with IndexReader(data_dir) as reader:
        mentions = list(reader.all_mentions())
        reports = [r for r in reader.state.files.values() if r.status == "indexed"]
    files = {
        f"{r.source}:{r.path}": (checkouts[r.source] / r.path).read_text(encoding="utf-8", errors="replace")
        for r in reports
    }
    index = {(f"{m.source}:{m.path}", m.line, m.binary) for m in mentions}
    names = sorted({m.binary for m in mentions})
    grep = grep_hits(files, names)
    lines = {ref: text.splitlines() for ref, text in files.items()}

    def key_of(ref: str, number: int) -> str:
        for line in reversed(lines[ref][:number]):
            match = _KEY.match(line)
            if match:
                return match.group(1)
        return ""

    grep_only: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for ref, number, name in sorted(grep - index):
        grep_only[classify_grep_only(lines[ref][number - 1], name, key_of(ref, number))].append((ref, number, name))
    index_only: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    by_key = {(f"{m.source}:{m.path}", m.line, m.binary): m for m in mentions}
    for hit in sorted(index - grep):
        m = by_key[hit]
        why = (
            "a bare name recognised without its extension (inferred)"
            if m.inferred
            else "spelled by a regex (cmd\\.exe, alternations)"
            if "re" in m.modifiers
            else "a Unix path's last part, or a name spelled with escapes"
        )
        index_only[why].append(hit)
    return {
        "grep_hits": len(grep),
        "index_hits": len(index),
        "both": len(grep & index),
        "grep_only": {k: {"count": len(v), "example": v[len(v) // 2]} for k, v in sorted(grep_only.items())},
        "index_only": {k: {"count": len(v), "example": v[len(v) // 2]} for k, v in sorted(index_only.items())},
        "unexplained": grep_only.get("unexplained", []),
    }


def main() -> None:
    data_dir, sigma, lolbas = map(Path, sys.argv[1:4])
    result = compare(data_dir, {"sigma": sigma, "lolbas": lolbas})
    print(f"grep hits {result['grep_hits']:,}; index mentions {result['index_hits']:,}; both {result['both']:,}")
    for side in ("grep_only", "index_only"):
        total = sum(v["count"] for v in result[side].values())
        print(f"\n{side.replace('_', ' ')}: {total:,}")
        for why, v in sorted(result[side].items(), key=lambda kv: -kv[1]["count"]):
            print(f"  {v['count']:>8,}  {why}   e.g. {v['example']}")
    if len(sys.argv) > 4:
        Path(sys.argv[4]).write_text(json.dumps(result, indent=1, default=list))


if __name__ == "__main__":
    main()
