"""The `servicebus` fixture: the SDK on the stack's connection strings, for arranging.

One SDK client per session and one sender per topic per test: opening an AMQP link costs
about a second against the emulator, which adds up over a suite."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from .stack import admin_connection

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient, ServiceBusSender

    from harness.stack import Stack


class ServiceBusHelper:
    """Sync SDK access to the stack's Service Bus: senders, raw sends, dead letters, and
    subscription changes that are undone after the test."""

    def __init__(self, stack: Stack, client: ServiceBusClient) -> None:
        self.stack = stack
        self.client = client
        self.connection_string = stack.servicebus_connection
        self.send_connection_string = stack.servicebus_send_connection
        self.topic_jobs = stack.topic_jobs
        self.topic_events = stack.topic_events
        # Opening and closing an SDK sender costs ~1 s against the emulator; keep one per topic.
        self._senders: dict[str, ServiceBusSender] = {}

    def sender(self, topic: str | None = None) -> ServiceBusSender:
        """A sender on `topic` (default the jobs topic), kept open until the test ends."""
        topic = topic or self.topic_jobs
        sender = self._senders.get(topic)
        if sender is None:
            sender = self._senders[topic] = self.client.get_topic_sender(topic)
        return sender

    def close(self) -> None:
        senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            with contextlib.suppress(Exception):
                sender.close()

    def send_raw(
        self,
        body: str | bytes,
        application_properties: Mapping[str, Any],
        *,
        message_id: str | None = None,
        topic: str | None = None,
    ) -> str:
        """Send any body (e.g. an invalid payload) to the jobs topic; returns the message id."""
        from azure.servicebus import ServiceBusMessage

        message_id = message_id or uuid.uuid4().hex
        message = ServiceBusMessage(
            body,
            content_type="application/json",
            application_properties=dict(application_properties),
            message_id=message_id,
        )
        self.sender(topic).send_messages(message)
        return message_id

    @contextlib.contextmanager
    def subscription_changed(
        self, subscription: str, *, topic: str | None = None, **properties: Any
    ) -> Iterator[Any]:
        """Change a subscription's properties (e.g. `lock_duration=timedelta(seconds=2)`)
        through the administration client for the `with` block, then put them back."""
        from azure.servicebus.management import ServiceBusAdministrationClient

        topic = topic or self.topic_jobs
        conn, kwargs = admin_connection(self.stack)
        with ServiceBusAdministrationClient.from_connection_string(conn, **kwargs) as admin:
            current = admin.get_subscription(topic, subscription)
            unknown = [name for name in properties if not hasattr(current, name)]
            if unknown:
                raise AttributeError(f"subscriptions have no property {', '.join(unknown)}")
            before = {name: getattr(current, name) for name in properties}
            for name, value in properties.items():
                setattr(current, name, value)
            admin.update_subscription(topic, current)
            try:
                yield admin.get_subscription(topic, subscription)
            finally:
                restored = admin.get_subscription(topic, subscription)
                for name, value in before.items():
                    setattr(restored, name, value)
                admin.update_subscription(topic, restored)

    def peek_dead_letters(self, subscription: str, max_count: int = 50) -> list[Any]:
        """Dead letters of a jobs-topic subscription, peeked (not locked, not counted)."""
        with self.client.get_subscription_receiver(
            self.topic_jobs, subscription, sub_queue="deadletter"
        ) as receiver:
            return list(receiver.peek_messages(max_message_count=max_count))


@pytest.fixture(scope="session")
def _servicebus_client(stack: Stack) -> Iterator[ServiceBusClient]:
    from azure.servicebus import ServiceBusClient

    with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client:
        yield client


@pytest.fixture
def servicebus(stack: Stack, _servicebus_client: ServiceBusClient) -> Iterator[ServiceBusHelper]:
    """SDK clients on the stack's connection string, `send_raw`, `subscription_changed`."""
    helper = ServiceBusHelper(stack, _servicebus_client)
    try:
        yield helper
    finally:
        helper.close()
