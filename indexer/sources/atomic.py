"""atomic-red-team (redcanaryco/atomic-red-team): per ATT&CK technique, tests that run commands.

Each test's executor command and cleanup command are command lines: names are found in them as
in a Sigma command line (explicit names now, bare names once the corpus's executables are
known). A `#{argument}` placeholder stands for its input argument's default: names in the
default count on the placeholder's line, marked with the placeholder as their modifier.
A manual test's `steps` are read as prose. Every mention has role `tested_by`, the test's guid
as rule id, its name as title, the technique as tag, the executor's name as detection and
`command`, `cleanup_command` or `steps` as field.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..extract import Candidate, Extraction, FileContext
from ..model import PLATFORMS
from ..names import explicit_names
from ..parse import ParsedFile, child, mapping_items, scalar_text
from . import register
from .base import Source
from .atlas import Collector

_PLACEHOLDER = re.compile(r"#\{([^{}\s]+)\}")
COMMAND_FIELDS = ("command", "cleanup_command", "steps")  # steps: a manual test's instructions (prose)


def test_platform(platforms: list[str]) -> str:
    """Which bare names a test's commands may infer (as `extract.platform_of`): windows, unix or other."""
    names = {p.strip().lower() for p in platforms}
    if "windows" in names:
        return "windows"
    return "unix" if names & {"linux", "macos"} else "other"


def host_platform(platforms: list[str]) -> str:
    """`Mention.platform` of a test: the first host system it supports (windows, linux, macos),
    "" for a cloud-only test (iaas:aws, azure-ad, office-365, containers)."""
    return next((p for p in (x.strip().lower() for x in platforms) if p in PLATFORMS), "")


def extract_atomic(ctx: FileContext, parsed: ParsedFile) -> Extraction:
    """Mentions in the executor commands of every test of a technique file."""
    col = Collector(ctx, parsed, "")
    tests: list[dict[str, Any]] = []
    for doc in parsed.documents:
        if not isinstance(doc.data, dict):
            continue
        technique = str(doc.data.get("attack_technique") or "").strip()
        tags = (f"attack.{technique.lower()}",) if technique else ()
        test_nodes = child(doc.node, "atomic_tests")
        if not isinstance(test_nodes, yaml.SequenceNode):
            continue
        for node in test_nodes.value:
            test = _test(col, node, tags)
            if test:
                tests.append(test)
        col.out.entry = {"technique": technique, "name": str(doc.data.get("display_name") or ""), "tests": tests}
    return col.out


def _test(col: Collector, node: yaml.Node, tags: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    guid = scalar_text(child(node, "auto_generated_guid")).strip()
    name = scalar_text(child(node, "name")).strip()
    platforms = [
        scalar_text(p).strip()
        for p in getattr(child(node, "supported_platforms"), "value", [])
        if isinstance(p, yaml.ScalarNode)
    ]
    defaults = {
        key: scalar_text(child(value, "default")) for key, _, value in mapping_items(child(node, "input_arguments"))
    }
    executor = child(node, "executor")
    executor_name = scalar_text(child(executor, "name")).strip()
    if guid:
        col.out.rule_ids.append(guid)
    platform = test_platform(platforms)
    for key in COMMAND_FIELDS:
        command = child(executor, key)
        if not isinstance(command, yaml.ScalarNode) or not scalar_text(command):
            continue
        template = col.make(
            field=key,
            role="tested_by",
            detection=executor_name,
            rule_id=guid,
            title=name,
            tags=tags,
            platform=host_platform(platforms),
        )
        for line, text in col.scalar_lines(command):
            plain = _PLACEHOLDER.sub(" ", text)
            for hit in explicit_names(plain):
                col.add(template, hit.name, line)
            col.out.candidates.append(Candidate(plain, line, col._line(line), template, key == "steps", platform))
            for argument in dict.fromkeys(_PLACEHOLDER.findall(text)):
                default = defaults.get(argument, "")
                if not default:
                    continue
                marked = col.make(
                    field=key,
                    role="tested_by",
                    detection=executor_name,
                    rule_id=guid,
                    title=name,
                    tags=tags,
                    platform=host_platform(platforms),
                    modifiers=(f"#{{{argument}}}",),
                )
                for hit in explicit_names(default):
                    col.add(marked, hit.name, line)
                col.out.candidates.append(Candidate(default, line, col._line(line), marked, False, platform))
    return {"guid": guid, "name": name, "platforms": platforms, "executor": executor_name}


class Atomic(Source):
    name = "atomic"
    default_url = "https://github.com/redcanaryco/atomic-red-team.git"
    web_url = "https://github.com/redcanaryco/atomic-red-team"
    branch = "master"
    paths = re.compile(r"^atomics/T[^/]*/T[^/]*\.yaml$", re.DOTALL)  # atomics/T1218.011/T1218.011.yaml

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        return extract_atomic(ctx, parsed)

    def title(self, parsed: ParsedFile) -> str:
        """The technique's display name (`Signed Binary Proxy Execution: Rundll32`)."""
        return next((str(d.data.get("display_name") or "") for d in parsed.documents if isinstance(d.data, dict)), "")


register(Atomic())
