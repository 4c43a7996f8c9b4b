"""The README's module map lists exactly the modules of the package, one line each."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_module_map_lists_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(indexer/[\w/]+\.py)` \|", section, re.MULTILINE)
    modules = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "indexer").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == modules
