"""Faults family: broker faults on every worker's links, and still every job reaches one end.

All three apps run while the emulator's control API (the endpoints a user drives with curl)
drops the connection on settles, loses locks, answers server-busy to sends and slows
receives, on the workers' subscriptions and both topics, at twice the rates of the stall
measured in issue 11. Jobs go in through the job API.

The faults are then cleared and a second wave is posted: the job hosts complete it within
seconds, the clock standing still (before `harness.host.receivers`, a host whose receiver
broke came back empty for ever). What a dropped link had delivered, prefetched messages
included, stays locked until its lock lapses, as on Azure: the clock moves past the longest
lock (PT2M) and every notify function is consuming again. In the end every job of both waves
is terminal in Postgres with exactly one terminal event, so none ran to completion twice.
The defect itself is put back by the `broken-receiver-reused` mutant (scenarios/mutants.py).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
from scenario_apps import AppDatabase, post_job
from test_end_to_end import FLOWS

from harness.pytest_plugin import Events, WorkerFactory
from harness.stack import Stack
from standins.ai import AIServer, Latency

if TYPE_CHECKING:
    from emulator.servicebus.admin.control_client import ControlClient
    from emulator.servicebus.core.clock import EmulatorClock

FAULTY_WAVE = 12  # jobs per flow while the faults are on
CLEAN_WAVE = 3  # jobs per flow after they are cleared
RECOVERY = 20.0  # wall seconds the hosts get to consume again, the clock standing still
LOCK_LAPSE = 121.0  # past the longest lock (content-analysis, PT2M)
TERMINAL = ("completed", "failed", "timeout")
NOTIFY_FUNCTIONS = (
    "NotifySignalRWorker",
    "NotifyEmailWorker",
    "NotifyWebhookWorker",
    "MetricsWorker",
)
RATE = 0.1  # per fault rule, twice the rate of the measurement


def _inject(control: ControlClient, stack: Stack) -> int:
    """Faults on the workers' subscriptions (not the test's event collector) and both
    topics' sends; returns how many rules were added."""
    added = []
    workers_subscriptions = (
        f"{stack.topic_jobs}/subscriptions/*",
        f"{stack.topic_events}/subscriptions/notify-*",
        f"{stack.topic_events}/subscriptions/metrics*",
    )
    for entity in workers_subscriptions:
        added += [
            control.add_fault("settle", "connection-drop", entity=entity, probability=RATE),
            control.add_fault("settle", "lock-lost", entity=entity, probability=RATE),
            control.add_fault(
                "receive", "latency", entity=entity, probability=RATE, latency_ms=500
            ),
        ]
    for topic in (stack.topic_jobs, stack.topic_events):
        added.append(control.add_fault("send", "server-busy", entity=topic, probability=RATE))
    return len(added)


FAULT_KINDS = (
    ("settle", "connection-drop"),
    ("settle", "lock-lost"),
    ("receive", "latency"),
    ("send", "server-busy"),
)


def _fired(control: ControlClient) -> Counter[tuple[str, str]]:
    """How often each kind of fault has fired so far."""
    fired: Counter[tuple[str, str]] = Counter()
    for rule in control.faults():
        fired[(rule["operation"], rule["effect"])] += rule["fired"]
    return fired


def _post(job_api: httpx.Client, ai: AIServer, per_flow: int, creator: str) -> list[str]:
    return [
        post_job(job_api, flow.route, {"creatorId": creator, **flow.body(ai)})
        for _ in range(per_flow)
        for flow in FLOWS
    ]


def _ended(events: Events, job_ids: list[str]) -> dict[str, list[str]]:
    """Each job's terminal statuses, in arrival order, from one pass over the events."""
    ended: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
    for event in events.all:
        if event.event_type == "job.update" and event.job_id in ended and event.status in TERMINAL:
            ended[event.job_id].append(event.status)
    return ended


def test_every_job_reaches_one_end_through_broker_faults(
    stack: Stack,
    emulator_control: ControlClient,
    workers: WorkerFactory,
    job_api: httpx.Client,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: EmulatorClock,
) -> None:
    ai_stub.behaviour.latency = Latency.fixed(0.05)
    running = workers("video", "jobs", "notify")
    creator = f"c-faults-{uuid.uuid4().hex[:8]}"
    control = emulator_control

    rules = _inject(control, stack)
    faulty = _post(job_api, ai_stub, FAULTY_WAVE, creator)
    # Faults while the first wave runs, until each kind has fired (they are random: a fixed
    # share of the wave was once too few settles for a lock-lost). What is not done by then
    # may sit in a dropped link's prefetch, locked until the lock lapses.
    try:
        running.wait_for_condition(
            lambda: all(_fired(control).get(kind) for kind in FAULT_KINDS),
            function="MetricsWorker",  # a run per job update: the busiest function
            timeout=60,
            what="every fault kind to fire",
        )
    except AssertionError:
        raise AssertionError(f"some faults never fired in 60 s: {_fired(control)}") from None
    assert control.clear_faults() == rules

    # Consuming again within seconds of the faults stopping, the clock standing still.
    clean = _post(job_api, ai_stub, CLEAN_WAVE, creator)
    for job_id in clean:
        events.wait_for(job_id, "completed", timeout=RECOVERY)
    # What a dropped link had delivered (prefetched included) stays locked until the lock
    # lapses, as on Azure; past it, every notify function is handling deliveries again.
    moved = datetime.now(UTC)  # runs are stamped in wall time; none starts before the move
    emulator_clock.advance(LOCK_LAPSE)
    notify = running["notify"]
    for function in NOTIFY_FUNCTIONS:
        notify.wait_until(
            lambda items, f=function: any(
                i.function == f and i.settlement == "completed" and i.started_at >= moved
                for i in items
            ),
            timeout=RECOVERY,
            what=f"{function} to complete a delivery once the stranded locks lapsed",
        )

    everything = faulty + clean
    for _ in range(4):
        waiting = [
            job_id for job_id, statuses in _ended(events, everything).items() if not statuses
        ]
        if not waiting:
            break
        # A message delivered on a dropped link stays locked until its lock lapses.
        emulator_clock.advance(LOCK_LAPSE)
        for job_id in waiting:
            try:
                events.wait_for(job_id, where=lambda e: e.status in TERMINAL, timeout=20)
            except AssertionError:
                break  # move the clock again

    ended = _ended(events, everything)
    never = [job_id for job_id, statuses in ended.items() if not statuses]
    assert not never, f"{len(never)} of {len(everything)} jobs never ended: {never[:5]}"
    twice = {job_id: statuses for job_id, statuses in ended.items() if len(statuses) > 1}
    assert not twice, f"jobs that ended more than once: {twice}"
    for job_id in everything:
        job = db.job(job_id)
        assert job is not None and job["status"] == ended[job_id][0], (job_id, job)
    completed = sum(statuses == ["completed"] for statuses in ended.values())
    assert completed >= 0.75 * len(everything), f"only {completed} of {len(everything)} completed"
