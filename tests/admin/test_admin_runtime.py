"""Runtime properties with real counts, namespace properties, and the seed's DLQ monitor."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import PROJECT_CONFIG, ServiceBusEmulator
from emulator.servicebus.admin.control_client import ControlClient
from workers.common.dlq import JOB_SUBSCRIPTIONS, ServiceBusDlqInspector


def test_queue_runtime_properties_count_every_state(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    before = admin.get_queue_runtime_properties("q")
    assert before.total_message_count == 0
    assert before.accessed_at_utc < datetime(1900, 1, 1, tzinfo=UTC)
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(4)])
            sender.schedule_messages(
                ServiceBusMessage("later"), datetime.now(UTC) + timedelta(hours=1)
            )
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            first, second = receiver.receive_messages(max_message_count=2, max_wait_time=2)
            receiver.dead_letter_message(first, reason="bad", error_description="broken")
            receiver.defer_message(second)
    props = admin.get_queue_runtime_properties("q")
    assert props.active_message_count == 3  # two untouched + one deferred
    assert props.dead_letter_message_count == 1
    assert props.scheduled_message_count == 1
    assert props.transfer_dead_letter_message_count == 0
    assert props.total_message_count == 5
    assert props.size_in_bytes > 0
    assert props.accessed_at_utc > before.created_at_utc - timedelta(seconds=1)
    assert props.created_at_utc == before.created_at_utc


def test_topic_and_subscription_runtime_properties(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage("a", application_properties={"color": "red"}),
                    ServiceBusMessage("b", application_properties={"color": "blue"}),
                ]
            )
            sender.schedule_messages(ServiceBusMessage("c"), datetime.now(UTC) + timedelta(hours=1))
    topic = admin.get_topic_runtime_properties("t")
    assert topic.subscription_count == 2
    assert topic.scheduled_message_count == 1
    subs = {s.name: s for s in admin.list_subscriptions_runtime_properties("t")}
    assert subs["all"].active_message_count == 2
    assert subs["red"].active_message_count == 1
    assert subs["red"].dead_letter_message_count == 0


def test_transfer_dead_letters_are_counted(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    admin.create_queue("target")
    admin.create_queue("source", forward_to="target")
    admin.delete_queue("target")
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("source") as sender:
            sender.send_messages(ServiceBusMessage("lost"))
    props = admin.get_queue_runtime_properties("source")
    assert props.transfer_dead_letter_message_count == 1
    assert props.active_message_count == 0


def test_namespace_properties(admin: ServiceBusAdministrationClient) -> None:
    props = admin.get_namespace_properties()
    assert props.name == "sbemulatorns"
    assert props.messaging_sku == "Standard"
    assert props.namespace_type == "Messaging"


@pytest.fixture(scope="module")
def seed() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator.from_config(PROJECT_CONFIG) as emu:
        yield emu


def test_seed_dlq_monitor_counts_and_peeks_without_locking(
    seed: ServiceBusEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's call pattern, with the CA bundle trusted the way a harness would do it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(seed.ca_bundle))
    with ServiceBusClient.from_connection_string(seed.connection_string) as client:
        with client.get_topic_sender("huntaze-jobs") as sender:
            sender.send_messages(
                ServiceBusMessage(
                    '{"jobId": "j-1"}', application_properties={"jobType": "chat.suggest"}
                )
            )
        with client.get_subscription_receiver(
            "huntaze-jobs", "chat-suggestions", max_wait_time=2
        ) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.dead_letter_message(msg, reason="PoisonJob", error_description="boom")

    inspector = ServiceBusDlqInspector.from_connection_string(seed.connection_string)

    async def triage() -> dict[str, tuple[int, list[dict[str, object]]]]:
        out = {}
        for sub in JOB_SUBSCRIPTIONS:
            count = await inspector.dead_letter_count("huntaze-jobs", sub)
            samples = await inspector.peek_dead_letters("huntaze-jobs", sub, 5) if count else []
            out[sub] = (count, samples)
        return out

    for _ in range(2):  # peeking twice changes nothing
        result = asyncio.run(triage())
        assert result["chat-suggestions"][0] == 1
        (sample,) = result["chat-suggestions"][1]
        assert sample["jobId"] == "j-1"
        assert (sample["reason"], sample["errorDescription"]) == ("PoisonJob", "boom")
        assert sample["deliveryCount"] == 0
        assert all(count == 0 for sub, (count, _) in result.items() if sub != "chat-suggestions")

    with ControlClient(seed.control_url) as control:
        (dead,) = control.peek("huntaze-jobs/Subscriptions/chat-suggestions/$DeadLetterQueue")
    assert dead["locked"] is False
    assert dead["delivery_count"] == 0
    with ServiceBusClient.from_connection_string(seed.connection_string) as client:
        with client.get_subscription_receiver(
            "huntaze-jobs", "chat-suggestions", sub_queue=ServiceBusSubQueue.DEAD_LETTER
        ) as dlq:
            (peeked,) = dlq.peek_messages()
            assert peeked.delivery_count == 0
