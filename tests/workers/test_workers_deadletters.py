"""Dead-letter sweeper: every dead-lettered job ends, once, with the broker's reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from workers_fakes import T0, FakeClock, FakeOutbox, FakeSettler, ScriptedHandler, encode, job_body

from workers.common.contracts import JobError, JobStatus, JobType, parse_job_message
from workers.common.deadletters import (
    DEAD_LETTERED,
    MAX_DELIVERY_COUNT_EXCEEDED,
    TTL_EXPIRED,
    DeadLetter,
    DeadLetterSweeper,
    ServiceBusDeadLetterPeeker,
    dead_letter_from_sdk,
    ending_for,
)
from workers.common.errors import ErrorCode, ProcessingError
from workers.common.idempotency import IdempotencyGuard
from workers.common.messaging import ReceivedJob
from workers.common.processor import JobProcessor, Outcome
from workers.common.repository import JobRepository

SUB = "chat-suggestions"


def dead(
    seq: int,
    body: Any = None,
    *,
    reason: str | None = TTL_EXPIRED,
    description: str | None = "Message expired",
    props: dict[str, Any] | None = None,
    delivery_count: int | None = 0,
) -> DeadLetter:
    raw = body if isinstance(body, bytes) else encode(body if body is not None else job_body())
    return DeadLetter(seq, raw, dict(props or {}), reason, description, delivery_count)


@dataclass
class FakePeeker:
    """A dead-letter queue in sequence order; records each peek's start and count."""

    messages: list[DeadLetter] = field(default_factory=list)
    calls: list[tuple[int, int]] = field(default_factory=list)
    fail: bool = False

    async def peek(self, from_sequence_number: int, max_count: int) -> list[DeadLetter]:
        self.calls.append((from_sequence_number, max_count))
        if self.fail:
            raise ConnectionError("dead-letter link detached")
        ordered = sorted(self.messages, key=lambda m: m.sequence_number)
        return [m for m in ordered if m.sequence_number >= from_sequence_number][:max_count]


@pytest.fixture
def peeker() -> FakePeeker:
    return FakePeeker()


@pytest.fixture
def make_sweeper(
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
    guard: IdempotencyGuard,
    clock: FakeClock,
) -> Callable[..., DeadLetterSweeper]:
    def build(**kwargs: Any) -> DeadLetterSweeper:
        return DeadLetterSweeper(SUB, peeker, repo, outbox, guard=guard, clock=clock, **kwargs)

    return build


async def pending(repo: JobRepository, job_id: str = "job_1", **fields: Any) -> None:
    await repo.create_pending(parse_job_message(encode(job_body(job_id=job_id, **fields))), T0)


# -- which job a dead letter names and how it ends (pure) ------------------------------------


def test_workers_expired_message_ends_as_timeout_with_the_broker_reason() -> None:
    ending = ending_for(dead(7, delivery_count=0), SUB)
    assert ending is not None
    assert (ending.job_id, ending.status, ending.attempt) == ("job_1", JobStatus.TIMEOUT, 0)
    assert ending.seed is not None and ending.seed.job_type is JobType.CHAT_SUGGEST
    assert ending.error.code == TTL_EXPIRED and ending.error.message == "Message expired"
    assert ending.error.details == {
        "source": "dead-letter",
        "subscription": SUB,
        "deadLetterReason": TTL_EXPIRED,
        "deliveryCount": 0,
        "sequenceNumber": 7,
    }


@pytest.mark.parametrize(
    ("reason", "description", "code", "message"),
    [
        (
            MAX_DELIVERY_COUNT_EXCEEDED,
            "after 5 deliveries",
            MAX_DELIVERY_COUNT_EXCEEDED,
            "after 5 deliveries",
        ),
        (
            "INVALID_PAYLOAD",
            "payload.fanMessage: required",
            "INVALID_PAYLOAD",
            "payload.fanMessage: required",
        ),
        (None, None, DEAD_LETTERED, "dead-lettered by the broker (DEAD_LETTERED)"),
    ],
)
def test_workers_other_dead_letters_end_as_failed(
    reason: str | None, description: str | None, code: str, message: str
) -> None:
    ending = ending_for(dead(1, reason=reason, description=description), SUB)
    assert ending is not None and ending.status is JobStatus.FAILED
    assert (ending.error.code, ending.error.message) == (code, message)


