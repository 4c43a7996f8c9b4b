"""The `Source` interface: what one repository is, which of its files are read and how."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..extract import Extraction, FileContext
from ..parse import ParsedFile, RuleFileError, parse_yaml

if TYPE_CHECKING:
    from ..repository import SourceSpec, TreeEntry


class Source:
    """One source; a plug-in subclasses it and registers one instance (`sources.register`).

    A subclass sets `name`, `default_url`, `web_url`, `branch` and `paths` (the files it reads,
    matched against their path in the repository) and implements `extract`.
    """

    name: str = ""
    default_url: str = ""  # upstream git URL, e.g. "https://github.com/SigmaHQ/sigma.git"
    web_url: str = ""  # "https://github.com/SigmaHQ/sigma" (links to lines)
    branch: str = "master"
    paths: re.Pattern[str] = re.compile(r"(?!)")  # the files it reads (none by default)
    checker: str = ""  # what `check` asks ("pySigma 2.0.1"), "" if it checks nothing
    history: bool = False  # keep the history of its paths (renames, content of former paths)
    detects: bool = False  # its files are detection rules (`changes` lists what they start detecting)
    # the executables its files show (process names, LOLBAS entries) are names bare words of every
    # source may resolve to (`names.known_stems`); a source that would change other sources'
    # bare names (Elastic's 2,192 rules name `native.exe`: "a native Windows component") says no
    feeds_stems: bool = True

    former_repositories: tuple[str, ...] = ()  # "owner/name" it was published under before (links name them)

    def repositories(self) -> frozenset[str]:
        """The GitHub repositories ("owner/name", lower case) whose rule links resolve to this source."""
        own = "/".join(self.web_url.rstrip("/").split("/")[-2:])
        return frozenset(r.lower() for r in (own, *self.former_repositories) if r)

    def wants(self, path: str) -> bool:
        """Whether the file at `path` in the repository is one this source reads."""
        return bool(self.paths.match(path))

    def skip_reason(self, entry: TreeEntry, max_bytes: int) -> str:
        """Why a file of the tree is not read ('' if it is): a full build reports it skipped."""
        if entry.mode == "120000":
            return "symbolic link: not followed"
        if entry.mode == "160000":
            return "submodule: not followed"
        if not self.wants(entry.path):
            if entry.path.rsplit("/", 1)[-1].upper().startswith(("LICENSE", "COPYING")):
                return "license file (read for the license, not a rule)"
            if entry.path.endswith(("Template.yml", "template.yml")):
                return "template, not an entry"
            return "outside the rule folders"
        if not entry.mode.startswith("100"):
            return f"not a regular file (mode {entry.mode})"
        if entry.size > max_bytes:
            return f"file is {entry.size:,} bytes, over the {max_bytes:,}-byte limit"
        return ""

    def parse(self, path: str, text: str) -> ParsedFile:
        """The file's documents with their lines; RuleFileError if it holds no YAML mapping."""
        parsed = parse_yaml(path, text)
        if not any(isinstance(d.data, dict) for d in parsed.documents):
            kinds = sorted({type(d.data).__name__ for d in parsed.documents}) or ["empty"]
            raise RuleFileError(path, f"no YAML mapping in the file (documents: {', '.join(kinds)})")
        return parsed

    def extract(self, ctx: FileContext, parsed: ParsedFile) -> Extraction:
        """The file's mentions, rule ids, links and entry."""
        raise NotImplementedError(f"source {self.name!r} does not extract")

    def shared(self, path: str) -> bool:
        """Whether the file at `path` is one the source's other files read (Splunk's macros).

        Before any file of the source is read, the refresh hands every shared file of the tree
        being read to `share`; a file whose extraction used one lists it in `Extraction.depends`,
        and a change to it reads that file again (incremental == full).
        """
        return False

    def share(self, files: dict[str, bytes]) -> None:
        """The shared files of the tree being read (path -> content), before any file is read."""

    def provides(self, path: str, content: bytes) -> list[str]:
        """What a shared file with this content answers for besides its own path, as entries of
        `Extraction.depends` (Splunk: `macros/NAME.yml` of the macro it defines, whatever its
        file's name): a change to the file, its content before and after, reads again the files
        that depend on any of these too."""
        return []

    def check(self, path: str, documents: list[Any]) -> list[str]:
        """Warnings about the file's documents (pySigma's for Sigma); none by default."""
        return []

    def title(self, parsed: ParsedFile) -> str:
        """The file's title: its first document's `title` or `Name`."""
        return next(
            (
                str(d.data.get("title") or d.data.get("Name"))
                for d in parsed.documents
                if isinstance(d.data, dict) and (d.data.get("title") or d.data.get("Name"))
            ),
            "",
        )

    def spec(self, url: str | None = None, branch: str | None = None, clone: Path | None = None) -> SourceSpec:
        """Where to fetch it from: `url`, $INDEXER_<NAME>_URL, the URL of the existing `clone`,
        or `default_url`, in that order; `branch` or the source's own."""
        from ..repository import SourceSpec  # GitPython: loaded by a refresh, not by every user of the registry

        return SourceSpec.resolve(self.name, self.default_url, self.web_url, branch or self.branch, url, clone)
