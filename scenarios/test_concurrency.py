"""Concurrency family: host.json maxConcurrentCalls holds under a burst.

Video runs 2 at a time, chat/content 8, each notify function 50: send more work than
slots, hold every run (a slow AI answer, a webhook that hangs), and the peak of
simultaneous runs is exactly the limit — never more, and the host does fill every slot.
"""

from __future__ import annotations

import uuid

import pytest
from scenario_apps import AppDatabase, JobServiceBus
from test_end_to_end import FLOWS, Flow
from test_notifications import _completed_event

from harness.pytest_plugin import Events, WorkerFactory
from standins.ai import AIServer, Latency
from standins.webhook import WebhookSink

TIMEOUT = 30.0


@pytest.mark.parametrize(
    ("app", "flow", "limit", "count"),
    [("video", FLOWS[0], 2, 5), ("jobs", FLOWS[1], 8, 12)],
    ids=["video-2", "jobs-8"],
)
def test_job_hosts_never_run_more_than_max_concurrent_calls(
    app: str,
    flow: Flow,
    limit: int,
    count: int,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    ai_stub: AIServer,
) -> None:
    ai_stub.behaviour.latency = Latency.fixed(0.6)
    host = workers(app)[app]
    job_ids = [
        servicebus.send_job(flow.job_type, flow.body(ai_stub), creator_id="creator-load")
        for _ in range(count)
    ]
    host.wait_running(limit, function=flow.function, timeout=TIMEOUT)
    for job_id in job_ids:
        events.wait_for(job_id, "completed", timeout=TIMEOUT)
    runs = host.wait_for_invocations(count, function=flow.function, timeout=TIMEOUT)
    assert host.peak_concurrency(flow.function) == limit
    assert {r.settlement for r in runs} == {"completed"}


def test_each_notify_function_runs_fifty_at_once(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    db: AppDatabase,
    webhooks: WebhookSink,
) -> None:
    """60 updates for a creator whose webhook hangs: 50 webhook runs are held at once, the
    other 10 wait for a slot; released, all 60 finish."""
    creator_id = f"creator-{uuid.uuid4().hex[:8]}"
    db.add_creator(
        creator_id,
        email=f"{creator_id}@example.com",
        name="Ada",
        webhook_url=webhooks.url_for(f"/hooks/{creator_id}"),
        webhook_secret="s",
    )
    webhooks.hang_next(60, seconds=20)
    host = workers("notify")["notify"]
    for _ in range(60):
        body, properties = _completed_event(f"job_burst_{uuid.uuid4().hex[:10]}", creator_id)
        servicebus.send_raw(body, properties, topic=servicebus.topic_events)
    host.wait_running(50, function="NotifyWebhookWorker", timeout=TIMEOUT)
    assert host.running("NotifyWebhookWorker") == 50
    webhooks.release()
    host.wait_for_invocations(60, function="NotifyWebhookWorker", timeout=TIMEOUT)
    assert host.peak_concurrency("NotifyWebhookWorker") == 50
