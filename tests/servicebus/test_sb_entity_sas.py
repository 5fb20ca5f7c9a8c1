"""Entity-level SAS rules: valid for their queue or topic, and nowhere else (issue 7)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
)

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.config import parse_config


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    topology = parse_config(
        {
            "UserConfig": {
                "Namespaces": [
                    {
                        "Name": "ns",
                        "Queues": [
                            {
                                "Name": "guarded",
                                "SharedAccessPolicies": [
                                    {"Name": "q-listen", "Key": "k1", "Rights": ["Listen"]}
                                ],
                            },
                            {"Name": "open"},
                        ],
                        "Topics": [
                            {
                                "Name": "tt",
                                "SharedAccessPolicies": [
                                    {"Name": "t-all", "Key": "k2", "Rights": ["Manage"]}
                                ],
                                "Subscriptions": [{"Name": "s"}],
                            }
                        ],
                    }
                ]
            }
        }
    )
    with ServiceBusEmulator(topology) as emulator:
        yield emulator


def test_entity_rule_grants_its_rights_on_its_entity_only(emu: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as root:
        with root.get_queue_sender("guarded") as sender:
            sender.send_messages(ServiceBusMessage("for-listeners"))
    conn = emu.connection_string_for("q-listen", "k1")
    with ServiceBusClient.from_connection_string(conn, retry_total=0) as client:
        with client.get_queue_receiver("guarded", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.complete_message(msg)
        with pytest.raises(ServiceBusAuthorizationError):
            with client.get_queue_sender("guarded") as sender:
                sender.send_messages(ServiceBusMessage("no send right"))
        with pytest.raises(ServiceBusAuthenticationError):
            with client.get_queue_receiver("open") as receiver:
                receiver.receive_messages(max_wait_time=1)


def test_topic_rule_covers_its_subscriptions(emu: ServiceBusEmulator) -> None:
    conn = emu.connection_string_for("t-all", "k2")
    with ServiceBusClient.from_connection_string(conn, retry_total=0) as client:
        with client.get_topic_sender("tt") as sender:
            sender.send_messages(ServiceBusMessage("hi"))
        with client.get_subscription_receiver("tt", "s", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.complete_message(msg)
        with pytest.raises(ServiceBusAuthenticationError):
            with client.get_queue_sender("open") as sender:
                sender.send_messages(ServiceBusMessage("elsewhere"))
