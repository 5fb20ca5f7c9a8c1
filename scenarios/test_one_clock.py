"""One clock for the system under test: the worker apps and the job API tell time by the
emulator's clock (`WORKERS_CLOCK_URL`, set by the stack), so what they stamp and schedule
lies on the broker's timeline even after a test has moved that clock hours ahead.

The proof reads the rescheduled copy where the broker holds it (the jobs topic's scheduled
messages, through the control API, without consuming it): its `ScheduledEnqueueTimeUtc` is
broker-now plus the ladder step, and it becomes due exactly when the broker's clock gets
there. Needs the in-process emulator (the clock is moved), so it skips on a namespace.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from scenario_apps import AppDatabase

from emulator.servicebus.admin.control_client import ControlClient
from harness.pytest_plugin import Events, WorkerFactory
from harness.stack import Stack
from standins.ai import AIServer, Fault
from workers.common.retry import DEFAULT_POLICY

HOURS_AHEAD = 5 * 3600
TIMEOUT = 30.0
SLACK = timedelta(seconds=1)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _scheduled_copy(control: ControlClient, topic: str, job_id: str, attempt: int) -> Any:
    """The copy the worker scheduled for `attempt`, still held by the topic (not yet due)."""
    found = [
        m
        for m in control.peek(topic, max_count=250)
        if (m["application_properties"] or {}).get("jobId") == job_id
        and json.loads(m["body"]["text"]).get("attempt") == attempt
    ]
    assert len(found) == 1, f"scheduled copies of {job_id} attempt {attempt}: {found}"
    return found[0]


def _assert_on_broker_timeline(stamp: datetime, before: datetime, after: datetime) -> None:
    assert before - SLACK <= stamp <= after + SLACK, (stamp, before, after)
    # and not on the wall clock, which is hours behind
    assert (stamp - datetime.now(UTC)).total_seconds() > HOURS_AHEAD - 60


def test_retries_are_scheduled_from_broker_now_after_the_clock_moved_hours_ahead(
    stack: Stack,
    emulator_clock: Any,
    emulator_control: ControlClient,
    workers: WorkerFactory,
    job_api: httpx.Client,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
) -> None:
    """Moved five hours ahead, a chat job fails twice with a transient AI error: each retry
    is scheduled at broker-now + that ladder step (3 s, then 10 s), and each becomes due
    exactly there; the job's timestamps (database, API, events) are broker times too."""
    control = emulator_control
    steps = DEFAULT_POLICY.delays[:2]
    emulator_clock.advance(HOURS_AHEAD)
    ai_stub.behaviour.enqueue(Fault.server_error(503), Fault.server_error(503), model="phi4")
    running = workers("jobs")
    creator_id = f"creator-{uuid.uuid4().hex[:8]}"

    before = stack.broker_now()
    response = job_api.post(
        "/api/jobs/chat-suggestions", json={"creatorId": creator_id, "fanMessage": "hi"}
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["jobId"]
    created = _when(job_api.get(f"/api/jobs/{job_id}").json()["createdAt"])
    _assert_on_broker_timeline(created, before, stack.broker_now())

    for attempt, step in enumerate(steps):
        failed_from = stack.broker_now()
        [run] = running.wait_for_invocation(
            "ChatSuggestionsWorker", message_id=f"{job_id}:{attempt}", timeout=TIMEOUT
        )
        assert run.settlement == "completed"  # this copy is done; the next one is scheduled
        failed_by = stack.broker_now()
        status = job_api.get(f"/api/jobs/{job_id}").json()
        assert (status["attempt"], status["error"]["code"]) == (attempt + 1, "AI_SERVER_ERROR")
        # the worker's now when it decided, as written to the job and read back by the API
        decided_at = _when(status["updatedAt"])
        _assert_on_broker_timeline(decided_at, failed_from, failed_by)

        copy = _scheduled_copy(control, stack.topic_jobs, job_id, attempt + 1)
        scheduled = _when(copy["scheduled_enqueue_time"])
        assert abs(scheduled - (decided_at + timedelta(seconds=step))) < SLACK, (
            scheduled,
            decided_at,
            step,
        )

        # Not due a moment before broker-now reaches it; due once it does.
        short = (scheduled - stack.broker_now()).total_seconds() - 0.5
        if short > 0:
            emulator_clock.advance(short)
            assert _scheduled_copy(control, stack.topic_jobs, job_id, attempt + 1)
        emulator_clock.advance(max(0.0, (scheduled - stack.broker_now()).total_seconds()) + 0.1)

    done_from = stack.broker_now()
    events.wait_for(job_id, "completed", timeout=TIMEOUT)
    final = job_api.get(f"/api/jobs/{job_id}").json()
    assert (final["status"], final["attempt"]) == ("completed", len(steps))
    _assert_on_broker_timeline(_when(final["updatedAt"]), done_from, stack.broker_now())
    assert _when(final["createdAt"]) == created

    updates = events.for_job(job_id)
    assert updates, "no job.update events"
    for event in updates:
        stamp = event.body.get("updatedAt")
        assert stamp is not None, event.line()
        assert _when(stamp) >= created - SLACK, event.line()
    row = db.job(job_id)
    assert row is not None and row["status"] == "completed"
    assert [c.status for c in ai_stub.calls if c.model == "phi4"] == [503, 503, 200]
