"""Reading rule files: one file (`process_file`), or many in this process or in parser processes.

Reading many files takes three steps, because bare names ("rundll32") are resolved against the
executables every file names (known only once all are read), and because pySigma's verdicts
(about a third of the work) are not needed until the index is written:

    reader = ParserPool(2, max_bytes)       # or InlineReader(max_bytes): the same three steps
    reader.guess(previous_stems)             # optional: resolve with these as soon as all is read
    reports = reader.read(batches)           # parse and extract; reports in batch order
    reader.resolve(stems)                    # bare names and index rows: started, returns at once
    found = reader.mentions()                # each file's mentions as index rows, same order
    reader.finish()                          # pySigma's verdicts into the reports

Parser processes keep what they extracted between the steps: only reports and index rows
cross between processes, and the verdicts are computed while the refresh writes the index.
A guess (the stems of the index being replaced) lets the processes make the rows while the
refresh still collects the reports; `resolve` keeps them when the stems turn out the same
(a full build of an unchanged corpus, most refreshes) and has them made again otherwise.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Iterable

from .errors import ParserFailure
from .extract import Extraction, FileContext, infer
from .codec import Row, mention_row, verdict_row
from .model import FileReport, Mention
from .parse import MAX_FILE_BYTES, RuleFileError, read_text
from .sources import get
from .verdicts import rule_verdicts

# one batch: (file, its bytes, pySigma's earlier verdict on the same blob or None)
Batch = list[tuple[FileContext, bytes, "list[str] | None"]]
# bare stem -> executable, for Windows names, Unix ones and loaded DLLs (names.known_stems)
Stems = tuple[dict[str, str], dict[str, str], dict[str, str]]


@dataclass
class Processed:
    """One file read: its report, its mentions, and (until checked) the rules pySigma is to judge."""

    report: FileReport
    extraction: Extraction
    unchecked: list[Any] | None = None


def process_file(
    ctx: FileContext,
    raw: bytes,
    max_bytes: int = MAX_FILE_BYTES,
    known_warnings: list[str] | None = None,
    defer_check: bool = False,
) -> Processed:
    """Parse and extract one file with its source's plug-in; never raises for bad content.

    known_warnings: the source's check (pySigma's verdict) on this very content from an earlier refresh (same blob),
    used instead of asking pySigma again. defer_check: leave the rule dicts in `unchecked`
    instead of asking pySigma now (a parser process asks once its batches are done).
    """
    report = FileReport(ctx.source, ctx.path, "indexed")
    unchecked = None
    try:
        source = get(ctx.source)
        parsed = source.parse(ctx.path, read_text(ctx.path, raw, max_bytes))
        extraction = source.extract(ctx, parsed)
        if source.checker:
            if known_warnings is not None:
                report.warnings = list(known_warnings)
            elif defer_check:
                unchecked = [d.data for d in parsed.documents]
            else:
                report.warnings = source.check(ctx.path, [d.data for d in parsed.documents])
    except RuleFileError as exc:
        report.status, report.reason = "error", exc.reason if exc.line is None else f"line {exc.line}: {exc.reason}"
        return Processed(report, Extraction())
    except RecursionError:
        report.status, report.reason = "error", "structure nested too deeply"
        return Processed(report, Extraction())
    except Exception as exc:  # a shape no extractor expected: this file fails, the refresh goes on
        report.status, report.reason = "error", f"could not be read: {type(exc).__name__}: {exc}"[:300]
        return Processed(report, Extraction())
    report.rule_ids = list(dict.fromkeys(extraction.rule_ids))
    report.executables = sorted(extraction.executables()) if source.feeds_stems else []
    report.links, report.entry = extraction.links, extraction.entry
    report.aliases = extraction.alias_pairs()
    report.title = source.title(parsed)
    report.depends = sorted(set(extraction.depends))
    if extraction.warnings:
        report.warnings = list(dict.fromkeys([*extraction.warnings, *report.warnings]))
    return Processed(report, extraction, unchecked)


@dataclass
class FileMentions:
    """A file's mentions, explicit and inferred, as index rows (sorted as mentions sort), and
    its verdict on each binary they name."""

    rows: list[Row]
    binaries: list[str]
    verdicts: list[Row]


def file_mentions(extraction: Extraction, stems: Stems) -> FileMentions:
    """Add the bare names `stems` resolve to the explicit mentions; make them index rows."""
    windows, unix, modules = stems
    inferred = infer(extraction.candidates, windows, unix, extraction.mentions, extraction.own_stems, modules)
    mentions = sorted(extraction.mentions + inferred, key=Mention.sort_key)
    verdicts = rule_verdicts(m.__dict__ for m in mentions)
    return FileMentions(
        [mention_row(m) for m in mentions], sorted({m.binary for m in mentions}), [verdict_row(v) for v in verdicts]
    )


class InlineReader:
    """The three steps in this process (a few files: no processes to start)."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._read: list[Processed] = []
        self._stems: Stems = ({}, {}, {})

    def read(self, batches: Iterable[Batch], progress: Any = None) -> list[FileReport]:
        for batch in batches:
            self._read += [process_file(ctx, raw, self._max_bytes, known) for ctx, raw, known in batch]
            if progress is not None:
                progress.advance(len(batch))
        return self.reports

    @property
    def reports(self) -> list[FileReport]:
        """The reports of the files read, in order."""
        return [item.report for item in self._read]

    def guess(self, stems: Stems) -> None:
        """Nothing to start early: the rows are made when asked for."""

    def resolve(self, stems: Stems) -> None:
        self._stems = stems

    def mentions(self) -> list[FileMentions]:
        return [file_mentions(item.extraction, self._stems) for item in self._read]

    def finish(self) -> None:
        """Nothing to wait for: pySigma was asked while reading."""

    def close(self) -> None:
        self._read = []


