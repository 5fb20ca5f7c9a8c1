"""Service Bus triggers under the local host, against the in-process emulator.

Each test writes a throwaway app. Real (short) waits appear only where the SDK's own
timers are the subject (lock renewal, functionTimeout); everything else waits on the
host's invocation log.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import (
    NamespaceTopology,
    QueueDescription,
    SubscriptionDescription,
    TopicDescription,
)
from harness.host import FunctionsHost, Invocation
from harness.host.testing import write_app


def topology() -> NamespaceTopology:
    return NamespaceTopology(
        queues=[
            QueueDescription("work", lock_duration=timedelta(seconds=30), max_delivery_count=2),
            QueueDescription("short", lock_duration=timedelta(seconds=2), max_delivery_count=5),
            QueueDescription("out"),
        ],
        topics=[TopicDescription("events", subscriptions=[SubscriptionDescription("all")])],
    )


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(topology()) as emulator:
        yield emulator


def send(emu: ServiceBusEmulator, entity: str, *messages: ServiceBusMessage | str) -> None:
    batch = [m if isinstance(m, ServiceBusMessage) else ServiceBusMessage(m) for m in messages]
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        sender = (
            client.get_topic_sender(entity)
            if entity == "events"
            else client.get_queue_sender(entity)
        )
        with sender:
            sender.send_messages(batch)


def peek(emu: ServiceBusEmulator, queue: str, sub_queue: str | None = None) -> list[Any]:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_receiver(queue, sub_queue=sub_queue) as receiver:
            return list(receiver.peek_messages(max_message_count=50))


def load(app: Path, emu: ServiceBusEmulator, **settings: str) -> FunctionsHost:
    return FunctionsHost.load(app, settings={"SB": emu.connection_string, **settings})


def test_host_auto_complete_on_success_abandon_on_exception(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "auto",
        """
        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            if msg.get_body() == b"boom":
                raise ValueError("boom")
        """,
    )
    with load(app, emu) as host:
        send(emu, "work", ServiceBusMessage("ok", message_id="ok"))
        send(emu, "work", ServiceBusMessage("boom", message_id="boom"))
        host.wait_for_invocations(3, timeout=20)  # ok once, boom twice (MaxDeliveryCount 2)
        runs = host.invocations
    ok = [i for i in runs if i.message_id == "ok"]
    boom = [i for i in runs if i.message_id == "boom"]
    assert [(i.outcome, i.settlement, i.settled_by) for i in ok] == [
        ("succeeded", "completed", "host")
    ]
    assert [(i.outcome, i.settlement) for i in boom] == [("failed", "abandoned")] * 2
    assert boom[1].delivery_count == boom[0].delivery_count + 1
    assert "ValueError: boom" in (boom[0].error or "")
    assert peek(emu, "work") == []
    [dead] = peek(emu, "work", "deadletter")
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"


def test_host_topic_trigger_resolves_settings_and_passes_metadata(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "topic",
        """
        SEEN = []

        @app.service_bus_topic_trigger(
            arg_name="msg", topic_name="%TOPIC%", subscription_name="%SUB%", connection="SB"
        )
        async def handle(msg: func.ServiceBusMessage) -> None:
            SEEN.append(msg)
        """,
        local_settings={"TOPIC": "not-this-one", "SUB": "all", "HOST_TEST_MARKER": "x"},
    )
    with load(app, emu, TOPIC="events") as host:
        assert host.functions["handle"].source == "events/all"
        assert host.settings["HOST_TEST_MARKER"] == "x"
        assert "HOST_TEST_MARKER" not in os.environ  # settings are data to the host
        send(
            emu,
            "events",
            ServiceBusMessage(
                b'{"a": 1}',
                message_id="m-1",
                content_type="application/json",
                correlation_id="c-1",
                subject="s-1",
                application_properties={"jobId": "job_1", "n": 3},
            ),
        )
        [run] = host.wait_for_invocations(1, timeout=10)
        [msg] = host.module.SEEN
        assert run.settlement == "completed"
    assert msg.get_body() == b'{"a": 1}'
    assert (msg.message_id, msg.content_type, msg.correlation_id) == (
        "m-1",
        "application/json",
        "c-1",
    )
    assert msg.application_properties == {"jobId": "job_1", "n": 3}
    assert msg.label == "s-1"
    assert msg.delivery_count == run.delivery_count
    assert msg.lock_token == run.lock_token
    assert msg.enqueued_time_utc is not None and msg.sequence_number is not None


def test_host_sdk_type_trigger_gets_the_binding_packages_message(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "sdk",
        """
        SEEN = []

        @app.service_bus_queue_trigger(
            arg_name="msg", queue_name="work", connection="SB", auto_complete_messages=False
        )
        def handle(
            msg: servicebus.ServiceBusReceivedMessage,
            actions: servicebus.ServiceBusMessageActions,
        ) -> None:
            SEEN.append((
                str(msg), msg.message_id, dict(msg.application_properties),
                str(msg.lock_token), msg.sequence_number, msg.enqueued_time_utc,
            ))
            actions.complete(msg)
        """,
    )
    with load(app, emu) as host:
        send(
            emu,
            "work",
            ServiceBusMessage("hello", message_id="m-9", application_properties={"k": "v"}),
        )
        [run] = host.wait_for_invocations(1, timeout=10)
        [(body, message_id, props, token, sequence, enqueued)] = host.module.SEEN
    assert (body, message_id, props) == ("hello", "m-9", {b"k": b"v"})
    assert token == run.lock_token and sequence == run.sequence_number
    assert enqueued is not None
    assert (run.settlement, run.settled_by) == ("completed", "function")


@pytest.mark.parametrize("calls", [2, 8])
def test_host_runs_at_most_max_concurrent_calls(
    tmp_path: Path, emu: ServiceBusEmulator, calls: int
) -> None:
    app = write_app(
        tmp_path / f"conc{calls}",
        """
        import threading
        RELEASE = threading.Event()

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            assert RELEASE.wait(20)
        """,
        service_bus={"maxConcurrentCalls": calls, "prefetchCount": 20},
    )
    total = 2 * calls + 1
    with load(app, emu) as host:
        send(emu, "work", *[f"m{i}" for i in range(total)])
        host.wait_running(calls, timeout=10)
        assert host.running("handle") == calls  # saturated, and not one more
        host.module.RELEASE.set()
        host.wait_for_invocations(total, timeout=20)
        assert host.peak_concurrency("handle") == calls
        assert all(i.settlement == "completed" for i in host.invocations)


def test_host_async_handlers_share_the_worker_loop_up_to_the_cap(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "asyncconc",
        """
        import asyncio

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        async def handle(msg: func.ServiceBusMessage) -> None:
            await asyncio.sleep(0.3)
        """,
        service_bus={"maxConcurrentCalls": 3},
    )
    with load(app, emu) as host:
        send(emu, "work", *[f"m{i}" for i in range(9)])
        host.wait_for_invocations(9, timeout=20)
        assert host.peak_concurrency("handle") == 3


def test_host_function_timeout_cancels_and_abandons(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "timeout",
        """
        import asyncio
        import time
        CANCELLED = []

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        async def handle(msg: func.ServiceBusMessage) -> None:
            if msg.delivery_count and msg.delivery_count > 0:
                return
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                await asyncio.sleep(0.5)  # async clean-up, e.g. releasing a lease
                CANCELLED.append((msg.message_id, time.time()))
                raise
        """,
        function_timeout="00:00:01",
    )
    with load(app, emu) as host:
        send(emu, "work", ServiceBusMessage("slow", message_id="slow"))
        first, second = host.wait_for_invocations(2, timeout=15)
        [(cancelled_id, cleaned_up_at)] = host.module.CANCELLED
        # the host abandoned only after the clean-up ran: the redelivery did not race it
        assert second.started_at.timestamp() >= cleaned_up_at
        assert (first.outcome, first.settlement, first.settled_by) == (
            "timeout",
            "abandoned",
            "host",
        )
        assert "functionTimeout" in (first.error or "")
        assert 0.9 <= (first.duration or 0) < 5
        assert cancelled_id == "slow"  # the coroutine really was cancelled
        assert (second.outcome, second.settlement) == ("succeeded", "completed")
        assert second.delivery_count == first.delivery_count + 1


def test_host_function_timeout_abandons_a_sync_run(tmp_path: Path, emu: ServiceBusEmulator) -> None:
    app = write_app(
        tmp_path / "synctimeout",
        """
        import threading
        RELEASE = threading.Event()

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            RELEASE.wait(20)
        """,
        function_timeout="00:00:01",
        service_bus={"maxConcurrentCalls": 1},
    )
    with load(app, emu) as host:
        send(emu, "work", ServiceBusMessage("slow", message_id="slow"))
        [run] = host.wait_for_invocations(1, timeout=10)
        assert (run.outcome, run.settlement) == ("timeout", "abandoned")
        host.module.RELEASE.set()  # the thread cannot be killed; let it end before stop
        host.wait_for_invocations(2, timeout=10)


def test_host_lock_renewal_keeps_a_long_run_locked(tmp_path: Path, emu: ServiceBusEmulator) -> None:
    """Lock 2 s; the run lasts well past it and still completes: the host kept renewing."""
    app = write_app(
        tmp_path / "renew",
        """
        import threading
        RELEASE = threading.Event()

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="short", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            assert RELEASE.wait(30)
        """,
        service_bus={"maxAutoLockRenewalDuration": "00:01:00", "maxConcurrentCalls": 2},
    )
    with load(app, emu) as host:
        send(emu, "short", ServiceBusMessage("long", message_id="long"))
        host.wait_until(
            lambda runs: runs and runs[0].lock_renewals >= 4, timeout=15, what="4 renewals"
        )
        host.module.RELEASE.set()
        host.wait_idle(timeout=10)
        [run] = host.invocations  # no redelivery while it ran
    assert (run.outcome, run.settlement, run.settlement_error) == ("succeeded", "completed", None)
    assert run.duration is not None and run.duration > 4  # two lock durations
    assert peek(emu, "short") == []


def test_host_lock_renewal_follows_the_broker_clock_not_the_wall_clock(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    """After a test moved the emulator's clock ten minutes ahead, locked-until times are ten
    minutes ahead of wall time; judged by the wall clock the lock would look safe until it
    lapsed. Given the broker's clock, the host renews it in time."""
    emu.clock.advance(600)
    app = write_app(
        tmp_path / "renewclock",
        """
        import threading
        RELEASE = threading.Event()

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="short", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            assert RELEASE.wait(30)
        """,
        service_bus={"maxAutoLockRenewalDuration": "00:01:00"},
    )
    host = FunctionsHost.load(
        app, settings={"SB": emu.connection_string}, broker_clock=emu.clock.now_datetime
    )
    with host:
        send(emu, "short", ServiceBusMessage("long", message_id="long"))
        host.wait_until(
            lambda runs: runs and runs[0].lock_renewals >= 3, timeout=15, what="3 renewals"
        )
        host.module.RELEASE.set()
        host.wait_idle(timeout=10)
        [run] = host.invocations
    assert (run.settlement, run.settlement_error) == ("completed", None)


