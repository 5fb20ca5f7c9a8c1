"""`harness dlq replay`'s progress bar and summary table (harness/dlq/progress.py), on
reports built by hand: what is shown must add up to what the report says happened."""

from __future__ import annotations

import io
import re

from rich.console import Console

from harness.dlq.progress import ExportProgress, ReplayProgress, print_summary
from harness.dlq.records import DeadLetterRecord
from harness.dlq.replay import Outcome, ReplayOutcome, ReplayReport


def _report(*rows: tuple[Outcome, str], dry_run: bool = False) -> ReplayReport:
    report = ReplayReport(dry_run=dry_run)
    report.outcomes = [ReplayOutcome(o, t, n, f"m{n}") for n, (o, t) in enumerate(rows)]
    return report


def _row(text: str, target: str) -> list[int]:
    [line] = [line for line in text.splitlines() if f" {target} " in line]
    return [int(n) for n in re.findall(r"\b\d+\b", line.split(target, 1)[1])]


def test_the_table_counts_each_outcome_per_target() -> None:
    report = _report(
        ("replayed", "jobs"),
        ("replayed", "jobs"),
        ("skipped", "jobs"),
        ("failed", "events"),
        ("untouched", "events"),
    )
    out = io.StringIO()
    print_summary(report, out)
    text = out.getvalue()
    assert _row(text, "jobs") == [2, 1, 0, 0]
    assert _row(text, "events") == [0, 0, 1, 1]
    assert "not attempted" in text


def test_a_dry_run_says_would_replay_and_nothing_looked_at_prints_no_table() -> None:
    out = io.StringIO()
    print_summary(_report(("would-replay", "jobs"), dry_run=True), out)
    assert "would replay" in out.getvalue() and _row(out.getvalue(), "jobs")[0] == 1
    empty = io.StringIO()
    print_summary(ReplayReport(), empty)
    assert empty.getvalue() == ""


def test_progress_advances_per_outcome_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with ReplayProgress(3, console=console) as progress:
        for outcome in ("replayed", "failed", "skipped"):
            progress.update(ReplayOutcome(outcome, "jobs", 1, "m"))  # type: ignore[arg-type]
        task = progress._progress.tasks[0]  # the bar's own state
        assert (task.completed, task.total) == (3, 3)
        assert task.description == "dead letters: 1 replayed, 1 failed"


def test_no_progress_is_drawn_when_stderr_is_not_a_terminal() -> None:
    screen = io.StringIO()
    with ReplayProgress(None, console=Console(file=screen, force_terminal=False)) as progress:
        progress.update(ReplayOutcome("replayed", "jobs", 1, "m"))
    assert screen.getvalue() == ""


def test_export_counts_reasons_for_its_table() -> None:
    screen = io.StringIO()
    with ExportProgress(console=Console(file=screen, force_terminal=True)) as bar:
        for reason in ("AiTimeout", "AiTimeout", None):
            bar.update(DeadLetterRecord("q/$DeadLetterQueue", b"{}", dead_letter_reason=reason))
    out = io.StringIO()
    Console(file=out).print(bar.table())
    assert _row(out.getvalue(), "AiTimeout") == [2]
    assert _row(out.getvalue(), "(none)") == [1]