def test_workers_a_broken_envelope_still_names_its_job() -> None:
    body = job_body(attempt=2)
    del body["createdAt"]
    ending = ending_for(dead(1, body, reason="INVALID_PAYLOAD"), SUB)
    assert ending is not None
    assert (ending.job_id, ending.attempt, ending.seed) == ("job_1", 2, None)


@pytest.mark.parametrize("body", [b"\xff not json", b"[1, 2]", encode({"jobId": 5})])
def test_workers_a_poison_body_is_named_by_its_properties(body: bytes) -> None:
    ending = ending_for(dead(1, body, props={"jobId": "job_9"}), SUB)
    assert ending is not None and (ending.job_id, ending.attempt, ending.seed) == (
        "job_9",
        None,
        None,
    )


def test_workers_a_dead_letter_naming_no_job_is_skipped() -> None:
    assert ending_for(dead(1, b"garbage"), SUB) is None
    assert ending_for(dead(1, encode({"attempt": True})), SUB) is None


def test_workers_a_boolean_attempt_is_not_an_attempt() -> None:
    ending = ending_for(dead(1, encode({"jobId": "j", "attempt": True})), SUB)
    assert ending is not None and ending.attempt is None


# -- the sweep ---------------------------------------------------------------------------------


async def test_workers_sweep_ends_an_expired_job_once_and_publishes_once(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
    guard: IdempotencyGuard,
    clock: FakeClock,
) -> None:
    await pending(repo)
    peeker.messages = [dead(3)]
    sweeper = make_sweeper()
    clock.advance(600)

    report = await sweeper.sweep()
    assert report.ended == {"job_1": JobStatus.TIMEOUT} and report.error is None
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.TIMEOUT
    assert record.error["code"] == TTL_EXPIRED and record.finished_at == clock.now()
    [event] = outbox.events
    assert (event.job_id, event.status, event.job_type) == (
        "job_1",
        JobStatus.TIMEOUT,
        JobType.CHAT_SUGGEST,
    )
    assert event.error is not None and event.error.code == TTL_EXPIRED
    assert event.updated_at == clock.now()
    assert await guard.finished_status("job_1") is JobStatus.TIMEOUT

    again = await sweeper.sweep()  # the message is still in the DLQ: peeked, not received
    assert again.peeked == 1 and again.ended == {} and again.already_ended == 1
    assert len(outbox.events) == 1


