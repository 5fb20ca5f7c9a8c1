"""Throughput of the real SDK against the emulator vs. against a trivial Proton sink.

Both servers run in their own process, so the SDK in this process is the only client load;
the ratio (emulator / sink) says how much the emulator's own work costs. Target: >= 0.8.
The durable emulator (``--data-dir``, every acknowledged operation committed to SQLite) runs
the same scenarios; its ratio to the in-memory emulator says what durability costs (target
for batch send: >= 0.7).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from azure.servicebus import ServiceBusClient, ServiceBusMessage

BODY = b"x" * 100
BATCH_MESSAGES = 5000
SINGLE_MESSAGES = 500
RECEIVE_ONE = 2000
RECEIVERS = 8
RECEIVE_EACH = 300
QUEUE = "bench"

BENCH_CONFIG = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    {
                        "Name": QUEUE,
                        "Properties": {"LockDuration": "PT5M", "MaxDeliveryCount": 10},
                    }
                ],
                "Topics": [],
            }
        ]
    }
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connection_string(port: int) -> str:
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


@contextmanager
def _server(command: list[str], ready_marker: str) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if ready_marker in line:
                break
        else:
            raise RuntimeError(f"server exited early: {' '.join(command)}")
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def emulator_server(*, durable: bool = False) -> Iterator[str]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "Config.json"
        config.write_text(json.dumps(BENCH_CONFIG))
        data_dir = ["--data-dir", str(Path(tmp) / "state")] if durable else []
        command = [
            sys.executable,
            "-m",
            "emulator.servicebus",
            "--config",
            str(config),
            "--port",
            str(port),
            "--admin-port",
            "0",
            "--log-level",
            "WARNING",
            *data_dir,
        ]
        with _server(command, "connection string:"):
            yield _connection_string(port)


@contextmanager
def durable_emulator_server() -> Iterator[str]:
    with emulator_server(durable=True) as conn:
        yield conn


@contextmanager
def proton_sink() -> Iterator[str]:
    port = _free_port()
    with _server([sys.executable, "-m", "benchmarks.proton_sink", "--port", str(port)], "ready"):
        yield _connection_string(port)


def _rate(count: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def batch_send(conn: str) -> float:
    with (
        ServiceBusClient.from_connection_string(conn) as client,
        client.get_queue_sender(QUEUE) as sender,
    ):
        sender.send_messages(ServiceBusMessage(BODY))  # warm the link

        def work() -> None:
            for _ in range(BATCH_MESSAGES // 100):
                batch = sender.create_message_batch()
                for _ in range(100):
                    batch.add_message(ServiceBusMessage(BODY))
                sender.send_messages(batch)

        return _rate(BATCH_MESSAGES, work)


def single_send(conn: str) -> float:
    with (
        ServiceBusClient.from_connection_string(conn) as client,
        client.get_queue_sender(QUEUE) as sender,
    ):
        sender.send_messages(ServiceBusMessage(BODY))

        def work() -> None:
            for _ in range(SINGLE_MESSAGES):
                sender.send_messages(ServiceBusMessage(BODY))

        return _rate(SINGLE_MESSAGES, work)


def _receive_and_complete(conn: str, count: int) -> None:
    with (
        ServiceBusClient.from_connection_string(conn) as client,
        client.get_queue_receiver(QUEUE, prefetch_count=100) as receiver,
    ):
        done = 0
        while done < count:
            messages = receiver.receive_messages(
                max_message_count=min(100, count - done), max_wait_time=10
            )
            if not messages:
                raise RuntimeError(f"receiver starved after {done} of {count} messages")
            for message in messages:
                receiver.complete_message(message)
            done += len(messages)


def receive_one(conn: str) -> float:
    return _rate(RECEIVE_ONE, lambda: _receive_and_complete(conn, RECEIVE_ONE))


def receive_concurrent(conn: str) -> float:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            _receive_and_complete(conn, RECEIVE_EACH)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def work() -> None:
        threads = [threading.Thread(target=worker) for _ in range(RECEIVERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    rate = _rate(RECEIVERS * RECEIVE_EACH, work)
    if errors:
        raise errors[0]
    return rate


SCENARIOS: list[tuple[str, Callable[[str], float]]] = [
    ("batch send (100 per batch)", batch_send),
    ("single send", single_send),
    ("peek-lock receive+complete, 1 receiver", receive_one),
    (f"peek-lock receive+complete, {RECEIVERS} receivers", receive_concurrent),
]


def run() -> list[str]:
    results: dict[str, dict[str, float]] = {}
    servers = (
        ("sink", proton_sink),
        ("emulator", emulator_server),
        ("durable", durable_emulator_server),
    )
    for label, server in servers:
        with server() as conn:
            results[label] = {name: scenario(conn) for name, scenario in SCENARIOS}
    lines = [
        "Service Bus data plane, azure-servicebus SDK, 100-byte bodies (msgs/s)",
        f"{'scenario':<45}{'proton sink':>12}{'emulator':>12}{'ratio':>8}"
        f"{'durable':>10}{'vs memory':>11}",
    ]
    for name, _ in SCENARIOS:
        sink, emu = results["sink"][name], results["emulator"][name]
        durable = results["durable"][name]
        lines.append(
            f"{name:<45}{sink:>12.0f}{emu:>12.0f}{emu / sink:>8.2f}"
            f"{durable:>10.0f}{durable / emu:>11.2f}"
        )
    return lines
