"""GTFOBins (GTFOBins/GTFOBins.github.io): a Unix binary per file, and what it can be made to do.

A file is `_gtfobins/NAME` (`NAME.md` before 2023): YAML front matter between `---` and `---`
(or `...`). The binary is the file's name, a Unix name (`curl`, never `curl.exe`). It is
mentioned, role `gtfobin`, on each line of a function's code that runs it, with the function
(shell, file-read, download, ...) as field and the contexts (sudo, suid, unprivileged) as
modifiers (a context's own code: that context); a function whose code never names it (`egrep`'s code runs `grep`) names it on the
function's own line, and an alias file (`view`: `alias: vim`) on its `alias` line.
"""

from __future__ import annotations

import posixpath
import re

import yaml

from ..extract import Extraction, FileContext
from ..parse import ParsedFile, RuleFileError, child, mapping_items, parse_yaml, scalar_text, split_lines
from . import register
from .base import Source
from .atlas import Collector, own_name, require_mapping, scan_own

_FENCE = re.compile(r"---|\.\.\.")


def binary_of(path: str) -> str:
    """The binary a page documents, as it is written: `_gtfobins/ld.so.md` -> `ld.so`."""
    name = posixpath.basename(path)
    return name[:-3] if name.endswith(".md") else name


def parse_front_matter(path: str, text: str) -> ParsedFile:
    """The YAML front matter of a page, its lines those of the file (the body is left out)."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        raise RuleFileError(path, "no YAML front matter (the file does not start with ---)", 1)
    end = next((n for n in range(1, len(lines)) if _FENCE.fullmatch(lines[n].rstrip())), None)
    if end is None:
        raise RuleFileError(path, "front matter never closed (no --- or ... line)", 1)
    # the body becomes blank lines: YAML line numbers stay the file's
    front = "\n".join(lines[:end] + [""] * (len(lines) - end))
    parsed = parse_yaml(path, front)
    parsed.lines = split_lines(text)[1]  # snippets quote the file
    return parsed


def extract_gtfobins(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """The page's binary on every code line that runs it, per function."""
    col = Collector(ctx, parsed, "linux")
    written = binary_of(ctx.path)
    name, pattern = written.lower(), own_name(written, case_sensitive=True)
    for doc in parsed.documents:
        if not isinstance(doc.data, dict):
            continue
        alias = child(doc.node, "alias")
        if isinstance(alias, yaml.ScalarNode) and scalar_text(alias):
            col.add(
                col.make(field="alias", role="gtfobin", title=written), name, parsed.file_line(alias.start_mark.line)
            )
        functions = []
        for function, key, examples in mapping_items(child(doc.node, "functions")):
            functions.append(function)
            found = 0
            for example in examples.value if isinstance(examples, yaml.SequenceNode) else []:
                contexts = list(mapping_items(child(example, "contexts")))
                codes = [(tuple(c for c, _, _ in contexts), child(example, "code"))]
                # a context may have code of its own (`suid: {code: ./x -p}`)
                codes += [((c,), child(value, "code")) for c, _, value in contexts]
                for modifiers, code in codes:
                    if isinstance(code, yaml.ScalarNode) and scalar_text(code):
                        template = col.make(
                            field=function,
                            modifiers=modifiers,
                            role="gtfobin",
                            title=written,
                            tags=("gtfobins." + function,),
                        )
                        found += scan_own(col, code, template, name, pattern)
            if not found:
                col.add(
                    col.make(field=function, role="gtfobin", title=written, tags=("gtfobins." + function,)),
                    name,
                    parsed.file_line(key.start_mark.line),
                )
        col.out.entry = {
            "name": written,
            "functions": functions,
            "alias_of": scalar_text(alias).strip() if isinstance(alias, yaml.ScalarNode) else "",
        }
    return col.out


class Gtfobins(Source):
    name = "gtfobins"
    default_url = "https://github.com/GTFOBins/GTFOBins.github.io.git"
    web_url = "https://github.com/GTFOBins/GTFOBins.github.io"
    branch = "master"
    paths = re.compile(
        r"^_gtfobins/[^/.][^/]*$", re.DOTALL
    )  # _gtfobins/curl, _gtfobins/curl.md before 2023; never a dot file

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_gtfobins(ctx, parsed)

    def parse(self, path: str, text: str) -> ParsedFile:
        return require_mapping(parse_front_matter(path, text))

    def title(self, parsed: ParsedFile) -> str:
        """The binary, as the page's file name writes it."""
        return binary_of(parsed.path)


register(Gtfobins())
