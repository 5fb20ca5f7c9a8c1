"""The async client against the same emulator."""

from __future__ import annotations

import asyncio

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError
from sb_topology import SDK_HEARS_SETTLEMENT_ERRORS

from emulator.servicebus import ServiceBusEmulator


async def test_async_send_receive_settle(conn_str: str) -> None:
    async with ServiceBusClient.from_connection_string(conn_str) as client:
        async with client.get_queue_sender("q") as sender:
            batch = await sender.create_message_batch()
            for i in range(5):
                batch.add_message(ServiceBusMessage(f"a{i}"))
            await sender.send_messages(batch)
        async with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            got = []
            while len(got) < 5:
                msgs = await receiver.receive_messages(max_message_count=5, max_wait_time=2)
                assert msgs
                got.extend(msgs)
            await receiver.complete_message(got[0])
            await receiver.abandon_message(got[1])
            await receiver.defer_message(got[2])
            await receiver.dead_letter_message(got[3], reason="r", error_description="d")
            await receiver.renew_message_lock(got[4])
            await receiver.complete_message(got[4])
            (again,) = await receiver.receive_messages(max_wait_time=2)
            assert str(again) == "a1" and again.delivery_count == 1
            await receiver.complete_message(again)
            (deferred,) = await receiver.receive_deferred_messages([got[2].sequence_number])
            await receiver.complete_message(deferred)
        async with client.get_queue_receiver("q", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = await dlq.peek_messages(max_message_count=5)
            assert dead.dead_letter_reason == "r"


@pytest.mark.skipif(
    not SDK_HEARS_SETTLEMENT_ERRORS, reason="7.14 settles without waiting for the broker"
)
async def test_async_lock_lost_after_clock_advance(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    async with ServiceBusClient.from_connection_string(conn_str) as client:
        async with client.get_queue_sender("q") as sender:
            await sender.send_messages(ServiceBusMessage("x"))
        async with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = await receiver.receive_messages(max_wait_time=2)
            await asyncio.to_thread(emulator.clock.advance, 31)
            with pytest.raises(MessageLockLostError):
                await receiver.complete_message(msg)


async def test_async_subscription_receive(conn_str: str) -> None:
    async with ServiceBusClient.from_connection_string(conn_str) as client:
        async with client.get_topic_sender("t") as sender:
            await sender.send_messages(
                ServiceBusMessage("red!", application_properties={"color": "red"})
            )
        async with client.get_subscription_receiver("t", "red", max_wait_time=2) as receiver:
            (msg,) = await receiver.receive_messages(max_wait_time=2)
            assert str(msg) == "red!"
            await receiver.complete_message(msg)
