"""Prefetch vs lock family: what happens to the locks of messages waiting in the buffer.

The jobs profile prefetches 20 with 8 slots and a PT1M lock: under a burst with a slow AI,
up to 12 messages sit locked in the receiver's buffer, their lock running, nobody renewing
it (the host renews only what it runs). When the wait outlasts the lock, the broker hands
the message out again (delivery count +1) while the stale copy is still in the buffer.

What must hold: no job runs twice to completion, and no message is dead-lettered because
its lock lapsed while it waited (MaxDeliveryCount is 5: five lapses would do it).

Measured (30 jobs, 1 s AI, two lock lapses): ~51 runs for 30 jobs — the redelivered copies
— yet 30 AI calls and 30 completions: the workers' run lease and finished-job record make
a redelivered copy a no-op. Neither the seed's profile nor the host needs a change for
correctness; prefetch beyond maxConcurrentCalls only costs those no-op runs (a profile
with prefetchCount <= maxConcurrentCalls would avoid them).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from scenario_apps import AppDatabase, JobServiceBus

from harness.pytest_plugin import Events, WorkerFactory
from standins.ai import AIServer, Latency

TIMEOUT = 60.0
BURST = 30
LOCK = 60.0


def test_locks_that_lapse_in_the_prefetch_buffer_cost_no_double_run_and_no_dead_letter(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    ai_stub.behaviour.latency = Latency.fixed(1.0)
    running = workers("jobs")
    host = running["jobs"]
    job_ids = [
        servicebus.send_job("chat.suggest", {"fanMessage": f"burst {i}"}, creator_id="c-burst")
        for i in range(BURST)
    ]
    host.wait_running(8, function="ChatSuggestionsWorker", timeout=TIMEOUT)
    # Twice, while messages wait in the buffer, let every lock the host does not renew lapse.
    for _ in range(2):
        emulator_clock.advance(LOCK + 1)
    for job_id in job_ids:
        events.wait_for(job_id, "completed", timeout=TIMEOUT)

    completions = Counter(
        e.job_id for e in events.all if e.job_id in job_ids and e.status == "completed"
    )
    assert completions == Counter({job_id: 1 for job_id in job_ids})  # none twice
    assert all(db.job(j)["status"] == "completed" for j in job_ids)  # type: ignore[index]
    dead = [m for m in servicebus.peek_dead_letters("chat-suggestions") if _of(m, job_ids)]
    assert dead == []
    ai_calls = [c for c in ai_stub.calls if c.model == "phi4"]
    runs = [r for r in running.invocations() if _of(r.message_id, job_ids)]
    redelivered = [r for r in runs if (r.delivery_count or 0) > 0]
    assert len(redelivered) > 0  # locks really lapsed in the buffer: the scenario is not vacuous
    assert len(ai_calls) == BURST  # each job's work ran once; a redelivered copy is a no-op
    print(
        f"prefetch: {len(runs)} runs for {BURST} jobs, {len(redelivered)} of redelivered "
        f"copies (lock lapsed in the buffer), {len(ai_calls)} AI calls, "
        f"peak {host.peak_concurrency('ChatSuggestionsWorker')}"
    )


def _of(item: Any, job_ids: list[str]) -> bool:
    text = str(item)
    return any(job_id in text for job_id in job_ids)
