"""Mutants: the defects the scenarios exist to catch, put back into the code under test.

Each `Mutant` names one defect (the seed's, from the architecture notes, or the one a
scenario family is about), patches it into the running code (never into a file), and
lists the scenarios that must FAIL while it is in. `mutation/` runs each mutant's
scenarios in a fresh pytest process and asserts they fail; `make test-integration` shows
they pass on the real code.

Load as a plugin and pick one: `pytest -p scenarios.mutants --mutant backoff-index ...`.
Patches are applied at configure time, before the stack and the worker apps start, and
target attributes looked up at call time (class attributes, module functions called
through their module), so both in-process hosts and the in-process emulator see them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

Patch = Callable[[pytest.MonkeyPatch], None]


@dataclass(frozen=True)
class Mutant:
    name: str
    defect: str
    apply: Patch
    catches: tuple[str, ...]
    """pytest node ids (from the repository root) that must fail with this mutant in."""
    stack: str | None = None
    """The `--stack` its scenarios need (None: whatever the run has)."""


MUTANTS: dict[str, Mutant] = {}


def mutant(
    name: str, defect: str, *catches: str, stack: str | None = None
) -> Callable[[Patch], Patch]:
    def register(apply: Patch) -> Patch:
        if name in MUTANTS:
            raise ValueError(f"mutant {name!r} registered twice")
        MUTANTS[name] = Mutant(name, defect, apply, tuple(catches), stack)
        return apply

    return register


E2E = "scenarios/test_end_to_end.py"
LOCKS = "scenarios/test_lock_renewal_and_timeouts.py"
ROUTING = "scenarios/test_routing.py"
SECURITY = "scenarios/test_security.py"
NOTIFY = "scenarios/test_notifications.py"
RETRY = "scenarios/test_retry_backoff.py"
CONCURRENCY = "scenarios/test_concurrency.py"
BAD_INPUT = "scenarios/test_bad_input.py"
PREFETCH = "scenarios/test_prefetch_locks.py"
DEAD = "scenarios/test_dead_letters.py"
CLOCK = "scenarios/test_one_clock.py"
REPLAY = "scenarios/test_replay.py"
SCALE = "scenarios/test_scale_out.py"
CONTAINER_FAULTS = "scenarios/test_container_faults.py"
PG_GONE = (
    f"{CONTAINER_FAULTS}::test_postgres_gone_mid_jobs_api_answers_503_and_every_job_completes_after"
)


# -- the seed's defects ------------------------------------------------------------------------


@mutant(
    "backoff-index",
    "calculateBackoff indexes delays[attempt - 1] while the first message has attempt 0: "
    "the first retry waits the last step (Python) instead of the first",
    f"{E2E}::test_rate_limited_job_is_retried_on_the_emulator_clock",
    f"{RETRY}::test_the_whole_ladder_then_failed_and_dead_lettered[chat.suggest]",
)
def _backoff_index(mp: pytest.MonkeyPatch) -> None:
    from workers.common.retry import RetryPolicy

    mp.setattr(RetryPolicy, "backoff", lambda self, attempt: self.delays[attempt - 1])


@mutant(
    "soft-timeout-not-retried",
    "SOFT_TIMEOUT is thrown without a code, so shouldRetry never retries it",
    f"{LOCKS}::test_an_app_setting_shortening_renewal_shrinks_the_apps_run_budget_too",
)
def _soft_timeout(mp: pytest.MonkeyPatch) -> None:
    from workers.common.errors import ErrorCode, ProcessingError

    original = ProcessingError.transient

    def transient(self: ProcessingError) -> bool:
        return self.code is not ErrorCode.SOFT_TIMEOUT and original.fget(self)  # type: ignore[attr-defined]

    mp.setattr(ProcessingError, "transient", property(transient))


@mutant(
    "never-settles",
    "autoCompleteMessages is false and the workers never settle: every message comes back "
    "when its lock expires",
    f"{E2E}::test_job_flows_from_api_to_notifications[chat-suggestions]",
)
def _never_settles(mp: pytest.MonkeyPatch) -> None:
    from workers.common.messaging import MessageActionsSettler

    async def complete(self: Any) -> None:
        return None

    mp.setattr(MessageActionsSettler, "complete", complete)


@mutant(
    "failed-then-rethrow",
    "chat/content mark the job failed, publish `failed`, then rethrow: Service Bus "
    "redelivers and a later attempt may flip the status",
    f"{E2E}::test_manual_settlement_dead_letters_an_invalid_payload_for_real",
)
def _failed_then_rethrow(mp: pytest.MonkeyPatch) -> None:
    from workers.common.processor import JobProcessor

    async def process(self: Any, received: Any, settler: Any) -> Any:
        class Rethrowing:
            async def complete(self) -> None:
                await settler.complete()

            async def abandon(self) -> None:
                await settler.abandon()

            async def dead_letter(self, reason: str, description: str) -> None:
                raise RuntimeError(f"rethrown after marking failed: {reason}")

        return await original(self, received, Rethrowing())

    original = JobProcessor.process
    mp.setattr(JobProcessor, "process", process)


@mutant(
    "video-run-outlives-renewal",
    "video: lock PT2M, renewal capped at 5 min, timeout 10 min: a long run outlives the "
    "renewal window, loses its lock and is processed twice",
    f"{LOCKS}::test_an_app_setting_shortening_renewal_shrinks_the_apps_run_budget_too",
)
def _video_budget(mp: pytest.MonkeyPatch) -> None:
    from workers.common.runtime import HostProfile

    mp.setattr(HostProfile, "run_budget", property(lambda self: self.function_timeout))


@mutant(
    "dlq-monitor-receives",
    "the DLQ monitor receives (locks, and bumps delivery counts of) dead letters instead "
    "of peeking them",
    f"{E2E}::test_dlq_monitor_reports_the_backlog_over_the_management_api",
)
def _dlq_receives(mp: pytest.MonkeyPatch) -> None:
    from workers.common import dlq

    def peek(self: Any, topic: str, subscription: str, max_count: int) -> list[dict[str, Any]]:
        from azure.servicebus import ServiceBusSubQueue

        receiver = self.client.get_subscription_receiver(
            topic_name=topic,
            subscription_name=subscription,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER,
        )
        with receiver:
            messages = receiver.receive_messages(max_message_count=max_count, max_wait_time=2)
            for message in messages:
                receiver.abandon_message(message)
        return [dlq.describe_dead_letter(m) for m in messages]

    [client_class] = [c for c in vars(dlq).values() if isinstance(c, type) and hasattr(c, "_peek")]
    mp.setattr(client_class, "_peek", peek)


@mutant(
    "email-client-missing",
    "the email worker uses a database client it never imports: every mail fails",
    f"{NOTIFY}::test_a_broken_channel_does_not_hold_up_the_others[webhook-500]",
)
def _email_client(mp: pytest.MonkeyPatch) -> None:
    from workers.common.notifications import EmailNotifier

    async def handle(self: Any, body: Any, properties: Any = None) -> bool:
        raise NameError("name 'db' is not defined")

    mp.setattr(EmailNotifier, "handle", handle)


@mutant(
    "setup-scripts-disagree",
    "the deploy script's loop gives every job subscription MaxDeliveryCount 5 and a PT2M "
    "lock instead of the per-subscription 3/5/5/8",
    f"{DEAD}::test_a_crash_loop_dead_letters_after_max_deliveries_and_the_job_fails[video-analysis]",
    f"{DEAD}::test_a_crash_loop_dead_letters_after_max_deliveries_and_the_job_fails[content-analysis]",
)
def _one_loop(mp: pytest.MonkeyPatch) -> None:
    def change(data: dict[str, Any]) -> None:
        for subscription in _job_subscriptions(data):
            subscription["Properties"].update(MaxDeliveryCount=5, LockDuration="PT2M")

    _mutated_config(mp, change)


# -- the families' own defects ---------------------------------------------------------------


def _mutated_config(mp: pytest.MonkeyPatch, change: Callable[[dict[str, Any]], None]) -> None:
    """Serve the stack a changed copy of config/Config.json."""
    from emulator.servicebus import PROJECT_CONFIG
    from harness.stack import stack as stack_module

    data = json.loads(Path(PROJECT_CONFIG).read_text())
    change(data)
    folder = Path(tempfile.mkdtemp(prefix="sbh-mutant-"))
    path = folder / "Config.json"
    path.write_text(json.dumps(data))
    mp.setattr(stack_module, "_project_config", lambda: path)


def _job_subscriptions(data: dict[str, Any]) -> list[dict[str, Any]]:
    [namespace] = data["UserConfig"]["Namespaces"]
    [jobs] = [t for t in namespace["Topics"] if t["Name"] == "huntaze-jobs"]
    return list(jobs["Subscriptions"])


@mutant(
    "default-rule-kept",
    "a job subscription keeps its $Default rule beside the jobType filter: every worker "
    "receives every job",
    f"{ROUTING}::test_each_job_type_reaches_exactly_its_subscription",
    f"{ROUTING}::test_job_subscriptions_have_only_their_job_type_rule",
)
def _default_rule(mp: pytest.MonkeyPatch) -> None:
    def change(data: dict[str, Any]) -> None:
        chat = next(s for s in _job_subscriptions(data) if s["Name"] == "chat-suggestions")
        chat["Rules"].append(
            {
                "Name": "$Default",
                "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": "1=1"}},
            }
        )

    _mutated_config(mp, change)


@mutant(
    "unrouted-dropped",
    "no catch-all subscription: a message with an unknown jobType matches nothing and vanishes",
    f"{ROUTING}::test_a_message_no_worker_takes_is_kept_where_operators_see_it[misspelt]",
)
def _unrouted_dropped(mp: pytest.MonkeyPatch) -> None:
    def change(data: dict[str, Any]) -> None:
        unrouted = next(s for s in _job_subscriptions(data) if s["Name"] == "unrouted")
        unrouted["Rules"][0]["Properties"]["SqlFilter"]["SqlExpression"] = "1=0"

    _mutated_config(mp, change)


@mutant(
    "rights-not-checked",
    "the broker grants every right to any valid token: the send-only key can receive",
    f"{SECURITY}::test_the_send_only_policy_sends_but_cannot_receive",
)
def _rights(mp: pytest.MonkeyPatch) -> None:
    from emulator.servicebus.amqp.authorisation import TokenRights
    from emulator.servicebus.topology import AccessRights

    original = TokenRights.rights_for

    def rights_for(self: TokenRights, entity_path: str) -> AccessRights | None:
        granted = original(self, entity_path)
        return None if granted is None else AccessRights.LISTEN | AccessRights.SEND

    mp.setattr(TokenRights, "rights_for", rights_for)


@mutant(
    "channels-share-one-slot",
    "the notify host runs its four functions on one slot: a hanging webhook holds up "
    "SignalR, email and metrics",
    f"{NOTIFY}::test_a_broken_channel_does_not_hold_up_the_others[webhook-hangs]",
)
def _one_slot(mp: pytest.MonkeyPatch) -> None:
    import asyncio

    from harness.host.host import FunctionsHost

    original = FunctionsHost._start_async

    async def start(self: FunctionsHost) -> None:
        await original(self)
        shared = asyncio.Semaphore(1)  # before the pumps first run: they read it from here
        for trigger in self._triggers.values():
            trigger.slots = shared

    mp.setattr(FunctionsHost, "_start_async", start)


@mutant(
    "retry-after-ignored",
    "a 429's Retry-After is ignored: the retry comes back sooner than the server asked",
    f"{RETRY}::test_a_longer_retry_after_wins_over_the_step",
)
def _retry_after(mp: pytest.MonkeyPatch) -> None:
    from workers.common.errors import ProcessingError

    original = ProcessingError.__init__

    def init(self: ProcessingError, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "retry_after": None})

    mp.setattr(ProcessingError, "__init__", init)


@mutant(
    "permanent-retried",
    "every failure is treated as transient: a bad request is retried instead of dead-lettered",
    f"{RETRY}::test_a_permanent_code_dead_letters_at_once[http-400]",
    f"{RETRY}::test_a_permanent_code_dead_letters_at_once[bad-output]",
)
def _permanent_retried(mp: pytest.MonkeyPatch) -> None:
    from workers.common.errors import ProcessingError

    mp.setattr(ProcessingError, "transient", property(lambda self: True))


@mutant(
    "ladder-one-step-short",
    "the video ladder loses its last step: the job fails an attempt early",
    f"{RETRY}::test_the_whole_ladder_then_failed_and_dead_lettered[video.analysis]",
)
def _ladder_short(mp: pytest.MonkeyPatch) -> None:
    from workers.common.retry import VIDEO_POLICY, RetryPolicy

    def max_retries(self: RetryPolicy) -> int:
        return len(self.delays) - (1 if self.delays == VIDEO_POLICY.delays else 0)

    mp.setattr(RetryPolicy, "max_retries", property(max_retries))


@mutant(
    "concurrency-overrun",
    "the host hands out one slot more than maxConcurrentCalls",
    f"{CONCURRENCY}::test_job_hosts_never_run_more_than_max_concurrent_calls[video-2]",
    f"{CONCURRENCY}::test_each_notify_function_runs_fifty_at_once",
)
def _overrun(mp: pytest.MonkeyPatch) -> None:
    import asyncio

    from harness.host.host import FunctionsHost

    original = FunctionsHost._start_async

    async def start(self: FunctionsHost) -> None:
        await original(self)
        for trigger in self._triggers.values():
            trigger.slots = asyncio.Semaphore(self.options.max_concurrent_calls + 1)

    mp.setattr(FunctionsHost, "_start_async", start)


@mutant(
    "idempotency-key-ignored",
    "the job API ignores Idempotency-Key: a retried POST makes a second job",
    f"{BAD_INPUT}::test_a_repeated_post_with_the_same_idempotency_key_is_the_same_job",
)
def _idempotency_ignored(mp: pytest.MonkeyPatch) -> None:
    from workers.api import app

    mp.setattr(app, "idempotency_key", lambda header: None)


@mutant(
    "no-run-lease",
    "workers take no run lease and keep no finished record: a copy redelivered after its "
    "lock lapsed in the prefetch buffer runs the job again",
    f"{PREFETCH}::test_locks_that_lapse_in_the_prefetch_buffer_cost_no_double_run_and_no_dead_letter",
)
def _no_lease(mp: pytest.MonkeyPatch) -> None:
    from workers.common.idempotency import IdempotencyGuard

    async def finished_status(self: Any, job_id: str) -> None:
        return None

    async def acquire(self: Any, job_id: str, token: str, ttl: float) -> bool:
        return True

    mp.setattr(IdempotencyGuard, "finished_status", finished_status)
    mp.setattr(IdempotencyGuard, "acquire", acquire)


@mutant(
    "dead-letters-never-swept",
    "nothing watches the dead-letter queues: a job the broker dead-lettered stays pending",
    f"{DEAD}::test_a_crash_loop_dead_letters_after_max_deliveries_and_the_job_fails[chat-suggestions]",
    f"{DEAD}::test_a_message_past_its_ttl_expires_and_the_job_times_out[video-analysis]",
)
def _never_swept(mp: pytest.MonkeyPatch) -> None:
    from workers.common.deadletters import DeadLetterSweeper

    async def sweep_page(self: Any, page: Any, report: Any) -> None:
        return None

    mp.setattr(DeadLetterSweeper, "_handle_page", sweep_page)


@mutant(
    "apps-on-wall-clock",
    "the apps and the job API tell time by the wall clock while the broker's is moved (no "
    "WORKERS_CLOCK_URL): stamps and retry schedules land hours before broker-now",
    f"{CLOCK}::test_retries_are_scheduled_from_broker_now_after_the_clock_moved_hours_ahead",
)
def _apps_on_wall_clock(mp: pytest.MonkeyPatch) -> None:
    from harness.stack.stack import Stack

    settings = Stack.settings

    def without_clock(self: Any) -> dict[str, str]:
        values = settings(self)
        values.pop("WORKERS_CLOCK_URL", None)
        return values

    mp.setattr(Stack, "settings", without_clock)


@mutant(
    "replay-marker-ignored",
    "the processor ignores x-replay-of: a replayed copy of a failed job is completed as a "
    "duplicate, so after an AI outage the jobs stay failed however often they are replayed",
    f"{REPLAY}::test_replay_after_an_ai_outage_runs_the_failed_jobs_again",
)
def _replay_ignored(mp: pytest.MonkeyPatch) -> None:
    from workers.common import processor

    mp.setattr(processor, "replay_marker", lambda properties: None)


@mutant(
    "broken-receiver-reused",
    "the host keeps a receiver after its link broke and lets concurrent settles share it: "
    "their $management fallbacks and the next receive reopen the SDK handler at once, the "
    "receiver comes back empty for ever and the host stops consuming (issue 11's stall)",
    # scenarios/test_faults.py meets this defect too, but at its load not every run stalls;
    # the host test drives one host hard enough that it always does.
    "tests/harness/test_host_faults.py::"
    "test_every_message_ends_once_under_dropped_connections_and_lost_locks",
)
def _broken_receiver_reused(mp: pytest.MonkeyPatch) -> None:
    import contextlib

    from harness.host.receivers import LiveReceiver

    init = LiveReceiver.__init__

    def unguarded(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.settle_lock = contextlib.nullcontext()

    mp.setattr(LiveReceiver, "__init__", unguarded)
    mp.setattr(LiveReceiver, "mark_broken", lambda self, reason: None)


@mutant(
    "api-waits-when-busy",
    "the job API waits as long as it takes for a pooled sender (as the seed's API waited 30 s "
    "on its database pool): past capacity requests hang instead of being shed with 503",
    "scenarios/test_overload.py::test_a_burst_past_capacity_is_shed_with_503_and_nothing_is_lost",
)
def _api_waits_when_busy(mp: pytest.MonkeyPatch) -> None:
    from workers.api.app import ServiceBusJobSender

    init = ServiceBusJobSender.__init__

    def unbounded(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.busy_wait = None

    mp.setattr(ServiceBusJobSender, "__init__", unbounded)


# -- container faults (need --stack containers) ---------------------------------------------


@mutant(
    "api-waits-on-a-dead-database",
    "the job API awaits the database without a bound: with PostgreSQL paused (accepting, never "
    "answering) every request hangs instead of answering 503",
    f"{PG_GONE}[paused]",
    stack="containers",
)
def _api_waits_on_a_dead_database(mp: pytest.MonkeyPatch) -> None:
    from workers.api import app

    async def unbounded(step: Any, seconds: float) -> Any:
        return await step

    mp.setattr(app, "_bounded", unbounded)


@mutant(
    "api-database-errors-are-500",
    "a refused database connection is an unhandled error: the job API answers 500 while "
    "PostgreSQL is stopped, and clients do not know to retry",
    f"{PG_GONE}[stopped]",
    stack="containers",
)
def _api_database_errors_are_500(mp: pytest.MonkeyPatch) -> None:
    from workers.api import app

    mp.setattr(app, "_is_connection_error", lambda exc: False)


@mutant(
    "lease-needs-redis",
    "the run lease is taken without a fallback: with Redis stopped every delivery fails and is "
    "abandoned until it is dead-lettered, though Redis is only an accelerator",
    f"{CONTAINER_FAULTS}::"
    "test_redis_stopped_mid_jobs_jobs_still_complete_and_status_reads_go_to_postgres",
    stack="containers",
)
def _lease_needs_redis(mp: pytest.MonkeyPatch) -> None:
    from workers.common.idempotency import IdempotencyGuard

    async def acquire(self: IdempotencyGuard, job_id: str, token: str, ttl: float) -> bool:
        return await self.store.set(self._lease_key(job_id), token, ttl, only_new=True)

    mp.setattr(IdempotencyGuard, "acquire", acquire)


@mutant(
    "sweeper-ends-ended-jobs",
    "the dead-letter sweeper ends every job it finds in a dead-letter queue, open or not (no "
    "status check, an unconditional UPDATE): two instances' sweepers meeting on one dead letter "
    "end the job twice and publish two final events",
    f"{SCALE}::test_two_instances_sweeping_one_dead_letter_end_the_job_once",
)
def _sweeper_ends_ended_jobs(mp: pytest.MonkeyPatch) -> None:
    from sqlalchemy import select, update

    from workers.common import repository
    from workers.common.db import Job

    async def statuses(self: Any, job_ids: Any) -> dict[str, Any]:
        return {}

    async def end_any_job(
        self: Any,
        job_id: str,
        status: Any,
        error: Any,
        now: Any,
        *,
        max_attempt: int | None = None,
        seed: Any = None,
        before_commit: Any = None,
    ) -> Any:
        async with self.engine.begin() as conn:
            if seed is not None:
                await conn.execute(self._insert_if_missing(seed, now))
            await conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=status.value, error=error.to_wire(), updated_at=now, finished_at=now)
            )
            row = (await conn.execute(select(Job).where(Job.id == job_id))).one()
            record = repository._record(row)
            if before_commit is not None:
                await before_commit(record)
        return record

    mp.setattr(repository.JobRepository, "statuses", statuses)
    mp.setattr(repository.JobRepository, "end_open_job", end_any_job)


# -- the plugin ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mutant",
        default=None,
        choices=sorted(MUTANTS),
        help="put one known defect back into the code under test (see scenarios/mutants.py)",
    )


_patch: pytest.MonkeyPatch | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _patch
    name = config.getoption("--mutant")
    if name:
        _patch = pytest.MonkeyPatch()
        MUTANTS[name].apply(_patch)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _patch
    if _patch is not None:
        _patch.undo()
        _patch = None


def pytest_report_header(config: pytest.Config) -> str | None:
    name = config.getoption("--mutant")
    return f"MUTANT {name}: {MUTANTS[name].defect}" if name else None
