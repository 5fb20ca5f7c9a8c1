"""Delivery annotations as the service sends them (issue 15, point 2).

Every peek-lock delivery carries ``x-opt-lock-token`` in its delivery annotations, equal to
``message.lock_token``; receive-and-delete deliveries and peeked messages carry an empty map.
Code (and the SDK's back-compat accessors) read the token there.
"""

from __future__ import annotations

import warnings

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

LOCK_TOKEN = b"x-opt-lock-token"


def _annotations(message: object) -> object:
    return message.raw_amqp_message.delivery_annotations  # type: ignore[attr-defined]


def _legacy_annotations(message: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return message.message.delivery_annotations  # type: ignore[attr-defined]


def test_peek_lock_delivery_carries_its_lock_token(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages([ServiceBusMessage("locked"), ServiceBusMessage("deferred")])
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (peeked, _) = receiver.peek_messages(max_message_count=2)
            assert _annotations(peeked) == {}
            locked, deferred = receiver.receive_messages(max_message_count=2, max_wait_time=2)
            assert str(_annotations(locked)[LOCK_TOKEN]) == str(locked.lock_token)
            assert str(_legacy_annotations(locked)[LOCK_TOKEN]) == str(locked.lock_token)
            receiver.complete_message(locked)
            receiver.defer_message(deferred)
            (again,) = receiver.receive_deferred_messages([deferred.sequence_number])
            assert str(_annotations(again)[LOCK_TOKEN]) == str(again.lock_token)
            receiver.complete_message(again)


def test_receive_and_delete_delivery_has_an_empty_map(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("gone"))
        with client.get_queue_receiver(
            "q", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=2
        ) as receiver:
            (message,) = receiver.receive_messages(max_wait_time=2)
            assert _annotations(message) == {}
            assert message.lock_token is None


async def test_async_peek_lock_delivery_carries_its_lock_token(conn_str: str) -> None:
    async with AsyncServiceBusClient.from_connection_string(conn_str) as client:
        async with client.get_queue_sender("q") as sender:
            await sender.send_messages(ServiceBusMessage("locked"))
        async with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (message,) = await receiver.receive_messages(max_wait_time=2)
            assert str(_annotations(message)[LOCK_TOKEN]) == str(message.lock_token)
            await receiver.complete_message(message)
