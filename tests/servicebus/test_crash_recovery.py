"""SIGKILL the durable emulator under SDK load, restart it on its data dir, check every outcome.

The workload and its checks are ``crash_workload``'s (see its docstring); ``make crash-soak``
runs more rounds with random seeds. Here: one seeded run with three kill points, and the
command line's answers to a data dir it cannot use.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from crash_workload import run
from sb_topology import SDK_HEARS_SETTLEMENT_ERRORS

from emulator.servicebus.persistence import DATABASE_NAME, SqliteJournal


@pytest.mark.skipif(
    not SDK_HEARS_SETTLEMENT_ERRORS,
    reason="7.14 settles without waiting for the broker: a complete it returned was not "
    "acknowledged, so the check's ledger cannot tell what the emulator confirmed",
)
def test_acknowledged_outcomes_survive_three_kills(tmp_path: Path) -> None:
    result = run(tmp_path, seed=18, kills=3)
    print(result.summary())
    assert result.kills == 3
    assert result.held_back > 0, "no kill caught a message locked by a receiver"
    assert result.completed > 0 and result.dead_lettered > 0 and result.abandoned > 0


def _sbemu(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "emulator.servicebus", "--port", "0", "--admin-port", "0"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_data_dir_that_cannot_be_created_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    done = _sbemu("--data-dir", str(blocker / "state"))
    assert done.returncode == 4, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"sbemu: cannot use the data dir: cannot create data dir {blocker / 'state'}: "
        "Not a directory"
    ]
    assert blocker.read_text() == "in the way"


def test_state_of_another_schema_version_is_refused_untouched(tmp_path: Path) -> None:
    state = tmp_path / "state"
    SqliteJournal.open(state).close()
    with sqlite3.connect(state / DATABASE_NAME) as connection:
        connection.execute("PRAGMA user_version = 7")
    connection.close()
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    done = _sbemu("--data-dir", str(state))
    assert done.returncode == 4, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "schema version 7" in line and f"delete {state} to start fresh" in line
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
