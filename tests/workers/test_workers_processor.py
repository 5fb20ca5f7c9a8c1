"""Job processor: every path settles exactly once, after its writes; each seed defect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from workers_fakes import (
    T0,
    FakeClock,
    FakeOutbox,
    FakeSettler,
    ManualSleeper,
    ScriptedHandler,
    encode,
    job_body,
)

from workers.common.ai_client import ChatCompletion
from workers.common.contracts import JobStatus, JobType
from workers.common.errors import ErrorCode, ProcessingError
from workers.common.idempotency import IdempotencyGuard, MemoryStore
from workers.common.messaging import ReceivedJob
from workers.common.processor import JobProcessor, Outcome
from workers.common.repository import JobRepository

CHAT = JobType.CHAT_SUGGEST
VIDEO = JobType.VIDEO_ANALYSIS
PROPS = {"jobType": "chat.suggest", "jobId": "job_1", "creatorId": "creator-1"}


def received(body: Any, props: dict[str, Any] | None = None) -> ReceivedJob:
    raw = body if isinstance(body, bytes) else encode(body)
    return ReceivedJob(body=raw, application_properties=dict(props or PROPS), message_id="m1")


def transient(code: ErrorCode = ErrorCode.TIMEOUT) -> ProcessingError:
    return ProcessingError(code, "upstream slow")


async def test_workers_success_completes_after_db_write_and_event(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    handler = ScriptedHandler(CHAT, ["a", "b", "c"])
    processor = make_processor(handler)

    async def probe() -> tuple[str | None, list[tuple[str, int]]]:
        record = await repo.get("job_1")
        return (record.status.value if record else None, outbox.statuses())

    settler = FakeSettler(probe=probe)
    outcome = await processor.process(received(job_body()), settler)

    assert outcome is Outcome.COMPLETED
    assert settler.kinds == ["complete"]
    # At settlement the DB already says completed and the completed event is out.
    assert settler.snapshots == [("completed", [("processing", 0), ("completed", 100)])]
    record = await repo.get("job_1")
    assert record is not None and record.result == ["a", "b", "c"] and record.progress == 100
    assert outbox.events[-1].result == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([["ok"]], Outcome.COMPLETED),
        ([transient()], Outcome.RETRY_SCHEDULED),
        ([ProcessingError(ErrorCode.INVALID_PAYLOAD, "bad")], Outcome.DEAD_LETTERED),
        ([RuntimeError("bug")], Outcome.DEAD_LETTERED),
    ],
)
async def test_workers_every_outcome_settles_exactly_once(
    make_processor: Callable[..., JobProcessor], script: list[Any], expected: Outcome
) -> None:
    """Seed: autoCompleteMessages false and no settlement → every message reappears."""
    processor = make_processor(ScriptedHandler(CHAT, *script))
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is expected
    assert len(settler.actions) == 1


async def test_workers_first_transient_failure_retries_with_the_first_delay(
    make_processor: Callable[..., JobProcessor],
    repo: JobRepository,
    outbox: FakeOutbox,
    clock: FakeClock,
) -> None:
    """Seed defect: the first retry's delay was undefined (TS) or the last one."""
    processor = make_processor(ScriptedHandler(CHAT, transient()))
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is Outcome.RETRY_SCHEDULED

    [copy] = outbox.scheduled
    assert copy.enqueue_at == T0 + timedelta(seconds=3)
    assert copy.job.attempt == 1
    assert copy.application_properties == PROPS
    assert settler.kinds == ["complete"]
    record = await repo.get("job_1")
    assert record is not None
    # A job is marked failed only when it will not be retried; no failed event either.
    assert record.status is JobStatus.PROCESSING and record.attempt == 1
    assert "failed" not in [s for s, _ in outbox.statuses()]


