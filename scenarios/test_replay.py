"""Replay family: after an AI outage, `harness dlq replay` really runs the failed jobs again.

Chat jobs meet an AI that answers 503 to everything: each climbs the whole ladder (3/10/30/120 s,
skipped by moving the emulator clock) and is dead-lettered `AI_SERVER_ERROR`, `failed`. The AI
comes back and the CLI replays exactly those dead letters (`--where` on the reason and the
test's creator). The copies carry `x-replay-of`, so the processor restarts each job at attempt
0: every job ends `completed` with one `completed` event, its failed run kept in its history,
the dead-letter queue holds none of them, and no other message ran again.
"""

from __future__ import annotations

import uuid
from typing import Any

from scenario_apps import AppDatabase, JobServiceBus

from harness.cli import main as harness_cli
from harness.pytest_plugin import Events, WorkerFactory
from harness.stack import Stack
from standins.ai import AIServer, FaultProfile

TIMEOUT = 30.0
FUNCTION = "ChatSuggestionsWorker"
SUBSCRIPTION = "chat-suggestions"
MODEL = "phi4"
LADDER = (3, 10, 30, 120)
JOBS = 2


def test_replay_after_an_ai_outage_runs_the_failed_jobs_again(
    stack: Stack,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    ai_stub.behaviour.set_faults(FaultProfile(server_error=1.0, server_error_statuses=(503,)))
    running = workers("jobs")
    creator = f"c-replay-{uuid.uuid4().hex[:8]}"
    body = {"fanMessage": "are you there?"}
    job_ids = [servicebus.send_job("chat.suggest", body, creator_id=creator) for _ in range(JOBS)]

    for attempt, step in enumerate(LADDER):
        for job_id in job_ids:
            running.wait_for_invocation(FUNCTION, message_id=f"{job_id}:{attempt}", timeout=TIMEOUT)
        emulator_clock.advance(step)
    for job_id in job_ids:
        events.wait_for(job_id, "failed", timeout=TIMEOUT)
        # The `failed` event goes out before the host settles: a run is recorded as finished
        # only after its settlement, so wait for the run rather than peek straight away.
        [last] = running.wait_for_invocation(
            FUNCTION, message_id=f"{job_id}:{len(LADDER)}", timeout=TIMEOUT
        )
        assert last.settlement == "dead-lettered", last.summary()
    dead = [
        m
        for m in servicebus.peek_dead_letters(SUBSCRIPTION, max_count=1000)
        if (m.application_properties or {}).get(b"creatorId") == creator.encode()
        or (m.application_properties or {}).get("creatorId") == creator
    ]
    assert sorted(str(m.message_id) for m in dead) == sorted(f"{j}:{len(LADDER)}" for j in job_ids)
    assert {m.dead_letter_reason for m in dead} == {"AI_SERVER_ERROR"}

    ai_stub.behaviour.set_faults(FaultProfile())  # the AI is back
    before = {i.message_id for i in running.invocations()}
    runs_before = len(running.invocations())
    status = harness_cli(
        [
            "dlq",
            "replay",
            "--connection-string",
            stack.servicebus_connection,
            "--topic",
            stack.topic_jobs,
            "--subscription",
            SUBSCRIPTION,
            "--where",
            f"DeadLetterReason = 'AI_SERVER_ERROR' AND creatorId = '{creator}'",
        ]
    )
    assert status == 0

    for job_id in job_ids:
        # The copy's run (the message id's second) has written its outcome when it is
        # recorded as finished: read the job first, so a copy taken for a duplicate fails
        # here at once rather than after waiting for a `completed` event that never comes.
        running.wait_for_invocation(
            FUNCTION, message_id=f"{job_id}:{len(LADDER)}", count=2, timeout=TIMEOUT
        )
        job = db.job(job_id)
        assert job is not None and job["status"] == "completed", job
        events.wait_for(job_id, "completed", timeout=TIMEOUT)
        assert (job["status"], job["attempt"]) == ("completed", 0)
        assert [h["attempt"] for h in job["history"]] == [len(LADDER)]
        statuses = [e.status for e in events.for_job(job_id)]
        assert statuses.count("completed") == 1 and statuses.count("failed") == 1
        assert len(running.for_job(job_id)) == len(LADDER) + 2  # the ladder, then one re-run
    assert not [
        m
        for m in servicebus.peek_dead_letters(SUBSCRIPTION, max_count=1000)
        if any(job_id in str(m.message_id) for job_id in job_ids)
    ]
    rerun = running.invocations()[runs_before:]
    assert sorted(str(i.message_id) for i in rerun) == sorted(
        f"{j}:{len(LADDER)}" for j in job_ids
    ), "only the replayed copies ran"
    assert {i.message_id for i in rerun} <= before