class ParserFailed(ParserFailure):
    """A parser process died or failed outside any one file."""


class ParserPool:
    """The three steps in parser processes fed batches in order (first come, first served).

    Processes are forked (the parent's imports are shared) and die with the parent (Linux
    PR_SET_PDEATHSIG). Each sends its results through its own pipe: one that dies, even halfway
    through a message, ends its pipe, and the refresh fails with ParserFailed instead of
    waiting. `close` terminates whatever still runs.
    """

    def __init__(self, jobs: int, max_bytes: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self._tasks: Any = ctx.Queue()
        self._stems: list[Any] = [ctx.Queue() for _ in range(jobs)]  # a Queue's put never blocks
        for queue in (self._tasks, *self._stems):
            queue.cancel_join_thread()  # at exit, never wait to hand data to a dead process
        pipes = [ctx.Pipe(duplex=False) for _ in range(jobs)]  # (parent's end, process's end)
        self._processes = []
        for number, (stems, (_, sender)) in enumerate(zip(self._stems, pipes)):
            inherited = [end for ends in pipes for end in ends if end is not sender]
            process = ctx.Process(
                target=_parser_main,
                name=f"indexer-parser-{number}",
                daemon=True,
                args=(self._tasks, stems, sender, inherited, max_bytes, os.getpid()),
            )
            process.start()
            self._processes.append(process)
        for _, sender in pipes:
            sender.close()  # only the process holds its end: when it dies the parent reads EOF
        self._results: dict[Any, Any] = {receiver: process for (receiver, _), process in zip(pipes, self._processes)}
        self._reports: list[list[FileReport]] = []
        self._ahead: list[tuple[str, int, Any]] = []
        self._guess: Stems | None = None
        self._guessed_right = False

    def guess(self, stems: Stems) -> None:
        """Have the processes make the index rows with `stems` once every batch is read, before
        `resolve` is called (call before `read`)."""
        self._guess = stems
        for queue in self._stems:
            queue.put(("guess", stems))

    def read(self, batches: Iterable[Batch], progress: Any = None) -> list[FileReport]:
        """Every file of every batch parsed and extracted; its report, in batch order."""
        sent = 0
        for number, batch in enumerate(batches):
            self._tasks.put((number, batch))
            sent += 1
        for _ in self._processes:
            self._tasks.put(None)  # no more batches: wait for the stems
        received: dict[int, list[FileReport]] = {}
        for _ in range(sent):
            number, reports = self._next("batch")
            received[number] = reports
            if progress is not None:
                progress.advance(len(reports))
        self._reports = [received[n] for n in range(sent)]
        return self.reports

    @property
    def reports(self) -> list[FileReport]:
        """The reports of the files read, in order."""
        return [report for batch in self._reports for report in batch]

    def resolve(self, stems: Stems) -> None:
        """Have the processes resolve bare names with `stems` and make the index rows (returns at
        once); rows made with a guess equal to `stems` are kept."""
        self._guessed_right = self._guess is not None and self._guess == stems
        for queue in self._stems:
            queue.put(("same", None) if self._guessed_right else ("resolve", stems))

    def mentions(self) -> list[FileMentions]:
        """Every file's mentions, in the order of `read`, once `resolve` was called."""
        found: dict[tuple[int, int], FileMentions] = {}
        for _ in self._processes:
            if self._guess is not None:
                guessed = self._next("guessed")[1]
                if self._guessed_right:
                    found.update(guessed)
                    continue
            found.update(self._next("mentions")[1])
        return [
            found[(number, position)] for number, batch in enumerate(self._reports) for position in range(len(batch))
        ]

    def finish(self) -> None:
        """Wait for pySigma's verdicts on every rule read and put them in the reports."""
        for _ in self._processes:
            for (number, position), warnings in self._next("verdicts")[1].items():
                self._reports[number][position].warnings = warnings
        self.close()

    def close(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for receiver in self._results:
            receiver.close()
        for queue in (self._tasks, *self._stems):
            queue.close()
        self._processes, self._results = [], {}

    def _next(self, kind: str) -> tuple[int, Any]:
        """The next message of `kind`; a process ahead of the others may already send the next kind."""
        while True:
            for message in self._ahead:
                if message[0] == kind:
                    self._ahead.remove(message)
                    return message[1], message[2]
            if not self._results:
                raise ParserFailed(f"parser processes ended without sending {kind}")
            for receiver in wait(list(self._results)):
                process = self._results[receiver]
                try:
                    message = receiver.recv()
                except (EOFError, OSError):
                    del self._results[receiver]
                    process.join(5)
                    raise ParserFailed(f"parser process {process.name} died (exit code {process.exitcode})") from None
                if message[0] == "failed":
                    raise ParserFailed(f"parser process {process.name} failed: {message[2]}")
                if message[0] == "verdicts":  # its last message
                    del self._results[receiver]
                    receiver.close()
                self._ahead.append(message)


def _parser_main(tasks: Any, stems: Any, results: Any, inherited: list[Any], max_bytes: int, parent: int) -> None:
    _die_with_parent(parent)
    for end in inherited:  # the other processes' pipes: theirs alone to hold
        end.close()
    gc.disable()  # as in the parent during a refresh: parsing and extraction make no cycles
    extracted: list[tuple[int, int, Extraction]] = []
    unchecked: list[tuple[int, int, FileContext, list[Any]]] = []  # rules whose verdict comes last
    try:
        while (task := tasks.get()) is not None:
            number, batch = task
            reports = []
            for position, (ctx, raw, known) in enumerate(batch):
                item = process_file(ctx, raw, max_bytes, known, defer_check=True)
                if item.unchecked is not None:
                    unchecked.append((number, position, ctx, item.unchecked))
                extracted.append((number, position, item.extraction))
                reports.append(item.report)
            results.send(("batch", number, reports))
        kind, known_stems = stems.get()
        if kind == "guess":
            results.send(("guessed", 0, _rows(extracted, known_stems)))
            kind, known_stems = stems.get()
        if kind == "resolve":
            results.send(("mentions", 0, _rows(extracted, known_stems)))
        del extracted
        # pySigma's rule objects hold reference cycles, left to the process's end: 17 MB more
        # for half of Sigma's rules, and pySigma 10% faster than with the collector scanning them
        results.send(
            (
                "verdicts",
                0,
                {
                    (number, position): get(ctx.source).check(ctx.path, documents)
                    for number, position, ctx, documents in unchecked
                },
            )
        )
    except BaseException as exc:  # report it rather than leave the parent waiting
        results.send(("failed", 0, f"{type(exc).__name__}: {exc}"))


def _rows(extracted: list[tuple[int, int, Extraction]], stems: Stems) -> dict[tuple[int, int], FileMentions]:
    return {(number, position): file_mentions(extraction, stems) for number, position, extraction in extracted}


def _die_with_parent(parent: int) -> None:
    """Parser processes end when the refresh that started them is killed (Linux prctl)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