async def test_workers_crash_looped_job_in_processing_ends_failed(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    job = parse_job_message(encode(job_body(attempt=1)))
    await repo.start_attempt(job, T0)
    peeker.messages = [
        dead(9, job_body(attempt=1), reason=MAX_DELIVERY_COUNT_EXCEEDED, delivery_count=5)
    ]
    report = await make_sweeper().sweep()
    assert report.ended == {"job_1": JobStatus.FAILED}
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error["code"] == MAX_DELIVERY_COUNT_EXCEEDED
    assert record.error["details"]["deliveryCount"] == 5
    assert [e.status for e in outbox.events] == [JobStatus.FAILED]


async def test_workers_the_processors_own_dead_letters_publish_nothing(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    await pending(repo)
    await repo.fail("job_1", JobError(code="VIDEO_NOT_FOUND", message="gone"), T0)
    peeker.messages = [dead(1, reason="VIDEO_NOT_FOUND")]
    report = await make_sweeper().sweep()
    assert report.already_ended == 1 and report.ended == {}
    record = await repo.get("job_1")
    assert record is not None and record.error["code"] == "VIDEO_NOT_FOUND"
    assert outbox.events == []


async def test_workers_a_job_sent_without_the_api_gets_its_row_and_its_end(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    peeker.messages = [dead(1, job_body(job_id="job_direct"))]
    report = await make_sweeper().sweep()
    assert report.ended == {"job_direct": JobStatus.TIMEOUT}
    record = await repo.get("job_direct")
    assert record is not None and record.status is JobStatus.TIMEOUT
    assert (record.job_type, record.creator_id) == ("chat.suggest", "creator-1")
    assert len(outbox.events) == 1


async def test_workers_a_job_with_no_row_and_no_envelope_is_left_alone(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    peeker.messages = [dead(1, b"not json", props={"jobId": "job_ghost"}), dead(2, b"nothing")]
    report = await make_sweeper().sweep()
    assert (report.unknown, report.unidentified, report.ended) == (1, 1, {})
    assert await repo.get("job_ghost") is None and outbox.events == []


async def test_workers_a_poison_body_ends_its_pending_job_by_its_properties(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    await pending(repo, "job_p")
    peeker.messages = [
        dead(
            1,
            b"{torn",
            reason="INVALID_PAYLOAD",
            description="body is not valid JSON",
            props={"jobId": "job_p"},
        )
    ]
    report = await make_sweeper().sweep()
    assert report.ended == {"job_p": JobStatus.FAILED}
    record = await repo.get("job_p")
    assert record is not None and record.error["code"] == "INVALID_PAYLOAD"
    assert record.error["message"] == "body is not valid JSON"
    assert [e.status for e in outbox.events] == [JobStatus.FAILED]


async def test_workers_an_older_attempts_dead_letter_does_not_end_a_retried_job(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    """Attempt 0 crashed on its settle after its retry copy (attempt 1) was sent."""
    await repo.start_attempt(parse_job_message(encode(job_body())), T0)
    await repo.note_retry("job_1", 1, JobError(code="TIMEOUT", message="slow"), T0)
    peeker.messages = [dead(1, job_body(attempt=0), reason=MAX_DELIVERY_COUNT_EXCEEDED)]
    report = await make_sweeper().sweep()
    assert report.stale == 1 and report.ended == {}
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.PROCESSING
    assert outbox.events == []

    peeker.messages.append(dead(2, job_body(attempt=1)))  # the retry copy expires too
    report = await make_sweeper().sweep()
    assert report.ended == {"job_1": JobStatus.TIMEOUT}


async def test_workers_a_failed_publish_leaves_the_job_open_for_the_next_sweep(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    await pending(repo)
    peeker.messages = [dead(1)]
    sweeper = make_sweeper()
    outbox.fail_publish_status = {"timeout"}
    report = await sweeper.sweep()
    assert report.ended == {} and "events topic unavailable" in (report.error or "")
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.PENDING and record.error is None

    outbox.fail_publish_status = set()
    report = await sweeper.sweep()
    assert report.ended == {"job_1": JobStatus.TIMEOUT} and len(outbox.events) == 1


async def test_workers_duplicate_dead_letters_of_one_job_end_it_once(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    await pending(repo)
    peeker.messages = [dead(1), dead(2, reason=MAX_DELIVERY_COUNT_EXCEEDED)]
    report = await make_sweeper().sweep()
    assert report.ended == {"job_1": JobStatus.TIMEOUT} and report.already_ended == 1
    assert len(outbox.events) == 1


async def test_workers_sweep_pages_resumes_and_starts_over_at_the_end(
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    for n in range(1, 6):
        await pending(repo, f"job_{n}")
    peeker.messages = [dead(10 * n, job_body(job_id=f"job_{n}")) for n in range(1, 6)]
    sweeper = make_sweeper(page_size=2, max_per_sweep=3)

    first = await sweeper.sweep()
    assert peeker.calls == [(1, 2), (21, 1)] and first.peeked == 3
    assert set(first.ended) == {"job_1", "job_2", "job_3"} and sweeper.cursor == 31
    second = await sweeper.sweep()
    assert peeker.calls[2:] == [(31, 2), (51, 1)] and set(second.ended) == {"job_4", "job_5"}
    assert sweeper.cursor == 1  # read to the end

    # A dead letter that kept an early sequence number is found on the next full pass.
    await pending(repo, "job_late")
    peeker.messages.append(dead(5, job_body(job_id="job_late")))
    third = await sweeper.sweep()
    assert third.ended == {"job_late": JobStatus.TIMEOUT}
    assert len(outbox.events) == 6


async def test_workers_sweep_of_an_empty_queue_peeks_once(
    make_sweeper: Callable[..., DeadLetterSweeper], peeker: FakePeeker
) -> None:
    report = await make_sweeper().sweep()
    assert peeker.calls == [(1, 100)] and report.peeked == 0 and report.error is None


async def test_workers_a_failed_peek_is_reported_not_raised(
    make_sweeper: Callable[..., DeadLetterSweeper], peeker: FakePeeker, repo: JobRepository
) -> None:
    await pending(repo)
    peeker.messages = [dead(1)]
    peeker.fail = True
    sweeper = make_sweeper()
    report = await sweeper.sweep()
    assert "dead-letter link detached" in (report.error or "") and report.ended == {}
    peeker.fail = False
    assert (await sweeper.sweep()).ended == {"job_1": JobStatus.TIMEOUT}


def test_workers_sweeper_limits_must_be_positive(
    peeker: FakePeeker, repo: JobRepository, outbox: FakeOutbox
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DeadLetterSweeper(SUB, peeker, repo, outbox, page_size=0)


async def test_workers_end_open_job_is_conditional_and_repeatable(repo: JobRepository) -> None:
    await pending(repo)
    error = JobError(code=TTL_EXPIRED, message="expired")
    published: list[str] = []

    async def publish(record: Any) -> None:
        published.append(record.status.value)

    first = await repo.end_open_job("job_1", JobStatus.TIMEOUT, error, T0, before_commit=publish)
    assert first is not None and first.status is JobStatus.TIMEOUT
    again = await repo.end_open_job("job_1", JobStatus.FAILED, error, T0, before_commit=publish)
    assert again is None and published == ["timeout"]
    assert await repo.statuses(["job_1", "nope"]) == {"job_1": JobStatus.TIMEOUT}
    assert await repo.statuses([]) == {}


# -- a processor that finds its job ended publishes nothing ----------------------------------


def _received(body: dict[str, Any]) -> ReceivedJob:
    return ReceivedJob(body=encode(body), application_properties={"jobType": "chat.suggest"})


async def _end_meanwhile(repo: JobRepository) -> None:
    await repo.end_open_job(
        "job_1", JobStatus.FAILED, JobError(code=MAX_DELIVERY_COUNT_EXCEEDED, message="x"), T0
    )


async def test_workers_a_run_whose_job_ended_meanwhile_publishes_no_completion(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    async def work(job: Any, ctx: Any) -> Any:
        await _end_meanwhile(repo)
        await ctx.progress(50)  # no progress event for an ended job either
        return ["late"]

    processor = make_processor(ScriptedHandler(JobType.CHAT_SUGGEST, work))
    settler = FakeSettler()
    outcome = await processor.process(_received(job_body()), settler)
    assert outcome is Outcome.DUPLICATE and settler.kinds == ["complete"]
    assert outbox.statuses() == [("processing", 0)]
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.FAILED and record.result is None


async def test_workers_a_failing_run_whose_job_ended_meanwhile_publishes_no_failure(
    make_processor: Callable[..., JobProcessor], repo: JobRepository, outbox: FakeOutbox
) -> None:
    async def work(job: Any, ctx: Any) -> Any:
        await _end_meanwhile(repo)
        raise ProcessingError(ErrorCode.VIDEO_NOT_FOUND, "gone")

    processor = make_processor(ScriptedHandler(JobType.CHAT_SUGGEST, work))
    settler = FakeSettler()
    outcome = await processor.process(_received(job_body()), settler)
    assert outcome is Outcome.DUPLICATE and settler.kinds == ["complete"]
    assert outbox.statuses() == [("processing", 0)]
    record = await repo.get("job_1")
    assert record is not None and record.error["code"] == MAX_DELIVERY_COUNT_EXCEEDED


async def test_workers_a_delivery_of_a_swept_job_is_not_run(
    make_processor: Callable[..., JobProcessor],
    make_sweeper: Callable[..., DeadLetterSweeper],
    peeker: FakePeeker,
    repo: JobRepository,
    outbox: FakeOutbox,
) -> None:
    await pending(repo)
    peeker.messages = [dead(1)]
    await make_sweeper().sweep()
    handler = ScriptedHandler(JobType.CHAT_SUGGEST)
    settler = FakeSettler()
    outcome = await make_processor(handler).process(_received(job_body()), settler)
    assert outcome is Outcome.DUPLICATE and handler.calls == [] and settler.kinds == ["complete"]
    assert [e.status for e in outbox.events] == [JobStatus.TIMEOUT]


# -- the SDK adapter ---------------------------------------------------------------------------


def _sdk_message(seq: int, body: Any = b'{"jobId": "j"}') -> Any:
    return SimpleNamespace(
        sequence_number=seq,
        body=body,
        application_properties={b"jobId": b"j"},
        dead_letter_reason=TTL_EXPIRED,
        dead_letter_error_description="expired",
        delivery_count=1,
    )


class _Receiver:
    def __init__(self, pages: list[Any]) -> None:
        self.pages = pages
        self.peeks: list[dict[str, Any]] = []
        self.closed = False

    async def peek_messages(self, **kwargs: Any) -> list[Any]:
        self.peeks.append(kwargs)
        page = self.pages.pop(0)
        if isinstance(page, BaseException):
            raise page
        return page

    async def close(self) -> None:
        self.closed = True


class _Client:
    def __init__(self, *receivers: _Receiver) -> None:
        self.receivers = list(receivers)
        self.opened: list[dict[str, Any]] = []

    def get_subscription_receiver(self, **kwargs: Any) -> _Receiver:
        self.opened.append(kwargs)
        return self.receivers.pop(0)


async def test_workers_peeker_peeks_the_dead_letter_queue_with_an_explicit_start() -> None:
    from azure.servicebus import ServiceBusSubQueue

    first = _Receiver([[_sdk_message(4)], [], ConnectionError("detached")])
    second = _Receiver([[_sdk_message(8)]])
    client = _Client(first, second)
    peeker = ServiceBusDeadLetterPeeker(client, "huntaze-jobs", SUB)

    [letter] = await peeker.peek(0, 10)
    assert letter == DeadLetter(4, b'{"jobId": "j"}', {"jobId": "j"}, TTL_EXPIRED, "expired", 1)
    assert await peeker.peek(5, 10) == []
    assert [p["sequence_number"] for p in first.peeks] == [1, 5]  # never 0 ("after the last")
    assert client.opened == [
        {
            "topic_name": "huntaze-jobs",
            "subscription_name": SUB,
            "sub_queue": ServiceBusSubQueue.DEAD_LETTER,
        }
    ]
    with pytest.raises(ConnectionError):
        await peeker.peek(5, 10)
    assert first.closed  # a failed receiver is dropped, the next peek opens another
    assert [d.sequence_number for d in await peeker.peek(5, 10)] == [8]
    await peeker.aclose()
    assert second.closed


def test_workers_sdk_dead_letter_with_an_unreadable_body_keeps_its_properties() -> None:
    letter = dead_letter_from_sdk(_sdk_message(3, body=object()))
    assert letter.body == b"" and letter.application_properties == {"jobId": "j"}
    assert json.loads(dead_letter_from_sdk(_sdk_message(3, body={"jobId": "v"})).body) == {
        "jobId": "v"
    }