def test_host_lock_renewal_stops_at_max_duration_and_the_message_comes_back(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "renewcap",
        """
        import threading
        RELEASE = threading.Event()

        @app.service_bus_queue_trigger(arg_name="msg", queue_name="short", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            if msg.delivery_count == 0:
                assert RELEASE.wait(30)
        """,
        service_bus={"maxAutoLockRenewalDuration": "00:00:03", "maxConcurrentCalls": 2},
    )
    with load(app, emu) as host:
        send(emu, "short", ServiceBusMessage("long", message_id="long"))
        # The first run still holds the message when the broker hands it out again.
        host.wait_for_invocations(2, finished=False, timeout=20)
        host.wait_for_invocations(1, where=lambda i: i.delivery_count == 1, timeout=10)
        host.module.RELEASE.set()
        host.wait_idle(timeout=10)
        first, second = host.invocations
    assert first.renewal_stopped == "maxAutoLockRenewalDuration"
    assert first.lock_renewals >= 1
    assert first.outcome == "succeeded" and first.settlement is None  # lock lost: complete failed
    assert "complete failed" in (first.settlement_error or "")
    assert (second.delivery_count, second.settlement) == (1, "completed")


def test_host_output_bindings_service_bus_and_pluggable_handlers(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "outputs",
        """
        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        @app.service_bus_queue_output(arg_name="forward", queue_name="%OUT%", connection="SB")
        @app.generic_output_binding(
            arg_name="signalr", type="signalR", hub_name="huntaze",
            connection_string_setting="AzureSignalRConnectionString",
        )
        def handle(msg: func.ServiceBusMessage, forward: func.Out[str], signalr: func.Out[str]):
            forward.set("copy of " + msg.get_body().decode())
            signalr.set('{"target": "jobUpdate", "arguments": [1], "userId": "u1"}')
        """,
    )
    captured: list[tuple[dict[str, Any], Any]] = []

    async def capture(binding: dict[str, Any], value: Any) -> None:
        captured.append((binding, value))

    host = FunctionsHost.load(
        app,
        settings={"SB": emu.connection_string, "OUT": "out"},
        output_handlers={"signalR": capture},
    )
    with host:
        send(emu, "work", "hello")
        [run] = host.wait_for_invocations(1, timeout=10)
    assert run.settlement == "completed"
    assert run.outputs["forward"] == "copy of hello"
    [(binding, value)] = captured
    assert binding["hubName"] == "huntaze" and json.loads(value)["userId"] == "u1"
    assert [str(m) for m in peek(emu, "out")] == ["copy of hello"]


