"""DLQ triage monitor: counts dead letters per job subscription and samples them by peek.

The seed received dead letters (locking them and bumping their delivery count) through a
receiver it tried to create from the administration client, which has none. Here counts
come from `ServiceBusAdministrationClient` and samples from a `ServiceBusClient` receiver
on the dead-letter sub-queue using `peek_messages` only — triage never changes the DLQ.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from workers.common.clock import Clock, SystemClock
from workers.common.contracts import SUBSCRIPTION_FOR_JOB_TYPE, DlqAlertEvent
from workers.common.messaging import EventPublisher, message_body_bytes

log = logging.getLogger(__name__)

JOB_SUBSCRIPTIONS: tuple[str, ...] = tuple(SUBSCRIPTION_FOR_JOB_TYPE.values())
SAMPLE_SIZE = 5


class DlqInspector(Protocol):
    async def dead_letter_count(self, topic: str, subscription: str) -> int: ...

    async def peek_dead_letters(
        self, topic: str, subscription: str, max_count: int
    ) -> list[dict[str, Any]]: ...


def describe_dead_letter(message: Any) -> dict[str, Any]:
    """The triage fields of a peeked SDK message."""
    job_id: Any = None
    try:
        job_id = json.loads(message_body_bytes(message)).get("jobId")
    except (ValueError, AttributeError, TypeError):
        job_id = None
    return {
        "jobId": job_id,
        "reason": message.dead_letter_reason,
        "errorDescription": message.dead_letter_error_description,
        "deliveryCount": message.delivery_count,
        "sequenceNumber": message.sequence_number,
    }


class ServiceBusDlqInspector:
    """Inspector over the synchronous SDK clients (run in a thread from the timer)."""

    def __init__(self, admin_client: Any, client: Any) -> None:
        self.admin = admin_client
        self.client = client

    @classmethod
    def from_connection_string(
        cls, connection: str, *, admin_connection: str = "", admin_ca_bundle: str = ""
    ) -> ServiceBusDlqInspector:
        """Counts need a Manage policy (`admin_connection`, default `connection`); peeking
        needs Listen. `admin_ca_bundle`: a CA file the HTTPS administration client trusts
        (an emulator's self-signed certificate); empty means the system's CAs."""
        from azure.servicebus import ServiceBusClient
        from azure.servicebus.management import ServiceBusAdministrationClient

        verify = {"connection_verify": admin_ca_bundle} if admin_ca_bundle else {}
        return cls(
            ServiceBusAdministrationClient.from_connection_string(
                admin_connection or connection, **verify
            ),
            ServiceBusClient.from_connection_string(connection),
        )

    def _count(self, topic: str, subscription: str) -> int:
        props = self.admin.get_subscription_runtime_properties(topic, subscription)
        return int(props.dead_letter_message_count)

    def _peek(self, topic: str, subscription: str, max_count: int) -> list[dict[str, Any]]:
        from azure.servicebus import ServiceBusSubQueue

        receiver = self.client.get_subscription_receiver(
            topic_name=topic,
            subscription_name=subscription,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER,
        )
        with receiver:
            messages = receiver.peek_messages(max_message_count=max_count)
        return [describe_dead_letter(m) for m in messages]

    async def dead_letter_count(self, topic: str, subscription: str) -> int:
        return await asyncio.to_thread(self._count, topic, subscription)

    async def peek_dead_letters(
        self, topic: str, subscription: str, max_count: int
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._peek, topic, subscription, max_count)


@dataclass
class TriageResult:
    subscription: str
    count: int | None
    severity: str | None
    samples: list[dict[str, Any]]
    error: str | None = None


class DlqMonitor:
    """Warning above `warning_threshold`, critical alert event above `critical_threshold`."""

    def __init__(
        self,
        inspector: DlqInspector,
        publisher: EventPublisher,
        topic: str,
        *,
        subscriptions: tuple[str, ...] = JOB_SUBSCRIPTIONS,
        warning_threshold: int = 0,
        critical_threshold: int = 10,
        clock: Clock | None = None,
    ) -> None:
        self.inspector = inspector
        self.publisher = publisher
        self.topic = topic
        self.subscriptions = subscriptions
        self.warning_threshold = warning_threshold
        self.critical_threshold = critical_threshold
        self.clock = clock or SystemClock()

    async def run(self) -> list[TriageResult]:
        """One triage pass; a failing subscription is reported and the others still run."""
        results = []
        for subscription in self.subscriptions:
            try:
                results.append(await self._triage(subscription))
            except Exception as exc:
                log.error("[DlqTriageMonitor] error checking %s: %s", subscription, exc)
                results.append(TriageResult(subscription, None, None, [], error=str(exc)))
        return results

    async def _triage(self, subscription: str) -> TriageResult:
        count = await self.inspector.dead_letter_count(self.topic, subscription)
        if count <= self.warning_threshold:
            return TriageResult(subscription, count, None, [])
        log.warning("[DlqTriageMonitor] %s has %d DLQ messages", subscription, count)
        samples = await self.inspector.peek_dead_letters(self.topic, subscription, SAMPLE_SIZE)
        for sample in samples:
            log.info("[DlqTriageMonitor] %s DLQ message: %s", subscription, sample)
        severity = "warning"
        if count > self.critical_threshold:
            severity = "critical"
            log.error("[DlqTriageMonitor] CRITICAL: %s DLQ > %d", subscription, count)
            await self.publisher.publish_alert(
                DlqAlertEvent(
                    severity="critical",
                    topic=self.topic,
                    subscription=subscription,
                    dead_letter_count=count,
                    samples=samples,
                    raised_at=self.clock.now(),
                )
            )
        return TriageResult(subscription, count, severity, samples)
