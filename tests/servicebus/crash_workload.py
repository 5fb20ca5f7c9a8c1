"""Crash recovery under load: SDK clients against a durable emulator that is SIGKILLed.

The emulator runs as a child process on a data dir. Batch senders (a queue and a topic) and
peek-lock receivers (completing, dead-lettering, abandoning, by a seeded draw) run at once; at
a seeded point the emulator is killed with SIGKILL and restarted on the same dir and port, and
the clients reconnect. Every outcome the SDK reported is written to a :class:`Ledger`; after
each restart, before any client resumes, :func:`check_after_restart` compares the ledger with
what the emulator holds (read through the control API, which never locks):

- every message whose send the SDK saw acknowledged is there exactly once (active or dead
  letter), unless a complete of it was acknowledged or may have landed before the crash;
- no message whose complete the SDK saw acknowledged is there;
- every message an acknowledged dead-letter moved is in the dead-letter queue;
- a message a receiver held (locked, not settled) at the crash is available again, unlocked,
  with its delivery count one higher than the receiver saw;
- nothing is there that no sender sent, and no sequence number names two messages.

Senders resend the batches whose outcome they did not learn; duplicate detection (its window
is durable too) drops those that had landed, so after the last restart everything drains and
:func:`check_drained` holds every sent message to exactly one acknowledged complete or dead
letter (or one complete whose answer the crash swallowed).

``tests/servicebus/test_crash_recovery.py`` runs a few seeded kill points; ``make crash-soak``
runs this module (``--rounds N``) with random seeds and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
    ServiceBusSender,
)

from emulator.servicebus.admin.control_client import ControlClient

QUEUE = "work"
TOPIC = "events"
ALL = f"{TOPIC}/Subscriptions/all"
EVEN = f"{TOPIC}/Subscriptions/even"
PATHS = (QUEUE, ALL, EVEN)
MAX_DELIVERY_COUNT = 4
BATCH = 10
READY_TIMEOUT = 20.0
PARK_TIMEOUT = 20.0
DRAIN_TIMEOUT = 30.0


def _receiver_properties() -> dict[str, object]:
    return {"LockDuration": "PT1M", "MaxDeliveryCount": MAX_DELIVERY_COUNT}


CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    {
                        "Name": QUEUE,
                        "Properties": {
                            **_receiver_properties(),
                            "RequiresDuplicateDetection": True,
                            "DuplicateDetectionHistoryTimeWindow": "PT10M",
                        },
                    }
                ],
                "Topics": [
                    {
                        "Name": TOPIC,
                        "Properties": {
                            "RequiresDuplicateDetection": True,
                            "DuplicateDetectionHistoryTimeWindow": "PT10M",
                        },
                        "Subscriptions": [
                            {"Name": "all", "Properties": _receiver_properties(), "Rules": []},
                            {
                                "Name": "even",
                                "Properties": _receiver_properties(),
                                "Rules": [
                                    {
                                        "Name": "even",
                                        "Properties": {
                                            "FilterType": "Sql",
                                            "SqlFilter": {"SqlExpression": "parity = 'even'"},
                                        },
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }
}


class CrashCheckError(AssertionError):
    """What the emulator holds after a restart contradicts what the SDK was told."""


# -- the emulator process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmulatorProcess:
    """``python -m emulator.servicebus --data-dir DIR`` on a fixed AMQP port."""

    def __init__(self, config: Path, data_dir: Path, log: Path, port: int) -> None:
        self.config = config
        self.data_dir = data_dir
        self.log = log
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.control_url = ""
        self.restart_seconds: list[float] = []

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )

    def start(self) -> None:
        started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "emulator.servicebus",
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            "--admin-port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "WARNING",
        ]
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"--- start {' '.join(command)}\n")
        stderr = self.log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        stderr.close()
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, lines), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"emulator not ready in {READY_TIMEOUT}s; see {self.log}"
                ) from None
            if line is None:
                raise RuntimeError(f"emulator exited at start; see {self.log}")
            if "control API:" in line:
                self.control_url = line.split("control API:", 1)[1].strip()
            if "connection string:" in line:
                break
        self.restart_seconds.append(time.monotonic() - started)

    @staticmethod
    def _read(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# -- what the SDK was told ------------------------------------------------------------------------


@dataclass
class Ledger:
    """Every outcome the clients saw, by receiving path (``work``, ``events/Subscriptions/all``)."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    sent: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Acknowledged sends, by the paths each message must reach."""
    maybe_sent: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    completed: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    maybe_completed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    dead_lettered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    maybe_dead_lettered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    held: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    """Received and not (knowingly) settled: id -> the delivery count the receiver saw."""
    sequence_of: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    id_of: dict[str, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    acked_sends: int = 0
    abandoned: int = 0
    cut_sends: int = 0
    """Batches whose send a kill interrupted (outcome unknown to the SDK)."""
    cut_settles: int = 0

    def note(self, change: Callable[[], None]) -> None:
        with self.lock:
            change()
            self.lock.notify_all()

    def wait_for_sends(self, count: int, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.acked_sends >= count, timeout)

    def see(self, path: str, message_id: str, sequence_number: int) -> None:
        """Record a message's sequence number: the same id keeps it, no two ids share one."""
        known = self.sequence_of[path].get(message_id)
        if known is not None and known != sequence_number:
            raise CrashCheckError(
                f"{path}: {message_id} had sequence number {known}, now {sequence_number}"
            )
        other = self.id_of[path].get(sequence_number)
        if other is not None and other != message_id:
            raise CrashCheckError(
                f"{path}: sequence number {sequence_number} named {other}, now {message_id}"
            )
        self.sequence_of[path][message_id] = sequence_number
        self.id_of[path][sequence_number] = message_id


def targets(message_id: str, is_topic: bool) -> list[str]:
    """The receiving paths a sent message must reach (the topic's filter: even numbers)."""
    if not is_topic:
        return [QUEUE]
    return [ALL, EVEN] if int(message_id.rsplit("-", 1)[1]) % 2 == 0 else [ALL]


# -- clients -------------------------------------------------------------------------------------


class Phase:
    """Whether the emulator is up, and the clients parked while it is not.

    Clients work while ``running``; after an error (the kill) each parks and waits for the next
    generation, which the controller starts once the emulator is back and checked.
    """

    def __init__(self, clients: int) -> None:
        self.cond = threading.Condition()
        self.clients = clients
        self.generation = 0
        self.running = False
        self.stopping = False
        self.draining = False
        self.parked = 0
        self.connection_string = ""
        self.errors: list[BaseException] = []

    def resume(self, connection_string: str, *, draining: bool = False) -> None:
        with self.cond:
            self.connection_string = connection_string
            self.generation += 1
            self.running = True
            self.draining = draining
            self.parked = 0
            self.cond.notify_all()

    def halt(self) -> None:
        with self.cond:
            self.running = False
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.running = False
            self.cond.notify_all()

    def park(self, generation: int) -> tuple[int, str] | None:
        """Wait for the generation after ``generation``; None once stopping."""
        with self.cond:
            self.parked += 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.stopping or self.generation > generation)
            if self.stopping:
                return None
            return self.generation, self.connection_string

    def wait_parked(self, timeout: float) -> bool:
        """True once every client is parked (or one failed: see ``errors``)."""
        with self.cond:
            return self.cond.wait_for(
                lambda: self.parked >= self.clients or bool(self.errors), timeout
            )

    def failed(self, error: BaseException) -> None:
        with self.cond:
            self.errors.append(error)
            self.cond.notify_all()

    def is_running(self, generation: int) -> bool:
        return self.running and self.generation == generation and not self.stopping


