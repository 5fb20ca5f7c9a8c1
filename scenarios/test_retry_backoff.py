"""Retry/backoff family: whole ladders on the broker's clock, with the real worker apps.

A transient failure completes the failed delivery and schedules attempt n+1 on the jobs
topic at exactly broker-now + the ladder's step n (video 15/45/120 s; chat and content
3/10/30/120 s); the job's attempt counter moves with it. After the last step the job is
`failed` and its message dead-lettered with the error code as reason; a permanent code
dead-letters at once; a 429's `Retry-After` longer than the step wins.

The apps read the emulator's clock (one timeline), so each scheduled time is asserted to
the second and each step is skipped by moving the clock, not by waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from scenario_apps import AppDatabase, JobServiceBus

from harness.pytest_plugin import Events, WorkerFactory
from harness.stack import Stack
from standins.ai import AIServer, Fault

TIMEOUT = 30.0
# Between reading broker-now before a run and after it, only the run itself elapsed.
SLACK = timedelta(seconds=0)


@dataclass(frozen=True)
class Kind:
    job_type: str
    app: str
    function: str
    subscription: str
    model: str
    ladder: tuple[float, ...]

    def body(self, ai: AIServer) -> dict[str, Any]:
        return {
            "video.analysis": {"videoUrl": ai.media_url("clip.mp4"), "videoId": "v-1"},
            "chat.suggest": {"fanMessage": "what's new?"},
            "content.suggest": {"contentType": "reel", "tone": "playful"},
            "content.analyze": {
                "contentId": "c-1",
                "contentType": "image",
                "contentUrl": "https://cdn.example.com/c-1.jpg",
            },
        }[self.job_type]


KINDS = [
    Kind("video.analysis", "video", "VideoAnalysisWorker", "video-analysis", "phi-4-multimodal",
         (15, 45, 120)),
    Kind("chat.suggest", "jobs", "ChatSuggestionsWorker", "chat-suggestions", "phi4",
         (3, 10, 30, 120)),
    Kind("content.suggest", "jobs", "ContentSuggestionsWorker", "content-suggestions",
         "deepseek", (3, 10, 30, 120)),
    Kind("content.analyze", "jobs", "ContentAnalysisWorker", "content-analysis", "deepseek",
         (3, 10, 30, 120)),
]  # fmt: skip
TRANSIENT = {
    "RATE_LIMIT": Fault.rate_limit(retry_after=1.0),
    "TIMEOUT": Fault.server_error(408),
    "AI_SERVER_ERROR": Fault.server_error(503),
}


def _scheduled(stack: Stack, message_id: str) -> datetime:
    """When the broker will enqueue a retry copy. Scheduled messages wait on the topic, not
    in a subscription, so no receiver can peek them: ask the emulator's control API."""
    assert stack.emulator is not None
    listing = httpx.get(
        f"{stack.emulator.control_url}/messages",
        params={"entity": stack.topic_jobs, "max": 1000},
        timeout=10,
    ).json()["messages"]
    found = [m for m in listing if m["system_properties"].get("MessageId") == message_id]
    assert len(found) == 1, f"expected one scheduled copy {message_id}, found {len(found)}"
    assert found[0]["state"] == "scheduled", found[0]["state"]
    return datetime.fromisoformat(found[0]["scheduled_enqueue_time"].replace("Z", "+00:00"))


def _run_attempt(
    running: Any, stack: Stack, kind: Kind, job_id: str, attempt: int
) -> tuple[datetime, datetime]:
    """Wait for one attempt's run; broker-now just before it could start and after it ended."""
    before = stack.broker_now()
    [run] = running.wait_for_invocation(
        kind.function, message_id=f"{job_id}:{attempt}", timeout=TIMEOUT
    )
    assert run.settlement in ("completed", "dead-lettered"), run
    return before, stack.broker_now()


