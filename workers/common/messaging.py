"""Messaging seams of the processor and their Service Bus implementations.

The processor talks to three small interfaces — a `Settler` bound to the received message,
a `RetryScheduler` and an `EventPublisher` — so it is testable without a broker. The real
implementations use the azure-servicebus SDK (async client) and, for settlement, the
`ServiceBusMessageActions` of the Functions SDK-type binding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from workers.common.contracts import (
    EVENT_TYPE_AI_COST,
    EVENT_TYPE_DLQ_ALERT,
    AICostEvent,
    DlqAlertEvent,
    EventMessage,
    JobMessage,
    event_application_properties,
    normalize_properties,
)

log = logging.getLogger(__name__)

# Service Bus caps the dead-letter description; keep ours well inside it.
MAX_DEADLETTER_DESCRIPTION = 1024


class Settler(Protocol):
    """Settles the one message being processed."""

    async def complete(self) -> None: ...

    async def abandon(self) -> None: ...

    async def dead_letter(self, reason: str, description: str) -> None: ...

    async def defer(self) -> None: ...


class RetryScheduler(Protocol):
    """Sends the retry copy of a job, to be enqueued at `enqueue_at`."""

    async def schedule(
        self, job: JobMessage, application_properties: dict[str, Any], enqueue_at: datetime
    ) -> None: ...


class EventPublisher(Protocol):
    """Publishes to the events topic."""

    async def publish(self, event: EventMessage) -> None: ...

    async def publish_cost(self, event: AICostEvent) -> None: ...

    async def publish_alert(self, event: DlqAlertEvent) -> None: ...


@dataclass(frozen=True)
class ReceivedJob:
    """What the processor needs of a received message, independent of the binding."""

    body: bytes
    application_properties: dict[str, Any]
    message_id: str | None = None
    delivery_count: int | None = None
    enqueued_time_utc: datetime | None = None

    def without_property(self, name: str) -> ReceivedJob:
        """This delivery minus one application property (what its retry copies carry)."""
        if name not in self.application_properties:
            return self
        properties = {k: v for k, v in self.application_properties.items() if k != name}
        return dataclasses.replace(self, application_properties=properties)


def message_body_bytes(message: Any) -> bytes:
    """Body of an SDK `ServiceBusReceivedMessage` as bytes, whatever its AMQP body type."""
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, list | tuple) and all(isinstance(p, bytes | bytearray) for p in body):
        return b"".join(bytes(part) for part in body)  # AMQP data sections
    if isinstance(body, dict | list | int | float | bool) or body is None:
        return json.dumps(body).encode()  # AMQP value body
    return b"".join(bytes(part) for part in body)  # the SDK's generator of data sections


def received_job_from_sdk(message: Any) -> ReceivedJob:
    """Adapt the binding's `ServiceBusReceivedMessage` (an azure-servicebus SDK object)."""
    return ReceivedJob(
        body=message_body_bytes(message),
        application_properties=normalize_properties(message.application_properties),
        message_id=str(message.message_id) if message.message_id is not None else None,
        delivery_count=message.delivery_count,
        enqueued_time_utc=message.enqueued_time_utc,
    )


class MessageActionsSettler:
    """Settler over `azurefunctions.extensions.bindings.servicebus.ServiceBusMessageActions`.

    Its methods are blocking gRPC calls to the host; they run in a thread so concurrent
    invocations on the worker's event loop are not stalled.
    """

    def __init__(self, actions: Any, message: Any) -> None:
        self.actions = actions
        self.message = message

    async def complete(self) -> None:
        await asyncio.to_thread(self.actions.complete, self.message)

    async def abandon(self) -> None:
        await asyncio.to_thread(self.actions.abandon, self.message)

    async def dead_letter(self, reason: str, description: str) -> None:
        await asyncio.to_thread(
            self.actions.deadletter,
            self.message,
            deadletter_reason=reason,
            deadletter_error_description=description[:MAX_DEADLETTER_DESCRIPTION],
        )

    async def defer(self) -> None:
        await asyncio.to_thread(self.actions.defer, self.message)


class AsyncSender(Protocol):
    async def send_messages(self, message: ServiceBusMessage) -> None: ...


SenderFactory = Callable[[str], AsyncSender]


def retry_message(
    job: JobMessage, application_properties: dict[str, Any], enqueue_at: datetime
) -> ServiceBusMessage:
    """The retry copy: same application properties, body as given, scheduled."""
    return ServiceBusMessage(
        json.dumps(job.to_wire()),
        content_type="application/json",
        application_properties=dict(application_properties),
        message_id=f"{job.job_id}:{job.attempt}",
        scheduled_enqueue_time_utc=enqueue_at,
    )


def event_message(event: EventMessage) -> ServiceBusMessage:
    return ServiceBusMessage(
        json.dumps(event.to_wire()),
        content_type="application/json",
        application_properties=event_application_properties(event),
    )


def cost_message(event: AICostEvent) -> ServiceBusMessage:
    return ServiceBusMessage(
        json.dumps(event.to_wire()),
        content_type="application/json",
        application_properties={
            "eventType": EVENT_TYPE_AI_COST,
            "jobId": event.job_id,
            "creatorId": event.creator_id,
            "model": event.model,
        },
    )


def alert_message(event: DlqAlertEvent) -> ServiceBusMessage:
    return ServiceBusMessage(
        json.dumps(event.to_wire()),
        content_type="application/json",
        application_properties={
            "eventType": EVENT_TYPE_DLQ_ALERT,
            "severity": event.severity,
            "subscription": event.subscription,
        },
    )


class ServiceBusOutbox:
    """RetryScheduler and EventPublisher over one async ServiceBusClient.

    SDK senders are not coroutine-safe, so each topic's sender is guarded by a lock.
    """

    def __init__(self, sender_factory: SenderFactory, topic_jobs: str, topic_events: str) -> None:
        self._factory = sender_factory
        self.topic_jobs = topic_jobs
        self.topic_events = topic_events
        self._senders: dict[str, AsyncSender] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_connection_string(
        cls, connection: str, topic_jobs: str, topic_events: str
    ) -> ServiceBusOutbox:
        client = ServiceBusClient.from_connection_string(connection)
        return cls(lambda topic: client.get_topic_sender(topic), topic_jobs, topic_events)

    async def _send(self, topic: str, message: ServiceBusMessage) -> None:
        lock = self._locks.setdefault(topic, asyncio.Lock())
        async with lock:
            sender = self._senders.get(topic)
            if sender is None:
                sender = self._factory(topic)
                self._senders[topic] = sender
            await sender.send_messages(message)

    async def schedule(
        self, job: JobMessage, application_properties: dict[str, Any], enqueue_at: datetime
    ) -> None:
        await self._send(self.topic_jobs, retry_message(job, application_properties, enqueue_at))

    async def publish(self, event: EventMessage) -> None:
        await self._send(self.topic_events, event_message(event))

    async def publish_cost(self, event: AICostEvent) -> None:
        await self._send(self.topic_events, cost_message(event))

    async def publish_alert(self, event: DlqAlertEvent) -> None:
        await self._send(self.topic_events, alert_message(event))
