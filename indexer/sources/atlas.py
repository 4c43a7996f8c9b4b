"""What the atlas plug-ins share: the collector of mentions, an entry's own binary found on its lines."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..extract import FileContext, _Collector
from ..model import RULE, Mention
from ..parse import ParsedFile, RuleFileError

_RULE_FIELDS = frozenset(Mention.fields_of(RULE))


class Collector(_Collector):
    """The collector of a source whose files are about one platform (Mention.platform)."""

    def __init__(self, ctx: FileContext, parsed: ParsedFile, platform: str) -> None:
        super().__init__(ctx, parsed)
        self.platform = platform

    def make(self, **fields: Any) -> Mention:
        """A template: the fields of the rule (title, tags, rule_id, platform: the source's unless
        given) as its meta, the others as the place's."""
        meta = {"platform": self.platform, **{k: v for k, v in fields.items() if k in _RULE_FIELDS}}
        return self.template(meta, **{k: v for k, v in fields.items() if k not in _RULE_FIELDS})


def own_name(name: str, case_sensitive: bool) -> re.Pattern[str]:
    """The pattern of an entry's own binary written as a word of a command (`./awk`, `sudo awk -f`).

    Not inside a longer name: `gawk`, `awk.txt`, `--awk`, `x-awk` are not `awk`.
    """
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(rf"(?<![\w.+\-$]){re.escape(name)}(?![\w+\-]|\.\w)", flags)


def scan_own(col: _Collector, node: yaml.Node, template: Mention, name: str, pattern: re.Pattern[str]) -> int:
    """Add a mention of `name` on each line of the scalar `node` where `pattern` matches; how many."""
    found = 0
    for line, text in col.scalar_lines(node):
        if pattern.search(text):
            col.add(template, name, line)
            found += 1
    return found


def require_mapping(parsed: ParsedFile) -> ParsedFile:
    """The parsed file; RuleFileError if it holds no YAML mapping (as `Source.parse`)."""
    if not any(isinstance(d.data, dict) for d in parsed.documents):
        kinds = sorted({type(d.data).__name__ for d in parsed.documents}) or ["empty"]
        raise RuleFileError(parsed.path, f"no YAML mapping in the file (documents: {', '.join(kinds)})")
    return parsed
