"""Lock renewal and functionTimeout, observed with the real worker apps under the local host.

The AI stand-in makes one call slow, so a run outlives the subscription's lock (shortened to
two seconds for the test through the administration client) or the host's limits.

The worker apps size their runs to fit inside the host's limits, reading the same host.json
and `AzureFunctionsJobHost__` app settings the host does — so with an app setting both
change together and the app stays inside them (last test). To watch the host enforce a limit
the app did not plan for — the seed's video defect in miniature — the limit is given to the
host alone (`host_only_settings`), and what must keep the job correct then is the app's
idempotency.

Real time is spent here only on the host's renewal timer and the lock it races (a few
seconds); the ten-minute lease wait and retry backoff are skipped by moving the clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from scenario_apps import AppDatabase, JobServiceBus

from harness.pytest_plugin import Events, WorkerFactory
from standins.ai import AIServer, Fault

LOCK = timedelta(seconds=2)
# The SDK reports the AMQP header's delivery-count: prior attempts, so 0 on first delivery.
TIMEOUT = 30.0
VIDEO_MODEL = "phi-4-multimodal"
RENEWAL_SETTING = "AzureFunctionsJobHost__extensions__serviceBus__maxAutoLockRenewalDuration"
TIMEOUT_SETTING = "AzureFunctionsJobHost__functionTimeout"


def _video_job(servicebus: JobServiceBus, ai: AIServer, creator: str) -> str:
    return servicebus.send_job(
        "video.analysis",
        {"videoUrl": ai.media_url("clip.mp4"), "videoId": "v-lock"},
        creator_id=creator,
    )


def _completed_events(events: Events, job_id: str) -> list[Any]:
    return [e for e in events.for_job(job_id) if e.status == "completed"]


def test_long_run_keeps_its_lock_through_renewal(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
) -> None:
    """A run three times longer than the lock: the host renews it, the run settles its own
    message once, and nothing is redelivered."""
    ai_stub.behaviour.enqueue(Fault.slow(6.0), model=VIDEO_MODEL)
    with servicebus.subscription_changed("video-analysis", lock_duration=LOCK):
        running = workers("video")
        job_id = _video_job(servicebus, ai_stub, "creator-renew")
        events.wait_for(job_id, "completed", timeout=TIMEOUT)
        [run] = running.wait_for_invocation("VideoAnalysisWorker", message_id=f"{job_id}:0")

    assert run.duration is not None and run.duration > 2 * LOCK.total_seconds()
    assert run.lock_renewals >= 2, run.summary()
    assert run.renewal_stopped is None
    assert (run.delivery_count, run.settlement, run.settled_by) == (0, "completed", "function")
    assert run.settlement_error is None
    assert running.for_job(job_id, "VideoAnalysisWorker") == [run]
    assert db.job(job_id)["status"] == "completed"  # type: ignore[index]


def test_run_past_max_auto_lock_renewal_loses_its_lock_and_the_redelivery_is_idempotent(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    """The host renews for three seconds only; the run needs seven. The lock lapses, the
    broker redelivers, and the app's run lease turns the redelivery into a deferred copy
    that, once the lease would have lapsed, finds the job finished: the AI is called once,
    the job completes once, and nothing is dead-lettered."""
    ai_stub.behaviour.enqueue(Fault.slow(7.0), model=VIDEO_MODEL)
    with servicebus.subscription_changed("video-analysis", lock_duration=LOCK):
        running = workers("video", host_only_settings={RENEWAL_SETTING: "00:00:03"})
        assert running["video"].options.max_auto_lock_renewal_duration == 3
        job_id = _video_job(servicebus, ai_stub, "creator-lost-lock")

        # The redelivery arrives while the first run still works; it is deferred, not run.
        [redelivered] = running.wait_for_invocation(
            "VideoAnalysisWorker",
            where=lambda i: (i.message_id or "").startswith(job_id) and i.delivery_count == 1,
            timeout=TIMEOUT,
        )
        # The first run finishes the job but can no longer settle the message it lost.
        [first] = running.wait_for_invocation(
            "VideoAnalysisWorker",
            where=lambda i: (i.message_id or "").startswith(job_id) and i.delivery_count == 0,
            timeout=TIMEOUT,
        )
        events.wait_for(job_id, "completed", timeout=TIMEOUT)

        # The deferred copy is due when the first run's lease (functionTimeout + margin)
        # would have expired: ten minutes on, which the emulator's clock skips.
        emulator_clock.advance(11 * 60)
        running.wait_for_invocation(
            "VideoAnalysisWorker",
            where=lambda i: (
                (i.message_id or "").startswith(job_id)
                and i.sequence_number != first.sequence_number
            ),
            timeout=TIMEOUT,
        )

    assert first.renewal_stopped == "maxAutoLockRenewalDuration", first.summary()
    assert first.lock_renewals >= 1
    # it tried to complete, then (the processor's fallback) to abandon: both refused
    assert first.settlement is None and "MessageLockLostError" in (first.settlement_error or "")
    assert redelivered.started_at < first.ended_at  # type: ignore[operator]
    assert (redelivered.settlement, redelivered.settled_by) == ("completed", "function")

    runs = running.for_job(job_id, "VideoAnalysisWorker")
    assert len(runs) == 3, [r.summary() for r in runs]
    copy = runs[-1]
    assert (copy.delivery_count, copy.settlement) == (0, "completed")

    assert len(ai_stub.behaviour.calls_for(VIDEO_MODEL)) == 1
    assert len(_completed_events(events, job_id)) == 1
    job = db.job(job_id)
    assert job is not None and (job["status"], job["attempt"]) == ("completed", 0)
    assert not [m for m in servicebus.peek_dead_letters("video-analysis") if job_id in str(m)]


def test_function_timeout_cancels_the_run_and_the_host_abandons_it(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
) -> None:
    """functionTimeout of one second against a four-second AI call: the host cancels the
    async function, abandons the message (redelivered with delivery count 1), and the second
    delivery completes the job."""
    ai_stub.behaviour.enqueue(Fault.slow(4.0), model="phi4")
    running = workers("jobs", host_only_settings={TIMEOUT_SETTING: "00:00:01"})
    assert running["jobs"].options.function_timeout == 1
    job_id = servicebus.send_job("chat.suggest", {"fanMessage": "hi"}, creator_id="c-timeout")

    events.wait_for(job_id, "completed", timeout=TIMEOUT)
    first, second = running.wait_for_invocation(
        "ChatSuggestionsWorker", message_id=f"{job_id}:0", count=2, timeout=TIMEOUT
    )

    assert (first.outcome, first.settlement, first.settled_by) == ("timeout", "abandoned", "host")
    assert "functionTimeout" in (first.error or "")
    assert first.duration is not None and first.duration < 4.0  # cancelled, not waited out
    assert (second.delivery_count, second.outcome) == (1, "succeeded")
    assert (second.settlement, second.settled_by) == ("completed", "function")
    # Both deliveries asked the AI: the cancelled call (answered after the client left) and
    # the one that produced the result.
    assert len(ai_stub.behaviour.wait_for_calls(2, model="phi4", timeout=TIMEOUT)) == 2
    assert len(_completed_events(events, job_id)) == 1
    assert db.job(job_id)["status"] == "completed"  # type: ignore[index]


def test_an_app_setting_shortening_renewal_shrinks_the_apps_run_budget_too(
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
    db: AppDatabase,
    ai_stub: AIServer,
    emulator_clock: Any,
) -> None:
    """The same three-second renewal window, set as an app setting: the video app reads it
    too, cuts the slow run at its budget (SOFT_TIMEOUT, retried after the video backoff)
    and settles while it still holds the lock. No lock is lost, nothing runs twice at once."""
    ai_stub.behaviour.enqueue(Fault.slow(7.0), model=VIDEO_MODEL)
    with servicebus.subscription_changed("video-analysis", lock_duration=LOCK):
        running = workers("video", settings={RENEWAL_SETTING: "00:00:03"})
        job_id = _video_job(servicebus, ai_stub, "creator-budget")
        [first] = running.wait_for_invocation(
            "VideoAnalysisWorker", message_id=f"{job_id}:0", timeout=TIMEOUT
        )
        assert first.duration is not None and first.duration < 3  # inside the window
        assert (first.settlement, first.settlement_error) == ("completed", None)
        assert first.renewal_stopped is None
        job = db.job(job_id)
        assert job is not None and job["error"]["code"] == "SOFT_TIMEOUT"

        emulator_clock.advance(15)  # the video ladder's first step
        running.wait_for_invocation("VideoAnalysisWorker", message_id=f"{job_id}:1")
        events.wait_for(job_id, "completed", timeout=TIMEOUT)

    runs = running.for_job(job_id, "VideoAnalysisWorker")
    assert [(r.message_id, r.delivery_count) for r in runs] == [
        (f"{job_id}:0", 0),
        (f"{job_id}:1", 0),
    ]
    assert db.job(job_id)["status"] == "completed"  # type: ignore[index]
