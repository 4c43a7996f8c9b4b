"""Reading rule files: one file (`process_file`), or many at once in parser processes.

A parser process parses and extracts the batches it is given and sends each result back at
once. pySigma's verdict on the rules it parsed (about a third of the work) comes last, once
every batch is done, so it is computed while the refresh writes the index instead of before.
"""

from __future__ import annotations

import gc
import multiprocessing
import queue
from dataclasses import dataclass
from typing import Any, Iterable

from .extract import Extraction, FileContext, extract_lolbas, extract_sigma
from .model import FileReport
from .parse import MAX_FILE_BYTES, RuleFileError, parse_yaml, read_text, sigma_errors

# one batch: (file, its bytes, pySigma's earlier verdict on the same blob or None)
Batch = list[tuple[FileContext, bytes, "list[str] | None"]]


@dataclass
class Processed:
    """One file read: its report, its mentions, and (until checked) the rules pySigma is to judge."""

    report: FileReport
    extraction: Extraction
    unchecked: list[Any] | None = None


def process_file(ctx: FileContext, raw: bytes, max_bytes: int = MAX_FILE_BYTES,
                 known_warnings: list[str] | None = None, defer_check: bool = False) -> Processed:
    """Parse and extract one rule file; never raises for bad content.

    known_warnings: pySigma's verdict on this very content from an earlier refresh (same blob),
    used instead of asking pySigma again. defer_check: leave the rule dicts in `unchecked`
    instead of asking pySigma now (a parser process asks once its batches are done).
    """
    report = FileReport(ctx.source, ctx.path, "indexed")
    unchecked = None
    try:
        parsed = parse_yaml(ctx.path, read_text(ctx.path, raw, max_bytes))
        if not any(isinstance(d.data, dict) for d in parsed.documents):
            kinds = sorted({type(d.data).__name__ for d in parsed.documents}) or ["empty"]
            raise RuleFileError(ctx.path, f"no YAML mapping in the file (documents: {', '.join(kinds)})")
        if ctx.source == "sigma":
            extraction = extract_sigma(ctx, parsed)
            if known_warnings is not None:
                report.warnings = list(known_warnings)
            elif defer_check:
                unchecked = [d.data for d in parsed.documents]
            else:
                report.warnings = sigma_errors(ctx.path, [d.data for d in parsed.documents])
        else:
            extraction = extract_lolbas(ctx, parsed)
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
    report.executables = sorted(extraction.executables())
    report.links, report.entry = extraction.links, extraction.entry
    return Processed(report, extraction, unchecked)


class ParserFailed(Exception):
    """A parser process died or failed outside any one file."""


class ParserPool:
    """Parser processes fed batches in order; results come back per batch, verdicts at the end.

        pool = ParserPool(2, max_bytes)
        results = pool.read(batches)   # [Processed] in batch order, pySigma verdicts pending
        pool.finish()                  # waits for the verdicts and fills report.warnings

    Processes are forked (the parent's imports are shared), die with the parent (Linux
    PR_SET_PDEATHSIG), and are terminated by `close` if the refresh stops early.
    """

    def __init__(self, jobs: int, max_bytes: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self._tasks: Any = ctx.Queue()
        self._results: Any = ctx.Queue()
        self._processes = [ctx.Process(target=_parser_main, args=(self._tasks, self._results, max_bytes),
                                       daemon=True, name=f"indexer-parser-{i}") for i in range(jobs)]
        for process in self._processes:
            process.start()
        self._batches: list[list[Processed]] = []
        self._verdicts: list[dict[tuple[int, int], list[str]]] = []

    def read(self, batches: Iterable[Batch], progress: Any = None) -> list[Processed]:
        """Every file of every batch, parsed and extracted; pySigma's verdicts still to come."""
        sent = 0
        for number, batch in enumerate(batches):
            self._tasks.put((number, batch))
            sent += 1
        for _ in self._processes:
            self._tasks.put(None)  # after the last batch: check what you parsed, then stop
        received: dict[int, list[Processed]] = {}
        while len(received) < sent:
            kind, number, payload = self._next()
            if kind == "verdicts":  # a process done with its batches while another is not
                self._verdicts.append(payload)
                continue
            received[number] = payload
            if progress is not None:
                progress.advance(len(payload))
        self._batches = [received[n] for n in range(sent)]
        return [item for batch in self._batches for item in batch]

    def finish(self) -> None:
        """Wait for pySigma's verdicts on every rule read and put them in the reports."""
        while len(self._verdicts) < len(self._processes):
            kind, _, verdicts = self._next()
            if kind != "verdicts":
                raise ParserFailed(f"parser process: unexpected {kind} after the last batch")
            self._verdicts.append(verdicts)
        for verdicts in self._verdicts:
            for (number, position), warnings in verdicts.items():
                self._batches[number][position].report.warnings = warnings
        self.close()

    def close(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for q in (self._tasks, self._results):
            q.close()
            q.cancel_join_thread()

    def _next(self) -> tuple[str, int, Any]:
        while True:
            try:
                message = self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in self._processes if p.exitcode not in (None, 0)]
                if dead:
                    raise ParserFailed(f"parser process {dead[0].name} died (exit code {dead[0].exitcode})") from None
                continue
            if message[0] == "failed":
                raise ParserFailed(f"parser process failed: {message[2]}")
            return message


def _parser_main(tasks: Any, results: Any, max_bytes: int) -> None:
    _die_with_parent()
    gc.disable()  # as in the parent during a refresh: few cycles, and the collector's passes cost
    pending: list[tuple[int, int, str, list[Any]]] = []  # rules whose verdict comes at the end
    try:
        while (task := tasks.get()) is not None:
            number, batch = task
            done = [process_file(ctx, raw, max_bytes, known, defer_check=True) for ctx, raw, known in batch]
            for position, item in enumerate(done):
                if item.unchecked is not None:  # the dicts stay here for pySigma; the parent gets the mentions
                    pending.append((number, position, item.report.path, item.unchecked))
                    item.unchecked = None
            results.put(("batch", number, done))
        verdicts = {(number, position): sigma_errors(path, documents)
                    for number, position, path, documents in pending}
        results.put(("verdicts", 0, verdicts))
    except BaseException as exc:  # report it rather than leave the parent waiting
        results.put(("failed", 0, f"{type(exc).__name__}: {exc}"))


def _die_with_parent() -> None:
    """Parser processes end when the refresh that started them is killed (Linux prctl)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
