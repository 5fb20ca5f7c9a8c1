"""Distributed Locust (`--processes`, `--master` + `--worker`s) writes ONE capacity report,
with every worker's requests and jobs in it, down to their last samples.

Real `locust -f load/` processes, a few seconds each, against `FakeJobApi` (it answers at
once and counts what it answered): the report's totals must equal the server's, and each
worker's tally must be there and add up to them. Before the fix the headless master wrote
its report before the workers stopped: 50 of 110 requests, no video job.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_job_api import COMPLETION, FakeJobApi

ROOT = Path(__file__).resolve().parents[2]
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "load")]
FAST_USERS = [
    "--pace",
    "busy",
    "--think-time",
    "0.2",
    "--poll-interval",
    "0.05",
    "--loglevel",
    "WARNING",
]
RUN_TIMEOUT_S = 90
WORKER_EXIT_S = 2


def _env() -> dict[str, str]:
    """This suite's conftest switches gevent's patching off; a real Locust needs it."""
    return {k: v for k, v in os.environ.items() if k != "LOCUST_SKIP_MONKEY_PATCH"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_processes(api: FakeJobApi, report: Path) -> str:
    """`--processes 2`, stopped by `-t`: the headless master quits, the path that lost data."""
    run = subprocess.run(
        [
            *LOCUST,
            *["--headless", "--processes", "2", "-u", "4", "-r", "4", "-t", "3s"],
            *_common(api, report),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def _run_master_and_workers(api: FakeJobApi, report: Path, how: str) -> str:
    """A master and two `--worker` processes; `how` is how the master runs and stops."""
    port = str(_free_port())
    master_args = f"--expect-workers 2 --master-bind-host 127.0.0.1 {how}"
    worker_args = "--worker --master-host 127.0.0.1 --master-port"
    common = _common(api, report)
    commands = [
        [*LOCUST, "--master", *master_args.split(), "--master-bind-port", port, *common],
        *[[*LOCUST, *worker_args.split(), port, *FAST_USERS]] * 2,
    ]
    master, *workers = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    ]
    outputs = []
    try:
        out, _ = master.communicate(timeout=RUN_TIMEOUT_S)
        assert master.returncode == 0, out[-3000:]
        outputs.append(out)
        for worker in workers:
            # After a web UI stop Locust's master quits without telling workers that
            # reported stopped; they would wait a minute for its heartbeat.
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(WORKER_EXIT_S)
            if worker.poll() is None:
                worker.terminate()
            outputs.append(worker.communicate(timeout=30)[0])
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait(10)
    return "\n".join(outputs)


def _headless_tier(api: FakeJobApi, report: Path) -> str:
    """Headless, a tier's shape cut by `-t`: the master quits."""
    return _run_master_and_workers(api, report, "--headless --tier 500 -t 4s")


def _web_ui_stop(api: FakeJobApi, report: Path) -> str:
    """The web UI's Stop (here `--autostart -t`): the master stops the workers first."""
    ui = f"--web-host 127.0.0.1 --web-port {_free_port()}"
    return _run_master_and_workers(api, report, f"--autostart --autoquit 0 -u 4 -r 4 -t 3s {ui}")


def _common(api: FakeJobApi, report: Path) -> list[str]:
    """The master's: drain for up to 10 s, the fake API, the report file, quick users."""
    report_args = ["--host", api.url, "--capacity-report", str(report)]
    return ["--stop-timeout", "10", *report_args, *FAST_USERS]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "run",
    [_run_processes, _headless_tier, _web_ui_stop],
    ids=["processes-headless", "master-workers-tier", "master-workers-web-ui-stop"],
)
def test_one_report_holds_every_workers_figures(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "capacity.json"
    with FakeJobApi() as api:
        output = run(api, path)
        answered = dict(api.requests)
    report = json.loads(path.read_text())

    assert output.count("Capacity report:") == 1, output[-3000:]  # one report, the master's
    locust = report["locust"]
    assert locust["mode"] == "distributed" and locust["missing"] == [], locust
    workers = locust["workers"]
    assert sorted(w["index"] for w in workers) == [0, 1], workers
    assert all(w["requests"] > 0 and w["jobs_observed"] > 0 for w in workers), workers

    # Every request the server answered is in the one report, and the tallies add up to it.
    assert report["api"]["count"] == sum(answered.values()) == sum(w["requests"] for w in workers)
    assert report["api"]["failures"] == 0
    jobs = report["jobs"]
    posted = {k.removeprefix("POST "): v for k, v in answered.items() if k.startswith("POST ")}
    assert {route: job["posted"] for route, job in jobs.items()} == posted
    assert sum(job["observed"] for job in jobs.values()) == sum(w["jobs_observed"] for w in workers)
    # The drain (--stop-timeout) is in the report: every posted job followed to its end,
    # its time to completion the job's own timestamps (the fake's 40 ms), from both workers.
    assert all(job["in_flight"] == 0 and job["failed"] == 0 for job in jobs.values()), jobs
    completion_ms = COMPLETION.total_seconds() * 1000
    assert all(job["p50_ms"] == job["p99_ms"] == completion_ms for job in jobs.values()), jobs
    assert report["peak_users"] >= 2