def _client(connection_string: str) -> ServiceBusClient:
    # No SDK retries: an operation the kill interrupts fails at once and is recorded as unknown.
    return ServiceBusClient.from_connection_string(connection_string, retry_total=0)


class _Client(threading.Thread):
    """A workload thread: whatever ends its run unexpectedly is the controller's to report."""

    phase: Phase

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the controller
            self.phase.failed(exc)

    def _run(self) -> None:
        raise NotImplementedError


class Sender(_Client):
    def __init__(
        self, name: str, entity: str, phase: Phase, ledger: Ledger, batches_per_round: int
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.entity = entity
        self.is_topic = entity == TOPIC
        self.phase = phase
        self.ledger = ledger
        self.batches_per_round = batches_per_round
        self.next_number = 0
        self.unknown: list[list[str]] = []

    def _run(self) -> None:
        turn = self.phase.park(0)
        while turn is not None:
            generation, connection_string = turn
            try:
                with _client(connection_string) as client:
                    sender = (
                        client.get_topic_sender(self.entity)
                        if self.is_topic
                        else client.get_queue_sender(self.entity)
                    )
                    with sender:
                        self._send_round(sender, generation)
            except Exception:
                pass  # the kill: the batch in flight is in ``unknown``
            turn = self.phase.park(generation)

    def _send_round(self, sender: ServiceBusSender, generation: int) -> None:
        while self.unknown and self.phase.is_running(generation):
            self._send(sender, self.unknown[0])  # resend: duplicate detection drops landed ones
            self.unknown.pop(0)
        if self.phase.draining:
            return
        for _ in range(self.batches_per_round):
            if not self.phase.is_running(generation):
                return
            ids = [f"{self.name}-{self.next_number + i}" for i in range(BATCH)]
            self.next_number += BATCH
            self.unknown.append(ids)
            self._send(sender, ids)
            self.unknown.pop()

    def _cut(self) -> None:
        self.ledger.cut_sends += 1

    def _send(self, sender: ServiceBusSender, ids: list[str]) -> None:
        def maybe() -> None:
            for message_id in ids:
                for path in targets(message_id, self.is_topic):
                    self.ledger.maybe_sent[path].add(message_id)

        self.ledger.note(maybe)
        batch = sender.create_message_batch()
        for message_id in ids:
            parity = "even" if int(message_id.rsplit("-", 1)[1]) % 2 == 0 else "odd"
            batch.add_message(
                ServiceBusMessage(
                    message_id, message_id=message_id, application_properties={"parity": parity}
                )
            )
        try:
            sender.send_messages(batch)
        except BaseException:
            self.ledger.note(self._cut)
            raise

        def acked() -> None:
            for message_id in ids:
                for path in targets(message_id, self.is_topic):
                    self.ledger.sent[path].add(message_id)
            self.ledger.acked_sends += len(ids)

        self.ledger.note(acked)


class Receiver(_Client):
    """Peek-lock: complete most, dead-letter and abandon some (seeded), one at a time."""

    def __init__(self, name: str, path: str, phase: Phase, ledger: Ledger, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.path = path
        self.phase = phase
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.empty_polls = 0

    def _run(self) -> None:
        turn = self.phase.park(0)
        while turn is not None:
            generation, connection_string = turn
            try:
                with _client(connection_string) as client:
                    if self.path == QUEUE:
                        receiver = client.get_queue_receiver(QUEUE, prefetch_count=0)
                    else:
                        subscription = self.path.rsplit("/", 1)[1]
                        receiver = client.get_subscription_receiver(
                            TOPIC, subscription, prefetch_count=0
                        )
                    with receiver:
                        self._receive_round(receiver, generation)
            except CrashCheckError:
                raise
            except Exception:
                pass  # the kill
            turn = self.phase.park(generation)

    def _receive_round(self, receiver: ServiceBusReceiver, generation: int) -> None:
        while self.phase.is_running(generation):
            messages = receiver.receive_messages(max_message_count=BATCH, max_wait_time=0.5)
            if not messages:
                self.ledger.note(self._polled_empty)
            for message in messages:
                self._take(message)
            for message in messages:
                if not self.phase.is_running(generation):
                    return  # the rest stay locked: the kill finds them held
                self._settle(receiver, message)

    def _cut(self) -> None:
        self.ledger.cut_settles += 1

    def _polled_empty(self) -> None:
        self.empty_polls += 1

    def _take(self, message: ServiceBusReceivedMessage) -> None:
        message_id = str(message.message_id)

        def take() -> None:
            self.empty_polls = 0
            self.ledger.see(self.path, message_id, int(message.sequence_number or 0))
            self.ledger.held[self.path][message_id] = int(message.delivery_count or 0)

        self.ledger.note(take)

    def _settle(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
        message_id = str(message.message_id)
        draw = self.rng.random()
        action = "complete" if draw < 0.75 else "dead-letter" if draw < 0.85 else "abandon"
        maybe = {
            "complete": self.ledger.maybe_completed,
            "dead-letter": self.ledger.maybe_dead_lettered,
        }.get(action)
        if maybe is not None:
            self.ledger.note(lambda: maybe[self.path].add(message_id))
        try:
            if action == "complete":
                receiver.complete_message(message)
            elif action == "dead-letter":
                receiver.dead_letter_message(
                    message, reason="crash-test", error_description="drawn"
                )
            else:
                receiver.abandon_message(message)
        except BaseException:
            self.ledger.note(self._cut)
            raise

        def settled() -> None:
            self.ledger.held[self.path].pop(message_id, None)
            if action == "complete":
                self.ledger.completed[self.path][message_id] += 1
            elif action == "dead-letter":
                self.ledger.dead_lettered[self.path].add(message_id)
            else:
                self.ledger.abandoned += 1

        self.ledger.note(settled)


# -- checks --------------------------------------------------------------------------------------


def peek_all(control: ControlClient, entity: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    start = 0
    while True:
        page = control.peek(entity, max_count=1000, from_sequence_number=start)
        found += page
        if len(page) < 1000:
            return found
        start = int(page[-1]["sequence_number"]) + 1


def _id(message: dict[str, Any]) -> str:
    return str(message["system_properties"]["MessageId"])


def check_after_restart(control: ControlClient, ledger: Ledger) -> dict[str, int]:
    """The checks of the module docstring; returns how many held messages came back."""
    figures = {"held_back": 0, "present": 0}
    with ledger.lock:
        for path in PATHS:
            active = peek_all(control, path)
            dead = peek_all(control, f"{path}/$DeadLetterQueue")
            ids = [_id(m) for m in active + dead]
            twice = [i for i, n in Counter(ids).items() if n > 1]
            if twice:
                raise CrashCheckError(f"{path}: present more than once: {twice[:5]}")
            present = set(ids)
            figures["present"] += len(present)
            for message in active + dead:
                ledger.see(path, _id(message), int(message["sequence_number"]))
                if message["locked"]:
                    raise CrashCheckError(f"{path}: {_id(message)} is still locked")
            completed = set(ledger.completed[path])
            maybe_completed = ledger.maybe_completed[path]
            lost = ledger.sent[path] - present - completed - maybe_completed
            if lost:
                raise CrashCheckError(f"{path}: acknowledged sends lost: {sorted(lost)[:5]}")
            back = completed & present
            if back:
                raise CrashCheckError(f"{path}: acknowledged completes came back: {sorted(back)}")
            twice_completed = [i for i, n in ledger.completed[path].items() if n > 1]
            if twice_completed:
                raise CrashCheckError(f"{path}: completed twice: {twice_completed[:5]}")
            phantoms = present - ledger.sent[path] - ledger.maybe_sent[path]
            if phantoms:
                raise CrashCheckError(f"{path}: never sent: {sorted(phantoms)[:5]}")
            dead_ids = {_id(m) for m in dead}
            missing_dead = ledger.dead_lettered[path] - dead_ids
            if missing_dead:
                raise CrashCheckError(
                    f"{path}: acknowledged dead letters not in the DLQ: {sorted(missing_dead)[:5]}"
                )
            by_id = {_id(m): m for m in active}
            for message_id, seen_count in ledger.held[path].items():
                message = by_id.get(message_id)
                if message is None:
                    continue  # completed, dead-lettered (maybe in flight) or at MaxDeliveryCount
                if int(message["delivery_count"]) != seen_count + 1:
                    raise CrashCheckError(
                        f"{path}: {message_id} was held at delivery count {seen_count} and came "
                        f"back with {message['delivery_count']} (expected {seen_count + 1})"
                    )
                figures["held_back"] += 1
            ledger.held[path].clear()
            numbers = [int(m["sequence_number"]) for m in active + dead]
            if len(numbers) != len(set(numbers)):
                raise CrashCheckError(f"{path}: a sequence number names two messages")
    return figures


def check_drained(control: ControlClient, ledger: Ledger) -> None:
    """After the last restart everything was received: each message settled exactly once."""
    with ledger.lock:
        for path in PATHS:
            active = peek_all(control, path)
            if active:
                raise CrashCheckError(f"{path}: {len(active)} message(s) never drained")
            dead = {_id(m) for m in peek_all(control, f"{path}/$DeadLetterQueue")}
            done = set(ledger.completed[path]) | ledger.maybe_completed[path] | dead
            lost = ledger.sent[path] - done
            if lost:
                raise CrashCheckError(f"{path}: sent but never settled: {sorted(lost)[:5]}")
            both = set(ledger.completed[path]) & dead
            if both:
                raise CrashCheckError(f"{path}: completed and dead-lettered: {sorted(both)[:5]}")
            unresolved = ledger.maybe_sent[path] - ledger.sent[path]
            if unresolved:
                raise CrashCheckError(f"{path}: sends never acknowledged: {sorted(unresolved)[:5]}")


# -- a run ---------------------------------------------------------------------------------------


@dataclass
class RunResult:
    seed: int
    kills: int
    acked_sends: int
    completed: int
    dead_lettered: int
    abandoned: int
    held_back: int
    unknown_sends: int
    unknown_settles: int
    restart_seconds: list[float]
    seconds: float

    def summary(self) -> str:
        restarts = ", ".join(f"{s * 1000:.0f}" for s in self.restart_seconds[1:])
        return (
            f"seed {self.seed}: {self.kills} kill(s), {self.acked_sends} sends acknowledged, "
            f"{self.completed} completed, {self.dead_lettered} dead-lettered, "
            f"{self.abandoned} abandoned, {self.held_back} held at a kill and redelivered with "
            f"the delivery counted, {self.unknown_sends} batch send(s) and "
            f"{self.unknown_settles} settlement(s) cut off by a kill; restarts {restarts} ms; "
            f"{self.seconds:.1f}s"
        )


@contextmanager
def _clients(
    phase: Phase, ledger: Ledger, seed: int, batches: int
) -> Iterator[list[Sender | Receiver]]:
    threads: list[Sender | Receiver] = [
        Sender("q1", QUEUE, phase, ledger, batches),
        Sender("q2", QUEUE, phase, ledger, batches),
        Sender("t1", TOPIC, phase, ledger, batches),
        Receiver("rq1", QUEUE, phase, ledger, seed * 10 + 1),
        Receiver("rq2", QUEUE, phase, ledger, seed * 10 + 2),
        Receiver("rall", ALL, phase, ledger, seed * 10 + 3),
        Receiver("reven", EVEN, phase, ledger, seed * 10 + 4),
    ]
    phase.clients = len(threads)
    for thread in threads:
        thread.start()
    try:
        yield threads
    finally:
        phase.stop()
        for thread in threads:
            thread.join(timeout=30)


def run(workdir: Path, *, seed: int, kills: int, batches: int = 12) -> RunResult:
    """One emulator on one data dir, killed ``kills`` times at seeded points, then drained."""
    started = time.monotonic()
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "Config.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    emulator = EmulatorProcess(config, workdir / "state", workdir / "emulator.log", free_port())
    ledger = Ledger()
    phase = Phase(clients=7)
    held_back = 0
    advanced = 0.0
    try:
        emulator.start()
        with _clients(phase, ledger, seed, batches) as threads:
            _wait_parked(phase, "the clients did not start")
            round_start = ledger.acked_sends
            phase.resume(emulator.connection_string, draining=kills == 0)
            for kill in range(kills):
                with ControlClient(emulator.control_url) as control:
                    control.advance(1.5)  # the clock's offset must survive the kill
                advanced += 1.5
                # Within this generation's new batches (each sender sends ``batches``).
                kill_at = round_start + rng.randint(BATCH, 3 * batches * BATCH - BATCH)
                if not ledger.wait_for_sends(kill_at, PARK_TIMEOUT):
                    raise RuntimeError(f"senders stalled at {ledger.acked_sends} < {kill_at}")
                emulator.kill()
                phase.halt()
                _wait_parked(phase, "clients did not notice the kill")
                emulator.start()
                with ControlClient(emulator.control_url) as control:
                    offset = control.clock()["offset_seconds"]
                    if abs(offset - advanced) > 1e-6:
                        raise CrashCheckError(
                            f"clock offset {offset} after restart, not {advanced}"
                        )
                    held_back += check_after_restart(control, ledger)["held_back"]
                round_start = ledger.acked_sends
                phase.resume(emulator.connection_string, draining=kill == kills - 1)
            _drain(emulator, ledger, threads)
            phase.halt()
            _wait_parked(phase, "clients did not stop")
            with ControlClient(emulator.control_url) as control:
                check_drained(control, ledger)
    finally:
        emulator.stop()
    return RunResult(
        seed=seed,
        kills=kills,
        acked_sends=ledger.acked_sends,
        completed=sum(sum(c.values()) for c in ledger.completed.values()),
        dead_lettered=sum(len(d) for d in ledger.dead_lettered.values()),
        abandoned=ledger.abandoned,
        held_back=held_back,
        unknown_sends=ledger.cut_sends,
        unknown_settles=ledger.cut_settles,
        restart_seconds=emulator.restart_seconds,
        seconds=time.monotonic() - started,
    )


def _drain(emulator: EmulatorProcess, ledger: Ledger, threads: list[Sender | Receiver]) -> None:
    """Wait until every resend is acknowledged and every receiver came back empty twice (the
    ledger's condition wakes on each outcome), then confirm with the emulator's counts."""
    senders = [t for t in threads if isinstance(t, Sender)]
    receivers = [t for t in threads if isinstance(t, Receiver)]
    deadline = time.monotonic() + DRAIN_TIMEOUT

    def quiet() -> bool:
        return all(not s.unknown for s in senders) and all(r.empty_polls >= 2 for r in receivers)

    with ControlClient(emulator.control_url) as control:
        while True:
            with ledger.lock:
                for receiver in receivers:
                    receiver.empty_polls = 0
                if not ledger.lock.wait_for(quiet, max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"not drained after {DRAIN_TIMEOUT}s")
            counts = control.entities()
            left = sum(q["counts"]["active"] for q in counts["queues"]) + sum(
                s["counts"]["active"] for t in counts["topics"] for s in t["subscriptions"]
            )
            if left == 0:
                return


def _wait_parked(phase: Phase, problem: str) -> None:
    parked = phase.wait_parked(PARK_TIMEOUT)
    if phase.errors:
        raise phase.errors[0]
    if not parked:
        raise RuntimeError(f"{problem} within {PARK_TIMEOUT}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="make crash-soak: kill -9 the emulator, check")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--kills", type=int, default=3, help="kills per round")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="crash-soak-"))
    results: list[RunResult] = []
    failures: list[str] = []
    for round_number in range(args.rounds):
        seed = first + round_number
        try:
            result = run(base / f"round-{round_number}", seed=seed, kills=args.kills)
        except (CrashCheckError, RuntimeError) as exc:
            failures.append(f"seed {seed}: {exc}")
            print(f"round {round_number + 1}/{args.rounds} FAILED (seed {seed}): {exc}", flush=True)
            continue
        results.append(result)
        print(f"round {round_number + 1}/{args.rounds} ok: {result.summary()}", flush=True)
    restarts = sorted(s for r in results for s in r.restart_seconds[1:])
    print()
    print(f"crash soak: {len(results)}/{args.rounds} rounds passed, {len(failures)} failed")
    if results:
        print(
            f"  kills {sum(r.kills for r in results)}, sends acknowledged "
            f"{sum(r.acked_sends for r in results)}, completed "
            f"{sum(r.completed for r in results)}, dead-lettered "
            f"{sum(r.dead_lettered for r in results)}, abandoned "
            f"{sum(r.abandoned for r in results)}, redelivered after a kill "
            f"{sum(r.held_back for r in results)}, batch sends cut off "
            f"{sum(r.unknown_sends for r in results)}, settlements cut off "
            f"{sum(r.unknown_settles for r in results)}"
        )
        print(
            f"  restart to ready: median {restarts[len(restarts) // 2] * 1000:.0f} ms, "
            f"max {restarts[-1] * 1000:.0f} ms; {sum(r.seconds for r in results):.0f}s in all"
        )
    for failure in failures:
        print(f"  FAILED {failure}")
    print(f"  work dirs (data dir, emulator log per round): {base}")
    if os.environ.get("CRASH_SOAK_KEEP") is None and not failures and not args.workdir:
        shutil.rmtree(base, ignore_errors=True)
        print("  (removed: all rounds passed; CRASH_SOAK_KEEP=1 keeps them)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
