"""Duplicate detection and auto-forwarding through the SDK (issue 7)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import (
    NamespaceTopology,
    QueueDescription,
    SubscriptionDescription,
    TopicDescription,
)


def topology() -> NamespaceTopology:
    chain = [QueueDescription(name=f"hop{i}", forward_to=f"hop{i + 1}") for i in range(1, 6)]
    return NamespaceTopology(
        queues=[
            QueueDescription(
                name="dedup",
                requires_duplicate_detection=True,
                duplicate_detection_history_time_window=timedelta(minutes=1),
            ),
            QueueDescription(name="fwd-src", forward_to="fwd-dst"),
            QueueDescription(name="fwd-dst"),
            QueueDescription(
                name="dl-src", max_delivery_count=1, forward_dead_lettered_messages_to="dl-sink"
            ),
            QueueDescription(name="dl-sink"),
            *chain,
            QueueDescription(name="hop6"),
        ],
        topics=[
            TopicDescription(
                name="dedup-topic",
                requires_duplicate_detection=True,
                duplicate_detection_history_time_window=timedelta(seconds=30),
                subscriptions=[SubscriptionDescription(name="all")],
            ),
            TopicDescription(
                name="ft", subscriptions=[SubscriptionDescription(name="out", forward_to="fwd-dst")]
            ),
        ],
    )


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(topology()) as emulator:
        yield emulator


def _bodies(client: ServiceBusClient, queue: str, **kwargs: object) -> list[str]:
    out = []
    with client.get_queue_receiver(queue, max_wait_time=0.5, **kwargs) as receiver:  # type: ignore[arg-type]
        while batch := receiver.receive_messages(max_message_count=20, max_wait_time=0.5):
            for m in batch:
                out.append(str(m))
                receiver.complete_message(m)
    return out


def test_duplicate_message_id_is_accepted_and_dropped_within_the_window(
    emu: ServiceBusEmulator,
) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_sender("dedup") as sender:
            sender.send_messages(ServiceBusMessage("first", message_id="id-1"))
            sender.send_messages(ServiceBusMessage("again", message_id="id-1"))
            sender.send_messages(ServiceBusMessage("other", message_id="id-2"))
            emu.clock.advance(61)
            sender.send_messages(ServiceBusMessage("after-window", message_id="id-1"))
        assert _bodies(client, "dedup") == ["first", "other", "after-window"]


def test_duplicate_detection_on_a_topic(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_topic_sender("dedup-topic") as sender:
            sender.send_messages([ServiceBusMessage("a", message_id="x") for _ in range(3)])
        with client.get_subscription_receiver("dedup-topic", "all") as receiver:
            assert [str(m) for m in receiver.peek_messages(max_message_count=10)] == ["a"]


def test_forward_to_moves_messages_on_arrival(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_sender("fwd-src") as sender:
            sender.send_messages(ServiceBusMessage("moved"))
        with client.get_topic_sender("ft") as sender:
            sender.send_messages(ServiceBusMessage("via-subscription"))
        assert _bodies(client, "fwd-src") == []
        assert _bodies(client, "fwd-dst") == ["moved", "via-subscription"]


def test_dead_letters_are_forwarded_with_their_source(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_sender("dl-src") as sender:
            sender.send_messages(ServiceBusMessage("doomed"))
        with client.get_queue_receiver("dl-src", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.abandon_message(msg)  # max delivery count 1 -> dead-lettered
        with client.get_queue_receiver("dl-sink", max_wait_time=2) as receiver:
            (moved,) = receiver.receive_messages(max_wait_time=2)
            assert str(moved) == "doomed"
            assert moved.dead_letter_reason == "MaxDeliveryCountExceeded"
            assert moved.dead_letter_source == "dl-src"
            receiver.complete_message(moved)
        assert _bodies(client, "dl-src", sub_queue=ServiceBusSubQueue.DEAD_LETTER) == []


def test_forwarding_chain_stops_after_four_hops_in_transfer_dead_letter(
    emu: ServiceBusEmulator,
) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_sender("hop1") as sender:
            sender.send_messages(ServiceBusMessage("far"))
        assert _bodies(client, "hop6") == []
        with client.get_queue_receiver(
            "hop5", sub_queue=ServiceBusSubQueue.TRANSFER_DEAD_LETTER
        ) as receiver:
            (stuck,) = receiver.peek_messages(max_message_count=5)
            assert str(stuck) == "far"
            assert stuck.dead_letter_reason == "TransferFailed"


def test_partition_key_round_trips(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_sender("fwd-dst") as sender:
            sender.send_messages(ServiceBusMessage("pk", partition_key="creator-42"))
        with client.get_queue_receiver("fwd-dst", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            assert msg.partition_key == "creator-42"
            receiver.complete_message(msg)
