"""The seed's flow end to end, on a real stack, with the real worker apps under the local host.

For each job type: `POST /api/jobs/...` → the jobs topic routes it to exactly its
subscription → the worker app handles it (AI stand-in called) → the job is `completed` in
PostgreSQL → `processing` / `completed` events on the events topic → the notify app sends the
SignalR update to the creator, the mail, the signed webhook, and records the metrics.

Every wait is on a recorder (events collector, host invocations, stand-ins) with a deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from scenario_apps import AppDatabase, JobServiceBus

from harness.pytest_plugin import Events, WorkerFactory
from standins.ai import AIServer, Fault
from standins.mail import MailSink
from standins.signalr import SignalRServer
from standins.webhook import WebhookSink

TIMEOUT = 30.0


@dataclass(frozen=True)
class Flow:
    """One job type: its API route, request body, worker function and AI model."""

    route: str
    job_type: str
    function: str
    subscription: str
    model: str
    body: Callable[[AIServer], dict[str, Any]]


FLOWS = [
    Flow(
        "video-analysis",
        "video.analysis",
        "VideoAnalysisWorker",
        "video-analysis",
        "phi-4-multimodal",
        lambda ai: {"videoUrl": ai.media_url("clip.mp4"), "videoId": "v-1"},
    ),
    Flow(
        "chat-suggestions",
        "chat.suggest",
        "ChatSuggestionsWorker",
        "chat-suggestions",
        "phi4",
        lambda ai: {"fanMessage": "Loved your last post! What's next?"},
    ),
    Flow(
        "content-suggestions",
        "content.suggest",
        "ContentSuggestionsWorker",
        "content-suggestions",
        "deepseek",
        lambda ai: {"contentType": "reel", "tone": "playful", "topic": "summer"},
    ),
    Flow(
        "content-analysis",
        "content.analyze",
        "ContentAnalysisWorker",
        "content-analysis",
        "deepseek",
        lambda ai: {
            "contentId": "c-42",
            "contentType": "image",
            "contentUrl": "https://cdn.example.com/c-42.jpg",
        },
    ),
]


def _creator(db: AppDatabase, webhooks: WebhookSink) -> tuple[str, str, str]:
    """A creator with an email and a signed webhook; returns (id, email, secret)."""
    creator_id = f"creator-{uuid.uuid4().hex[:8]}"
    email = f"{creator_id}@example.com"
    secret = f"secret-{creator_id}"
    db.add_creator(
        creator_id,
        email=email,
        name="Ada",
        webhook_url=webhooks.url_for(f"/hooks/{creator_id}"),
        webhook_secret=secret,
    )
    return creator_id, email, secret


@pytest.mark.parametrize("flow", FLOWS, ids=[f.route for f in FLOWS])
def test_job_flows_from_api_to_notifications(
    flow: Flow,
    workers: WorkerFactory,
    job_api: Any,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    signalr: SignalRServer,
    mailbox: MailSink,
    webhooks: WebhookSink,
) -> None:
    creator_id, email, secret = _creator(db, webhooks)
    running = workers("video", "jobs", "notify")
    metric_before = db.job_type_metric(flow.job_type)["completed_count"]
    cost_before = db.ai_cost(flow.model)["calls"]

    response = job_api.post(
        f"/api/jobs/{flow.route}", json={"creatorId": creator_id, **flow.body(ai_stub)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    job_id = response.json()["jobId"]

    # processing → completed on the events topic (video also reports progress 10/30)
    updates = events.wait_for_statuses(job_id, ["processing", "completed"], timeout=TIMEOUT)
    assert updates[0].progress == 0 and updates[-1].progress == 100
    assert all(e.properties.get("creatorId") == creator_id for e in updates)

    # routed to exactly its subscription: one run, of its own function, settled by it
    [run] = running.wait_for_invocation(flow.function, message_id=f"{job_id}:0")
    assert (run.outcome, run.settlement, run.settled_by) == ("succeeded", "completed", "function")
    assert [i.function for i in running.for_job(job_id)] == [flow.function]

    # the AI stand-in answered this model (and no other)
    calls = [c for c in ai_stub.calls if c.path.endswith("/chat/completions")]
    assert {c.model for c in calls} == {flow.model} and all(c.status == 200 for c in calls)

    # completed in PostgreSQL, with the AI's answer as result
    job = db.job(job_id)
    assert job is not None
    assert (job["status"], job["job_type"], job["creator_id"]) == (
        "completed",
        flow.job_type,
        creator_id,
    )
    assert job["result"] and job["progress"] == 100 and job["finished_at"] is not None
    assert job_api.get(f"/api/jobs/{job_id}").json()["status"] == "completed"

    # notifications: SignalR to the creator, the mail, the signed webhook
    # (both updates, in either order: the notify app runs up to 50 events at once, so a
    # client can see `processing` after `completed`, as with the Functions host in Azure)
    for status in ("processing", "completed"):
        signalr.wait_for_user(
            creator_id,
            "huntaze",
            target="jobUpdate",
            predicate=lambda m, status=status: m.arguments[0]["status"] == status,
            timeout=TIMEOUT,
        )
    pushed = signalr.for_user(creator_id, "huntaze", target="jobUpdate", direct=True)
    assert [m.arguments[0]["jobId"] for m in pushed] == [job_id] * len(pushed)
    [mail] = mailbox.wait_for(email, subject="complete", timeout=TIMEOUT)
    assert job_id in mail.body and mail.to == (email,)
    hooks = webhooks.requests.wait_for(
        lambda r: r.path == f"/hooks/{creator_id}" and r.json()["status"] == "completed",
        timeout=TIMEOUT,
    )
    assert hooks[0].json()["jobId"] == job_id and hooks[0].signature_valid(secret)

    # metrics: latency per job type and AI cost per model, written by MetricsWorker
    running.wait_for_condition(
        lambda: (
            db.job_type_metric(flow.job_type)["completed_count"] > metric_before
            and db.ai_cost(flow.model)["calls"] > cost_before
        ),
        function="MetricsWorker",
        timeout=TIMEOUT,
        what=f"metrics for {flow.job_type} / {flow.model}",
    )


# -- host semantics, observed (concurrency: scenarios/test_concurrency.py) ----------------


def test_manual_settlement_dead_letters_an_invalid_payload_for_real(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
) -> None:
    """The worker settles through ServiceBusMessageActions over the host's gRPC settlement
    service: the message really lands in the subscription's dead-letter queue, once."""
    running = workers("jobs")
    job_id = servicebus.send_job("chat.suggest", {"context": "no fanMessage"}, creator_id="c-x")

    events.wait_for_statuses(job_id, ["processing", "failed"], timeout=TIMEOUT)
    [run] = running.wait_for_invocation("ChatSuggestionsWorker", message_id=f"{job_id}:0")
    assert (run.settlement, run.settled_by, run.dead_letter_reason) == (
        "dead-lettered",
        "function",
        "INVALID_PAYLOAD",
    )
    [dead] = [
        m
        for m in servicebus.peek_dead_letters("chat-suggestions")
        if m.message_id == run.message_id
    ]
    assert dead.dead_letter_reason == "INVALID_PAYLOAD"
    assert "fanMessage" in (dead.dead_letter_error_description or "")
    job = db.job(job_id)
    assert job is not None and job["status"] == "failed"
    assert job["error"]["code"] == "INVALID_PAYLOAD"
    assert len(running.for_job(job_id)) == 1  # dead-lettered, not redelivered