@pytest.mark.parametrize(("job_type", "ladder"), [(CHAT, [3, 10, 30, 120]), (VIDEO, [15, 45, 120])])
async def test_workers_full_ladder_then_dead_letter(
    make_processor: Callable[..., JobProcessor],
    repo: JobRepository,
    outbox: FakeOutbox,
    job_type: JobType,
    ladder: list[int],
) -> None:
    handler = ScriptedHandler(job_type, *[transient() for _ in range(len(ladder) + 1)])
    processor = make_processor(handler)
    outcomes = []
    for attempt in range(len(ladder) + 1):
        body = job_body(job_type, attempt=attempt)
        outcomes.append(await processor.process(received(body), FakeSettler()))
    delays = [(c.enqueue_at - T0).total_seconds() for c in outbox.scheduled]
    assert delays == ladder
    assert [c.job.attempt for c in outbox.scheduled] == list(range(1, len(ladder) + 1))
    assert outcomes[-1] is Outcome.DEAD_LETTERED
    assert outcomes[:-1] == [Outcome.RETRY_SCHEDULED] * len(ladder)
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.FAILED
    assert [s for s, _ in outbox.statuses()].count("failed") == 1


async def test_workers_exhausted_dead_letter_has_reason_and_description(
    make_processor: Callable[..., JobProcessor],
) -> None:
    processor = make_processor(ScriptedHandler(VIDEO, transient(ErrorCode.NETWORK_ERROR)))
    settler = FakeSettler()
    await processor.process(received(job_body(VIDEO, attempt=3)), settler)
    [(kind, reason, description)] = settler.actions
    assert (kind, reason) == ("dead_letter", "NETWORK_ERROR")
    assert "exhausted" in description and "attempt 3" in description


async def test_workers_soft_timeout_cancels_the_work_and_is_retried(
    make_processor: Callable[..., JobProcessor], outbox: FakeOutbox
) -> None:
    """Seed: SOFT_TIMEOUT was checked before any work and thrown without a code."""
    cancelled = asyncio.Event()

    async def hang(job: Any, ctx: Any) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sleeper = ManualSleeper(fire_immediately=True)
    processor = make_processor(ScriptedHandler(CHAT, hang), sleeper=sleeper)
    settler = FakeSettler()
    outcome = await processor.process(received(job_body(deadline_ms=90_000)), settler)
    assert outcome is Outcome.RETRY_SCHEDULED
    assert cancelled.is_set()
    assert sleeper.requested == [90.0]
    assert outbox.scheduled[0].job.attempt == 1


async def test_workers_soft_timeout_is_checked_while_work_runs(
    make_processor: Callable[..., JobProcessor], clock: FakeClock, outbox: FakeOutbox
) -> None:
    async def slow_steps(job: Any, ctx: Any) -> Any:
        await ctx.progress(10)
        clock.advance(91)  # the work took longer than deadlineMs
        await ctx.progress(30)
        return {"never": "reached"}

    processor = make_processor(ScriptedHandler(CHAT, slow_steps))
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is Outcome.RETRY_SCHEDULED
    assert ("processing", 30) not in outbox.statuses()
    assert settler.kinds == ["complete"]


async def test_workers_run_budget_caps_the_deadline(
    make_processor: Callable[..., JobProcessor],
) -> None:
    sleeper = ManualSleeper()
    processor = make_processor(ScriptedHandler(VIDEO, {}), sleeper=sleeper, run_budget_seconds=30)
    await processor.process(received(job_body(VIDEO, deadline_ms=600_000)), FakeSettler())
    assert sleeper.requested == [30]


