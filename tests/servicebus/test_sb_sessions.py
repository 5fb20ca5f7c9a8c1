"""Message sessions through the SDK (issue 7): ordering, exclusive locks, state, timeouts."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from sb_topology import SDK_HEARS_SETTLEMENT_ERRORS

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import (
    NamespaceTopology,
    QueueDescription,
    SubscriptionDescription,
    TopicDescription,
)


def topology() -> NamespaceTopology:
    return NamespaceTopology(
        queues=[
            QueueDescription(name="sq", requires_session=True, lock_duration=timedelta(seconds=30)),
            QueueDescription(name="plain"),
        ],
        topics=[
            TopicDescription(
                name="st",
                subscriptions=[SubscriptionDescription(name="by-creator", requires_session=True)],
            )
        ],
    )


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(topology()) as emulator:
        yield emulator


def _send(client: ServiceBusClient, *pairs: tuple[str, str]) -> None:
    with client.get_queue_sender("sq") as sender:
        sender.send_messages([ServiceBusMessage(body, session_id=sid) for sid, body in pairs])


def _take_all(receiver: object) -> list[str]:
    out = []
    while batch := receiver.receive_messages(max_message_count=10, max_wait_time=0.5):  # type: ignore[attr-defined]
        for m in batch:
            out.append(str(m))
            receiver.complete_message(m)  # type: ignore[attr-defined]
    return out


def test_sending_without_session_id_to_a_session_queue_is_refused(
    emu: ServiceBusEmulator,
) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string, retry_total=0) as client:
        with client.get_queue_sender("sq") as sender:
            with pytest.raises(ServiceBusError, match="SessionId"):
                sender.send_messages(ServiceBusMessage("no session"))
            sender.send_messages(ServiceBusMessage("ok", session_id="a"))


def test_a_session_is_delivered_in_order_to_its_receiver_only(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        _send(client, ("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2"), ("a", "a3"))
        with client.get_queue_receiver("sq", session_id="a", max_wait_time=1) as receiver:
            assert receiver.session.session_id == "a"
            assert receiver.session.locked_until_utc is not None
            assert _take_all(receiver) == ["a1", "a2", "a3"]
        with client.get_queue_receiver(
            "sq", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
        ) as receiver:
            assert receiver.session.session_id == "b"
            assert _take_all(receiver) == ["b1", "b2"]


def test_a_locked_session_cannot_be_taken_by_a_competing_receiver(
    emu: ServiceBusEmulator,
) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string, retry_total=0) as client:
        _send(client, ("a", "a1"), ("b", "b1"))
        with client.get_queue_receiver("sq", session_id="a", max_wait_time=1) as first:
            (a1,) = first.receive_messages(max_wait_time=1)
            with pytest.raises(SessionCannotBeLockedError):
                with client.get_queue_receiver("sq", session_id="a") as second:
                    second.receive_messages(max_wait_time=1)
            with client.get_queue_receiver(
                "sq", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
            ) as other:
                assert other.session.session_id == "b"
                assert _take_all(other) == ["b1"]
            first.complete_message(a1)


def test_next_available_session_times_out_when_none_is_free(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string, retry_total=0) as client:
        with pytest.raises(OperationTimeoutError):
            with client.get_queue_receiver(
                "sq", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
            ) as receiver:
                receiver.receive_messages(max_wait_time=1)


class _AcceptWaits(logging.Handler):
    """Set when the emulator logs that an attach waits for a session (an event, not a sleep)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.started = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "for a session on" in record.getMessage():
            self.started.set()


