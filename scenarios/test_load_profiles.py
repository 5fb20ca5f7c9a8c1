"""The Locust capacity profiles (load/) against the real job API and worker apps.

Locust runs in a child process, as `locust -f load/` would for a user: importing it
monkey-patches the standard library with gevent, which must not happen in this process,
where the stack, the worker hosts and the job API run on real threads, sockets and asyncio
loops. Every wait is the child's exit, bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin import WorkerFactory
from standins.ai import AIServer

ROOT = Path(__file__).resolve().parents[1]
LOAD = ROOT / "load"
# A port nothing listens on: the tier tests only need Locust to start the shape.
CLOSED = "http://127.0.0.1:9"


def _locust(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    child_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOAD_") and k != "LOCUST_SKIP_MONKEY_PATCH"
    }
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOAD), "--headless", "--only-summary", *args],
        cwd=ROOT,
        env={**child_env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_creator_load_completes_every_posted_job_type_and_reports(
    workers: WorkerFactory, job_api: Any, ai_stub: AIServer, tmp_path: Path
) -> None:
    """5 users for 5 s (no tier: -u/-r/-t as usual); the stop timeout lets every job that
    was posted be followed to its end, so each posted type has completed jobs."""
    workers("video", "jobs")
    report_path = tmp_path / "capacity.json"
    result = _locust(
        "--users", "5",
        "--spawn-rate", "5",
        "--run-time", "5s",
        "--stop-timeout", "30",
        "--host", str(job_api.base_url).rstrip("/"),
        "--video-url", ai_stub.media_url("clip.mp4"),
        "--think-time", "0.5",
        "--poll-interval", "0.2",
        "--capacity-report", str(report_path),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output  # Locust exits 1 on any failed request
    assert "Capacity report: custom run (no --tier)" in result.stdout, output

    report = json.loads(report_path.read_text())
    assert set(report) >= {"tier", "duration_s", "peak_users", "api", "jobs", "checks", "met"}
    assert (report["tier"], report["target_users"], report["peak_users"]) == (None, None, 5)
    api = report["api"]
    assert api["count"] > 0 and api["failures"] == 0 and api["requests_per_s"] > 0
    assert None not in (api["p50_ms"], api["p95_ms"], api["p99_ms"])

    posted = {route: job for route, job in report["jobs"].items() if job["posted"]}
    assert posted, report["jobs"]
    for route, job in posted.items():
        assert job["completed"] >= 1, (route, job)
        assert (job["failed"], job["in_flight"], job["errors"]) == (0, 0, {}), (route, job)
        assert None not in (job["p50_ms"], job["p95_ms"], job["p99_ms"]), (route, job)
        assert f"/api/jobs/{route}" in " ".join(api["endpoints"]), route
    checks = {check["name"]: check for check in report["checks"]}
    assert {"API p95", "API p99", "API failure ratio"} <= set(checks)
    assert all(checks[f"{route} completed"]["met"] for route in posted)


@pytest.mark.parametrize(
    ("args", "env", "tier"),
    [
        (["--tier", "50"], {}, "50"),
        ([], {"LOAD_TIER": "500"}, "500"),
    ],
    ids=["option", "env"],
)
def test_tier_runs_its_shape_and_is_judged_on_it(
    args: list[str], env: dict[str, str], tier: str, tmp_path: Path
) -> None:
    """-t cuts the tier to 2 s; the report is the tier's, and a dead API misses it."""
    report_path = tmp_path / "capacity.json"
    result = _locust(
        *args, "--run-time", "2s", "--host", CLOSED, "--capacity-report", str(report_path),
        env=env,
    )  # fmt: skip
    output = result.stdout + result.stderr
    users = int(tier)
    assert f"load tier {tier}: ramp to {users} users" in output, output
    # The shape ramps a step a second (what the ramp reaches a second later), not all at once.
    steps = [int(n) for n in re.findall(r"Shape test updating to (\d+) users", output)]
    assert steps and steps == sorted(steps) and steps[-1] < users, output

    report = json.loads(report_path.read_text())
    assert (report["tier"], report["target_users"]) == (tier, users)
    assert report["met"] is False
    missed = {check["name"] for check in report["checks"] if not check["met"]}
    assert {"peak users", "API failure ratio"} <= missed
