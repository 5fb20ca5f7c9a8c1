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
        _the_console_shows_the_job_and_its_run(system, job_id)


def _the_console_shows_the_job_and_its_run(system: LocalSystem, job_id: str) -> None:
    """The emulator's web console carries the harness's tables (docs/console.md)."""
    assert system.stack is not None and system.stack.emulator is not None
    emulator = system.stack.emulator
    assert any(emulator.console_url in line for line in system.describe())
    assert system.jobs_panel is not None
    system.jobs_panel.read_now()  # the panel's thread reads every 2 s; read now instead
    with httpx.Client(base_url=emulator.console_url) as console:
        jobs = console.get("/panels/jobs").text
        assert job_id in jobs and "completed" in jobs
        runs = console.get("/panels/invocations").text
        assert "ChatSuggestionsWorker" in runs and "succeeded" in runs
        assert 'hx-get="/console/panels/jobs"' in console.get("").text


UP = [sys.executable, "-m", "harness", "up"]
ANY_PORTS = ["--stack", "local", "--sb-port", "0", "--admin-port", "0", "--api-port", "0"]


@pytest.mark.timeout(180)
def test_harness_up_runs_apps_as_processes_and_stops_on_ctrl_c() -> None:
    """As a user would: `harness up --instances jobs=2`, POST jobs, see them run in the
    jobs app's two processes (read from the interleaved output, no polling), each once,
    Ctrl-C, and nothing is left running."""
    process = subprocess.Popen(
        [*UP, *ANY_PORTS, "--instances", "jobs=2"],
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
        instances = dict(re.findall(r"(\w+(?:#\d)?) \(pid (\d+)\)", text))
        assert api and sorted(instances) == ["jobs#1", "jobs#2", "notify", "video"], text
        assert "timers           in jobs#1 only" in text, text
        pids = [int(p) for p in instances.values()]
        # Azure runs a timer function on one instance: the second is started without them.
        assert "--no-timers" not in _command_line(int(instances["jobs#1"]))
        assert "--no-timers" in _command_line(int(instances["jobs#2"]))

        job_ids = []
        with httpx.Client(base_url=api.group(1), timeout=30) as client:
            for i in range(JOBS_FOR_TWO):
                created = client.post(
                    "/api/jobs/chat-suggestions",
                    json={"creatorId": "creator-up", "fanMessage": f"hello there {i}"},
                )
                assert created.status_code == 200, created.text
                job_ids.append(created.json()["jobId"])
            runs: dict[str, list[str]] = {}  # message id -> instances that ran it
            pending = {f"{job_id}:0" for job_id in job_ids}

            def record(line: str) -> bool:
                found = RUN_LINE.match(line)
                if found and found["msg"] in {f"{j}:0" for j in job_ids}:
                    runs.setdefault(found["msg"], []).append(found["instance"])
                    pending.discard(found["msg"])
                return not pending

            seen += _until(lines, record)
            for job_id in job_ids:
                assert client.get(f"/api/jobs/{job_id}").json()["status"] == "completed"
        assert all(len(ran) == 1 for ran in runs.values()), runs  # each job ran once
        assert {ran[0] for ran in runs.values()} == {"jobs#1", "jobs#2"}, runs  # both worked

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


JOBS_FOR_TWO = 30
"""More than one instance's prefetch (20): the broker must hand some to the second."""
RUN_LINE = re.compile(
    r"\[(?P<instance>jobs#\d)\] .* ChatSuggestionsWorker msg=(?P<msg>\S+) dc=\d+ "
    r"succeeded settlement=completed"
)


def _command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


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


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {}),
        (["jobs=2"], {"jobs": 2}),
        (["jobs=2,notify=3", "video=1"], {"jobs": 2, "notify": 3, "video": 1}),
        ([" jobs = 2 , jobs=2"], {"jobs": 2}),
    ],
)
def test_instances_are_app_equals_count_repeatable_or_comma_separated(
    values: list[str], expected: dict[str, int]
) -> None:
    from harness.cli import parse_instances

    assert parse_instances(values, ("video", "jobs", "notify")) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("jobs", "expected APP=N with APP one of video, jobs, notify and N from 1 to 8"),
        ("mail=2", "'mail=2': expected APP=N with APP one of video, jobs, notify"),
        ("jobs=two", "expected APP=N"),
        ("jobs=-1", "expected APP=N"),
        ("jobs=0", "'jobs=0': N must be from 1 to 8"),
        ("jobs=9", "N must be from 1 to 8"),
        ("jobs=2,jobs=3", "jobs given twice (2 and 3)"),
    ],
)
def test_a_bad_instances_value_names_the_flag_and_what_it_takes(
    value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    assert main(["up", "--instances", value]) == 2
    error = capsys.readouterr().err
    assert error.startswith("harness up: --instances") and says in error, error


def test_several_instances_need_host_processes(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["up", "--in-process", "--instances", "jobs=2"]) == 2
    assert "needs host processes" in capsys.readouterr().err
    with pytest.raises(ValueError, match="need host processes"):
        LocalSystem(instances={"jobs": 2}).start()
    with pytest.raises(ValueError, match="unknown app"):
        LocalSystem(processes=True, instances={"mail": 2}).start()


def test_an_app_run_once_keeps_its_name_and_several_instances_are_numbered() -> None:
    system = LocalSystem(processes=True, instances={"jobs": 3})
    assert system.instance_names("video") == ["video"]
    assert system.instance_names("jobs") == ["jobs#1", "jobs#2", "jobs#3"]
