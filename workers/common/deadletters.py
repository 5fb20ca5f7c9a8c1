"""Dead-letter sweeper: every job whose message the broker dead-letters still reaches an end.

The processor marks a job `failed` before it dead-letters the message itself, but the
broker dead-letters on its own too: a message past its TTL (`TTLExpiredException`), one
that crashed its worker `MaxDeliveryCount` times (`MaxDeliveryCountExceeded`), or a body
too broken for the processor to know which job it was. Those jobs stayed `pending` or
`processing` for ever. The sweeper, one per job subscription and run by a timer, PEEKS
the subscription's dead-letter queue (peek, not receive: the messages stay for the DLQ
monitor, export and replay, and their delivery counts do not move) and ends each open job
it finds there: `timeout` for an expired message, otherwise `failed`, with the broker's
reason and description as the job's error, and publishes the final `job.update` once.

Exactly once, because the status change is conditional (only from `pending`/`processing`,
and not for a dead letter older than the job's current attempt) and the event is published
inside the transaction that makes it: a failed publish rolls the change back for the next
sweep to retry, and a re-peek of an ended job changes and publishes nothing.

The pure part — which job a dead letter names and how it ends — is `ending_for`; the
sweep loop talks to a `DeadLetterPeeker`, the repository and the publisher.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.common.clock import Clock, SystemClock
from workers.common.contracts import (
    TERMINAL_STATUSES,
    EventMessage,
    InvalidMessage,
    JobError,
    JobMessage,
    JobStatus,
    JobType,
    normalize_properties,
    parse_job_message,
)
from workers.common.idempotency import IdempotencyGuard
from workers.common.messaging import EventPublisher, message_body_bytes
from workers.common.repository import JobRecord, JobRepository

log = logging.getLogger(__name__)

TTL_EXPIRED = "TTLExpiredException"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
DEAD_LETTERED = "DEAD_LETTERED"  # error code when the broker gave no reason

# The timers' NCRONTAB schedule: every minute, at second 0.
SWEEP_SCHEDULE = "0 */1 * * * *"


@dataclass(frozen=True)
class DeadLetter:
    """What the sweeper reads of a peeked dead letter."""

    sequence_number: int
    body: bytes
    application_properties: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    description: str | None = None
    delivery_count: int | None = None


def dead_letter_from_sdk(message: Any) -> DeadLetter:
    """Adapt a peeked azure-servicebus `ServiceBusReceivedMessage`."""
    try:
        body = message_body_bytes(message)
    except Exception:  # an unreadable body still names its job in its properties
        body = b""
    return DeadLetter(
        sequence_number=int(message.sequence_number),
        body=body,
        application_properties=normalize_properties(message.application_properties),
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        delivery_count=message.delivery_count,
    )


@dataclass(frozen=True)
class Ending:
    """How the job a dead letter names ends."""

    job_id: str
    status: JobStatus
    error: JobError
    # The dead letter's attempt: an older copy does not end a job that moved on.
    attempt: int | None
    # The full envelope when the body has one: the job row is created from it if missing
    # (a message sent to the topic directly, not through the API).
    seed: JobMessage | None


def _loose_fields(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ending_for(dead_letter: DeadLetter, subscription: str) -> Ending | None:
    """The ending of the job `dead_letter` names, or None when it names no job."""
    seed: JobMessage | None
    try:
        seed = parse_job_message(dead_letter.body)
    except InvalidMessage:
        seed = None
    loose = _loose_fields(dead_letter.body)
    job_id: Any = seed.job_id if seed else loose.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        job_id = dead_letter.application_properties.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        return None
    attempt: Any = seed.attempt if seed else loose.get("attempt")
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        attempt = None
    reason = dead_letter.reason or DEAD_LETTERED
    status = JobStatus.TIMEOUT if reason == TTL_EXPIRED else JobStatus.FAILED
    message = dead_letter.description or f"dead-lettered by the broker ({reason})"
    error = JobError(
        code=reason,
        message=message,
        details={
            "source": "dead-letter",
            "subscription": subscription,
            "deadLetterReason": dead_letter.reason,
            "deliveryCount": dead_letter.delivery_count,
            "sequenceNumber": dead_letter.sequence_number,
        },
    )
    return Ending(job_id=job_id, status=status, error=error, attempt=attempt, seed=seed)


class DeadLetterPeeker(Protocol):
    """Browses one subscription's dead-letter queue without changing it."""

    async def peek(self, from_sequence_number: int, max_count: int) -> list[DeadLetter]: ...


