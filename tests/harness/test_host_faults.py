"""The host under broker faults: every message still ends, none twice, and the host stays live.

A host shaped like the notify app (four subscriptions, prefetch 200, 50 concurrent calls)
while the emulator drops the connection on 5 % of settles and loses the lock on 5 % more.
Before receivers were replaced whole (`harness.host.receivers`), concurrent settles and the
receive reopened the SDK handler at once, the receiver came back empty at once for ever and
the host's loop spun: 75 of 1,200 deliveries completed. Stranded locks lapse by moving the
emulator's clock past the lock duration, not by waiting.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.faults import FaultRule
from emulator.servicebus.topology import (
    NamespaceTopology,
    SubscriptionDescription,
    TopicDescription,
)
from harness.host import FunctionsHost, Invocation
from harness.host.testing import PREAMBLE, write_app

SUBSCRIPTIONS = ("signalr", "email", "webhook", "metrics")
MESSAGES = 200
LOCK = timedelta(seconds=30)


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    topic = TopicDescription(
        "events",
        subscriptions=[
            SubscriptionDescription(name, lock_duration=LOCK, max_delivery_count=10)
            for name in SUBSCRIPTIONS
        ],
    )
    with ServiceBusEmulator(NamespaceTopology(topics=[topic])) as emulator:
        emulator.faults.random = random.Random(11).random
        yield emulator


def fan_out_app(folder: Path) -> Path:
    code = "".join(
        f"""
@app.service_bus_topic_trigger(
    arg_name="msg", topic_name="events", subscription_name="{name}", connection="SB"
)
async def to_{name}(msg: func.ServiceBusMessage) -> None:
    await asyncio.sleep(0.01)
"""
        for name in SUBSCRIPTIONS
    )
    return write_app(
        folder,
        code,
        preamble="import asyncio\n" + PREAMBLE,
        service_bus={"prefetchCount": 200, "autoCompleteMessages": True, "maxConcurrentCalls": 50},
    )


def completed(items: list[Invocation]) -> Counter[tuple[str, str | None]]:
    return Counter((i.function, i.message_id) for i in items if i.settlement == "completed")


def test_every_message_ends_once_under_dropped_connections_and_lost_locks(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    host = FunctionsHost.load(fan_out_app(tmp_path / "fan"), settings={"SB": emu.connection_string})
    with host:
        rules = [
            FaultRule("settle", "connection-drop", probability=0.05),
            FaultRule("settle", "lock-lost", probability=0.05),
        ]
        emu.call(lambda: [emu.faults.add(rule) for rule in rules])
        with ServiceBusClient.from_connection_string(emu.connection_string) as client:
            with client.get_topic_sender("events") as sender:
                for start in range(0, MESSAGES, 50):
                    sender.send_messages(
                        [
                            ServiceBusMessage(f"m{n}", message_id=f"m{n}")
                            for n in range(start, start + 50)
                        ]
                    )
        # Faults while the first half of the deliveries run, then a healthy broker.
        host.wait_until(
            lambda items: len(items) >= 2 * MESSAGES, timeout=30, what="400 invocations"
        )
        emu.call(emu.faults.clear)
        everything = len(SUBSCRIPTIONS) * MESSAGES
        for _ in range(4):
            try:
                host.wait_until(
                    lambda items: len(completed(items)) >= everything,
                    timeout=10,
                    what=f"{everything} completions",
                )
                break
            except TimeoutError:
                # Messages delivered on a dropped link stay locked until the lock lapses.
                emu.clock.advance(LOCK.total_seconds() + 1)
        done = completed(host.invocations)
        assert len(done) == everything, f"{everything - len(done)} deliveries never completed"
        assert max(done.values()) == 1, "a message was completed twice"
        slowest = max(
            (i.ended_at - i.started_at).total_seconds() for i in host.invocations if i.ended_at
        )
        # After a drop the SDK settles what the old link delivered over $management, one
        # request at a time per receiver (~0.2 s each here): 50 held messages take ~10 s.
        # The starved loop this guards against took minutes, or never ended.
        assert slowest < 30, f"a 0.01 s function took {slowest:.1f} s: the host loop starved"
