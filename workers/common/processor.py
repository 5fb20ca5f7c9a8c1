"""The job processor shared by the four job types: status, events, retries, settlement.

Order of effects for one delivery (each step happens only if the previous succeeded):

1. validate the body — an invalid envelope is dead-lettered `INVALID_PAYLOAD` at once;
2. skip work already done — a finished job (Redis, then Postgres) is completed as is;
3. take the job's run lease — a concurrent duplicate is re-sent for later and completed;
4. move the job to `processing` (guarded; stale copies of older attempts are completed);
5. run the handler under the soft deadline (the SLA from `deadlineMs`, capped by the
   worker's run budget so a run never outlives the host's lock renewal window);
6. on success: DB `completed` → `completed` event → complete the message;
   on a transient failure with retries left: send the retry copy (`attempt + 1`, scheduled
   at the backoff) → note the attempt in the DB → complete the message (status stays
   `processing`: a job is marked failed only when it will not be retried);
   otherwise: DB `failed` → `failed` event → dead-letter with reason and description.

A copy sent by `harness dlq replay` carries `x-replay-of` (REPLAY_MARKER): for a `failed` or
`timeout` job it is a request to run again, so the job restarts at attempt 0 (the ended run
kept in its history; `replay_action`); a `completed` job stays completed and the copy is a
duplicate. The restart is a conditional UPDATE taken under the run lease, so two copies of
one replay never both run; retry copies of the re-run drop the marker (they are ordinary
attempts).

A job that reached its end meanwhile (the dead-letter sweeper, `deadletters.py`, ended it
from another copy's dead letter) gets no further event: the guarded UPDATE finds it
finished, and the run publishes nothing and completes its message.

If our own storage or messaging fails, the message is abandoned (redelivered by Service
Bus) and nothing is marked failed: settlement happens only after the writes succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any

from workers.common.ai_client import ChatCompletion
from workers.common.clock import Clock, Sleeper, SystemClock, real_sleep
from workers.common.contracts import (
    TERMINAL_STATUSES,
    AICostEvent,
    EventMessage,
    InvalidMessage,
    JobMessage,
    JobStatus,
    JobType,
    parse_job_message,
    validate_payload,
)
from workers.common.cost import cost_usd
from workers.common.errors import ErrorCode, InfrastructureError, ProcessingError
from workers.common.handlers import JobHandler
from workers.common.idempotency import IdempotencyGuard
from workers.common.messaging import (
    MAX_DEADLETTER_DESCRIPTION,
    EventPublisher,
    ReceivedJob,
    RetryScheduler,
    Settler,
)
from workers.common.repository import JobRepository, StartResult
from workers.common.retry import RetryPolicy, policy_for

log = logging.getLogger(__name__)

INVALID_PAYLOAD_REASON = ErrorCode.INVALID_PAYLOAD.value
REPLAY_MARKER = "x-replay-of"
"""Application property `harness dlq replay` stamps on a copy (which dead letter it is)."""
_REPLAYABLE = frozenset({JobStatus.FAILED, JobStatus.TIMEOUT})


class ReplayAction(StrEnum):
    """What a delivery does about the replay marker it may carry."""

    NORMAL = "normal"  # no marker, or the job is open/new: the usual path
    RESTART = "restart"  # a failed/timeout job runs again from attempt 0
    RESUME = "resume"  # this replay restarted the job: the copy is its attempt 0 again
    DUPLICATE = "duplicate"  # completed, or this very replay ran it to its end already


def replay_marker(properties: Mapping[str, Any]) -> str | None:
    value = properties.get(REPLAY_MARKER)
    return str(value) if value not in (None, "") else None


def replay_action(
    marker: str | None, status: JobStatus | None, last_replay: str | None
) -> ReplayAction:
    """The pure decision for a delivery carrying `marker`, given the job's row."""
    if marker is None or status is None:
        return ReplayAction.NORMAL
    if status not in TERMINAL_STATUSES:
        return ReplayAction.RESUME if marker == last_replay else ReplayAction.NORMAL
    if status in _REPLAYABLE and marker != last_replay:
        return ReplayAction.RESTART
    return ReplayAction.DUPLICATE


