"""The `servicebus` fixture: the SDK on the stack's connection strings, for arranging.

One SDK client, one sender per topic and one peek receiver per (sub-)queue for the whole
session: the SDK takes about half a second to open a link (it polls every 50 ms per frame)
and as long to close one (it joins a keep-alive thread that sleeps in 1 s steps), so a test
that opened and closed its own spent seconds per assertion. Kept links reconnect by
themselves after a fault test drops their connection (the SDK retries)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from .hosts import in_parallel
from .stack import admin_connection

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

    from harness.stack import Stack


class KeptLinks:
    """Senders and peek-only receivers opened on first use and kept until `close`."""

    def __init__(self, client: ServiceBusClient) -> None:
        self.client = client
        self._senders: dict[str, ServiceBusSender] = {}
        self._peekers: dict[tuple[str, str | None, str | None], ServiceBusReceiver] = {}

    def sender(self, entity: str) -> ServiceBusSender:
        sender = self._senders.get(entity)
        if sender is None:
            sender = self._senders[entity] = self.client.get_topic_sender(entity)
        return sender

    def peeker(
        self, entity: str, subscription: str | None = None, sub_queue: str | None = None
    ) -> ServiceBusReceiver:
        """A receiver used only to peek (it never takes a lock, so keeping it is harmless)."""
        key = (entity, subscription, sub_queue)
        receiver = self._peekers.get(key)
        if receiver is None:
            if subscription is None:
                receiver = self.client.get_queue_receiver(entity, sub_queue=sub_queue)
            else:
                receiver = self.client.get_subscription_receiver(
                    entity, subscription, sub_queue=sub_queue
                )
            self._peekers[key] = receiver
        return receiver

    def close(self) -> None:
        """Close every link at once: each close waits on the SDK's keep-alive thread."""
        links: list[Any] = [*self._senders.values(), *self._peekers.values()]
        self._senders, self._peekers = {}, {}

        def closer(link: Any) -> Any:
            def close() -> None:
                with contextlib.suppress(Exception):
                    link.close()

            return close

        in_parallel([closer(link) for link in links])


class ServiceBusHelper:
    """Sync SDK access to the stack's Service Bus: senders, raw sends, dead letters, and
    subscription changes that are undone after the test."""

    def __init__(
        self, stack: Stack, client: ServiceBusClient, links: KeptLinks | None = None
    ) -> None:
        self.stack = stack
        self.client = client
        self.connection_string = stack.servicebus_connection
        self.send_connection_string = stack.servicebus_send_connection
        self.topic_jobs = stack.topic_jobs
        self.topic_events = stack.topic_events
        self._own_links = links is None
        self.links = links if links is not None else KeptLinks(client)

    def sender(self, topic: str | None = None) -> ServiceBusSender:
        """A sender on `topic` (default the jobs topic), kept open (see the module's doc)."""
        return self.links.sender(topic or self.topic_jobs)

    def peek(
        self,
        subscription: str,
        *,
        topic: str | None = None,
        sub_queue: str | None = None,
        max_count: int | None = None,
    ) -> list[Any]:
        """Every message of a subscription of `topic` (default the jobs topic), or of its
        dead-letter queue with `sub_queue="deadletter"`, in sequence order; peeked, so
        nothing is locked or counted."""
        receiver = self.links.peeker(topic or self.topic_jobs, subscription, sub_queue)
        found: list[Any] = []
        sequence = 1  # explicit: 0 reads as "not given", and the SDK goes on from its cursor
        while max_count is None or len(found) < max_count:
            want = 250 if max_count is None else min(250, max_count - len(found))
            batch = receiver.peek_messages(max_message_count=want, sequence_number=sequence)
            if not batch:
                break
            found += batch
            sequence = batch[-1].sequence_number + 1
        return found

    def close(self) -> None:
        """Close the links this helper opened itself (kept session links stay open)."""
        if self._own_links:
            self.links.close()

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

    def peek_dead_letters(self, subscription: str, max_count: int | None = None) -> list[Any]:
        """Dead letters of a jobs-topic subscription, peeked (not locked, not counted)."""
        return self.peek(subscription, sub_queue="deadletter", max_count=max_count)


@pytest.fixture(scope="session")
def _servicebus_client(stack: Stack) -> Iterator[ServiceBusClient]:
    from azure.servicebus import ServiceBusClient

    with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client:
        yield client


@pytest.fixture(scope="session")
def _servicebus_links(_servicebus_client: ServiceBusClient) -> Iterator[KeptLinks]:
    links = KeptLinks(_servicebus_client)
    try:
        yield links
    finally:
        links.close()


@pytest.fixture
def servicebus(
    stack: Stack, _servicebus_client: ServiceBusClient, _servicebus_links: KeptLinks
) -> Iterator[ServiceBusHelper]:
    """SDK clients on the stack's connection string, `send_raw`, `peek`,
    `subscription_changed`."""
    helper = ServiceBusHelper(stack, _servicebus_client, _servicebus_links)
    try:
        yield helper
    finally:
        helper.close()
