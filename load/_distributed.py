"""Distributed runs (`--processes N`, `--master` + `--worker`s): one report, every worker in it.

Locust's master sums the stats its workers send every 3 s, and a headless master stops by
quitting: it fires `test_stop`, where the capacity report is made, before it even tells the
workers to stop. So the report missed the `--stop-timeout` drain and each worker's last
seconds (measured: 50 of the 110 requests a fake API answered, no video job at all), while
Locust's own table, printed later, had them. Now:

- each worker counts what it did (`Tally`) and, at its own test stop, first flushes its
  stats to the master, then sends the tally (`WORKER_TALLY`);
- the master, at its test stop, asks each worker still running to stop now
  (`STOP_AND_REPORT`: its users finish as `--stop-timeout` allows) and waits for the
  tallies before it reports.

Messages from one worker reach the master in order, so once its tally is in, so are all its
samples. The tallies go into the report (`locust.workers`): the run's figures are the
master's aggregate, and the tallies show every worker took part and add up to it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_MISSING, STATE_STOPPED, MasterRunner, WorkerRunner

log = logging.getLogger("load")

WORKER_TALLY = "capacity-report:worker-tally"
STOP_AND_REPORT = "capacity-report:stop-and-report"
DRAIN_MARGIN_S = 15.0
"""Beyond `--stop-timeout`, how long the master waits for a worker's tally."""


@dataclass
class Tally:
    """What one worker did in one run, counted on the worker from its own request events
    (its stats go to the master in deltas, so it keeps no totals of its own)."""

    worker: str
    index: int = 0
    peak_users: int = 0
    requests: int = 0
    failures: int = 0
    jobs_observed: int = 0
    jobs_failed: int = 0
    busy: int = 0

    def count(self, request_type: str, failed: bool, *, job_type: str, busy_type: str) -> None:
        if request_type == job_type:
            self.jobs_observed += 1
            self.jobs_failed += failed
        elif request_type == busy_type:
            self.busy += 1
        else:
            self.requests += 1
            self.failures += failed

    @classmethod
    def of(cls, data: dict[str, Any]) -> Tally:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class _Master:
    tallies: dict[str, Tally] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    """Workers that sent stats during the run: each owes a tally."""


_master = _Master()
_tally: Tally | None = None


def install(environment: Environment, *, job_type: str, busy_type: str) -> None:
    """Register the messages and listeners for this process's role (nothing when local)."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(WORKER_TALLY, _on_tally)
        environment.events.test_start.add_listener(_master_start)
        environment.events.worker_report.add_listener(_on_worker_report)
    elif isinstance(runner, WorkerRunner):
        runner.register_message(STOP_AND_REPORT, _on_stop_and_report, concurrent=True)
        environment.events.test_start.add_listener(_worker_start)
        environment.events.test_stop.add_listener(_worker_stop)
        environment.events.report_to_master.add_listener(_worker_reporting)

        def count(request_type: str, exception: Exception | None = None, **_: Any) -> None:
            if _tally is not None:
                _tally.count(
                    request_type, exception is not None, job_type=job_type, busy_type=busy_type
                )

        environment.events.request.add_listener(count)


# -- worker ----------------------------------------------------------------------------------


def _worker_start(environment: Environment, **_: Any) -> None:
    global _tally
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    _tally = Tally(worker=runner.client_id, index=runner.worker_index)


def _worker_reporting(data: dict[str, Any], **_: Any) -> None:
    """Every 3 s: this worker's own users (spawning_complete carries the whole run's)."""
    if _tally is not None:
        _tally.peak_users = max(_tally.peak_users, int(data.get("user_count") or 0))


def _worker_stop(environment: Environment, **_: Any) -> None:
    """Flush this worker's last samples, then send its tally: in that order, on one socket."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    if _tally is None:
        return
    users = sum(getattr(runner, "final_user_classes_count", {}).values())  # before stopping
    _tally.peak_users = max(_tally.peak_users, users)
    # Locust's own quit flushes the same way; without it the master misses up to 3 s.
    runner._send_stats()
    runner.send_message(WORKER_TALLY, asdict(_tally))


def _on_stop_and_report(environment: Environment, msg: Any, **_: Any) -> None:
    """The master is reporting: stop the users now (their test_stop sends the tally)."""
    runner = environment.runner
    if runner is None:
        return
    if runner.state == STATE_STOPPED:  # already stopped: only the tally is owed
        _worker_stop(environment)
    else:
        runner.stop()


# -- master ----------------------------------------------------------------------------------


def _master_start(**_: Any) -> None:
    _master.tallies.clear()
    _master.seen.clear()


def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    if data.get("user_count"):
        _master.seen.add(client_id)


def _on_tally(environment: Environment, msg: Any, **_: Any) -> None:
    tally = Tally.of(msg.data)
    _master.tallies[tally.worker] = tally


def collect(environment: Environment) -> dict[str, Any] | None:
    """On the master: every worker's tally, after asking the running ones to stop; None
    when this process is not a master. Waits at most `--stop-timeout` + a margin."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return None
    live = [c.id for c in runner.clients.all if c.state != STATE_MISSING]
    waiting = [c for c in live if c not in _master.tallies]
    for client_id in waiting:
        runner.send_message(STOP_AND_REPORT, None, client_id=client_id)
    deadline = time.monotonic() + (environment.stop_timeout or 0.0) + DRAIN_MARGIN_S
    while any(c not in _master.tallies for c in waiting) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    missing = sorted((_master.seen | set(waiting)) - set(_master.tallies))
    if missing:
        log.warning("capacity report: no final figures from worker(s) %s", ", ".join(missing))
    tallies = sorted(_master.tallies.values(), key=lambda t: (t.index, t.worker))
    return {"workers": [asdict(t) for t in tallies], "missing": missing}
