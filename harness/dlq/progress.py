"""What `harness dlq export`, `replay` and `reproduce` show while they work and when they
are done: a progress bar on stderr (only on a terminal, so pipes and CI logs stay plain) and
a summary table (dead letters by reason; outcomes per target; what reproduced dead letters
did). Built on rich; the commands themselves know nothing of either, they only report each
record or outcome."""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import IO, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .records import DeadLetterRecord
from .replay import ReplayOutcome, ReplayReport
from .reproduce import Attempt, Reproduction

COLUMNS = (
    ("replayed", ("replayed", "would-replay")),
    ("skipped", ("skipped",)),
    ("failed", ("failed",)),
    ("not attempted", ("untouched",)),
)


class _Bar:
    """A transient rich progress bar on stderr, disabled when stderr is not a terminal."""

    def __init__(self, total: int | None, console: Console | None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self._total = total
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._progress.start()
        self._task = self._progress.add_task(self._description(), total=self._total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def _advance(self) -> None:
        assert self._task is not None, "use the progress bar as a context manager"
        self._progress.update(self._task, advance=1, description=self._description())

    def _description(self) -> str:
        raise NotImplementedError


class ReplayProgress(_Bar):
    """`with ReplayProgress(total) as progress: replay(..., on_outcome=progress.update)`.

    ``total`` is how many dead letters will be looked at when known (an export file), else
    None: the bar then counts without an end."""

    def __init__(self, total: int | None, *, console: Console | None = None) -> None:
        super().__init__(total, console)
        self._replayed = 0
        self._failed = 0

    def update(self, outcome: ReplayOutcome) -> None:
        if outcome.outcome in ("replayed", "would-replay"):
            self._replayed += 1
        elif outcome.outcome in ("failed", "untouched"):
            self._failed += 1
        self._advance()

    def _description(self) -> str:
        return f"dead letters: {self._replayed} replayed, {self._failed} failed"


class ExportProgress(_Bar):
    """Counts exported dead letters, and their reasons for the summary table."""

    def __init__(self, total: int | None = None, *, console: Console | None = None) -> None:
        super().__init__(total, console)
        self.reasons: Counter[str] = Counter()

    def update(self, record: DeadLetterRecord) -> None:
        self.reasons[record.dead_letter_reason or "(none)"] += 1
        self._advance()

    def _description(self) -> str:
        return f"exported {sum(self.reasons.values())}"

    def table(self) -> Table:
        table = Table(title="exported dead letters by reason")
        table.add_column("DeadLetterReason")
        table.add_column("count", justify="right")
        for reason, count in self.reasons.most_common():
            table.add_row(reason, str(count))
        return table


class ReproduceProgress(_Bar):
    """Counts reproduced dead letters by result."""

    def __init__(self, total: int, *, console: Console | None = None) -> None:
        super().__init__(total, console)
        self.results: Counter[str] = Counter()

    def update(self, reproduction: Reproduction) -> None:
        self.results[reproduction.result] += 1
        self._advance()

    def _description(self) -> str:
        done = ", ".join(f"{n} {r}" for r, n in self.results.most_common())
        return f"reproduced: {done or 'starting the local system'}"


TRACEBACK_LINES = 12
"""The last lines of a traceback are shown (where it was raised); --json keeps all of it."""


def print_reproduction(reproduction: Reproduction, console: Console) -> None:
    """One dead letter: its headline, then each attempt with error, traceback, logs and AI
    calls."""
    was = reproduction.original_reason or "(no reason)"
    console.print(f"[bold]{reproduction.headline()}[/bold]  (died as {was})", highlight=False)
    for number, attempt in enumerate(reproduction.attempts, 1):
        _print_attempt(number, attempt, console)
    if reproduction.also_ran:
        console.print(f"  also ran: {', '.join(reproduction.also_ran)}", highlight=False)


def _print_attempt(number: int, attempt: Attempt, console: Console) -> None:
    settled = attempt.settlement or "not settled"
    if attempt.dead_letter_reason:
        settled += f" {attempt.dead_letter_reason}"
    took = f"{attempt.duration:.2f}s" if attempt.duration is not None else "?"
    console.print(
        f"  attempt {number}: msg={attempt.message_id} dc={attempt.delivery_count} "
        f"{attempt.outcome} -> {settled} in {took} (broker time {attempt.broker_time})",
        highlight=False,
        markup=False,
    )
    if attempt.error:
        console.print(f"    error: {attempt.error}", highlight=False, markup=False)
    for call in attempt.ai_calls:
        console.print(
            f"    AI {call['method']} {call['deployment'] or call['path']} -> {call['status']} "
            f"{call['outcome']} ({call['promptTokens']}+{call['completionTokens']} tokens)",
            highlight=False,
            markup=False,
        )
    for line in attempt.logs:
        _print_block(line, console)
    if attempt.traceback:
        _print_block(attempt.traceback, console)


def _print_block(text: str, console: Console) -> None:
    lines = text.rstrip().splitlines()
    if len(lines) > TRACEBACK_LINES + 1:  # the first line says what, the last ones where
        cut = len(lines) - 1 - TRACEBACK_LINES
        lines = [lines[0], f"... ({cut} lines)", *lines[-TRACEBACK_LINES:]]
    for line in lines:
        console.print(f"    | {line}", highlight=False, markup=False)


def reproduce_table(results: list[Reproduction]) -> Table:
    """Rows: how the dead letters had died; columns: what they did here."""
    kinds = sorted({r.result for r in results})
    rows: dict[str, Counter[str]] = {}
    for r in results:
        rows.setdefault(r.original_reason or "(none)", Counter())[r.result] += 1
    table = Table(title="reproduced dead letters: died as (rows) -> ended here as (columns)")
    table.add_column("DeadLetterReason")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for reason, counts in sorted(rows.items()):
        table.add_row(reason, *(str(counts[k]) for k in kinds))
    return table


def summary_table(report: ReplayReport) -> Table:
    """One row per target: how many were replayed, skipped, failed, not attempted."""
    verb = "would replay" if report.dry_run else "replayed"
    table = Table(title="replay summary")
    table.add_column("target")
    for name, _ in COLUMNS:
        table.add_column(verb if name == "replayed" else name, justify="right")
    for target, counts in report.by_target().items():
        table.add_row(target, *(str(sum(counts[o] for o in kinds)) for _, kinds in COLUMNS))
    return table


def print_summary(report: ReplayReport, file: IO[str] | None = None) -> None:
    """The table, if anything was looked at, on stdout (or ``file``)."""
    if report.outcomes:
        Console(file=file, soft_wrap=True).print(summary_table(report))
