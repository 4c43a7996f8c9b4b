"""Parse one rule file in one pass: YAML nodes with their lines, and the dicts.

PyYAML's C loader gives both the node tree (every scalar knows its line) and the constructed
dicts from the same parse. The Sigma plug-in hands pySigma the dicts, never the text (ten
times faster).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from .errors import RuleFileError
from .model import MAX_FILE_BYTES  # noqa: F401 (re-exported)

try:
    _SafeLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader  # type: ignore[misc]

_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
# the safe loader's implicit tags of a plain scalar, by its first character ("" if empty)
_ANY_FIRST = tuple(_SafeLoader.yaml_implicit_resolvers.get(None, ()))
_IMPLICIT = {
    first: tuple(resolvers) + _ANY_FIRST
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
    if first is not None
}
assert not _SafeLoader.yaml_path_resolvers, "a safe loader resolves no tag by path"


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """The safe loader, whose `resolve` gives the tags Resolver.resolve gives, without building a
    list of candidates for every node: the C loader composes Sigma and LOLBAS in 0.34 s of CPU
    instead of 0.40."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in _IMPLICIT.get(value[:1], _ANY_FIRST):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


MAX_NODES = 200_000


@dataclass
class Document:
    """One YAML document of a file: the constructed data and its node tree."""

    data: Any
    node: yaml.Node


# Where libyaml breaks lines, and where a file's lines end for people (LF, CRLF, a lone CR):
# NEL, LS and PS are line breaks to YAML only, so a file holding them has more YAML lines.
_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_FILE_BREAK = re.compile("\r\n|[\r\n]")


@dataclass
class ParsedFile:
    """A parsed file: its documents, and its lines as YAML counts them and as the file does."""

    path: str
    yaml_lines: list[str]
    lines: list[str]  # the file's lines: LF, CRLF or a lone CR ends one (editors, GitHub)
    documents: list[Document]
    _file_line: list[int] | None = None  # YAML line index -> file line number, when they differ

    def file_line(self, yaml_line: int) -> int:
        """The 1-based file line of a 0-based YAML line (a node's start_mark.line)."""
        if self._file_line is None:
            return yaml_line + 1
        return self._file_line[min(yaml_line, len(self._file_line) - 1)]


def split_lines(text: str) -> tuple[list[str], list[str], list[int] | None]:
    """(YAML lines, file lines, YAML line -> file line or None when both agree)."""
    file_lines = _FILE_BREAK.split(text) if "\r" in text else text.split("\n")
    if not any(ch in text for ch in "\x85\u2028\u2029"):
        return file_lines, file_lines, None
    mapping, file_line = [1], 1
    for match in _YAML_BREAK.finditer(text):
        if match.group() in ("\r\n", "\r", "\n"):
            file_line += 1
        mapping.append(file_line)
    return _YAML_BREAK.split(text), file_lines, mapping


def read_text(path: str, raw: bytes, max_bytes: int = MAX_FILE_BYTES) -> str:
    """Decode a rule file, refusing oversized and non-UTF-8 content."""
    if len(raw) > max_bytes:
        raise RuleFileError(path, f"file is {len(raw):,} bytes, over the {max_bytes:,}-byte limit")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RuleFileError(path, f"not valid UTF-8 (byte {exc.start})") from None


