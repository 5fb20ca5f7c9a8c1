"""Memory soak: many messages through the seed topology, the clock moving, memory over time.

The emulator (``sbemu`` as ``make run`` starts it, on ``config/Config.json``) runs as a child
process that also answers memory questions on its stdin (``--serve``): RSS, the interpreter's
allocated blocks (``sys.getallocatedblocks``: objects alive, whatever the C allocator keeps)
and, with ``--tracemalloc``, the traced Python heap. The load goes in waves; each wave

1. sends its messages with the real SDK, in batches of 100, from ``--senders`` processes
   (the SDK, not the emulator, is what limits one process): half to ``huntaze-jobs`` with a
   ``jobType`` for each of its SQL-filtered subscriptions (a fifth unknown: ``unrouted``),
   half to the ``huntaze-events`` fan-out (4 subscriptions, a copy each); 1 in 50 with a 30 s
   TTL, 1 in 50 scheduled 60 s ahead on the emulator's clock;
2. takes some messages of three subscriptions with peek-lock receivers that complete most,
   abandon every "poison" message (until MaxDeliveryCount dead-letters it) and leave some
   unsettled (their locks lapse);
3. moves the clock 5 minutes (locks lapse and the messages come back with the delivery
   counted, schedules fall due, short TTLs expire: dead-lettered on ``huntaze-jobs``,
   dropped on ``huntaze-events``), then 15 days (everything left expires the same way);
4. drains every dead-letter queue with receive-and-delete receivers and checks that every
   entity is empty.

Memory is read at the baseline (after a warm-up wave, so connections and one-time caches are
counted there), after each wave's sends (its peak) and once it is drained (after a garbage
collection and ``malloc_trim``). The run fails unless, drained, the live objects are back at
the baseline's count (allocated blocks within ``max(2 %, 5,000)``) and RSS has not grown past
the first wave's peak. RSS itself does not come back on CPython's allocator, which keeps an
arena while any object in it lives (see ``SoakResult.rss_reference``); with ``--malloc`` the
emulator runs on the C allocator instead and RSS must come back to the baseline (within
``max(5 %, 6 MB)``).

``make soak SOAK_MESSAGES=1000000`` runs it; ``tests/servicebus/test_soak.py`` runs a short
version in the unit suite.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSender,
)

from emulator.servicebus.admin.control_client import ControlClient

ROOT = Path(__file__).resolve().parents[2]
SEED_CONFIG = ROOT / "config" / "Config.json"
JOBS = "huntaze-jobs"
EVENTS = "huntaze-events"
JOB_TYPES = ("video.analysis", "chat.suggest", "content.suggest", "content.analyze", "other")
BATCH = 100
SHORT_TTL = timedelta(seconds=30)
SCHEDULE_AHEAD = 60.0
PEEK_LOCK = (
    f"{JOBS}/Subscriptions/video-analysis",
    f"{JOBS}/Subscriptions/chat-suggestions",
    f"{EVENTS}/Subscriptions/notify-email",
)
"""Subscriptions whose messages peek-lock receivers take each wave."""
READY_TIMEOUT = 30.0
BODY = b"x" * 100


# -- the emulator process and its memory ----------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _stats(collect: bool) -> dict[str, Any]:
    """This process's memory; ``collect`` first runs the collector and gives freed heap
    pages back to the system (what is left is what the emulator holds)."""
    if collect:
        gc.collect()
        with suppress(OSError, AttributeError):  # glibc only
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else None
    return {
        "rss": _rss_bytes(),
        "blocks": sys.getallocatedblocks(),
        "traced": traced[0] if traced else None,
        "traced_peak": traced[1] if traced else None,
    }


GROWTH_LINES = 8


def _growth_line(stat: tracemalloc.StatisticDiff) -> str:
    frames = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in stat.traceback)
    return f"{stat.size_diff / 1024:+.0f} KiB {stat.count_diff:+} blocks: {frames}"


def serve(sbemu_args: list[str]) -> int:
    """``sbemu`` in this process, answering ``stats`` / ``collect`` lines on stdin."""
    from emulator.servicebus.__main__ import main as sbemu

    baseline: list[tracemalloc.Snapshot] = []

    def answer() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "mallocstats":  # pymalloc's arenas and pools, on stderr
                sys._debugmallocstats()
            if command in ("stats", "collect"):
                stats = _stats(command == "collect")
                if tracemalloc.is_tracing() and command == "collect":
                    snapshot = tracemalloc.take_snapshot()
                    if not baseline:
                        baseline.append(snapshot)
                    else:
                        top = snapshot.compare_to(baseline[0], "traceback")[:GROWTH_LINES]
                        stats["growth"] = [_growth_line(stat) for stat in top]
                print("STATS " + json.dumps(stats), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # stdin closed: the driver is gone

    threading.Thread(target=answer, daemon=True).start()
    return sbemu(sbemu_args)


class SoakEmulator:
    """The child process: ``sbemu`` on the seed topology, plus its memory on request."""

    def __init__(self, config: Path, *, trace: bool = False, malloc: bool = False) -> None:
        self.config = config
        self.trace = trace
        self.malloc = malloc
        self.process: subprocess.Popen[str] | None = None
        self.connection_string = ""
        self.control_url = ""
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self) -> None:
        command = [sys.executable]
        if self.trace:
            command += ["-X", "tracemalloc=1"]
        command += [__file__, "--serve", "--config", str(self.config)]
        command += ["--port", "0", "--admin-port", "0", "--log-level", "WARNING"]
        env = dict(os.environ)
        if self.malloc:
            env["PYTHONMALLOC"] = "malloc"  # the C allocator: freed memory can go back
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.connection_string:
            line = self._line(deadline)
            if "control API:" in line:
                self.control_url = line.split("control API:", 1)[1].strip()
            if "connection string:" in line:
                self.connection_string = line.split("connection string:", 1)[1].strip()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _line(self, deadline: float) -> str:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError("the emulator did not answer in time") from None
        if line is None:
            raise RuntimeError("the emulator exited")
        return line

    def memory(self, *, collect: bool = False) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write("collect\n" if collect else "stats\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + 60
        while True:
            line = self._line(deadline)
            if line.startswith("STATS "):
                return dict(json.loads(line[6:]))

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def soak_emulator(*, trace: bool = False, malloc: bool = False) -> Iterator[SoakEmulator]:
    emulator = SoakEmulator(SEED_CONFIG, trace=trace, malloc=malloc)
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()


# -- SDK clients (in the worker processes) --------------------------------------------------------

_clients: dict[str, ServiceBusClient] = {}
_senders: dict[tuple[str, str], ServiceBusSender] = {}


def _client(conn: str) -> ServiceBusClient:
    """One client per worker process, kept across waves (opening one costs ~0.5 s)."""
    client = _clients.get(conn)
    if client is None:
        client = _clients[conn] = ServiceBusClient.from_connection_string(conn)
    return client


def _sender(conn: str, topic: str) -> ServiceBusSender:
    sender = _senders.get((conn, topic))
    if sender is None:
        sender = _senders[(conn, topic)] = _client(conn).get_topic_sender(topic)
    return sender


def _message(number: int, emulator_now: float) -> tuple[str, ServiceBusMessage]:
    topic = JOBS if number % 2 == 0 else EVENTS
    options: dict[str, Any] = {"message_id": str(number)}
    if topic == JOBS:
        options["application_properties"] = {"jobType": JOB_TYPES[(number // 2) % 5]}
    if number % 50 == 1:
        options["time_to_live"] = SHORT_TTL
    elif number % 50 == 2:
        when = datetime.fromtimestamp(emulator_now + SCHEDULE_AHEAD, UTC)
        options["scheduled_enqueue_time_utc"] = when
    return topic, ServiceBusMessage(BODY, **options)


def send_range(conn: str, first: int, count: int, emulator_now: float) -> int:
    """Send messages ``first`` .. ``first + count - 1`` in batches of 100 per topic."""
    pending: dict[str, list[ServiceBusMessage]] = {JOBS: [], EVENTS: []}
    for number in range(first, first + count):
        topic, message = _message(number, emulator_now)
        pending[topic].append(message)
        if len(pending[topic]) == BATCH:
            _send(conn, topic, pending[topic])
            pending[topic] = []
    for topic, messages in pending.items():
        if messages:
            _send(conn, topic, messages)
    return count


def _send(conn: str, topic: str, messages: list[ServiceBusMessage]) -> None:
    sender = _sender(conn, topic)
    batch = sender.create_message_batch()
    for message in messages:
        batch.add_message(message)
    sender.send_messages(batch)


def peek_lock(conn: str, entity: str, count: int) -> dict[str, int]:
    """Take up to ``count`` messages: complete most, abandon poison ones, leave some locked."""
    topic, _, subscription = entity.partition("/Subscriptions/")
    done = {"completed": 0, "abandoned": 0, "left": 0}
    with (
        ServiceBusClient.from_connection_string(conn) as client,
        client.get_subscription_receiver(topic, subscription, prefetch_count=BATCH) as receiver,
    ):
        taken = 0
        while taken < count:
            messages = receiver.receive_messages(
                max_message_count=min(BATCH, count - taken), max_wait_time=1
            )
            if not messages:
                break
            for message in messages:
                number = int(str(message.message_id))
                if number % 97 == 0:  # poison: abandoned until MaxDeliveryCount dead-letters it
                    receiver.abandon_message(message)
                    done["abandoned"] += 1
                elif number % 10 == 3:  # left locked: the lock lapses when the clock moves
                    done["left"] += 1
                else:
                    receiver.complete_message(message)
                    done["completed"] += 1
            taken += len(messages)
    return done


def drain(conn: str, entity: str, expected: int) -> int:
    """Receive-and-delete the ``expected`` messages of ``entity`` (a subscription or its
    dead-letter queue); stops early only if none come for 5 s (the check after tells)."""
    topic, _, rest = entity.partition("/Subscriptions/")
    subscription, _, sub_queue = rest.partition("/")
    options: dict[str, Any] = {}
    if sub_queue:
        from azure.servicebus import ServiceBusSubQueue

        options["sub_queue"] = ServiceBusSubQueue.DEAD_LETTER
    taken = 0
    with (
        ServiceBusClient.from_connection_string(conn) as client,
        client.get_subscription_receiver(
            topic,
            subscription,
            receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
            prefetch_count=1000,
            **options,
        ) as receiver,
    ):
        while taken < expected:
            messages = receiver.receive_messages(
                max_message_count=min(1000, expected - taken), max_wait_time=5
            )
            if not messages:
                break
            taken += len(messages)
    return taken


# -- the driver --------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the memory table."""

    wave: int
    phase: str
    sent: int
    held: int
    memory: dict[str, Any]
    elapsed: float