def _assert_rescheduled(
    stack: Stack,
    db: AppDatabase,
    kind: Kind,
    job_id: str,
    attempt: int,
    window: tuple[datetime, datetime],
    delay: float,
    code: str,
) -> None:
    at = _scheduled(stack, f"{job_id}:{attempt + 1}")
    low, high = window[0] + timedelta(seconds=delay), window[1] + timedelta(seconds=delay)
    assert low - SLACK <= at <= high + SLACK, f"attempt {attempt + 1} at {at}, not {low}..{high}"
    job = db.job(job_id)
    assert job is not None
    assert (job["status"], job["attempt"], job["error"]["code"]) == (
        "processing",
        attempt + 1,
        code,
    )


@pytest.mark.parametrize("kind", KINDS, ids=[k.job_type for k in KINDS])
def test_the_whole_ladder_then_failed_and_dead_lettered(
    kind: Kind,
    stack: Stack,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    # the codes take turns, so every transient code meets every job type on some step
    codes = list(TRANSIENT)
    faults = [TRANSIENT[codes[i % len(codes)]] for i in range(len(kind.ladder) + 1)]
    ai_stub.behaviour.enqueue(*faults, model=kind.model)
    running = workers(kind.app)
    job_id = servicebus.send_job(kind.job_type, kind.body(ai_stub), creator_id="c-ladder")

    for attempt, step in enumerate(kind.ladder):
        window = _run_attempt(running, stack, kind, job_id, attempt)
        code = codes[attempt % len(codes)]
        _assert_rescheduled(stack, db, kind, job_id, attempt, window, step, code)
        emulator_clock.advance(step)

    last = len(kind.ladder)
    _run_attempt(running, stack, kind, job_id, last)
    events.wait_for(job_id, "failed", timeout=TIMEOUT)
    job = db.job(job_id)
    assert job is not None and (job["status"], job["attempt"]) == ("failed", last)
    [dead] = [m for m in servicebus.peek_dead_letters(kind.subscription) if job_id in str(m)]
    assert dead.dead_letter_reason == codes[last % len(codes)]
    assert "retries exhausted" in (dead.dead_letter_error_description or "")
    assert [c.status for c in ai_stub.calls if c.model == kind.model][-1] != 200
    assert len(running.for_job(job_id)) == last + 1  # one run per attempt, none twice


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.server_error(400), "INVALID_PAYLOAD"),
        (Fault.malformed("no_choices"), "AI_BAD_OUTPUT"),
    ],
    ids=["http-400", "bad-output"],
)
def test_a_permanent_code_dead_letters_at_once(
    fault: Fault,
    reason: str,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
) -> None:
    kind = KINDS[1]
    ai_stub.behaviour.enqueue(fault, model=kind.model)
    running = workers(kind.app)
    job_id = servicebus.send_job(kind.job_type, kind.body(ai_stub), creator_id="c-permanent")
    [run] = running.wait_for_invocation(kind.function, message_id=f"{job_id}:0", timeout=TIMEOUT)
    assert (run.settlement, run.dead_letter_reason) == ("dead-lettered", reason)
    events.wait_for(job_id, "failed", timeout=TIMEOUT)
    job = db.job(job_id)
    assert job is not None and (job["status"], job["attempt"]) == ("failed", 0)
    [dead] = [m for m in servicebus.peek_dead_letters(kind.subscription) if job_id in str(m)]
    assert dead.dead_letter_reason == reason
    assert len(running.for_job(job_id)) == 1  # nothing scheduled, nothing redelivered


def test_a_longer_retry_after_wins_over_the_step(
    stack: Stack,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    kind = KINDS[1]
    ai_stub.behaviour.enqueue(Fault.rate_limit(retry_after=25.0), model=kind.model)
    running = workers(kind.app)
    job_id = servicebus.send_job(kind.job_type, kind.body(ai_stub), creator_id="c-429")
    window = _run_attempt(running, stack, kind, job_id, 0)
    _assert_rescheduled(stack, db, kind, job_id, 0, window, 25.0, "RATE_LIMIT")
    emulator_clock.advance(kind.ladder[0])  # the step alone is not enough
    _scheduled(stack, f"{job_id}:1")  # still waiting on the topic
    emulator_clock.advance(25.0 - kind.ladder[0])
    running.wait_for_invocation(kind.function, message_id=f"{job_id}:1", timeout=TIMEOUT)