def parse_yaml(path: str, text: str) -> ParsedFile:
    """Parse every document of a YAML file, keeping nodes (for lines) and data."""
    loader = _Loader(text)
    documents: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            documents.append(Document(_data(path, loader, node, len(text)), node))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RuleFileError(path, f"invalid YAML: {exc.problem or exc.context}", line) from None
    except yaml.YAMLError as exc:
        raise RuleFileError(path, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise RuleFileError(path, "YAML nested too deeply") from None
    except RuleFileError:
        raise
    except Exception as exc:  # a value its tag cannot hold (2024-13-45, !!bool x): PyYAML raises anything
        raise RuleFileError(path, f"invalid YAML value: {type(exc).__name__}: {exc}") from None
    finally:
        loader.dispose()
    yaml_lines, lines, mapping = split_lines(text)
    return ParsedFile(path, yaml_lines, lines, documents, mapping)


class _Made(dict):  # type: ignore[type-arg]
    """id(node) -> the value built for it; whether the tree needs `_check_size` (a node reached
    twice, an alias; a mapping with fewer keys than pairs, a duplicate key), and whether it ran."""

    def __init__(self, path: str, root: yaml.Node) -> None:
        super().__init__()
        self.path, self.root = path, root
        self.suspect = self.checked = False

    def check(self) -> None:
        if not self.checked:
            self.checked = True
            _check_size(self.path, self.root)


def _data(path: str, loader: Any, root: yaml.Node, text_length: int) -> Any:
    """A document's data (`_construct`), refused as `_check_size` refuses it.

    `_check_size` walks the tree only where it may refuse it: a suspect tree, or a text of
    MAX_NODES / 2 characters or more (a YAML node takes at least half a character: `[:,:]` is
    seven), and before PyYAML's constructor changes the tree (merge keys). Otherwise, and before
    any error `_construct` raises, the answer is the one it gives when it always walks first.
    """
    made = _Made(path, root)
    try:
        data = _construct(loader, root, made)
    except Exception:
        made.check()
        raise
    if made.suspect or text_length >= MAX_NODES // 2:
        made.check()
    return data


def _construct(loader: Any, node: yaml.Node, made: _Made) -> Any:
    """The document's data, as `loader.construct_document(node)` gives it, about twice as fast.

    Rule files are plain strings, lists and mappings: those are built here; any other node
    (numbers, dates, booleans, merge keys, non-string keys, other tags) goes to PyYAML's own
    constructor, so the result is the same value for value. A node reached twice through an
    alias gives the same object twice, as in PyYAML (a recursive alias builds a recursive value,
    which `_check_size` then refuses).
    """
    tag = node.tag
    if tag == _STR and type(node) is yaml.ScalarNode:
        return node.value
    key = id(node)
    if key in made:
        made.suspect = True
        return made[key]
    if (
        tag == _MAP
        and type(node) is yaml.MappingNode
        and all(k.tag == _STR and type(k) is yaml.ScalarNode for k, _ in node.value)
    ):
        made[key] = mapping = {}
        for k, v in node.value:
            mapping[k.value] = _construct(loader, v, made)
        if len(mapping) != len(node.value):
            made.suspect = True
        return mapping
    if tag == _SEQ and type(node) is yaml.SequenceNode:
        made[key] = items = []
        items.extend(_construct(loader, v, made) for v in node.value)
        return items
    made.check()  # PyYAML's constructor merges `<<` keys into the tree
    made[key] = value = loader.construct_object(node, deep=True)
    return value


def _check_size(path: str, root: yaml.Node) -> None:
    """Refuse documents whose alias expansion or size would explode later walks."""
    seen = 0
    stack = [root]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise RuleFileError(path, f"YAML document expands to over {MAX_NODES:,} nodes (alias bomb?)")
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        raise RuleFileError(path, f"duplicate key '{key.value}'", key.start_mark.line + 1)
                    keys.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


# --- node helpers -------------------------------------------------------------------------


def mapping_items(node: yaml.Node | None) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    """(key text, key node, value node) of a mapping node; nothing for other nodes."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield key.value, key, value


def child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node under `key` of a mapping node, or None."""
    for name, _, value in mapping_items(node):
        if name == key:
            return value
    return None


def scalars(node: yaml.Node | None) -> Iterator[yaml.ScalarNode]:
    """Every scalar under a node, in document order (nested lists flattened)."""
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from scalars(item)
    elif isinstance(node, yaml.MappingNode):
        for _, value in node.value:
            yield from scalars(value)


def scalar_text(node: yaml.Node | None) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null" else ""
