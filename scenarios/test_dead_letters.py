"""Dead-letter family: whatever dead-letters a job's message, the job reaches an end.

- a crash loop (a worker that dies holding the lock, again and again) ends in
  `MaxDeliveryCountExceeded` after exactly the subscription's count: video 3, chat 5,
  content-suggest 5, content-analyze 8;
- a message nobody takes within the subscription's TTL (video PT30M, chat and
  content-suggest PT10M, content-analyze PT20M) expires into the dead-letter queue;
- a poison body is dead-lettered by the worker with a reason (see test_bad_input.py);

and in every case the job is `failed` or `timeout` in PostgreSQL and through the API, with
the broker's reason, and one final `job.update` is published — the job subscription's
dead-letter sweeper (a timer, fired here) finds it by peeking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.servicebus import ServiceBusReceiveMode
from scenario_apps import AppDatabase, JobServiceBus, post_job

from harness.pytest_plugin import Events, WorkerFactory
from standins.ai import AIServer

TIMEOUT = 30.0


@dataclass(frozen=True)
class Sub:
    route: str
    subscription: str
    app: str
    sweeper: str
    max_deliveries: int
    lock_seconds: float
    ttl_seconds: float
    body: dict[str, Any]


SUBS = [
    Sub("video-analysis", "video-analysis", "video", "VideoAnalysisDeadLetterSweeper", 3, 120,
        1800, {"videoUrl": "https://cdn.example.com/v.mp4"}),
    Sub("chat-suggestions", "chat-suggestions", "jobs", "ChatSuggestionsDeadLetterSweeper", 5,
        60, 600, {"fanMessage": "hi"}),
    Sub("content-suggestions", "content-suggestions", "jobs",
        "ContentSuggestionsDeadLetterSweeper", 5, 60, 600,
        {"contentType": "reel", "tone": "fun"}),
    Sub("content-analysis", "content-analysis", "jobs", "ContentAnalysisDeadLetterSweeper", 8,
        120, 1200,
        {"contentId": "c", "contentType": "image", "contentUrl": "https://cdn.example.com/c"}),
]  # fmt: skip
IDS = [s.subscription for s in SUBS]


def _dead_letter_of(servicebus: JobServiceBus, sub: Sub, job_id: str) -> list[Any]:
    return [
        m
        for m in servicebus.peek_dead_letters(sub.subscription)
        if str(m.message_id).startswith(f"{job_id}:")
    ]


def _post(job_api: httpx.Client, sub: Sub) -> str:
    return post_job(job_api, sub.route, {"creatorId": "c-dlq", **sub.body})


def _sweep_and_expect_end(
    workers: WorkerFactory,
    job_api: httpx.Client,
    events: Events,
    db: AppDatabase,
    sub: Sub,
    job_id: str,
    status: str,
    reason: str,
) -> None:
    running = workers(sub.app)
    run = running[sub.app].fire_timer(sub.sweeper)
    assert (run.outcome, run.error) == ("succeeded", None)
    [final] = events.wait_for(job_id, status, timeout=TIMEOUT)
    job = db.job(job_id)
    assert job is not None and job["status"] == status
    assert job["error"]["code"] == reason
    assert job_api.get(f"/api/jobs/{job_id}").json()["status"] == status
    again = running[sub.app].fire_timer(sub.sweeper)  # a second sweep ends nothing twice
    assert again.outcome == "succeeded"
    assert [e.status for e in events.for_job(job_id)].count(status) == 1, final


@pytest.mark.parametrize("sub", SUBS, ids=IDS)
def test_a_crash_loop_dead_letters_after_max_deliveries_and_the_job_fails(
    sub: Sub,
    workers: WorkerFactory,
    job_api: httpx.Client,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    emulator_clock: Any,
) -> None:
    job_id = _post(job_api, sub)
    deliveries = 0
    with servicebus.client.get_subscription_receiver(
        servicebus.topic_jobs, sub.subscription, receive_mode=ServiceBusReceiveMode.PEEK_LOCK
    ) as crashing_worker:
        while not _dead_letter_of(servicebus, sub, job_id) and deliveries <= sub.max_deliveries:
            batch = crashing_worker.receive_messages(max_message_count=50, max_wait_time=10)
            mine = [m for m in batch if str(m.message_id).startswith(f"{job_id}:")]
            # other tests' leftovers are left alone: their locks lapse with ours
            deliveries += len(mine)
            if mine:
                emulator_clock.advance(sub.lock_seconds + 1)  # it died holding the lock
    assert deliveries == sub.max_deliveries
    [dead] = _dead_letter_of(servicebus, sub, job_id)
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert db.job(job_id)["status"] == "pending"  # type: ignore[index]  # until swept
    _sweep_and_expect_end(
        workers, job_api, events, db, sub, job_id, "failed", "MaxDeliveryCountExceeded"
    )


@pytest.mark.parametrize("sub", SUBS, ids=IDS)
def test_a_message_past_its_ttl_expires_and_the_job_times_out(
    sub: Sub,
    workers: WorkerFactory,
    job_api: httpx.Client,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    job_id = _post(job_api, sub)
    emulator_clock.advance(sub.ttl_seconds - 5)
    assert not _dead_letter_of(servicebus, sub, job_id)
    emulator_clock.advance(10)
    [dead] = _dead_letter_of(servicebus, sub, job_id)
    assert dead.dead_letter_reason == "TTLExpiredException"
    _sweep_and_expect_end(
        workers, job_api, events, db, sub, job_id, "timeout", "TTLExpiredException"
    )