def test_rate_limited_job_is_retried_on_the_emulator_clock(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    """A 429 schedules attempt 1 three seconds later (the first backoff step); moving the
    emulator's clock makes it due now, and the job completes without waiting."""
    ai_stub.behaviour.enqueue(Fault.rate_limit(retry_after=1.0), model="phi4")
    running = workers("jobs")
    job_id = servicebus.send_job("chat.suggest", {"fanMessage": "hi"}, creator_id="c-retry")

    [first] = running.wait_for_invocation("ChatSuggestionsWorker", message_id=f"{job_id}:0")
    assert first.settlement == "completed"  # the retry copy is scheduled, this one completed
    job = db.job(job_id)
    assert job is not None and (job["status"], job["attempt"]) == ("processing", 1)
    assert job["error"]["code"] == "RATE_LIMIT"

    emulator_clock.advance(3)
    running.wait_for_invocation("ChatSuggestionsWorker", message_id=f"{job_id}:1")
    events.wait_for(job_id, "completed", timeout=TIMEOUT)
    assert db.job(job_id)["status"] == "completed"  # type: ignore[index]
    assert [c.status for c in ai_stub.calls if c.model == "phi4"] == [429, 200]


def test_dlq_monitor_reports_the_backlog_over_the_management_api(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
) -> None:
    """The notify app's timer counts dead letters with the administration client (HTTPS,
    the emulator's own certificate) and samples them by peek: a critical alert names the
    job, and peeking left the dead letter as it was."""
    running = workers("jobs", "notify", settings={"DLQ_CRITICAL_THRESHOLD": "0"})
    job_id = servicebus.send_job("chat.suggest", {"context": "no fanMessage"}, creator_id="c-dlq")
    running.wait_for_invocation("ChatSuggestionsWorker", message_id=f"{job_id}:0")
    [before] = [m for m in servicebus.peek_dead_letters("chat-suggestions") if job_id in str(m)]

    run = running["notify"].fire_timer("DlqTriageMonitor")
    assert (run.outcome, run.error) == ("succeeded", None)
    [alert] = events.wait_for(
        None,
        None,
        event_type="alert.dlq",
        where=lambda e: (
            e.body["subscription"] == "chat-suggestions"
            and any(s.get("jobId") == job_id for s in e.body["samples"])
        ),
        timeout=TIMEOUT,
    )
    assert alert.body["severity"] == "critical" and alert.body["deadLetterCount"] >= 1
    [after] = [m for m in servicebus.peek_dead_letters("chat-suggestions") if job_id in str(m)]
    assert after.delivery_count == before.delivery_count  # triage never locks a dead letter


def test_dlq_alert_reaches_the_operators_webhook_and_mailbox(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    mailbox: MailSink,
    webhooks: WebhookSink,
) -> None:
    """The critical alert the monitor publishes is delivered to OPS_ALERT_WEBHOOK_URL and
    OPS_ALERT_EMAIL by the notify app (before, every events subscriber dropped it)."""
    ops_email = "ops@example.com"
    running = workers(
        "jobs",
        "notify",
        settings={
            "DLQ_CRITICAL_THRESHOLD": "0",
            "OPS_ALERT_WEBHOOK_URL": webhooks.url_for("/ops/alerts"),
            "OPS_ALERT_EMAIL": ops_email,
        },
    )
    job_id = servicebus.send_job("chat.suggest", {"context": "no fanMessage"}, creator_id="c-ops")
    running.wait_for_invocation("ChatSuggestionsWorker", message_id=f"{job_id}:0")

    run = running["notify"].fire_timer("DlqTriageMonitor")
    assert (run.outcome, run.error) == ("succeeded", None)
    [hook] = webhooks.requests.wait_for(
        lambda r: (
            r.path == "/ops/alerts"
            and r.json()["subscription"] == "chat-suggestions"
            and r.json()["deadLetterCount"] >= 1
        ),
        timeout=TIMEOUT,
    )
    assert hook.header("X-Huntaze-Event") == "alert.dlq" and hook.status == 200
    [mail] = mailbox.wait_for(ops_email, subject="chat-suggestions", count=1, timeout=TIMEOUT)
    # the alert samples the oldest dead letters; earlier tests' ones may come before this job
    assert mail.subject.startswith("[critical]") and "chat-suggestions" in mail.body
