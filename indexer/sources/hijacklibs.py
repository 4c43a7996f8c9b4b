"""HijackLibs (wietze/HijackLibs): a DLL per file, and the executables that can be made to load it.

`Name` is the DLL (`sideload_target`); each `VulnerableExecutables[].Path` names a host
(`sideload_host`: the executable at the path's end), tagged with its `Type` (Sideloading,
Phantom, Search Order, Environment Variable). The DLL's mention lists its hosts as tags
(`host:certutil.exe`).
"""

from __future__ import annotations

import re

import yaml

from ..extract import Extraction, FileContext
from ..names import NameHit, explicit_names, path_tail, value_names
from ..parse import ParsedFile, child, scalar_text
from . import register
from .base import Source
from .atlas import Collector


def _host(text: str) -> list[NameHit]:
    """The executable a path ends with (`%SYSTEM32%\\certutil.exe`), never a folder named like a file."""
    tail = path_tail(text).lower()
    return [hit for hit in explicit_names(text) if hit.name == tail]


def hijack_tag(kind: str) -> str:
    """`hijacklibs.sideloading`, `hijacklibs.search_order`, ... from a `Type`."""
    return "hijacklibs." + re.sub(r"\W+", "_", kind.strip().lower()).strip("_")


def extract_hijacklibs(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """The DLL on its `Name` line, each host on its `Path` line."""
    col = Collector(ctx, parsed, "windows")
    for doc in parsed.documents:
        if not isinstance(doc.data, dict):
            continue
        node = doc.node
        dll_node = child(node, "Name")
        dll = scalar_text(dll_node).strip()
        kinds: list[str] = []
        hosts: list[str] = []
        items = child(node, "VulnerableExecutables")
        for item in items.value if isinstance(items, yaml.SequenceNode) else []:
            path = child(item, "Path")
            kind = scalar_text(child(item, "Type")).strip()
            if not isinstance(path, yaml.ScalarNode) or not scalar_text(path):
                continue
            kinds.append(kind)
            before = len(col.out.mentions)
            col.scan(
                path,
                col.make(field="Path", role="sideload_host", title=dll, tags=(hijack_tag(kind),) if kind else ()),
                _host,
            )
            hosts += [m.binary for m in col.out.mentions[before:]]
        if isinstance(dll_node, yaml.ScalarNode) and dll:
            # the DLL's mention names its hosts (`search version.dll` answers which programs load it)
            tags = (*sorted(map(hijack_tag, set(filter(None, kinds)))), *(f"host:{h}" for h in dict.fromkeys(hosts)))
            col.scan(
                dll_node,
                col.make(field="Name", role="sideload_target", title=dll, tags=tags),
                lambda text: value_names(text, whole_value=True, process=True),
            )
        col.out.entry = {
            "name": dll,
            "vendor": str(doc.data.get("Vendor") or ""),
            "types": sorted(set(filter(None, kinds))),
            "hosts": list(dict.fromkeys(hosts)),
        }
    return col.out


class Hijacklibs(Source):
    name = "hijacklibs"
    default_url = "https://github.com/wietze/HijackLibs.git"
    web_url = "https://github.com/wietze/HijackLibs"
    branch = "main"
    paths = re.compile(r"^yml/.+\.ya?ml$", re.DOTALL)  # yml/microsoft/built-in/version.yml

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_hijacklibs(ctx, parsed)


register(Hijacklibs())
