"""The errors every layer raises and the exit codes they become: one hierarchy, one table.

As pySigma's `SigmaError` carries a `SigmaRuleLocation`, an `IndexerError` carries its reason
and, apart from it, where it happened (a file and line, or a source). `indexer.cli.main` is the
one place that turns one into an exit code and one line on stderr. The codes are the README's
exit-code table (tests/test_reliability.py checks the two agree). Imports nothing of the package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


class ExitCode(enum.IntEnum):
    """The process exit codes of every command (README, "exit code | meaning")."""

    OK = 0  # done; `search`: something was found
    FILE_ERRORS = 1  # done, but some rule files could not be read
    NOT_FOUND = 1  # `search`: nothing found; `show`: no such rule or binary (an alias of 1)
    SOURCE_FAILED = 2  # a source could not be fetched, or a parser process died
    LOCKED = 3  # another refresh holds the lock
    USAGE = 4  # a usage error; no index yet or a damaged one
    INTERNAL = 5  # an error nobody expected (the traceback in a log file)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    BROKEN_PIPE = 141  # the reader of the output went away (128 + SIGPIPE)


@dataclass(frozen=True)
class Location:
    """Where an error is: a file (a path inside a repository, a data directory) and, if known, a line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


class IndexerError(Exception):
    """An error the user can act on: a reason, where it happened, and the exit code it ends with."""

    exit_code: ClassVar[ExitCode] = ExitCode.USAGE

    def __init__(self, reason: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = Location(path, line) if path is not None else None

    @property
    def path(self) -> str | None:
        return self.location.path if self.location else None

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    @property
    def where(self) -> str:
        """What the message starts with: the location, or "" for none."""
        return str(self.location) if self.location else ""

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


class UsageError(IndexerError):
    """A command asked for something it cannot do: a bad option value, a refused URL, an unwritable output."""

    exit_code = ExitCode.USAGE


class NotFound(IndexerError):
    """What was asked for is not in the index (`show` of an unknown rule or binary)."""

    exit_code = ExitCode.NOT_FOUND


class IndexUnavailable(IndexerError):
    """No usable index in a data directory: none yet, another version's, or damaged (model.IndexMissing)."""

    exit_code = ExitCode.USAGE


class LockHeld(IndexerError):
    """Another refresh holds the data directory's lock (refresh.Locked)."""

    exit_code = ExitCode.LOCKED


class SourceFailure(IndexerError):
    """A source that cannot be fetched or read: unreachable, missing branch, lost object (sources.SourceError)."""

    exit_code = ExitCode.SOURCE_FAILED


class ParserFailure(IndexerError):
    """A parser process died or failed outside any one file (parsers.ParserFailed)."""

    exit_code = ExitCode.SOURCE_FAILED


class RuleFileError(IndexerError):
    """A rule file that cannot be read: its path and, where known, the line. The refresh goes on
    without it and ends with exit code 1."""

    exit_code = ExitCode.FILE_ERRORS

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        super().__init__(reason, path, line)