class Outcome(StrEnum):
    COMPLETED = "completed"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"
    DUPLICATE = "duplicate"
    STALE = "stale"
    BUSY_RESCHEDULED = "busy_rescheduled"
    ABANDONED = "abandoned"


class _RunContext:
    """JobContext implementation handed to handlers."""

    def __init__(self, processor: JobProcessor, job: JobMessage, started: float, budget: float):
        self.processor = processor
        self.job = job
        self.started = started
        self.budget = budget

    def check_deadline(self) -> None:
        elapsed = self.processor.clock.monotonic() - self.started
        if elapsed > self.budget:
            raise ProcessingError(
                ErrorCode.SOFT_TIMEOUT,
                f"soft timeout: {elapsed:.1f} s elapsed, budget {self.budget:.1f} s",
            )

    async def progress(self, percent: int) -> None:
        self.check_deadline()
        now = self.processor.clock.now()
        try:
            if await self.processor.repository.set_progress(self.job.job_id, percent, now):
                await self.processor.publisher.publish(
                    self.processor.event(self.job, JobStatus.PROCESSING, progress=percent)
                )
        except Exception as exc:
            raise InfrastructureError(f"progress {percent} of {self.job.job_id}: {exc}") from exc

    async def track_usage(self, completion: ChatCompletion) -> None:
        event = AICostEvent(
            job_id=self.job.job_id,
            job_type=self.job.job_type,
            creator_id=self.job.creator_id,
            model=completion.model,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost_usd=cost_usd(completion.model, completion.input_tokens, completion.output_tokens),
            recorded_at=self.processor.clock.now(),
        )
        try:
            await self.processor.publisher.publish_cost(event)
        except Exception as exc:  # a lost metric must not fail the job
            log.warning("cost metric for %s not published: %s", self.job.job_id, exc)


def _log_traceback(job: JobMessage) -> None:
    """The handled error's traceback at DEBUG: what a failure came from, for whoever looks
    closely (`harness dlq reproduce` does) without a traceback in the logs at every retry."""
    log.debug("job %s attempt %s raised", job.job_id, job.attempt, exc_info=True)


