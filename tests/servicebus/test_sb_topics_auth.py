"""Topic fan-out, SAS rights and entity errors, as the SDK reports them."""

from __future__ import annotations

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusError,
)
from sb_topology import LISTEN_KEY, SEND_KEY

from emulator.servicebus import ServiceBusEmulator


def _drain(client: ServiceBusClient, topic: str, sub: str) -> list[str]:
    out = []
    with client.get_subscription_receiver(topic, sub, max_wait_time=0.5) as receiver:
        while batch := receiver.receive_messages(max_message_count=20, max_wait_time=0.5):
            for m in batch:
                out.append(str(m))
                receiver.complete_message(m)
    return out


def test_topic_fans_out_by_subscription_rules(emulator: ServiceBusEmulator, conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage("r1", application_properties={"color": "red"}),
                    ServiceBusMessage("b1", application_properties={"color": "blue"}),
                    ServiceBusMessage("n1"),
                ]
            )
        assert _drain(client, "t", "all") == ["r1", "b1", "n1"]
        assert _drain(client, "t", "red") == ["r1"]
        assert _drain(client, "t", "none") == []


def test_unmatched_messages_are_dropped_and_counted(emulator: ServiceBusEmulator) -> None:
    topic = emulator.broker.topic("t")
    topic.subscriptions.pop("all")
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(ServiceBusMessage("green", application_properties={"color": "g"}))
    assert emulator.call(lambda: topic.counters.unrouted) == 1


def test_wrong_key_is_an_authentication_error(emulator: ServiceBusEmulator) -> None:
    bad = emulator.connection_string.replace("SAS_KEY_VALUE", "not-the-key")
    with ServiceBusClient.from_connection_string(bad, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            with client.get_queue_sender("q") as sender:
                sender.send_messages(ServiceBusMessage("x"))


def test_send_only_policy_cannot_receive(emulator: ServiceBusEmulator) -> None:
    conn = emulator.connection_string_for("sender", SEND_KEY)
    with ServiceBusClient.from_connection_string(conn, retry_total=0) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("allowed"))
        with pytest.raises(ServiceBusAuthorizationError):
            with client.get_queue_receiver("q", max_wait_time=1) as receiver:
                receiver.receive_messages(max_wait_time=1)


def test_listen_only_policy_cannot_send(emulator: ServiceBusEmulator) -> None:
    conn = emulator.connection_string_for("listener", LISTEN_KEY)
    with ServiceBusClient.from_connection_string(conn, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthorizationError):
            with client.get_queue_sender("q") as sender:
                sender.send_messages(ServiceBusMessage("refused"))
        with client.get_queue_receiver("q", max_wait_time=0.5) as receiver:
            assert receiver.receive_messages(max_wait_time=0.5) == []


def test_unknown_entity_fails_put_token_with_404_like_the_service(conn_str: str) -> None:
    # The service answers put-token for a missing entity with 404, which the SDK raises as an
    # authentication error whose text names the entity.
    with ServiceBusClient.from_connection_string(conn_str, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            with client.get_queue_sender("no-such-queue") as sender:
                sender.send_messages(ServiceBusMessage("x"))


def test_oversized_message_is_refused(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str, retry_total=0) as client:
        with client.get_queue_sender("small") as sender:
            with pytest.raises(MessageSizeExceededError):
                sender.send_messages(ServiceBusMessage(b"x" * 2048))
            sender.send_messages(ServiceBusMessage(b"x" * 100))


def test_sending_to_a_subscription_or_receiving_from_a_topic_is_refused(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str, retry_total=0) as client:
        with pytest.raises(ServiceBusError):
            with client.get_queue_sender("t/Subscriptions/all") as sender:
                sender.send_messages(ServiceBusMessage("x"))
        with pytest.raises(ServiceBusError):
            with client.get_queue_receiver("t", max_wait_time=1) as receiver:
                receiver.receive_messages(max_wait_time=1)
        with client.get_subscription_receiver("t", "all") as receiver:
            assert receiver.peek_messages(max_message_count=5) == []
