"""Timer triggers: fire on demand, run on startup, and follow a six-field schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.host import FunctionsHost
from harness.host.testing import write_app

TIMER_APP = """
import asyncio
CALLS = []

@app.timer_trigger(arg_name="timer", schedule="0 0 3 * * *", run_on_startup=%(startup)s)
async def nightly(timer: func.TimerRequest) -> None:
    CALLS.append(("nightly", timer.past_due, timer.schedule_status.get("Next")))

@app.timer_trigger(arg_name="timer", schedule="%%FAST_SCHEDULE%%")
def fast(timer: func.TimerRequest) -> None:
    CALLS.append(("fast", timer.past_due, None))

@app.timer_trigger(arg_name="timer", schedule="0 0 3 * * *")
def broken(timer: func.TimerRequest) -> None:
    raise RuntimeError("timer failed")
"""


def app(tmp_path: Path, startup: bool) -> Path:
    return write_app(tmp_path / f"timers{startup}", TIMER_APP % {"startup": startup})


def test_host_fire_timer_runs_now_and_records(tmp_path: Path) -> None:
    host = FunctionsHost.load(app(tmp_path, False), settings={"FAST_SCHEDULE": "0 0 0 1 1 *"})
    with host:
        run = host.fire_timer("nightly")
        assert (run.function, run.trigger, run.outcome) == ("nightly", "timerTrigger", "succeeded")
        [(name, past_due, next_due)] = host.module.CALLS
        assert name == "nightly" and past_due is False and next_due.endswith("03:00:00+00:00")
        failed = host.fire_timer("broken")
        assert failed.outcome == "failed" and "timer failed" in (failed.error or "")
        with pytest.raises(KeyError):
            host.fire_timer("nope")


def test_host_run_on_startup_fires_once_at_start(tmp_path: Path) -> None:
    host = FunctionsHost.load(app(tmp_path, True), settings={"FAST_SCHEDULE": "0 0 0 1 1 *"})
    with host:
        [run] = host.wait_for_invocations(1, function="nightly", timeout=10)
        assert run.outcome == "succeeded"
    assert [i.function for i in host.invocations] == ["nightly"]


def test_host_timer_follows_its_schedule(tmp_path: Path) -> None:
    """`*/1 * * * * *` fires every second (resolved from %FAST_SCHEDULE%)."""
    host = FunctionsHost.load(app(tmp_path, False), settings={"FAST_SCHEDULE": "*/1 * * * * *"})
    with host:
        first, second = host.wait_for_invocations(2, function="fast", timeout=10)
    gap = (second.started_at - first.started_at).total_seconds()
    assert 0.5 < gap < 2.5
    assert second.started_at.microsecond < 300_000  # on the second boundary


def test_host_timers_can_be_left_unarmed(tmp_path: Path) -> None:
    host = FunctionsHost.load(
        app(tmp_path, True), settings={"FAST_SCHEDULE": "*/1 * * * * *"}, run_timers=False
    )
    with host:
        run = host.fire_timer("fast")
        assert run.outcome == "succeeded"
        assert [i.function for i in host.invocations] == ["fast"]
