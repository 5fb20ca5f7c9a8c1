"""The project's Config.json (the seed's topology) loaded and exercised through the SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusAuthorizationError

from emulator.servicebus import PROJECT_CONFIG, ServiceBusEmulator
from emulator.servicebus.config import load_config

JOB_ROUTES = {
    "video.analysis": "video-analysis",
    "chat.suggest": "chat-suggestions",
    "content.suggest": "content-suggestions",
    "content.analyze": "content-analysis",
}
EVENT_SUBSCRIPTIONS = ["notify-signalr", "notify-email", "notify-webhook", "metrics"]


@pytest.fixture(scope="module")
def seed() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator.from_config(PROJECT_CONFIG) as emu:
        yield emu


def _bodies(client: ServiceBusClient, topic: str, sub: str) -> list[str]:
    out = []
    with client.get_subscription_receiver(topic, sub, max_wait_time=0.5) as receiver:
        while batch := receiver.receive_messages(max_message_count=50, max_wait_time=0.5):
            for m in batch:
                out.append(str(m))
                receiver.complete_message(m)
    return out


def test_each_job_type_reaches_exactly_its_subscription(seed: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(seed.connection_string) as client:
        with client.get_topic_sender("huntaze-jobs") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage(job_type, application_properties={"jobType": job_type})
                    for job_type in [*JOB_ROUTES, "unknown.kind"]
                ]
            )
            sender.send_messages(ServiceBusMessage("no type"))
        for job_type, subscription in JOB_ROUTES.items():
            assert _bodies(client, "huntaze-jobs", subscription) == [job_type]
        # an unknown or missing jobType is kept, visibly, in the catch-all subscription
        assert sorted(_bodies(client, "huntaze-jobs", "unrouted")) == ["no type", "unknown.kind"]
    assert seed.call(lambda: seed.broker.topic("huntaze-jobs").counters.unrouted) == 0


def test_events_fan_out_to_all_four_subscribers(seed: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(seed.connection_string) as client:
        with client.get_topic_sender("huntaze-events") as sender:
            sender.send_messages(ServiceBusMessage("evt", application_properties={"status": "x"}))
        for subscription in EVENT_SUBSCRIPTIONS:
            assert _bodies(client, "huntaze-events", subscription) == ["evt"]


def test_seed_policies_enforce_their_rights(seed: ServiceBusEmulator) -> None:
    topology = load_config(PROJECT_CONFIG)
    keys = {p.name: p.key for p in topology.policies}
    send_only = seed.connection_string_for("vercel-send", keys["vercel-send"])
    with ServiceBusClient.from_connection_string(send_only, retry_total=0) as client:
        with client.get_topic_sender("huntaze-jobs") as sender:
            sender.send_messages(ServiceBusMessage("{}", application_properties={"jobType": "x"}))
        with pytest.raises(ServiceBusAuthorizationError):
            with client.get_subscription_receiver("huntaze-jobs", "chat-suggestions") as r:
                r.receive_messages(max_wait_time=1)
    read_write = seed.connection_string_for("functions-rw", keys["functions-rw"])
    with ServiceBusClient.from_connection_string(read_write) as client:
        with client.get_subscription_receiver("huntaze-jobs", "video-analysis") as receiver:
            assert receiver.peek_messages(max_message_count=1) == []


def test_video_subscription_dead_letters_after_three_deliveries(seed: ServiceBusEmulator) -> None:
    with ServiceBusClient.from_connection_string(seed.connection_string) as client:
        with client.get_topic_sender("huntaze-jobs") as sender:
            sender.send_messages(
                ServiceBusMessage("v", application_properties={"jobType": "video.analysis"})
            )
        with client.get_subscription_receiver(
            "huntaze-jobs", "video-analysis", max_wait_time=2
        ) as receiver:
            for _ in range(3):
                (msg,) = receiver.receive_messages(max_wait_time=2)
                receiver.abandon_message(msg)
        with client.get_subscription_receiver(
            "huntaze-jobs", "video-analysis", sub_queue="deadletter"
        ) as dlq:
            (dead,) = dlq.peek_messages(max_message_count=5)
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