async def test_workers_failed_job_never_flips_to_completed(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    """Seed: mark failed, publish failed, rethrow → redelivery may flip it to completed."""
    handler = ScriptedHandler(CHAT, ProcessingError(ErrorCode.AI_BAD_OUTPUT, "garbage"), ["ok"])
    processor = make_processor(handler)
    first = FakeSettler()
    assert await processor.process(received(job_body()), first) is Outcome.DEAD_LETTERED
    assert first.kinds == ["dead_letter"]

    again = FakeSettler()  # e.g. a copy replayed from the DLQ or a duplicate send
    assert await processor.process(received(job_body()), again) is Outcome.DUPLICATE
    assert again.kinds == ["complete"]
    assert handler.calls == [0]
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.FAILED
    assert [s for s, _ in outbox.statuses()] == ["processing", "failed"]
    assert await repo.complete("job_1", ["late"], T0) is False


async def test_workers_redelivered_finished_job_is_completed_from_the_database(
    make_processor: Callable[..., JobProcessor], store: MemoryStore
) -> None:
    handler = ScriptedHandler(CHAT, ["ok"])
    processor = make_processor(handler)
    await processor.process(received(job_body()), FakeSettler())
    store.data.clear()  # Redis lost its keys; Postgres is the source of truth
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is Outcome.DUPLICATE
    assert handler.calls == [0]
    assert any(k.endswith(":final") for k in store.data)  # back-filled


async def test_workers_stale_copy_of_an_older_attempt_is_completed(
    make_processor: Callable[..., JobProcessor],
) -> None:
    handler = ScriptedHandler(CHAT, transient(), ["ok"])
    processor = make_processor(handler)
    await processor.process(received(job_body(attempt=0)), FakeSettler())
    settler = FakeSettler()
    assert await processor.process(received(job_body(attempt=0)), settler) is Outcome.STALE
    assert settler.kinds == ["complete"]
    assert handler.calls == [0]


async def test_workers_concurrent_duplicate_is_not_processed_twice(
    make_processor: Callable[..., JobProcessor], outbox: FakeOutbox, clock: FakeClock
) -> None:
    """Seed: video lock lost after 5 min of renewal → the message is processed twice."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def long_video(job: Any, ctx: Any) -> Any:
        started.set()
        await release.wait()
        return {"scenes": []}

    handler = ScriptedHandler(VIDEO, long_video, {"scenes": ["second run"]})
    processor = make_processor(handler, lease_ttl_seconds=600)
    first = asyncio.create_task(processor.process(received(job_body(VIDEO)), FakeSettler()))
    await started.wait()

    clock.advance(420)  # the lock was lost; Service Bus redelivers the same message
    duplicate = FakeSettler()
    assert await processor.process(received(job_body(VIDEO)), duplicate) is (
        Outcome.BUSY_RESCHEDULED
    )
    assert duplicate.kinds == ["complete"]
    [later] = outbox.scheduled
    assert later.job.attempt == 0
    assert later.enqueue_at == clock.now() + timedelta(seconds=180 + 1)

    release.set()
    assert await first is Outcome.COMPLETED
    assert handler.calls == [0]
    # When the re-sent copy arrives, the job is finished: completed without work.
    settler = FakeSettler()
    assert await processor.process(received(job_body(VIDEO)), settler) is Outcome.DUPLICATE
    assert handler.calls == [0]


async def test_workers_invalid_json_is_dead_lettered_without_side_effects(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    processor = make_processor(ScriptedHandler(CHAT))
    settler = FakeSettler()
    assert await processor.process(received(b"{oops"), settler) is Outcome.DEAD_LETTERED
    [(kind, reason, description)] = settler.actions
    assert (kind, reason) == ("dead_letter", "INVALID_PAYLOAD")
    assert "not valid JSON" in description
    assert outbox.events == [] and outbox.scheduled == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (job_body(jobType="video.transcode"), "jobType"),
        (job_body(VIDEO), "not handled by this worker"),
    ],
)
async def test_workers_unknown_or_foreign_job_type_is_dead_lettered(
    make_processor: Callable[..., JobProcessor], body: dict[str, Any], fragment: str
) -> None:
    processor = make_processor(ScriptedHandler(CHAT))
    settler = FakeSettler()
    assert await processor.process(received(body), settler) is Outcome.DEAD_LETTERED
    assert settler.actions[0][1] == "INVALID_PAYLOAD"
    assert fragment in settler.actions[0][2]


async def test_workers_invalid_payload_fails_the_job_and_dead_letters(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    handler = ScriptedHandler(VIDEO)
    processor = make_processor(handler)
    settler = FakeSettler()
    body = job_body(VIDEO, payload={"videoUrl": "not a url"})
    assert await processor.process(received(body), settler) is Outcome.DEAD_LETTERED
    assert settler.actions[0][1] == "INVALID_PAYLOAD"
    assert "payload.videoUrl" in settler.actions[0][2]
    assert handler.calls == []
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error["code"] == "INVALID_PAYLOAD"
    assert outbox.events[-1].status is JobStatus.FAILED


async def test_workers_video_not_found_is_permanent(
    make_processor: Callable[..., JobProcessor], outbox: FakeOutbox
) -> None:
    error = ProcessingError(ErrorCode.VIDEO_NOT_FOUND, "media URL returned HTTP 404")
    processor = make_processor(ScriptedHandler(VIDEO, error))
    settler = FakeSettler()
    assert await processor.process(received(job_body(VIDEO)), settler) is Outcome.DEAD_LETTERED
    assert settler.actions[0][1] == "VIDEO_NOT_FOUND"
    assert outbox.scheduled == []
    assert outbox.events[-1].error is not None
    assert outbox.events[-1].error.code == "VIDEO_NOT_FOUND"


async def test_workers_unexpected_handler_exception_becomes_unknown_error(
    make_processor: Callable[..., JobProcessor], repo: JobRepository
) -> None:
    processor = make_processor(ScriptedHandler(CHAT, KeyError("boom")))
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is Outcome.DEAD_LETTERED
    assert settler.actions[0][1] == "UNKNOWN_ERROR"
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.FAILED


async def test_workers_event_publish_failure_abandons_without_failing_the_job(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    outbox.fail_publish_status = {"completed"}
    processor = make_processor(ScriptedHandler(CHAT, ["ok"]))
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is Outcome.ABANDONED
    assert settler.kinds == ["abandon"]


async def test_workers_progress_publish_failure_is_infrastructure_not_job_failure(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    async def with_progress(job: Any, ctx: Any) -> Any:
        outbox.fail_publish_status = {"processing"}
        await ctx.progress(10)
        return {}

    processor = make_processor(ScriptedHandler(CHAT, with_progress))
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is Outcome.ABANDONED
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.PROCESSING


async def test_workers_retry_send_failure_abandons_and_keeps_the_attempt(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    outbox.fail_schedule = True
    processor = make_processor(ScriptedHandler(CHAT, transient(), ["ok"]))
    settler = FakeSettler()
    assert await processor.process(received(job_body()), settler) is Outcome.ABANDONED
    record = await repo.get("job_1")
    assert record is not None and record.attempt == 0 and record.status is JobStatus.PROCESSING
    # The redelivery of the same message runs again (the lease was released).
    outbox.fail_schedule = False
    assert await processor.process(received(job_body()), FakeSettler()) is Outcome.COMPLETED


async def test_workers_settlement_failure_does_not_crash_the_worker(
    make_processor: Callable[..., JobProcessor],
) -> None:
    processor = make_processor(ScriptedHandler(CHAT))
    settler = FakeSettler(fail_on={"dead_letter"})
    assert await processor.process(received(b"nope"), settler) is Outcome.ABANDONED


async def test_workers_usage_becomes_a_cost_event(
    make_processor: Callable[..., JobProcessor], outbox: FakeOutbox
) -> None:
    async def with_usage(job: Any, ctx: Any) -> Any:
        await ctx.track_usage(ChatCompletion("x", "deepseek", 1000, 2000))
        return ["x"]

    processor = make_processor(ScriptedHandler(CHAT, with_usage))
    await processor.process(received(job_body()), FakeSettler())
    [cost] = outbox.costs
    assert (cost.model, cost.input_tokens, cost.output_tokens) == ("deepseek", 1000, 2000)
    assert cost.cost_usd == pytest.approx(0.00114 + 2 * 0.00456)
    assert cost.job_type is CHAT


async def test_workers_guard_degrades_when_redis_is_down(
    repo: JobRepository, clock: FakeClock, outbox: FakeOutbox
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    class DownStore(MemoryStore):
        async def get(self, key: str) -> str | None:
            raise RedisConnectionError("down")

        async def set(self, key: str, value: str, ttl_seconds: float, *, only_new: bool) -> bool:
            raise RedisConnectionError("down")

        async def delete_if_equals(self, key: str, value: str) -> bool:
            raise RedisConnectionError("down")

    guard = IdempotencyGuard(DownStore(clock), repo)
    processor = JobProcessor(
        {CHAT: ScriptedHandler(CHAT, ["ok"], ["again"])},
        repository=repo,
        guard=guard,
        publisher=outbox,
        scheduler=outbox,
        clock=clock,
        sleeper=ManualSleeper(),
    )
    assert await processor.process(received(job_body()), FakeSettler()) is Outcome.COMPLETED
    # Still idempotent through the database.
    assert await processor.process(received(job_body()), FakeSettler()) is Outcome.DUPLICATE
