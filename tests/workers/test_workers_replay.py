"""Replayed copies (`x-replay-of`): a failed job runs again from attempt 0, once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from workers_fakes import FakeOutbox, FakeSettler, ScriptedHandler, encode, job_body

from workers.common.contracts import JobStatus, JobType
from workers.common.errors import ErrorCode, ProcessingError
from workers.common.idempotency import MemoryStore
from workers.common.messaging import ReceivedJob
from workers.common.processor import (
    REPLAY_MARKER,
    JobProcessor,
    Outcome,
    ReplayAction,
    replay_action,
)
from workers.common.repository import JobRepository

CHAT = JobType.CHAT_SUGGEST
PROPS = {"jobType": "chat.suggest", "jobId": "job_1", "creatorId": "creator-1"}
LADDER = 4  # chat retries before it dead-letters


def delivery(attempt: int, marker: str | None = None) -> ReceivedJob:
    props = dict(PROPS)
    if marker is not None:
        props[REPLAY_MARKER] = marker
    return ReceivedJob(encode(job_body(attempt=attempt)), props, message_id="m1")


def outage() -> ProcessingError:
    return ProcessingError(ErrorCode.AI_SERVER_ERROR, "AI down")


@pytest.mark.parametrize(
    ("marker", "status", "last", "action"),
    [
        (None, JobStatus.FAILED, None, ReplayAction.NORMAL),
        ("dlq:1", None, None, ReplayAction.NORMAL),
        ("dlq:1", JobStatus.PENDING, None, ReplayAction.NORMAL),
        ("dlq:1", JobStatus.PROCESSING, "dlq:0", ReplayAction.NORMAL),
        ("dlq:1", JobStatus.PROCESSING, "dlq:1", ReplayAction.RESUME),
        ("dlq:1", JobStatus.FAILED, None, ReplayAction.RESTART),
        ("dlq:1", JobStatus.TIMEOUT, "dlq:0", ReplayAction.RESTART),
        ("dlq:1", JobStatus.FAILED, "dlq:1", ReplayAction.DUPLICATE),
        ("dlq:1", JobStatus.COMPLETED, None, ReplayAction.DUPLICATE),
    ],
)
def test_workers_replay_action(
    marker: str | None, status: JobStatus | None, last: str | None, action: ReplayAction
) -> None:
    assert replay_action(marker, status, last) is action


async def _dead_letter(processor: JobProcessor) -> None:
    for attempt in range(LADDER + 1):
        await processor.process(delivery(attempt), FakeSettler())


async def test_workers_replayed_failed_job_runs_again_from_attempt_zero(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    handler = ScriptedHandler(CHAT, *[outage() for _ in range(LADDER + 1)], outage(), ["ok"])
    processor = make_processor(handler)
    await _dead_letter(processor)
    outbox.scheduled.clear()

    plain = FakeSettler()  # a copy without the marker is still a duplicate
    assert await processor.process(delivery(LADDER), plain) is Outcome.DUPLICATE

    first = FakeSettler()
    assert await processor.process(delivery(LADDER, "dlq:5"), first) is Outcome.RETRY_SCHEDULED
    assert first.kinds == ["complete"]
    (retry,) = outbox.scheduled
    assert retry.job.attempt == 1
    assert REPLAY_MARKER not in retry.application_properties  # ordinary attempts from here
    again = FakeSettler()  # the replayed copy delivered twice: never a second restart
    assert await processor.process(delivery(LADDER, "dlq:5"), again) is Outcome.STALE

    done = FakeSettler()
    assert await processor.process(delivery(1), done) is Outcome.COMPLETED
    late = FakeSettler()  # ... nor after the re-run completed
    assert await processor.process(delivery(LADDER, "dlq:5"), late) is Outcome.DUPLICATE
    assert handler.calls == [*range(LADDER + 1), 0, 1]
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.COMPLETED
    assert [h["attempt"] for h in record.history] == [LADDER]
    assert [s for s, _ in outbox.statuses()].count("completed") == 1


async def test_workers_replayed_completed_job_is_a_duplicate(
    make_processor: Callable[..., JobProcessor], store: MemoryStore, outbox: FakeOutbox
) -> None:
    handler = ScriptedHandler(CHAT, ["ok"])
    processor = make_processor(handler)
    await processor.process(delivery(0), FakeSettler())
    store.data.clear()
    settler = FakeSettler()
    assert await processor.process(delivery(0, "dlq:1"), settler) is Outcome.DUPLICATE
    assert settler.kinds == ["complete"]
    assert handler.calls == [0]
    assert [s for s, _ in outbox.statuses()].count("completed") == 1


def test_workers_replay_marker_is_the_one_harness_dlq_replay_stamps() -> None:
    from harness.dlq import REPLAY_OF

    assert REPLAY_OF == REPLAY_MARKER