class JobProcessor:
    """Processes one delivery of a job message; see the module docstring."""

    def __init__(
        self,
        handlers: Mapping[JobType, JobHandler],
        *,
        repository: JobRepository,
        guard: IdempotencyGuard,
        publisher: EventPublisher,
        scheduler: RetryScheduler,
        clock: Clock | None = None,
        sleeper: Sleeper = real_sleep,
        run_budget_seconds: float | None = None,
        lease_ttl_seconds: float = 600.0,
        policies: Callable[[JobType], RetryPolicy] = policy_for,
    ) -> None:
        self.handlers = dict(handlers)
        self.repository = repository
        self.guard = guard
        self.publisher = publisher
        self.scheduler = scheduler
        self.clock = clock or SystemClock()
        self.sleeper = sleeper
        self.run_budget_seconds = run_budget_seconds
        self.lease_ttl_seconds = lease_ttl_seconds
        self.policies = policies

    def event(
        self,
        job: JobMessage,
        status: JobStatus,
        *,
        progress: int = 0,
        result: Any = None,
        error: ProcessingError | None = None,
    ) -> EventMessage:
        return EventMessage(
            job_id=job.job_id,
            creator_id=job.creator_id,
            status=status,
            progress=progress,
            result=result,
            error=error.to_job_error() if error else None,
            updated_at=self.clock.now(),
            job_type=job.job_type,
            attempt=job.attempt,
        )

    async def process(self, received: ReceivedJob, settler: Settler) -> Outcome:
        """Process and settle one delivery. Never raises."""
        try:
            job = parse_job_message(received.body)
            if job.job_type not in self.handlers:
                accepted = ", ".join(sorted(t.value for t in self.handlers))
                raise InvalidMessage(
                    f"jobType {job.job_type.value} is not handled by this worker "
                    f"(accepts {accepted})",
                    job_id=job.job_id,
                )
        except InvalidMessage as exc:
            log.error("dead-lettering invalid message %s: %s", received.message_id, exc)
            return await self._settle_safely(
                settler.dead_letter(INVALID_PAYLOAD_REASON, exc.description),
                Outcome.DEAD_LETTERED,
                settler,
            )
        try:
            return await self._process_valid(job, received, settler)
        except Exception as exc:
            log.exception("infrastructure failure on job %s; abandoning: %s", job.job_id, exc)
            with contextlib.suppress(Exception):
                await settler.abandon()
            return Outcome.ABANDONED

    async def _settle_safely(self, settle: Any, outcome: Outcome, settler: Settler) -> Outcome:
        try:
            await settle
        except Exception as exc:
            log.exception("settlement failed: %s", exc)
            return Outcome.ABANDONED
        return outcome

    async def _process_valid(
        self, job: JobMessage, received: ReceivedJob, settler: Settler
    ) -> Outcome:
        marker = replay_marker(received.application_properties)
        if marker is None and await self.guard.finished_status(job.job_id):
            log.info("job %s already finished; completing duplicate delivery", job.job_id)
            await settler.complete()
            return Outcome.DUPLICATE
        token = uuid.uuid4().hex
        if not await self.guard.acquire(job.job_id, token, self.lease_ttl_seconds):
            # Another run holds the job (e.g. the first delivery after a lock loss). Re-send
            # this copy for when that lease expires; by then the job is finished (copy is a
            # duplicate), superseded by a later attempt (stale), or the holder died (run).
            remaining = await self.guard.lease_remaining(job.job_id)
            enqueue_at = self.clock.now() + timedelta(seconds=remaining + 1)
            await self.scheduler.schedule(job, received.application_properties, enqueue_at)
            await settler.complete()
            return Outcome.BUSY_RESCHEDULED
        try:
            return await self._run_leased(job, received, settler)
        finally:
            await self.guard.release(job.job_id, token)

    async def _run_leased(
        self, job: JobMessage, received: ReceivedJob, settler: Settler
    ) -> Outcome:
        marker = replay_marker(received.application_properties)
        if marker is not None:
            record = await self.repository.get(job.job_id)
            action = replay_action(
                marker, record.status if record else None, record.replay_of if record else None
            )
            if action is ReplayAction.RESTART:
                assert record is not None
                # The cached final status would make the re-run's retry copies duplicates.
                await self.guard.forget_finished(job.job_id, record.status)
                if not await self.repository.restart_for_replay(
                    job.job_id, marker, self.clock.now()
                ):
                    action = ReplayAction.DUPLICATE  # another copy claimed it first
            if action is ReplayAction.DUPLICATE:
                if record and record.status in TERMINAL_STATUSES:
                    await self.guard.mark_finished(job.job_id, record.status)
                log.info("replayed copy of job %s is a duplicate; completing", job.job_id)
                await settler.complete()
                return Outcome.DUPLICATE
            if action is ReplayAction.RESTART:
                assert record is not None
                await self.guard.forget_finished(job.job_id, record.status)  # raced a reader
                log.info("job %s restarted at attempt 0 by replay %s", job.job_id, marker)
            if action in (ReplayAction.RESTART, ReplayAction.RESUME):
                # A redelivered replay copy (RESUME) runs only if the re-run has not moved
                # past attempt 0; otherwise start_attempt finds it stale.
                job = job.model_copy(update={"attempt": 0})
            received = received.without_property(REPLAY_MARKER)
        start = await self.repository.start_attempt(job, self.clock.now())
        if start is StartResult.FINISHED:
            record = await self.repository.get(job.job_id)
            if record:
                await self.guard.mark_finished(job.job_id, record.status)
            await settler.complete()
            return Outcome.DUPLICATE
        if start is StartResult.STALE:
            log.info("job %s attempt %s superseded; completing", job.job_id, job.attempt)
            await settler.complete()
            return Outcome.STALE
        await self.publisher.publish(self.event(job, JobStatus.PROCESSING, progress=0))

        try:
            validate_payload(job)
            result = await self._run_handler(job)
        except InfrastructureError:
            raise
        except InvalidMessage as exc:
            _log_traceback(job)
            return await self._fail_or_retry(
                job, received, settler, ProcessingError(ErrorCode.INVALID_PAYLOAD, exc.description)
            )
        except ProcessingError as exc:
            _log_traceback(job)
            return await self._fail_or_retry(job, received, settler, exc)
        except Exception as exc:
            log.exception("handler for %s raised unexpectedly", job.job_id)
            error = ProcessingError(ErrorCode.UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}")
            return await self._fail_or_retry(job, received, settler, error)

        now = self.clock.now()
        if not await self.repository.complete(job.job_id, result, now):
            return await self._ended_elsewhere(job, settler)
        await self.publisher.publish(
            self.event(job, JobStatus.COMPLETED, progress=100, result=result)
        )
        await self.guard.mark_finished(job.job_id, JobStatus.COMPLETED)
        await settler.complete()
        log.info("job %s completed on attempt %s", job.job_id, job.attempt)
        return Outcome.COMPLETED

    def _budget(self, job: JobMessage) -> float:
        budget = job.deadline_ms / 1000
        if self.run_budget_seconds is not None:
            budget = min(budget, self.run_budget_seconds)
        return budget

    async def _run_handler(self, job: JobMessage) -> Any:
        """Run the handler; the watchdog cancels it (and its AI call) at the budget."""
        budget = self._budget(job)
        ctx = _RunContext(self, job, self.clock.monotonic(), budget)
        handler = self.handlers[job.job_type]
        work = asyncio.ensure_future(handler.run(job, ctx))
        watchdog = asyncio.ensure_future(self.sleeper(budget))
        try:
            await asyncio.wait({work, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            watchdog.cancel()
            raise
        watchdog.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            raise ProcessingError(
                ErrorCode.SOFT_TIMEOUT,
                f"soft timeout: work cancelled after its {budget:.1f} s budget "
                f"(deadlineMs={job.deadline_ms})",
            )
        return work.result()

    async def _fail_or_retry(
        self, job: JobMessage, received: ReceivedJob, settler: Settler, error: ProcessingError
    ) -> Outcome:
        decision = self.policies(job.job_type).decide(error, job.attempt)
        now = self.clock.now()
        if decision.retry:
            retry = job.next_attempt()
            enqueue_at = now + timedelta(seconds=decision.delay_seconds)
            await self.scheduler.schedule(retry, received.application_properties, enqueue_at)
            await self.repository.note_retry(job.job_id, retry.attempt, error.to_job_error(), now)
            await settler.complete()
            log.warning(
                "job %s attempt %s failed (%s); retry %s in %.0f s",
                job.job_id,
                job.attempt,
                error.code.value,
                retry.attempt,
                decision.delay_seconds,
            )
            return Outcome.RETRY_SCHEDULED
        if not await self.repository.fail(job.job_id, error.to_job_error(), now):
            return await self._ended_elsewhere(job, settler)
        await self.publisher.publish(self.event(job, JobStatus.FAILED, error=error))
        await self.guard.mark_finished(job.job_id, JobStatus.FAILED)
        description = f"{error.message} ({decision.reason}; attempt {job.attempt})"
        await settler.dead_letter(error.code.value, description[:MAX_DEADLETTER_DESCRIPTION])
        log.error("job %s failed: %s", job.job_id, description)
        return Outcome.DEAD_LETTERED

    async def _ended_elsewhere(self, job: JobMessage, settler: Settler) -> Outcome:
        """The job reached its end while this run worked (the dead-letter sweeper ended it):
        its final event is out already, so this run publishes nothing and settles."""
        record = await self.repository.get(job.job_id)
        if record is not None:
            await self.guard.mark_finished(job.job_id, record.status)
        log.warning(
            "job %s ended (%s) during attempt %s; its result is dropped",
            job.job_id,
            record.status.value if record else "missing",
            job.attempt,
        )
        await settler.complete()
        return Outcome.DUPLICATE