class _Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, Any], str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body, self.headers.get("Authorization", "")))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_host_signalr_output_posts_to_the_rest_api(tmp_path: Path, emu: ServiceBusEmulator) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app = write_app(
        tmp_path / "signalr",
        """
        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        @app.generic_output_binding(
            arg_name="signalr", type="signalR", hub_name="Huntaze",
            connection_string_setting="AzureSignalRConnectionString",
        )
        def handle(msg: func.ServiceBusMessage, signalr: func.Out[str]) -> None:
            signalr.set('{"target": "jobUpdate", "arguments": [{"p": 1}], "userId": "creator-1"}')
        """,
    )
    endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        with load(
            app, emu, AzureSignalRConnectionString=f"Endpoint={endpoint};AccessKey=k;"
        ) as host:
            send(emu, "work", "x")
            [run] = host.wait_for_invocations(1, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert run.settlement == "completed"
    [(path, body, auth)] = _Recorder.requests
    assert path == "/api/v1/hubs/huntaze/users/creator-1"
    assert body == {"target": "jobUpdate", "arguments": [{"p": 1}]}
    assert auth.startswith("Bearer ")


def test_host_stops_cleanly_without_leaking_threads(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "leaks",
        """
        import asyncio

        @app.service_bus_queue_trigger(
            arg_name="msg", queue_name="work", connection="SB", auto_complete_messages=False
        )
        async def handle(
            msg: servicebus.ServiceBusReceivedMessage,
            actions: servicebus.ServiceBusMessageActions,
        ) -> None:
            await asyncio.sleep(60)  # still running when the host stops

        @app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *")
        def tick(timer: func.TimerRequest) -> None:
            pass
        """,
    )
    before = set(threading.enumerate())
    host = FunctionsHost.load(app, settings={"SB": emu.connection_string}, shutdown_grace=0.5)
    with host:
        send(emu, "work", ServiceBusMessage("x", message_id="x"))
        host.wait_for_invocations(1, function="handle", finished=False, timeout=10)
    runs: list[Invocation] = [i for i in host.invocations if i.function == "handle"]
    assert [(i.outcome, i.settlement) for i in runs] == [("cancelled", "abandoned")]
    leaked = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert leaked == []


def test_host_start_fails_clearly_on_a_missing_entity(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "nope",
        """
        @app.service_bus_queue_trigger(arg_name="msg", queue_name="nope", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            pass
        """,
        service_bus={"clientRetryOptions": {"maxRetries": 0}},  # fail fast
    )
    before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="handle: cannot attach a receiver to nope"):
        with load(app, emu):
            pass
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []
