"""The harness's tables on the emulator's console: the workers' runs and the jobs."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from harness.console import InvocationsPanel, QueryPanel, parse_invocation_line

HOST_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # harness/host/__main__.py


def host_line(message: str) -> str:
    """A line exactly as a host process prints it."""
    record = logging.LogRecord("harness.host.invocations", logging.INFO, "x", 1, message, (), None)
    return logging.Formatter(HOST_FORMAT).format(record)


def test_a_host_process_line_about_a_run_becomes_a_row() -> None:
    line = host_line(
        "#4 ChatSuggestionsWorker msg=job-1:0 dc=1 failed settlement=abandoned "
        "error=ProcessingError: AI answered 429 in 0.31s"
    )
    row = parse_invocation_line("jobs#2", line)
    assert row is not None
    assert (row.app, row.function, row.message, row.delivery_count) == (
        "jobs#2",
        "ChatSuggestionsWorker",
        "job-1:0",
        "1",
    )
    assert (row.outcome, row.settlement, row.duration) == ("failed", "abandoned", "0.31s")
    assert row.error == "ProcessingError: AI answered 429"
    assert len(row.time) == 8 and row.time.count(":") == 2
    assert parse_invocation_line("jobs", host_line("settlement service on 127.0.0.1:1")) is None
    assert parse_invocation_line("jobs", "garbage") is None


def test_the_invocations_panel_keeps_the_newest_first_and_colours_failures() -> None:
    panel = InvocationsPanel(limit=2)
    feed = panel.feed("video")
    for n, outcome in enumerate(("succeeded", "failed", "succeeded")):
        feed(host_line(f"#{n} VideoWorker msg=m{n} dc=1 {outcome} settlement=completed in 0.1s"))
    feed("an unrelated line")
    table = panel.table()
    assert [row[3] for row in table.rows] == ["m2", "m1"]
    assert list(table.row_status) == ["ok", "bad"]


def test_a_query_panel_reads_its_table_and_says_when_it_cannot(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE jobs (id TEXT, status TEXT)")
        connection.execute("INSERT INTO jobs VALUES ('j1', 'completed'), ('j2', 'failed')")
    panel = QueryPanel(
        "Jobs",
        f"sqlite:///{db}",
        "SELECT id, status FROM jobs ORDER BY id",
        ("job", "status"),
        tone=lambda r: "bad" if r.status == "failed" else "ok",
    )
    table = panel.read_now()
    assert [tuple(r) for r in table.rows] == [("j1", "completed"), ("j2", "failed")]
    assert list(table.row_status) == ["ok", "bad"]
    broken = QueryPanel("Jobs", f"sqlite:///{tmp_path}/none.db", "SELECT * FROM jobs", ("x",))
    note = broken.read_now().note
    assert "cannot read" in note and "no such table" in note
