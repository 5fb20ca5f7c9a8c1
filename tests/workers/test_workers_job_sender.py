"""The job API's pooled Service Bus sender, against the in-process emulator and fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import (
    NamespaceTopology,
    SubscriptionDescription,
    TopicDescription,
)
from workers.api.app import ServiceBusJobSender


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    topology = NamespaceTopology(
        topics=[TopicDescription("jobs", subscriptions=[SubscriptionDescription("all")])]
    )
    with ServiceBusEmulator(topology) as emulator:
        yield emulator


def _body(n: int) -> dict[str, Any]:
    return {"jobId": f"job-{n}", "attempt": 0, "jobType": "chat.suggest"}


async def test_concurrent_requests_share_a_few_senders(emu: ServiceBusEmulator) -> None:
    sender = ServiceBusJobSender(emu.connection_string, "jobs", pool_size=3)
    try:
        await asyncio.gather(
            *(sender.send(_body(n), {"jobType": "chat.suggest"}) for n in range(12))
        )
        assert 1 <= sender.opened <= 3
        opened = sender.opened
        for n in range(12, 15):
            await sender.send(_body(n), {"jobType": "chat.suggest"})
        assert sender.opened == opened  # reused, not reopened per request
    finally:
        await sender.aclose()

    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_subscription_receiver("jobs", "all") as receiver:
            got = receiver.peek_messages(max_message_count=50)
    assert sorted(str(m.message_id) for m in got) == sorted(f"job-{n}:0" for n in range(15))
    assert {m.application_properties[b"jobType"] for m in got} == {b"chat.suggest"}


class _FlakySender:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent: list[Any] = []
        self.closed = False

    async def send_messages(self, message: Any) -> None:
        if self.fail:
            raise ConnectionError("link detached")
        self.sent.append(message)

    async def close(self) -> None:
        self.closed = True


async def test_a_sender_that_failed_is_closed_and_never_reused() -> None:
    sender = ServiceBusJobSender(
        "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v", "jobs"
    )
    made = [_FlakySender(fail=True), _FlakySender(fail=False)]
    opened = iter(made)
    sender._client.get_topic_sender = lambda topic: next(opened)  # type: ignore[method-assign]

    with pytest.raises(ConnectionError):
        await sender.send(_body(1), {})
    await sender.send(_body(2), {})
    await sender.send(_body(3), {})

    broken, healthy = made
    assert broken.closed and broken.sent == []
    assert [m.message_id for m in healthy.sent] == ["job-2:0", "job-3:0"]
    await sender.aclose()
    assert healthy.closed


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        ServiceBusJobSender(
            "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v", "x", pool_size=0
        )


async def test_a_send_waits_only_so_long_for_a_free_sender() -> None:
    """Past capacity a send gives up after ``busy_wait`` (the API answers 503), instead of
    queueing behind every sender without end."""
    from workers.api.app import Busy

    sender = ServiceBusJobSender(
        "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v",
        "jobs",
        pool_size=1,
        busy_wait=0.05,
    )
    release, entered = asyncio.Event(), asyncio.Event()

    class Stuck:
        async def send_messages(self, message: Any) -> None:
            entered.set()
            await release.wait()

        async def close(self) -> None:
            return None

    sender._open = lambda: Stuck()  # type: ignore[method-assign]
    first = asyncio.ensure_future(sender.send(_body(1), {}))
    await entered.wait()  # the first send holds the only sender
    with pytest.raises(Busy, match=r"all 1 senders busy for 0\.05 s"):
        await sender.send(_body(2), {})
    release.set()
    await first  # the held one still goes through, and its slot is given back
    release.clear()
    release.set()
    await sender.send(_body(3), {})
    await sender.aclose()