@pytest.fixture
def accept_waits() -> Iterator[_AcceptWaits]:
    logger = logging.getLogger("emulator.servicebus.amqp")
    handler, level = _AcceptWaits(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _waiting(emu: ServiceBusEmulator) -> int:
    server = emu._server
    return emu.call(lambda: sum(len(c.session_accepts.waiting) for c in server.connections))


def test_next_available_session_waits_up_to_the_65_s_operation_timeout(
    emu: ServiceBusEmulator, accept_waits: _AcceptWaits
) -> None:
    """max_wait_time=70 holds the accept for the service's 65 s, on the emulator clock."""
    failures: list[BaseException] = []

    def receive() -> None:
        with ServiceBusClient.from_connection_string(emu.connection_string, retry_total=0) as c:
            try:
                with c.get_queue_receiver(
                    "sq", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=70
                ):
                    pass
            except BaseException as exc:
                failures.append(exc)

    thread = threading.Thread(target=receive)
    thread.start()
    assert accept_waits.started.wait(10)
    emu.clock.advance(60)
    assert _waiting(emu) == 1, "still waiting after 60 s (the emulator used to give up here)"
    emu.clock.advance(5.5)
    assert _waiting(emu) == 0, "gave up at 65 s, not at the client's 70"
    thread.join(10)
    assert [type(f) for f in failures] == [OperationTimeoutError]


async def test_async_next_available_session_waits_up_to_the_65_s_operation_timeout(
    emu: ServiceBusEmulator, accept_waits: _AcceptWaits
) -> None:
    async with AsyncServiceBusClient.from_connection_string(
        emu.connection_string, retry_total=0
    ) as client:

        async def receive() -> None:
            async with client.get_queue_receiver(
                "sq", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=70
            ):
                pass

        task = asyncio.create_task(receive())
        assert await asyncio.to_thread(accept_waits.started.wait, 10)
        await asyncio.to_thread(emu.clock.advance, 60)
        assert await asyncio.to_thread(_waiting, emu) == 1
        await asyncio.to_thread(emu.clock.advance, 5.5)
        with pytest.raises(OperationTimeoutError):
            await asyncio.wait_for(task, 10)


def test_waiting_next_available_receiver_gets_a_session_that_arrives(
    emu: ServiceBusEmulator,
) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        _send(client, ("late", "hello"))
        with client.get_queue_receiver(
            "sq", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2
        ) as receiver:
            assert _take_all(receiver) == ["hello"]


def test_session_state_and_lock_renewal(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        _send(client, ("s", "x"))
        with client.get_queue_receiver("sq", session_id="s", max_wait_time=1) as receiver:
            session = receiver.session
            assert session.get_state() is None
            session.set_state(b"checkpoint-1")
            assert session.get_state() == b"checkpoint-1"
            before = session.locked_until_utc
            emu.clock.advance(10)
            assert session.renew_lock() > before
            assert _take_all(receiver) == ["x"]


@pytest.mark.skipif(
    not SDK_HEARS_SETTLEMENT_ERRORS, reason="7.14 settles without waiting for the broker"
)
def test_session_lock_expiry_loses_the_session_and_frees_it_for_others(
    emu: ServiceBusEmulator,
) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string, retry_total=0) as client:
        _send(client, ("s", "x"))
        with client.get_queue_receiver("sq", session_id="s", max_wait_time=1) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=1)
            emu.clock.advance(31)
            with pytest.raises(SessionLockLostError):
                receiver.complete_message(msg)
        with client.get_queue_receiver("sq", session_id="s", max_wait_time=1) as again:
            (redelivered,) = again.receive_messages(max_wait_time=1)
            assert str(redelivered) == "x" and redelivered.delivery_count == 1
            again.complete_message(redelivered)


def test_peek_and_deferred_receive_within_a_session(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        _send(client, ("a", "a1"), ("b", "b1"), ("a", "a2"))
        with client.get_queue_receiver("sq", session_id="a", max_wait_time=1) as receiver:
            assert [str(m) for m in receiver.peek_messages(max_message_count=10)] == ["a1", "a2"]
            first, second = receiver.receive_messages(max_message_count=2, max_wait_time=1)
            receiver.defer_message(first)
            receiver.complete_message(second)
            (deferred,) = receiver.receive_deferred_messages([first.sequence_number])
            assert str(deferred) == "a1"
            receiver.complete_message(deferred)


def test_plain_receiver_on_session_queue_and_session_receiver_on_plain_queue_fail(
    emu: ServiceBusEmulator,
) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string, retry_total=0) as client:
        with pytest.raises(ServiceBusError):
            with client.get_queue_receiver("sq") as receiver:
                receiver.receive_messages(max_wait_time=1)
        with pytest.raises(ServiceBusError):
            with client.get_queue_receiver("plain", session_id="x") as receiver:
                receiver.receive_messages(max_wait_time=1)


