"""`harness up`: the whole local system starts, serves a job end to end, and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from harness.system import LocalSystem, SystemPorts


def test_local_system_runs_a_job_to_completed() -> None:
    with LocalSystem(provider="local", ports=SystemPorts(0, 0, 0)) as system:
        assert system.api is not None
        api = httpx.Client(base_url=system.api.url, timeout=10)
        created = api.post(
            "/api/jobs/chat-suggestions",
            json={"creatorId": "creator-up", "fanMessage": "hello there"},
        )
        assert created.status_code == 200, created.text
        job_id = created.json()["jobId"]
        system.hosts["jobs"].wait_for_invocations(1, function="ChatSuggestionsWorker", timeout=30)
        status = api.get(f"/api/jobs/{job_id}").json()
        assert status["status"] == "completed", status
        assert system.ai is not None and system.ai.calls, "the AI stand-in was not called"


def test_harness_up_prints_the_system_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "up",
            "--stack",
            "local",
            "--sb-port",
            "0",
            "--admin-port",
            "0",
            "--api-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("Try it"):
                break
        text = "".join(seen)
        for label in ("job API", "Service Bus", "database", "AI stand-in", "worker apps"):
            assert label in text, text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