@dataclass
class SoakResult:
    messages: int
    senders: int
    rows: list[Row] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def _drained(self) -> list[Row]:
        return [r for r in self.rows if r.phase == "drained"]

    @property
    def baseline(self) -> dict[str, Any]:
        return self.rows[0].memory

    @property
    def final(self) -> dict[str, Any]:
        return self._drained()[-1].memory

    @property
    def first_peak(self) -> dict[str, Any]:
        """Memory at the first wave's peak: the allocator's high-water mark is set there."""
        return next(r.memory for r in self.rows if r.phase == "sent")

    @property
    def malloc(self) -> bool:
        """The emulator ran on the C allocator (PYTHONMALLOC=malloc: no block counts)."""
        return int(self.baseline["blocks"]) == 0

    @property
    def traced(self) -> bool:
        return self.baseline.get("traced") is not None

    @property
    def blocks_growth(self) -> int:
        return int(self.final["blocks"]) - int(self.baseline["blocks"])

    @property
    def blocks_limit(self) -> int:
        return max(int(self.baseline["blocks"] * 0.02), 5_000)

    @property
    def traced_growth(self) -> int:
        return int(self.final["traced"]) - int(self.baseline["traced"])

    @property
    def traced_limit(self) -> int:
        return max(int(self.baseline["traced"] * 0.02), 2**20)

    @property
    def rss_reference(self) -> tuple[str, int]:
        """What the drained RSS is held to, and its name.

        On the C allocator freed memory goes back to the system, so RSS must come back to
        the baseline. On CPython's own allocator (the default) it does not: a 1 MiB arena is
        returned only once every object in it is gone, and the few objects that live on past
        a wave (counters, the senders' links) pin arenas the wave's peak filled. There RSS
        may not grow past the first wave's peak, and live objects (allocated blocks) must
        come back to the baseline.
        """
        if self.malloc:
            return "the baseline", int(self.baseline["rss"])
        return "the first wave's peak", int(self.first_peak["rss"])

    @property
    def rss_limit(self) -> int:
        reference = self.rss_reference[1]
        if self.malloc:
            return reference + max(int(reference * 0.05), 6 * 2**20)
        return reference + max(int(reference * 0.05), 8 * 2**20)

    @property
    def returned(self) -> bool:
        """The run's verdict (see ``rss_reference``). Under tracemalloc, whose bookkeeping
        fills both blocks and RSS, the traced heap (what Python code holds) decides alone."""
        if self.traced:
            return self.traced_growth <= self.traced_limit
        rss_ok = int(self.final["rss"]) <= self.rss_limit
        return rss_ok and (self.malloc or self.blocks_growth <= self.blocks_limit)

    def table(self) -> list[str]:
        traced = any(r.memory.get("traced") is not None for r in self.rows)
        head = f"{'wave':>4} {'phase':<9}{'sent':>11}{'held':>10}{'RSS MB':>9}{'blocks':>10}"
        lines = [head + (f"{'traced MB':>11}" if traced else "") + f"{'s':>7}"]
        for r in self.rows:
            line = (
                f"{r.wave:>4} {r.phase:<9}{r.sent:>11,}{r.held:>10,}"
                f"{r.memory['rss'] / 2**20:>9.1f}{r.memory['blocks']:>10,}"
            )
            if traced:
                line += f"{(r.memory.get('traced') or 0) / 2**20:>11.1f}"
            lines.append(line + f"{r.elapsed:>7.0f}")
        return lines

    def summary(self) -> str:
        mb = 2**20
        peak = max(r.memory["rss"] for r in self.rows)
        rate = self.messages / self.seconds if self.seconds else 0.0
        verdict = "back to the baseline" if self.returned else "NOT BACK to the baseline"
        allocator = "C allocator (PYTHONMALLOC=malloc)" if self.malloc else "CPython's allocator"
        name, _ = self.rss_reference
        lines = [
            f"soak: {self.messages:,} messages in {self.seconds:.0f} s ({rate:,.0f} msg/s sent "
            f"and drained, {self.senders} SDK sender process(es), emulator on {allocator}): "
            f"{verdict}",
            f"  RSS: baseline {self.baseline['rss'] / mb:.1f} MB, peak {peak / mb:.1f} MB, "
            f"drained {self.final['rss'] / mb:.1f} MB "
            f"({(self.final['rss'] - self.baseline['rss']) / mb:+.1f} MB on the baseline; "
            f"limit {self.rss_limit / mb:.1f} MB: {name} + margin)",
        ]
        if not self.malloc:
            lines.append(
                f"  live objects (allocated blocks): baseline {self.baseline['blocks']:,}, "
                f"drained {self.final['blocks']:,} ({self.blocks_growth:+,}; limit "
                f"{self.blocks_limit:,})"
            )
        if self.traced:
            lines.append(
                f"  traced heap (decides under tracemalloc): baseline "
                f"{self.baseline['traced'] / mb:.1f} MB, drained {self.final['traced'] / mb:.1f} "
                f"MB ({self.traced_growth / mb:+.2f} MB; limit {self.traced_limit / mb:.1f}); "
                "the largest changes since the baseline:"
            )
            lines += [f"    {g}" for g in self.final.get("growth", [])]
        lines.append(
            "  emulator counters: " + ", ".join(f"{k} {v:,}" for k, v in self.counters.items())
        )
        return "\n".join(lines)


