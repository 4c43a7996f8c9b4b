"""LOOBins (infosecB/LOOBins): a macOS binary per file, its paths and example uses.

The binary (`name`, a Unix name) is mentioned, role `loobin`, on its `name` line, on each of
its `paths`, and on each line of an example's code that runs it (field `code`, the example's
tactics as tags). macOS file names are case-insensitive: so is the match.
"""

from __future__ import annotations

import re

import yaml

from ..extract import Extraction, FileContext
from ..names import path_tail
from ..parse import ParsedFile, child, scalar_text, scalars
from . import register
from .base import Source
from .atlas import Collector, own_name, scan_own


def tactic_tag(tactic: str) -> str:
    """`loobins.defense_evasion` from `Defense Evasion`."""
    return "loobins." + re.sub(r"\W+", "_", tactic.strip().lower()).strip("_")


def extract_loobins(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """The binary on its name line, its paths and the code lines of its examples."""
    col = Collector(ctx, parsed, "macos")
    for doc in parsed.documents:
        if not isinstance(doc.data, dict):
            continue
        name_node = child(doc.node, "name")
        written = scalar_text(name_node).strip()
        if not isinstance(name_node, yaml.ScalarNode) or not written or "/" in written:
            continue
        name, pattern = written.lower(), own_name(written, case_sensitive=False)
        col.add(col.make(field="name", role="loobin", title=written), name, parsed.file_line(name_node.start_mark.line))
        for path in scalars(child(doc.node, "paths")):
            if path_tail(path.value).lower() == name:
                col.add(
                    col.make(field="paths", role="loobin", title=written), name, parsed.file_line(path.start_mark.line)
                )
        tactics: set[str] = set()
        examples = child(doc.node, "example_use_cases")
        for example in examples.value if isinstance(examples, yaml.SequenceNode) else []:
            used = [scalar_text(t).strip() for t in scalars(child(example, "tactics")) if scalar_text(t).strip()]
            tactics.update(used)
            code = child(example, "code")
            if isinstance(code, yaml.ScalarNode) and scalar_text(code):
                scan_own(
                    col,
                    code,
                    col.make(field="code", role="loobin", title=written, tags=tuple(tactic_tag(t) for t in used)),
                    name,
                    pattern,
                )
        col.out.entry = {
            "name": written,
            "tactics": sorted(tactics),
            "paths": [p.value.strip() for p in scalars(child(doc.node, "paths"))],
        }
    return col.out


class Loobins(Source):
    name = "loobins"
    default_url = "https://github.com/infosecB/LOOBins.git"
    web_url = "https://github.com/infosecB/LOOBins"
    branch = "main"
    paths = re.compile(r"^LOOBins/[^/]+\.ya?ml$", re.DOTALL)  # LOOBins/caffeinate.yml

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_loobins(ctx, parsed)

    def title(self, parsed: ParsedFile) -> str:
        """The binary's `name`."""
        return next((str(d.data.get("name") or "") for d in parsed.documents if isinstance(d.data, dict)), "")


register(Loobins())
