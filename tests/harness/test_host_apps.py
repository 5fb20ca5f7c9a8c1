"""The repo's three worker apps load and index under the host; the host runs as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import PROJECT_CONFIG, ServiceBusEmulator
from emulator.servicebus.topology import NamespaceTopology, QueueDescription
from harness.host import AppLoadError, FunctionsHost, ProcessEnvironment
from harness.host.testing import write_app

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ROOT / "workers"

ENV = {
    "SERVICEBUS_CONNECTION": "Endpoint=sb://localhost/;SharedAccessKeyName=a;SharedAccessKey=b",
    "TOPIC_JOBS": "huntaze-jobs",
    "TOPIC_EVENTS": "huntaze-events",
    "DATABASE_URL": "sqlite://",
    "REDIS_URL": "memory://",
    "AZURE_DEEPSEEK_V3_ENDPOINT": "https://deepseek.example/models",
    "AZURE_PHI4_MULTIMODAL_ENDPOINT": "https://phi4.example/models",
    "AzureSignalRConnectionString": "Endpoint=http://127.0.0.1:1;AccessKey=k;",
}

EXPECTED = {
    "video": {
        "VideoAnalysisWorker": ("sdk", "huntaze-jobs/video-analysis"),
        "VideoAnalysisDeadLetterSweeper": ("timer", "0 */1 * * * *"),
    },
    "jobs": {
        "ChatSuggestionsWorker": ("sdk", "huntaze-jobs/chat-suggestions"),
        "ContentSuggestionsWorker": ("sdk", "huntaze-jobs/content-suggestions"),
        "ContentAnalysisWorker": ("sdk", "huntaze-jobs/content-analysis"),
        "ChatSuggestionsDeadLetterSweeper": ("timer", "0 */1 * * * *"),
        "ContentSuggestionsDeadLetterSweeper": ("timer", "0 */1 * * * *"),
        "ContentAnalysisDeadLetterSweeper": ("timer", "0 */1 * * * *"),
    },
    "notify": {
        "NotifySignalRWorker": ("classic", "huntaze-events/notify-signalr"),
        "NotifyEmailWorker": ("classic", "huntaze-events/notify-email"),
        "NotifyWebhookWorker": ("classic", "huntaze-events/notify-webhook"),
        "MetricsWorker": ("classic", "huntaze-events/metrics"),
        "DlqTriageMonitor": ("timer", "0 */15 * * * *"),
    },
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    yield


@pytest.mark.parametrize("app", sorted(EXPECTED))
def test_host_indexes_each_worker_app_without_starting(app: str, clean_env: None) -> None:
    # The apps read their settings from the environment at import, as in Azure.
    with ProcessEnvironment() as environment:
        host = FunctionsHost.load(WORKERS / app, settings=ENV, environment=environment)
        assert os.environ["TOPIC_JOBS"] == ENV["TOPIC_JOBS"]
        found = {name: (s.trigger_kind, s.source) for name, s in host.functions.items()}
        assert found == EXPECTED[app]
        assert host.missing_settings() == {}
        for spec in host.functions.values():
            if spec.trigger_kind == "sdk":
                assert spec.actions_params == ["message_actions"] and spec.is_async
        assert host.options.max_concurrent_calls == {"video": 2, "jobs": 8, "notify": 50}[app]
        assert host.invocations == [] and host.settlement_address is None  # nothing started
        host.stop()
    assert "TOPIC_JOBS" not in os.environ


def test_host_notify_app_declares_its_signalr_output(clean_env: None) -> None:
    with ProcessEnvironment() as environment:
        host = FunctionsHost.load(WORKERS / "notify", settings=ENV, environment=environment)
        outputs = host.functions["NotifySignalRWorker"].resolved_outputs
        assert outputs["signalr"]["type"] == "signalR"
        assert outputs["signalr"]["hubName"] == "huntaze"
        host.stop()


@pytest.mark.parametrize("app", sorted(EXPECTED))
def test_host_worker_app_without_settings_names_them(app: str, clean_env: None) -> None:
    partial = {k: v for k, v in ENV.items() if k not in ("SERVICEBUS_CONNECTION", "DATABASE_URL")}
    with pytest.raises(AppLoadError) as info, ProcessEnvironment() as environment:
        FunctionsHost.load(WORKERS / app, settings=partial, environment=environment)
    message = str(info.value)
    assert app in message and "SERVICEBUS_CONNECTION" in message and "DATABASE_URL" in message
    assert "TOPIC_JOBS" not in os.environ  # a failed load leaves the environment as it was


def test_host_runs_the_real_jobs_worker_which_settles_over_grpc(clean_env: None) -> None:
    """The unmodified jobs app dead-letters an unparsable job through ServiceBusMessageActions."""
    with ServiceBusEmulator.from_config(PROJECT_CONFIG) as emu:
        settings = {**ENV, "SERVICEBUS_CONNECTION": emu.connection_string}
        with (
            ProcessEnvironment() as env,
            FunctionsHost.load(WORKERS / "jobs", settings=settings, environment=env) as host,
        ):
            with ServiceBusClient.from_connection_string(emu.connection_string) as client:
                with client.get_topic_sender("huntaze-jobs") as sender:
                    sender.send_messages(
                        ServiceBusMessage(
                            "not json",
                            message_id="bad-1",
                            application_properties={"jobType": "chat.suggest", "jobId": "j1"},
                        )
                    )
            # The app's sweeper timers fire at the top of each minute: wait for this message.
            [run] = host.wait_for_invocations(
                1, where=lambda i: i.message_id == "bad-1", timeout=20
            )
            assert run.function == "ChatSuggestionsWorker"
            assert (run.outcome, run.settlement, run.settled_by) == (
                "succeeded",
                "dead-lettered",
                "function",
            )
            assert run.dead_letter_reason == "INVALID_PAYLOAD"
            with ServiceBusClient.from_connection_string(emu.connection_string) as client:
                with client.get_subscription_receiver(
                    "huntaze-jobs", "chat-suggestions", sub_queue="deadletter"
                ) as receiver:
                    [dead] = receiver.peek_messages(max_message_count=5)
            assert dead.dead_letter_reason == "INVALID_PAYLOAD"
            assert [i.function for i in host.invocations] == ["ChatSuggestionsWorker"]


def test_host_runs_as_a_process_and_stops_on_sigint(tmp_path: Path) -> None:
    app = write_app(
        tmp_path / "proc",
        """
        @app.service_bus_queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            print("handled", msg.get_body().decode(), flush=True)
        """,
    )
    with ServiceBusEmulator(NamespaceTopology(queues=[QueueDescription("q")])) as emu:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.host",
                str(app),
                "--setting",
                f"SB={emu.connection_string}",
                "--setting",
                "QUEUE=q",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        try:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if "running; Ctrl-C to stop" in line:
                    break
            assert any("handle: serviceBusTrigger q (sync)" in line for line in lines), lines
            with ServiceBusClient.from_connection_string(emu.connection_string) as client:
                with client.get_queue_sender("q") as sender:
                    sender.send_messages(ServiceBusMessage("hello"))
            for line in proc.stdout:
                if line.startswith("handled"):
                    assert line.strip() == "handled hello"
                    break
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_host_process_reports_missing_settings(tmp_path: Path) -> None:
    app = write_app(
        tmp_path / "missing",
        """
        @app.service_bus_queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            pass
        """,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SB", "QUEUE")}
    done = subprocess.run(
        [sys.executable, "-m", "harness.host", str(app)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "missing app settings QUEUE, SB" in done.stderr
