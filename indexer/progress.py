"""Progress for long work: Rich bars on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .refresh import Progress
from .text import printable, redact_text


class LogProgress(Progress):
    """Plain timestamped lines on stderr (and a log file): fit for cron and CI logs."""

    def __init__(self, quiet: bool = False, verbose: bool = False, log_file: Path | None = None) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self._file: TextIO | None = open(log_file, "a", encoding="utf-8") if log_file else None
        self._stage = ""
        self._total = 0
        self._done = 0
        self._started = time.monotonic()

    def _emit(self, message: str, always: bool = False) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {printable(redact_text(message))}"
        if self._file:
            self._file.write(line + "\n")
            self._file.flush()
        if not self.quiet or always:
            print(line, file=sys.stderr, flush=True)

    def stage(self, name: str, total: int) -> None:
        self._finish_stage()
        self._stage, self._total, self._done, self._started = name, total, 0, time.monotonic()
        if self.verbose:
            self._emit(f"{name}: {total} to do")

    def advance(self, count: int = 1) -> None:
        self._done += count

    def log(self, message: str) -> None:
        self._emit(message, always=message.startswith("error"))

    def _finish_stage(self) -> None:
        if self._stage:
            self._emit(f"{self._stage}: {self._done}/{self._total} in {time.monotonic() - self._started:.2f}s")
            self._stage = ""

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish_stage()
        if self._file:
            self._file.close()


class BarProgress(LogProgress):
    """Rich progress bars on a terminal; messages printed above them."""

    def __init__(self, log_file: Path | None = None, verbose: bool = False) -> None:
        super().__init__(quiet=False, verbose=verbose, log_file=log_file)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

        self._bars = RichProgress(
            TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
        )
        self._task: Any = None

    def stage(self, name: str, total: int) -> None:
        self._task = self._bars.add_task(name, total=total)

    def advance(self, count: int = 1) -> None:
        if self._task is not None:
            self._bars.advance(self._task, count)

    def log(self, message: str) -> None:
        message = printable(redact_text(message))
        if self._file:
            self._file.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
        self._bars.console.print(message, markup=False, highlight=False)

    def __enter__(self) -> "BarProgress":
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()
        if self._file:
            self._file.close()


def make_progress(quiet: bool, verbose: bool, log_file: Path | None) -> LogProgress:
    """Bars on an interactive terminal, log lines otherwise."""
    if not quiet and sys.stderr.isatty():
        return BarProgress(log_file=log_file, verbose=verbose)
    return LogProgress(quiet=quiet, verbose=verbose, log_file=log_file)
