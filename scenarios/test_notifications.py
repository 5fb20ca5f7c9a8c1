"""Notifications family: one broken channel never holds up the others.

The events topic fans each job update out to four subscriptions, one function each
(SignalR, email, webhook, metrics). A webhook that hangs or answers 500, a SignalR
service answering 503, or an SMTP server refusing mail must not block, delay or
dead-letter what the other channels deliver: each has its own subscription, lock and
retries, and the host runs them side by side.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from scenario_apps import AppDatabase, JobServiceBus

from harness.pytest_plugin import Events, WorkerFactory
from standins.mail import MailSink
from standins.signalr import SignalRServer
from standins.webhook import WebhookSink

TIMEOUT = 30.0
# The healthy channels must deliver every update while the broken one is still failing
# (a hung webhook request is held for HANG seconds); sharing one slot takes > 20 s, and
# 12 s leaves room for a loaded machine.
PROMPT = 12.0
HANG = 20.0
EVENTS = 5

Breakage = Callable[[WebhookSink, SignalRServer, MailSink], None]

BREAKAGES: dict[str, tuple[str, Breakage]] = {
    "webhook-hangs": ("webhook", lambda w, s, m: w.hang_next(20, seconds=HANG)),
    "webhook-500": ("webhook", lambda w, s, m: w.fail_next(20, status=500)),
    "signalr-503": ("signalr", lambda w, s, m: s.fail_next(20, status=503)),
    "smtp-refuses": ("email", lambda w, s, m: m.fail_next(20)),
}


def _creator(db: AppDatabase, webhooks: WebhookSink) -> tuple[str, str]:
    creator_id = f"creator-{uuid.uuid4().hex[:8]}"
    email = f"{creator_id}@example.com"
    db.add_creator(
        creator_id,
        email=email,
        name="Ada",
        webhook_url=webhooks.url_for(f"/hooks/{creator_id}"),
        webhook_secret=f"secret-{creator_id}",
    )
    return creator_id, email


def _completed_event(job_id: str, creator_id: str) -> tuple[str, dict[str, str]]:
    from datetime import UTC, datetime

    from workers.common.contracts import (
        EventMessage,
        JobStatus,
        JobType,
        event_application_properties,
    )

    event = EventMessage(
        job_id=job_id,
        creator_id=creator_id,
        status=JobStatus.COMPLETED,
        progress=100,
        result={"ok": True},
        updated_at=datetime.now(UTC),
        job_type=JobType.CHAT_SUGGEST,
    )
    return event.model_dump_json(by_alias=True), event_application_properties(event)


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_channel_does_not_hold_up_the_others(
    breakage: str,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    signalr: SignalRServer,
    mailbox: MailSink,
    webhooks: WebhookSink,
) -> None:
    broken, breaks = BREAKAGES[breakage]
    running = workers("notify")
    creator_id, email = _creator(db, webhooks)
    breaks(webhooks, signalr, mailbox)
    job_ids = [f"job_notify_{uuid.uuid4().hex[:10]}" for _ in range(EVENTS)]
    sent_at = time.monotonic()
    for job_id in job_ids:
        body, properties = _completed_event(job_id, creator_id)
        servicebus.send_raw(body, properties, topic=servicebus.topic_events)

    hook_path = f"/hooks/{creator_id}"
    healthy: dict[str, Callable[[], Any]] = {
        "signalr": lambda: [
            signalr.wait_for_user(
                creator_id,
                "huntaze",
                target="jobUpdate",
                predicate=lambda m, job_id=job_id: m.arguments[0]["jobId"] == job_id,
                timeout=TIMEOUT,
            )
            for job_id in job_ids
        ],
        "email": lambda: mailbox.wait_for(email, subject="complete", count=EVENTS, timeout=TIMEOUT),
        "webhook": lambda: webhooks.requests.wait_for(
            lambda r: r.path == hook_path and r.status == 200, count=EVENTS, timeout=TIMEOUT
        ),
    }
    for channel, wait in healthy.items():
        if channel != broken:
            wait()
            took = time.monotonic() - sent_at
            assert took < PROMPT, f"{channel} took {took:.1f}s while {breakage}"

    # the broken channel really was broken (the scenario is not vacuous) ...
    if broken == "webhook":
        webhooks.requests.wait_for(lambda r: r.path == hook_path, timeout=TIMEOUT)
        assert all(r.status != 200 for r in webhooks.requests if r.path == hook_path)
    elif broken == "signalr":
        running["notify"].wait_until(
            lambda items: any(
                i.function == "NotifySignalRWorker" and i.outcome == "failed" for i in items
            ),
            timeout=TIMEOUT,
            what="NotifySignalRWorker to fail on the 503",
        )
    else:  # the email worker logs a refused mail and moves on (the seed's choice)
        running["notify"].wait_until(
            lambda items: (
                sum(i.function == "NotifyEmailWorker" and i.finished for i in items) >= EVENTS
            ),
            timeout=TIMEOUT,
            what="NotifyEmailWorker to handle every update",
        )
        assert mailbox.to(email) == []
    # ... and no healthy channel's subscription dead-lettered anything
    for subscription in ("notify-signalr", "notify-email", "notify-webhook", "metrics"):
        if subscription.endswith(broken):
            continue
        peeked = servicebus.peek(
            subscription, topic=servicebus.topic_events, sub_queue="deadletter"
        )
        dead = [m for m in peeked if _mentions(m, job_ids)]
        assert dead == [], f"{subscription} dead-lettered {len(dead)} while {breakage}"
    webhooks.release()


def _mentions(message: Any, job_ids: list[str]) -> bool:
    text = str(message)
    return any(job_id in text for job_id in job_ids)
