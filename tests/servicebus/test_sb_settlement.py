"""Settlement through the SDK: complete, abandon, defer, dead-letter, release, lock renewal."""

from __future__ import annotations

import asyncio

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusError
from sb_topology import SDK_HEARS_SETTLEMENT_ERRORS

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.faults import FaultRule


def _send(client: ServiceBusClient, queue: str, *bodies: str) -> None:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(b) for b in bodies])


def test_abandon_redelivers_with_count_until_max_delivery_then_dead_letters(
    conn_str: str,
) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        _send(client, "q", "poison")
        counts = []
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            for _ in range(3):
                (msg,) = receiver.receive_messages(max_wait_time=2)
                counts.append(msg.delivery_count)
                receiver.abandon_message(msg)
            assert receiver.receive_messages(max_wait_time=0.5) == []
        assert counts == [0, 1, 2]
        with client.get_queue_receiver(
            "q", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2
        ) as dlq:
            (dead,) = dlq.receive_messages(max_wait_time=2)
            assert str(dead) == "poison"
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            assert dead.dead_letter_error_description
            dlq.complete_message(dead)


def test_dead_letter_with_reason_and_description(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        _send(client, "q", "bad")
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.dead_letter_message(
                msg, reason="INVALID_PAYLOAD", error_description="jobType missing"
            )
        with client.get_queue_receiver("q", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (peeked,) = dlq.peek_messages(max_message_count=5)
            assert peeked.dead_letter_reason == "INVALID_PAYLOAD"
            assert peeked.dead_letter_error_description == "jobType missing"
            assert str(peeked) == "bad"


def test_defer_and_receive_deferred(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        _send(client, "q", "later", "now")
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            first, second = receiver.receive_messages(max_message_count=2, max_wait_time=2)
            receiver.defer_message(first)
            receiver.complete_message(second)
            assert receiver.receive_messages(max_wait_time=0.5) == []
            (deferred,) = receiver.receive_deferred_messages([first.sequence_number])
            assert str(deferred) == "later"
            receiver.complete_message(deferred)
            with pytest.raises(ServiceBusError):
                receiver.receive_deferred_messages([first.sequence_number])


@pytest.mark.skipif(
    not SDK_HEARS_SETTLEMENT_ERRORS, reason="7.14 settles without waiting for the broker"
)
def test_renew_lock_and_lost_lock_after_clock_advance(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        _send(client, "q", "slow")
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            before = msg.locked_until_utc
            emulator.clock.advance(20)
            renewed = receiver.renew_message_lock(msg)
            assert renewed > before
            emulator.clock.advance(31)  # past the 30 s lock
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(msg)
            (again,) = receiver.receive_messages(max_wait_time=2)
            assert str(again) == "slow" and again.delivery_count == 1
            receiver.complete_message(again)


def test_unsettled_message_of_a_vanished_client_stays_locked_until_expiry(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        _send(client, "q", "orphan")
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
        # receiver closed without settling
        with client.get_queue_receiver("q", max_wait_time=1) as receiver:
            assert receiver.receive_messages(max_wait_time=0.5) == []
            emulator.clock.advance(31)
            (again,) = receiver.receive_messages(max_wait_time=2)
            assert again.sequence_number == msg.sequence_number
            assert again.delivery_count == 1
            receiver.complete_message(again)


def test_connection_dropped_mid_lock_keeps_the_lock_until_it_expires(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        _send(client, "q", "vanishing")
        receiver = client.get_queue_receiver("q", max_wait_time=2)
        (msg,) = receiver.receive_messages(max_wait_time=2)
        assert msg.enqueued_sequence_number == msg.sequence_number
        # The client's machine disappears: its TCP connection is torn down without AMQP goodbyes.
        server = emulator._server
        emulator.call(lambda: [c.transport.abort() for c in list(server.connections)])
        with client.get_queue_receiver("q", max_wait_time=0.5) as other:
            assert other.receive_messages(max_wait_time=0.5) == []
            emulator.clock.advance(31)
            (again,) = other.receive_messages(max_wait_time=2)
            assert again.sequence_number == msg.sequence_number
            other.complete_message(again)
        receiver.close()


def _break_receiver_link(emulator: ServiceBusEmulator, client: ServiceBusClient) -> None:
    """The emulator detaches the receiver's link (an injected receive fault, next delivery)."""
    faults = emulator.faults
    emulator.call(lambda: faults.add(FaultRule("receive", "server-busy", entity="q", next_n=1)))
    _send(client, "q", "later")  # wakes the link, which is then detached with the error


@pytest.mark.skipif(
    not SDK_HEARS_SETTLEMENT_ERRORS,
    reason="7.14 settles blindly on the broken link and never falls back to $management",
)
def test_settling_by_lock_token_after_the_receiver_link_broke_is_accepted(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    """The SDK falls back to $management by lock token; the lock is still valid, so it works."""
    with ServiceBusClient.from_connection_string(conn_str) as client:
        _send(client, "q", "held")
        with client.get_queue_receiver("q", max_wait_time=2, prefetch_count=5) as receiver:
            (held,) = receiver.receive_messages(max_wait_time=2)
            _break_receiver_link(emulator, client)
            receiver.complete_message(held)
        with client.get_queue_receiver("q") as browser:
            assert [str(m) for m in browser.peek_messages(max_message_count=5)] == ["later"]


@pytest.mark.skipif(
    not SDK_HEARS_SETTLEMENT_ERRORS,
    reason="7.14 settles blindly on the broken link and never falls back to $management",
)
async def test_async_settling_by_lock_token_after_the_receiver_link_broke_is_accepted(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    async with AsyncServiceBusClient.from_connection_string(conn_str) as client:
        async with client.get_queue_sender("q") as sender:
            await sender.send_messages(ServiceBusMessage("held"))
        async with client.get_queue_receiver("q", max_wait_time=2, prefetch_count=5) as receiver:
            (held,) = await receiver.receive_messages(max_wait_time=2)
            with ServiceBusClient.from_connection_string(conn_str) as sync_client:
                await asyncio.to_thread(_break_receiver_link, emulator, sync_client)
            await receiver.dead_letter_message(held, reason="r")
        async with client.get_queue_receiver("q") as browser:
            assert [str(m) for m in await browser.peek_messages(max_message_count=5)] == ["later"]