def _held(control: ControlClient) -> int:
    """Messages the emulator holds: every subscription's sub-queues and topics' schedules."""
    total = 0
    for topic in control.entities()["topics"]:
        total += int(topic["counts"]["scheduled"])
        total += sum(int(s["counts"]["total"]) for s in topic["subscriptions"])
    return total


def _dead_letters(control: ControlClient) -> list[tuple[str, int]]:
    """Each subscription with the number of messages in its dead-letter queue."""
    return [
        (s["path"], int(s["counts"]["dead_letter"]))
        for t in control.entities()["topics"]
        for s in t["subscriptions"]
    ]


def _counters(control: ControlClient) -> dict[str, int]:
    """Totals over every store of what the soak exercised."""
    totals = dict.fromkeys(
        ("enqueued", "completed", "abandoned", "dead_lettered", "expired", "lock_expirations"), 0
    )
    sent = 0
    for entity in control.counters()["entities"].values():
        if "store" not in entity:  # a topic
            sent += int(entity["sends"])
            continue
        for store in (entity["store"], entity["dead_letter_store"]):
            for key in totals:
                totals[key] += int(store[key])
    return {"accepted by topics": sent, **totals}


class Soak:
    """One run; ``run`` returns the table and the verdict."""

    def __init__(
        self,
        emulator: SoakEmulator,
        pool: ProcessPoolExecutor,
        threads: ThreadPoolExecutor,
        senders: int,
        peek: int,
    ) -> None:
        self.emulator = emulator
        self.pool = pool
        self.threads = threads
        self.senders = senders
        self.peek = peek
        self.conn = emulator.connection_string
        self.control = ControlClient(emulator.control_url)
        self.sent = 0
        self.scheduled = 0
        self.started = time.monotonic()

    def wave(self, number: int, count: int, result: SoakResult | None) -> None:
        emulator_now = float(self.control.clock()["now"])
        share = -(-count // self.senders)
        futures = [
            self.pool.submit(
                send_range,
                self.conn,
                self.sent + i * share,
                min(share, count - i * share),
                emulator_now,
            )
            for i in range(self.senders)
            if i * share < count
        ]
        for future in futures:
            future.result()
        self.scheduled += sum(1 for n in range(self.sent, self.sent + count) if n % 50 == 2)
        self.sent += count
        if result is not None:
            result.rows.append(self._row(number, "sent"))
        takes = [self.threads.submit(peek_lock, self.conn, e, self.peek) for e in PEEK_LOCK]
        for future in takes:
            future.result()
        self.control.advance(5 * 60)  # locks lapse, schedules fall due, short TTLs expire
        self.control.advance(15 * 24 * 3600)  # the rest expires
        drains = [
            self.threads.submit(drain, self.conn, f"{path}/$DeadLetterQueue", count)
            for path, count in _dead_letters(self.control)
            if count
        ]
        for future in drains:
            future.result()
        held = _held(self.control)
        if held:
            raise AssertionError(f"wave {number}: {held} message(s) left after the drain")
        if result is not None:
            result.rows.append(self._row(number, "drained", collect=True))

    def _row(self, wave: int, phase: str, *, collect: bool = False) -> Row:
        return Row(
            wave,
            phase,
            self.sent,
            _held(self.control),
            self.emulator.memory(collect=collect),
            time.monotonic() - self.started,
        )


def run_soak(
    messages: int,
    *,
    wave: int = 50_000,
    senders: int = 2,
    peek: int = 500,
    trace: bool = False,
    malloc: bool = False,
) -> SoakResult:
    """Push ``messages`` through the seed topology in waves; memory before, during, after."""
    result = SoakResult(messages=messages, senders=senders)
    context = get_context("spawn")
    with (
        soak_emulator(trace=trace, malloc=malloc) as emulator,
        ProcessPoolExecutor(max_workers=senders, mp_context=context) as pool,
        ThreadPoolExecutor(max_workers=8) as threads,
    ):
        soak = Soak(emulator, pool, threads, senders, peek)
        soak.wave(0, min(2_000, wave), None)  # warm-up: connections, links, one-time caches
        result.rows.append(Row(0, "baseline", soak.sent, 0, emulator.memory(collect=True), 0.0))
        soak.started = time.monotonic()
        first = soak.sent
        number = 0
        while soak.sent - first < messages:
            number += 1
            soak.wave(number, min(wave, messages - (soak.sent - first)), result)
        result.seconds = time.monotonic() - soak.started
        result.counters = {**_counters(soak.control), "sent scheduled": soak.scheduled}
        soak.control.close()
    return result


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"]:
        return serve(args[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--wave", type=int, default=50_000, help="messages per wave")
    parser.add_argument("--senders", type=int, default=2, help="SDK sender processes")
    parser.add_argument("--peek", type=int, default=500, help="peek-lock takes per wave")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the heap")
    parser.add_argument(
        "--malloc",
        action="store_true",
        help="run the emulator on the C allocator (PYTHONMALLOC=malloc), whose freed memory "
        "goes back to the system: RSS is then held to the baseline",
    )
    options = parser.parse_args(args)
    result = run_soak(
        options.messages,
        wave=options.wave,
        senders=options.senders,
        peek=options.peek,
        trace=options.tracemalloc,
        malloc=options.malloc,
    )
    for line in result.table():
        print(line)
    print(result.summary())
    return 0 if result.returned else 1


if __name__ == "__main__":
    sys.exit(main())
