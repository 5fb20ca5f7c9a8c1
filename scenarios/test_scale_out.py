"""Scale-out family: two instances of one app compete for its subscriptions, as Azure's do.

Azure Functions scales an app out by starting more hosts of it, each with its own receivers
on the same subscriptions (competing consumers). `harness up --instances jobs=2` does that
with host processes; here the second instance is a second `WorkerFactory`: another load of
the app's `function_app.py` (its own Service Bus clients, database pool and Redis client),
its own host and receivers, against the same stack.

What must hold: each job's message runs on exactly one instance and once, both instances
take a share, every job completes once. Timers: Azure runs a timer function on one
instance at a time (`harness up` arms them in an app's first instance only), but should
two sweepers meet on one dead letter anyway, the job still ends once, with one event: the
status change is a conditional UPDATE, so the second sweep's waits on the first's row lock
and then matches nothing (see `workers.common.deadletters`).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from scenario_apps import AppDatabase, JobServiceBus, worker_factory

from harness.host import FunctionsHost
from harness.pytest_plugin import Events, WorkerFactory
from harness.stack import Stack
from standins.ai import AIServer, Latency
from standins.mail import MailSink
from standins.signalr import SignalRServer

TIMEOUT = 60.0
JOBS = 30
"""Above one instance's prefetch (20): the broker cannot hand them all to the first."""
CHAT = "ChatSuggestionsWorker"
CHAT_TTL_S = 600  # the chat-suggestions subscription's PT10M
SWEEPER = "ChatSuggestionsDeadLetterSweeper"


@pytest.fixture
def second_instance(
    workers: WorkerFactory,
    stack: Stack,
    ai_stub: AIServer,
    signalr: SignalRServer,
    mailbox: MailSink,
) -> Iterator[WorkerFactory]:
    """Another instance of the apps `workers` starts. It depends on `workers`, so it stops
    first and puts the environment back before `workers` restores the original."""
    with worker_factory(stack, ai_stub, signalr, mailbox) as factory:
        yield factory


def test_two_instances_share_a_subscription_and_no_job_runs_twice(
    workers: WorkerFactory,
    second_instance: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
) -> None:
    # Each run takes a moment, so the burst outlasts what one instance holds.
    ai_stub.behaviour.latency = Latency.fixed(0.3)
    first = workers("jobs")["jobs"]
    second = second_instance("jobs")["jobs"]
    assert first is not second and first.module is not second.module  # two loads of the app
    job_ids = [
        servicebus.send_job("chat.suggest", {"fanMessage": f"scale {i}"}, creator_id="c-scale")
        for i in range(JOBS)
    ]
    for job_id in job_ids:
        events.wait_for(job_id, "completed", timeout=TIMEOUT)

    messages = {f"{job_id}:0" for job_id in job_ids}
    for host in (first, second):  # the event goes out before the run settles and ends
        host.wait_until(
            lambda items: all(i.finished for i in items if i.message_id in messages),
            timeout=TIMEOUT,
            what="the runs of the burst to finish",
        )
    ran = {host: _runs(host, messages) for host in (first, second)}
    all_runs = ran[first] + ran[second]
    assert Counter(r.message_id for r in all_runs) == Counter(messages)  # each once, one place
    assert ran[first] and ran[second], "one instance did all the work"
    assert all(r.outcome == "succeeded" and r.settlement == "completed" for r in all_runs)
    completions = Counter(
        e.job_id for e in events.all if e.job_id in job_ids and e.status == "completed"
    )
    assert completions == Counter(job_ids)  # one completed event per job
    assert all(db.job(j)["status"] == "completed" for j in job_ids)  # type: ignore[index]
    assert len([c for c in ai_stub.calls if c.model == "phi4"]) == JOBS  # the work ran once
    print(f"scale-out: {len(ran[first])} + {len(ran[second])} runs of {JOBS} jobs")


def test_two_instances_sweeping_one_dead_letter_end_the_job_once(
    workers: WorkerFactory,
    second_instance: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    emulator_clock: Any,
) -> None:
    # A job the broker dead-letters itself (TTL), before any instance could take it.
    job_id = servicebus.send_job("chat.suggest", {"fanMessage": "late"}, creator_id="c-sweep")
    emulator_clock.advance(CHAT_TTL_S + 10)
    assert [m.dead_letter_reason for m in _dead_letters_of(servicebus, job_id)] == [
        "TTLExpiredException"
    ]
    hosts = [workers("jobs")["jobs"], second_instance("jobs")["jobs"]]

    # Both instances' sweepers at the same moment, as two unlocked timers would fire.
    start = threading.Barrier(len(hosts))
    runs: list[Any] = []

    def sweep(host: FunctionsHost) -> None:
        start.wait(TIMEOUT)
        runs.append(host.fire_timer(SWEEPER, timeout=TIMEOUT))

    threads = [threading.Thread(target=sweep, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert [r.outcome for r in runs] == ["succeeded", "succeeded"], runs

    events.wait_for(job_id, "timeout", timeout=TIMEOUT)
    # Everything published before the marker has arrived once the marker has.
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    servicebus.send_raw(
        json.dumps({"jobId": marker, "status": "marker"}),
        {"jobId": marker},
        topic="huntaze-events",
    )
    events.wait_for(marker, "marker", timeout=TIMEOUT)
    assert [e.status for e in events.for_job(job_id)] == ["timeout"]  # one ending, one event
    job = db.job(job_id)
    assert job is not None and job["status"] == "timeout", job
    assert job["error"]["code"] == "TTLExpiredException", job


def _runs(host: FunctionsHost, messages: set[str]) -> list[Any]:
    return [i for i in host.invocations if i.function == CHAT and i.message_id in messages]


def _dead_letters_of(servicebus: JobServiceBus, job_id: str) -> list[Any]:
    return [
        m
        for m in servicebus.peek_dead_letters("chat-suggestions")
        if str(m.message_id).startswith(f"{job_id}:")
    ]