def test_session_subscription(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_topic_sender("st") as sender:
            sender.send_messages(
                [ServiceBusMessage(f"c{i}", session_id=f"creator-{i % 2}") for i in range(4)]
            )
        with client.get_subscription_receiver(
            "st", "by-creator", session_id="creator-1", max_wait_time=1
        ) as receiver:
            assert _take_all(receiver) == ["c1", "c3"]


async def test_async_session_receiver(emu: ServiceBusEmulator) -> None:
    async with AsyncServiceBusClient.from_connection_string(emu.connection_string) as client:
        async with client.get_queue_sender("sq") as sender:
            await sender.send_messages(
                [ServiceBusMessage(f"m{i}", session_id="z") for i in range(3)]
            )
        async with client.get_queue_receiver(
            "sq", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
        ) as receiver:
            got = []
            while batch := await receiver.receive_messages(max_message_count=5, max_wait_time=1):
                for m in batch:
                    got.append(str(m))
                    await receiver.complete_message(m)
            assert got == ["m0", "m1", "m2"]
            await receiver.session.set_state(b"done")
            assert await receiver.session.get_state() == b"done"


def _sessions_with_state(client: ServiceBusClient, emu: ServiceBusEmulator) -> object:
    """a: state then completed; (10 s later) b: state and a message; c: messages only.

    Returns a time between a's and b's state updates.
    """
    _send(client, ("a", "1"), ("b", "2"), ("c", "3"))
    with client.get_queue_receiver("sq", session_id="a", max_wait_time=1) as receiver:
        receiver.session.set_state(b"a-state")
        assert _take_all(receiver) == ["1"]
    between = emu.clock.now_datetime() + timedelta(seconds=5)
    emu.clock.advance(10)
    with client.get_queue_receiver("sq", session_id="b", max_wait_time=1) as receiver:
        receiver.session.set_state(b"b-state")
    return between


@pytest.mark.skipif(
    not hasattr(ServiceBusClient, "list_queue_sessions"),
    reason="this azure-servicebus has no session listing (it arrived in 7.15)",
)
def test_session_listing_honours_last_updated_time(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        between = _sessions_with_state(client, emu)
        assert sorted(client.list_queue_sessions("sq")) == ["a", "b", "c"]
        assert list(client.list_queue_sessions("sq", state_updated_after=between)) == ["b"]
        later = emu.clock.now_datetime() + timedelta(seconds=1)
        assert list(client.list_queue_sessions("sq", state_updated_after=later)) == []


@pytest.mark.skipif(
    not hasattr(ServiceBusClient, "list_queue_sessions"),
    reason="this azure-servicebus has no session listing (it arrived in 7.15)",
)
async def test_async_subscription_session_listing_honours_last_updated_time(
    emu: ServiceBusEmulator,
) -> None:
    async with AsyncServiceBusClient.from_connection_string(emu.connection_string) as client:
        async with client.get_topic_sender("st") as sender:
            await sender.send_messages(
                [ServiceBusMessage("x", session_id="old"), ServiceBusMessage("y", session_id="new")]
            )
        async with client.get_subscription_receiver(
            "st", "by-creator", session_id="old", max_wait_time=1
        ) as receiver:
            await receiver.session.set_state(b"old-state")
        between = emu.clock.now_datetime() + timedelta(seconds=5)
        await asyncio.to_thread(emu.clock.advance, 10)
        async with client.get_subscription_receiver(
            "st", "by-creator", session_id="new", max_wait_time=1
        ) as receiver:
            await receiver.session.set_state(b"new-state")
        everything = [s async for s in client.list_subscription_sessions("st", "by-creator")]
        assert sorted(everything) == ["new", "old"]
        recent = client.list_subscription_sessions("st", "by-creator", state_updated_after=between)
        assert [s async for s in recent] == ["new"]
