"""`harness up`: the whole local system starts, serves a job end to end, and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

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


UP = [sys.executable, "-m", "harness", "up"]


@pytest.mark.timeout(180)
def test_harness_up_runs_apps_as_processes_and_stops_on_ctrl_c() -> None:
    """As a user would: `harness up`, POST a job, see the jobs app's process log the run
    (read from the interleaved output, no polling), Ctrl-C, and nothing is left running."""
    process = subprocess.Popen(
        [*UP, "--stack", "local", "--sb-port", "0", "--admin-port", "0", "--api-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        lines = iter(process.stdout)
        seen += _until(lines, lambda line: line.startswith("Try it"))
        text = "".join(seen)
        for label in ("job API", "Service Bus", "database", "AI stand-in", "worker apps"):
            assert label in text, text
        api = re.search(r"job API\s+(http://\S+)", text)
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", text)]
        assert api and len(pids) == 3, text

        created = httpx.post(
            f"{api.group(1)}/api/jobs/chat-suggestions",
            json={"creatorId": "creator-up", "fanMessage": "hello there"},
            timeout=30,
        )
        assert created.status_code == 200, created.text
        job_id = created.json()["jobId"]
        seen += _until(
            lines,
            lambda line: (
                line.startswith("[jobs]")
                and f"ChatSuggestionsWorker msg={job_id}:0" in line
                and "succeeded settlement=completed" in line
            ),
        )
        status = httpx.get(f"{api.group(1)}/api/jobs/{job_id}", timeout=30).json()
        assert status["status"] == "completed", status

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _until(lines: Iterator[str], predicate: Callable[[str], bool]) -> list[str]:
    """Read output lines up to and including the first that matches (blocking reads)."""
    seen = []
    for line in lines:
        seen.append(line)
        if predicate(line):
            return seen
    raise AssertionError("output ended before the expected line:\n" + "".join(seen[-40:]))


def test_a_system_with_a_data_dir_keeps_its_messages_and_dead_letters_across_a_restart(
    tmp_path: Path,
) -> None:
    """`make up` keeps the emulator's state in a data dir: what waited before a stop is there
    after the next start (a message no worker takes, and a dead letter with its reason)."""
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    data = tmp_path / "servicebus"

    def start() -> LocalSystem:
        return LocalSystem(
            provider="local", ports=SystemPorts(0, 0, 0), data_dir=data, run_timers=False
        )

    with start() as system:
        assert system.stack is not None
        with (
            ServiceBusClient.from_connection_string(system.stack.servicebus_connection) as sb,
            sb.get_topic_sender("huntaze-jobs") as sender,
        ):
            sender.send_messages(
                ServiceBusMessage(
                    "{}", message_id="kept-1", application_properties={"jobType": "x"}
                )
            )
            sender.send_messages(
                ServiceBusMessage(
                    "not json",
                    message_id="poison-1",
                    application_properties={"jobType": "chat.suggest"},
                )
            )
        system.hosts["jobs"].wait_for_invocations(
            1, where=lambda i: i.message_id == "poison-1", timeout=30
        )

    with start() as system:
        assert system.stack is not None and system.stack.emulator is not None
        report = system.stack.emulator.load_report
        assert report is not None and not report.fresh and report.messages == 2, report
        with ServiceBusClient.from_connection_string(system.stack.servicebus_connection) as sb:
            with sb.get_subscription_receiver("huntaze-jobs", "unrouted") as receiver:
                kept = receiver.peek_messages(max_message_count=10, sequence_number=1)
            with sb.get_subscription_receiver(
                "huntaze-jobs", "chat-suggestions", sub_queue="deadletter"
            ) as receiver:
                dead = receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert [m.message_id for m in kept] == ["kept-1"]
        assert [(m.message_id, m.dead_letter_reason) for m in dead] == [
            ("poison-1", "INVALID_PAYLOAD")
        ]


def test_fresh_needs_a_data_dir(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["up", "--fresh"]) == 2
    assert "--fresh needs --data-dir" in capsys.readouterr().err
