"""Throughput of the real SDK against the emulator vs. against a trivial Proton sink.

Each server runs in its own process, so the SDK in this process is the only client load; the
ratio (emulator / sink) says how much the emulator's own work costs. A batch send waits for
the server's answer before the next batch, so whatever the server spends per message adds to
what the client spends: target >= 0.9 for batch sends. The durable emulator (``--data-dir``,
every acknowledged operation committed to SQLite) runs the same scenarios; its ratio to the
in-memory emulator says what durability costs (target for batch sends: >= 0.7).

How it measures, so that one run can be compared with itself on a small, busy machine:

- the three servers run side by side; each round runs every scenario on each of them in
  turn, so the figures a ratio compares were taken seconds apart and a slow spell of the
  machine hits all three; each figure is the median of the rounds, each ratio the median of
  the rounds' ratios;
- only the messages are timed: clients and links are opened before the clock starts and
  closed after it stops (the SDK takes ~0.5 s to open a link and up to ~1 s to close a
  peek-lock receiver, which used to be most of what the receive scenarios measured);
- before each round the emulators are reset over the control API, so every round starts
  from empty entities and none measures the backlog the one before left.

The sink accepts every transfer and serves one pre-encoded message endlessly. It is a
ceiling only where the client sends many messages per round trip (batch sends): where every
message is one round trip (single sends, receive + complete) its Python reactor answers more
slowly than the emulator, the ratio is above 1 and the SDK is the bottleneck.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus.admin.control_client import ControlClient

BODY = b"x" * 100
QUEUE = "bench"
TOPIC = "huntaze-jobs"
"""The seed topic: five subscriptions, each with one SQL filter on ``jobType``."""
JOB_TYPES = ("video.analysis", "chat.suggest", "content.suggest", "content.analyze", "other")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
BATCH = 100
BATCH_MESSAGES = int(os.environ.get("BENCH_BATCH_MESSAGES", "8000"))
SINGLE_MESSAGES = 500
RECEIVE_ONE = 3000
RECEIVERS = 8
RECEIVE_EACH = 400
PROJECT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "Config.json"


def bench_config() -> dict[str, object]:
    """The project's topology (its SQL-filtered topics) plus the bench queue."""
    config = json.loads(PROJECT_CONFIG.read_text())
    namespace = config["UserConfig"]["Namespaces"][0]
    namespace["Queues"] = [
        {"Name": QUEUE, "Properties": {"LockDuration": "PT5M", "MaxDeliveryCount": 10}}
    ]
    return dict(config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connection_string(port: int) -> str:
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


@dataclass
class Server:
    """One server under test: its connection string, and its control API (emulators only)."""

    name: str
    conn: str
    control: str | None = None

    def reset(self) -> None:
        if self.control is not None:
            with ControlClient(self.control) as control:
                control.reset()


@contextmanager
def _process(command: list[str], ready_marker: str, cwd: Path | None = None) -> Iterator[list[str]]:
    """Start a server; yield the lines it printed up to and including ``ready_marker``."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if ready_marker in line:
                break
        else:
            raise RuntimeError(f"server exited early: {' '.join(command)}\n{''.join(lines)}")
        yield lines
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def emulator_server(
    *, durable: bool = False, source: Path | None = None, name: str | None = None
) -> Iterator[Server]:
    """An ``sbemu`` process; ``source`` runs another checkout's emulator (before/after runs)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "Config.json"
        config.write_text(json.dumps(bench_config()))
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
        with _process(command, "connection string:", cwd=source) as lines:
            control = next(
                line.split("control API:", 1)[1].strip() for line in lines if "control API:" in line
            )
            label = name or ("durable" if durable else "emulator")
            yield Server(label, _connection_string(port), control)


@contextmanager
def proton_sink() -> Iterator[Server]:
    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.proton_sink", "--port", str(port)]
    with _process(command, "ready"):
        yield Server("sink", _connection_string(port))


def _job(i: int) -> ServiceBusMessage:
    return ServiceBusMessage(BODY, application_properties={"jobType": JOB_TYPES[i % 5]})


def _batch_send(conn: str, topic: bool, count: int = BATCH_MESSAGES) -> float:
    with ServiceBusClient.from_connection_string(conn) as client:
        sender = client.get_topic_sender(TOPIC) if topic else client.get_queue_sender(QUEUE)
        with sender:
            sender.send_messages(ServiceBusMessage(BODY))  # opens the link
            started = time.perf_counter()
            for _ in range(count // BATCH):
                batch = sender.create_message_batch()
                for i in range(BATCH):
                    batch.add_message(_job(i) if topic else ServiceBusMessage(BODY))
                sender.send_messages(batch)
            return count // BATCH * BATCH / (time.perf_counter() - started)


def batch_send_queue(conn: str) -> float:
    return _batch_send(conn, topic=False)


def batch_send_topic(conn: str) -> float:
    return _batch_send(conn, topic=True)


def single_send(conn: str) -> float:
    with (
        ServiceBusClient.from_connection_string(conn) as client,
        client.get_queue_sender(QUEUE) as sender,
    ):
        sender.send_messages(ServiceBusMessage(BODY))
        started = time.perf_counter()
        for _ in range(SINGLE_MESSAGES):
            sender.send_messages(ServiceBusMessage(BODY))
        return SINGLE_MESSAGES / (time.perf_counter() - started)


def _receive_and_complete(receiver: object, count: int) -> None:
    done = 0
    while done < count:
        messages = receiver.receive_messages(  # type: ignore[attr-defined]
            max_message_count=min(BATCH, count - done), max_wait_time=10
        )
        if not messages:
            raise RuntimeError(f"receiver starved after {done} of {count} messages")
        for message in messages:
            receiver.complete_message(message)  # type: ignore[attr-defined]
        done += len(messages)


def _timed_receivers(conn: str, receivers: int, each: int) -> float:
    """Open ``receivers`` peek-lock receivers, then time them taking ``each`` messages."""
    errors: list[BaseException] = []
    ready = threading.Barrier(receivers + 1)
    finished = threading.Barrier(receivers + 1)

    def worker() -> None:
        try:
            with (
                ServiceBusClient.from_connection_string(conn) as client,
                client.get_queue_receiver(QUEUE, prefetch_count=BATCH) as receiver,
            ):
                ready.wait()
                try:
                    _receive_and_complete(receiver, each)
                finally:
                    finished.wait()
        except BaseException as exc:  # reported below
            errors.append(exc)
            ready.abort()
            finished.abort()

    threads = [threading.Thread(target=worker) for _ in range(receivers)]
    for t in threads:
        t.start()
    try:
        ready.wait()
        started = time.perf_counter()
        finished.wait()
        elapsed = time.perf_counter() - started
    except threading.BrokenBarrierError:
        elapsed = 0.0
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return receivers * each / elapsed


def receive_one(conn: str) -> float:
    return _timed_receivers(conn, 1, RECEIVE_ONE)


def receive_concurrent(conn: str) -> float:
    return _timed_receivers(conn, RECEIVERS, RECEIVE_EACH)


SCENARIOS: list[tuple[str, Callable[[str], float]]] = [
    (f"batch send, queue ({BATCH} per batch)", batch_send_queue),
    (f"batch send, topic {TOPIC} (5 SQL filters)", batch_send_topic),
    ("single send, queue", single_send),
    ("peek-lock receive+complete, 1 receiver", receive_one),
    (f"peek-lock receive+complete, {RECEIVERS} receivers", receive_concurrent),
]
TARGETS = {"emulator": 0.9, "durable": 0.7}
"""Batch-send targets: emulator / sink, and durable / emulator."""


def measure(servers: list[Server], rounds: int = ROUNDS) -> dict[str, dict[str, list[float]]]:
    """Every scenario on every server, ``rounds`` times.

    Scenario by scenario, each server in turn (the first one changing every round), so the
    figures a ratio compares were taken seconds apart. Each round starts from empty entities;
    its batch sends fill the queue the receive scenarios then take from.
    """
    results: dict[str, dict[str, list[float]]] = {
        server.name: {name: [] for name, _ in SCENARIOS} for server in servers
    }
    for server in servers:  # warm-up, not counted: the first sends of a process are slower
        _batch_send(server.conn, topic=True, count=20 * BATCH)
    for r in range(rounds):
        order = servers[r % len(servers) :] + servers[: r % len(servers)]
        for server in order:
            server.reset()
        for name, scenario in SCENARIOS:
            for server in order:
                results[server.name][name].append(scenario(server.conn))
    return results


def _ratio(results: dict[str, dict[str, list[float]]], top: str, bottom: str, name: str) -> float:
    """The median of the rounds' ratios (each pair measured seconds apart)."""
    pairs = zip(results[top][name], results[bottom][name], strict=True)
    return statistics.median(t / b for t, b in pairs)


def table(results: dict[str, dict[str, list[float]]], rounds: int) -> list[str]:
    def med(server: str, name: str) -> float:
        return statistics.median(results[server][name])

    lines = [
        f"Service Bus data plane, azure-servicebus SDK, 100-byte bodies: msg/s, median of "
        f"{rounds} rounds; ratios are medians of each round's ratio",
        f"{'scenario':<48}{'proton sink':>12}{'emulator':>10}{'ratio':>7}"
        f"{'durable':>10}{'vs memory':>11}",
    ]
    for name, _ in SCENARIOS:
        lines.append(
            f"{name:<48}{med('sink', name):>12.0f}{med('emulator', name):>10.0f}"
            f"{_ratio(results, 'emulator', 'sink', name):>7.2f}"
            f"{med('durable', name):>10.0f}{_ratio(results, 'durable', 'emulator', name):>11.2f}"
        )
    for name, _ in SCENARIOS[:2]:
        ratio = _ratio(results, "emulator", "sink", name)
        durable = _ratio(results, "durable", "emulator", name)
        pairs = zip(results["emulator"][name], results["sink"][name], strict=True)
        spread = [e / s for e, s in pairs]
        lines.append(
            f"{name}: emulator/sink {ratio:.2f} (rounds {min(spread):.2f}-{max(spread):.2f}, "
            f"target {TARGETS['emulator']}: {'OK' if ratio >= TARGETS['emulator'] else 'BELOW'}); "
            f"durable/emulator {durable:.2f} "
            f"(target {TARGETS['durable']}: {'OK' if durable >= TARGETS['durable'] else 'BELOW'})"
        )
    return lines


def run() -> list[str]:
    with ExitStack() as stack:
        servers = [
            stack.enter_context(proton_sink()),
            stack.enter_context(emulator_server()),
            stack.enter_context(emulator_server(durable=True)),
        ]
        results = measure(servers)
    return table(results, ROUNDS)