class ServiceBusDeadLetterPeeker:
    """DeadLetterPeeker over the async SDK: a dead-letter receiver used for peeks only.

    The receiver is kept between sweeps (attaching costs a round trip, closing about a
    second) and dropped after an error so a broken link is not reused.
    """

    def __init__(self, client: Any, topic: str, subscription: str) -> None:
        self.client = client
        self.topic = topic
        self.subscription = subscription
        self._receiver: Any = None

    @classmethod
    def from_connection_string(
        cls, connection: str, topic: str, subscription: str
    ) -> ServiceBusDeadLetterPeeker:
        from azure.servicebus.aio import ServiceBusClient

        return cls(ServiceBusClient.from_connection_string(connection), topic, subscription)

    async def peek(self, from_sequence_number: int, max_count: int) -> list[DeadLetter]:
        from azure.servicebus import ServiceBusSubQueue

        if self._receiver is None:
            self._receiver = self.client.get_subscription_receiver(
                topic_name=self.topic,
                subscription_name=self.subscription,
                sub_queue=ServiceBusSubQueue.DEAD_LETTER,
            )
        try:
            # Always an explicit start: the SDK reads 0 as "after the last one I saw".
            messages = await self._receiver.peek_messages(
                max_message_count=max_count, sequence_number=max(1, from_sequence_number)
            )
        except BaseException:
            receiver, self._receiver = self._receiver, None
            try:
                await receiver.close()
            except Exception as exc:
                log.debug("closing a failed dead-letter receiver: %s", exc)
            raise
        return [dead_letter_from_sdk(m) for m in messages]

    async def aclose(self) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            await receiver.close()


@dataclass
class SweepReport:
    """What one sweep did (also logged)."""

    subscription: str
    peeked: int = 0
    ended: dict[str, JobStatus] = field(default_factory=dict)
    already_ended: int = 0  # the job had an end already: the processor's own dead letters
    unidentified: int = 0  # no job id anywhere in the message
    unknown: int = 0  # a job id with no row and no envelope to create one from
    stale: int = 0  # an older attempt than the job's current one
    error: str | None = None


class DeadLetterSweeper:
    """Ends the open jobs found in one job subscription's dead-letter queue.

    Peeks pages of `page_size` from a cursor and goes on where the last sweep stopped, so
    a large backlog is covered over successive sweeps, at most `max_per_sweep` each. When a
    page comes back short the queue was read to its end and the next sweep starts over from
    the first message: dead letters keep their original sequence numbers on some brokers,
    so one dead-lettered late may sit before the cursor, and a full pass finds it.
    """

    def __init__(
        self,
        subscription: str,
        peeker: DeadLetterPeeker,
        repository: JobRepository,
        publisher: EventPublisher,
        *,
        guard: IdempotencyGuard | None = None,
        clock: Clock | None = None,
        page_size: int = 100,
        max_per_sweep: int = 500,
    ) -> None:
        if page_size < 1 or max_per_sweep < 1:
            raise ValueError("page_size and max_per_sweep must be at least 1")
        self.subscription = subscription
        self.peeker = peeker
        self.repository = repository
        self.publisher = publisher
        self.guard = guard
        self.clock = clock or SystemClock()
        self.page_size = page_size
        self.max_per_sweep = max_per_sweep
        self.cursor = 1

    async def sweep(self) -> SweepReport:
        """One pass; never raises (a failure is reported and the next sweep retries)."""
        report = SweepReport(self.subscription)
        try:
            await self._sweep(report)
        except Exception as exc:
            log.exception("[dead-letters] sweep of %s failed: %s", self.subscription, exc)
            report.error = f"{type(exc).__name__}: {exc}"
        if report.ended or report.error:
            log.warning(
                "[dead-letters] %s: peeked %d, ended %s%s",
                self.subscription,
                report.peeked,
                {k: v.value for k, v in report.ended.items()},
                f", error {report.error}" if report.error else "",
            )
        return report

    async def _sweep(self, report: SweepReport) -> None:
        while report.peeked < self.max_per_sweep:
            count = min(self.page_size, self.max_per_sweep - report.peeked)
            page = await self.peeker.peek(self.cursor, count)
            report.peeked += len(page)
            if page:
                await self._handle_page(page, report)
                self.cursor = max(d.sequence_number for d in page) + 1
            if len(page) < count:
                self.cursor = 1  # read to the end: start over next time
                return

    async def _handle_page(self, page: Sequence[DeadLetter], report: SweepReport) -> None:
        endings: list[Ending] = []
        for dead_letter in page:
            ending = ending_for(dead_letter, self.subscription)
            if ending is None:
                report.unidentified += 1
            else:
                endings.append(ending)
        statuses = await self.repository.statuses([e.job_id for e in endings])
        for ending in endings:
            status = statuses.get(ending.job_id)
            if status in TERMINAL_STATUSES or ending.job_id in report.ended:
                report.already_ended += 1
                continue
            if status is None and ending.seed is None:
                report.unknown += 1
                continue
            record = await self.repository.end_open_job(
                ending.job_id,
                ending.status,
                ending.error,
                self.clock.now(),
                max_attempt=ending.attempt,
                seed=ending.seed,
                before_commit=self._publish,
            )
            if record is None:
                report.stale += 1
                continue
            report.ended[ending.job_id] = ending.status
            if self.guard is not None:
                await self.guard.mark_finished(ending.job_id, ending.status)

    async def _publish(self, record: JobRecord) -> None:
        """The final event; raising here rolls the status change back."""
        try:
            job_type: JobType | None = JobType(record.job_type)
        except ValueError:
            job_type = None
        await self.publisher.publish(
            EventMessage(
                job_id=record.id,
                creator_id=record.creator_id,
                status=record.status,
                progress=record.progress,
                error=JobError.model_validate(record.error) if record.error else None,
                updated_at=record.updated_at,
                job_type=job_type,
                attempt=record.attempt,
            )
        )
