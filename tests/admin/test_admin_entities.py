"""Queues, topics and subscriptions through the real (sync) ServiceBusAdministrationClient."""

from __future__ import annotations

from datetime import timedelta

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import ServiceBusEmulator


def test_create_get_update_delete_queue(admin: ServiceBusAdministrationClient) -> None:
    created = admin.create_queue(
        "orders",
        lock_duration=timedelta(seconds=45),
        max_delivery_count=4,
        default_message_time_to_live=timedelta(hours=2),
        dead_lettering_on_message_expiration=True,
        user_metadata="owned by billing",
    )
    assert created.name == "orders"
    assert created.lock_duration == timedelta(seconds=45)
    assert created.max_delivery_count == 4
    assert created.dead_lettering_on_message_expiration is True
    assert created.user_metadata == "owned by billing"

    fetched = admin.get_queue("orders")
    fetched.max_delivery_count = 9
    fetched.lock_duration = timedelta(minutes=2)
    admin.update_queue(fetched)
    again = admin.get_queue("orders")
    assert (again.max_delivery_count, again.lock_duration) == (9, timedelta(minutes=2))
    assert again.default_message_time_to_live == timedelta(hours=2)

    admin.delete_queue("orders")
    with pytest.raises(ResourceNotFoundError):
        admin.get_queue("orders")


def test_service_defaults_for_an_empty_description(admin: ServiceBusAdministrationClient) -> None:
    queue = admin.create_queue("plain")
    assert queue.max_delivery_count == 10
    assert queue.lock_duration == timedelta(minutes=1)
    assert queue.default_message_time_to_live > timedelta(days=10_000)
    assert queue.requires_session is False


def test_listing_queues_and_topics(admin: ServiceBusAdministrationClient) -> None:
    for i in range(3):
        admin.create_queue(f"bulk-{i}")
    names = [q.name for q in admin.list_queues()]
    assert names == ["bulk-0", "bulk-1", "bulk-2", "q"]
    assert [t.name for t in admin.list_topics()] == ["t"]
    runtime = {q.name: q.total_message_count for q in admin.list_queues_runtime_properties()}
    assert runtime == {"bulk-0": 0, "bulk-1": 0, "bulk-2": 0, "q": 0}


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_listing_pages_with_next_links(emulator: ServiceBusEmulator) -> None:
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, connection_verify=False
    ) as admin:
        for i in range(7):
            admin.create_queue(f"page-{i:02d}")
        pages = list(admin.list_queues(max_page_size=3).by_page())
        assert [len(list(page)) for page in pages] == [3, 3, 2]


def test_duplicates_and_missing_entities_map_to_sdk_errors(
    admin: ServiceBusAdministrationClient,
) -> None:
    with pytest.raises(ResourceExistsError, match="already exists"):
        admin.create_queue("q")
    with pytest.raises(ResourceExistsError):
        admin.create_topic("q")  # queues and topics share one name space
    with pytest.raises(ResourceNotFoundError, match="could not be found"):
        admin.get_topic("nope")
    with pytest.raises(ResourceNotFoundError):
        admin.delete_queue("nope")
    with pytest.raises(ResourceNotFoundError):
        admin.delete_subscription("t", "nope")
    ghost = admin.get_queue("q")
    ghost.name = "nope"
    with pytest.raises(ResourceNotFoundError):
        admin.update_queue(ghost)


def test_invalid_settings_are_refused(admin: ServiceBusAdministrationClient) -> None:
    with pytest.raises(HttpResponseError, match="LockDuration"):
        admin.create_queue("too-long-lock", lock_duration=timedelta(minutes=10))
    with pytest.raises(HttpResponseError, match="does not exist"):
        admin.create_queue("forwarder", forward_to="missing-target")
    with pytest.raises(HttpResponseError, match="RequiresSession"):
        admin.update_queue(admin.get_queue("q"), requires_session=True)
    assert [q.name for q in admin.list_queues()] == ["q"]


def test_topic_and_subscription_lifecycle(admin: ServiceBusAdministrationClient) -> None:
    topic = admin.create_topic("events", default_message_time_to_live=timedelta(days=1))
    assert topic.default_message_time_to_live == timedelta(days=1)
    sub = admin.create_subscription(
        "events", "audit", max_delivery_count=5, lock_duration=timedelta(seconds=20)
    )
    assert (sub.max_delivery_count, sub.lock_duration) == (5, timedelta(seconds=20))
    assert [r.name for r in admin.list_rules("events", "audit")] == ["$Default"]
    with pytest.raises(ResourceExistsError):
        admin.create_subscription("events", "audit")
    with pytest.raises(ResourceNotFoundError):
        admin.create_subscription("no-topic", "audit")

    sub.max_delivery_count = 8
    admin.update_subscription("events", sub)
    assert admin.get_subscription("events", "audit").max_delivery_count == 8
    topic.default_message_time_to_live = timedelta(hours=3)
    admin.update_topic(topic)
    assert admin.get_topic("events").default_message_time_to_live == timedelta(hours=3)
    assert [s.name for s in admin.list_subscriptions("events")] == ["audit"]

    admin.delete_subscription("events", "audit")
    assert list(admin.list_subscriptions("events")) == []
    admin.delete_topic("events")
    with pytest.raises(ResourceNotFoundError):
        admin.get_topic("events")


def test_created_entities_behave_like_configured_ones(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    admin.create_queue("made-over-https", max_delivery_count=1)
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("made-over-https") as sender:
            sender.send_messages(ServiceBusMessage("hello"))
        with client.get_queue_receiver("made-over-https", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.abandon_message(msg)  # max delivery count 1: straight to the DLQ
        with client.get_queue_receiver(
            "made-over-https", sub_queue="deadletter", max_wait_time=2
        ) as dlq:
            (dead,) = dlq.peek_messages()
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"


def test_deleting_a_topic_deletes_its_subscriptions_and_messages(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(ServiceBusMessage("x", application_properties={"color": "red"}))
    assert admin.get_subscription_runtime_properties("t", "red").active_message_count == 1
    admin.delete_topic("t")
    with pytest.raises(ResourceNotFoundError):
        admin.get_subscription("t", "red")
    admin.create_topic("t")
    admin.create_subscription("t", "red")
    assert admin.get_subscription_runtime_properties("t", "red").total_message_count == 0
    assert emulator.call(lambda: len(emulator.topology.topics[0].subscriptions)) == 1


def test_forwarding_set_over_https_moves_messages(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    admin.create_queue("sink")
    admin.create_subscription("t", "fwd", forward_to="sink")
    assert admin.get_subscription("t", "fwd").forward_to.endswith("/sink")
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(ServiceBusMessage("moved"))
        with client.get_queue_receiver("sink", max_wait_time=2) as receiver:
            assert [str(m) for m in receiver.receive_messages(max_wait_time=2)] == ["moved"]
