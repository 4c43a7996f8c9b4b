"""What a generation holds besides mentions: each source's `SourceState` and every file's report.

The refresh plans from the previous generation's `State` and writes the next one; the index
stores it as `state.json`. This module imports nothing heavy (no git, no YAML).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .jsontext import dumps, loads
from .model import MAX_FILE_BYTES, FileReport


@dataclass(frozen=True)
class SourceState:
    """A source as a generation indexed it: the commit, where it came from, its license."""

    commit: str
    url: str = ""  # credentials removed (text.redact)
    branch: str = ""
    web_url: str = ""  # links to lines ("https://github.com/SigmaHQ/sigma")
    license: str = ""  # "DRL 1.1"
    license_path: str = ""  # "LICENSE"
    committed: str = ""  # the commit's date, ISO 8601

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceState":
        """A source as stored (keys it does not know are left out); ValueError if it is not one."""
        values = {f.name: data.get(f.name, "") for f in fields(cls)}
        if not all(isinstance(v, str) for v in values.values()):
            raise ValueError(f"not a source state: {str(data)[:80]}")
        return cls(**values)


@dataclass
class State:
    """What a generation holds besides mentions: sources and the report of every file."""

    sources: dict[str, SourceState] = field(default_factory=dict)  # name -> commit, url, license
    files: dict[str, FileReport] = field(default_factory=dict)  # fileref -> report
    built_at: float = 0.0
    executables: list[str] = field(default_factory=list)  # names bare stems resolve to
    checker: str = ""  # what gave the files' warnings ("pySigma 2.0.1")
    max_file_bytes: int = MAX_FILE_BYTES  # files over it were skipped

    def source_dicts(self) -> dict[str, dict[str, str]]:
        """The sources as plain dicts (meta.json, `stats`)."""
        return {name: source.to_dict() for name, source in self.sources.items()}

    def to_json(self) -> str:
        return dumps(
            {
                "sources": self.source_dicts(),
                "files": {k: v.to_dict() for k, v in sorted(self.files.items())},
                "built_at": self.built_at,
                "executables": sorted(self.executables),
                "checker": self.checker,
                "max_file_bytes": self.max_file_bytes,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "State":
        """The state as written; ValueError if the text is not one (a damaged file)."""
        data = loads(text)
        if not (
            isinstance(data, dict)
            and _dict_of(data.get("sources", {}), dict)
            and _dict_of(data.get("files", {}), dict)
            and _list_of(data.get("executables", []), str)
            and isinstance(data.get("checker", ""), str)
            and isinstance(data.get("built_at", 0.0), (int, float))
            and isinstance(data.get("max_file_bytes", MAX_FILE_BYTES), int)
        ):
            raise ValueError("not an index state")
        return cls(
            sources={k: SourceState.from_dict(v) for k, v in data.get("sources", {}).items()},
            files={k: FileReport.from_dict(v) for k, v in data.get("files", {}).items()},
            built_at=data.get("built_at", 0.0),
            executables=data.get("executables", []),
            checker=data.get("checker", ""),
            max_file_bytes=data.get("max_file_bytes", MAX_FILE_BYTES),
        )


def _dict_of(value: Any, kind: type) -> bool:
    return isinstance(value, dict) and all(isinstance(v, kind) for v in value.values())


def _list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)
