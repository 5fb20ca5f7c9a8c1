"""Container faults family: PostgreSQL or Redis paused or stopped in the middle of jobs.

Needs the containers stack (`--stack containers`, `make test-integration-containers`): the
scenarios pause (`docker pause`: the server accepts connections and never answers) or stop
(`docker stop`: connections are refused) the stack's own PostgreSQL or Redis container while
the jobs app works through a wave, then bring it back. They assert what a user of the system
relies on:

* the job API answers 503 `Database unavailable` with `Retry-After`, within a few seconds,
  while PostgreSQL is gone, instead of holding the request open (paused) or answering 500
  (stopped), and accepts the same request again once it is back;
* the workers wait or abandon and retry, and nothing is lost: every accepted job completes,
  with exactly one terminal event, and a refused request left no job row;
* Redis is an accelerator: stopped, jobs still complete and statuses are read from PostgreSQL.

On any other stack they skip, saying why. The defects are put back by the mutants
`api-waits-on-a-dead-database` and `api-database-errors-are-500` (scenarios/mutants.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from scenario_apps import AppDatabase

from harness.pytest_plugin import Events, WorkerFactory
from harness.stack import Stack
from harness.stack.containers import ServiceContainer, service_container
from standins.ai import AIServer, Latency

WAVE = 6  # jobs in flight when the fault starts
DB_TIMEOUT_S = 1.0  # the API's bound on a database step
PROMPT_S = 4.0  # a 503 must come within this (the bound plus slack for a loaded machine)
RECOVERY_S = 60.0
CHAT = "/api/jobs/chat-suggestions"


@dataclass(frozen=True)
class StackContainers:
    postgres: ServiceContainer
    redis: ServiceContainer


@pytest.fixture
def containers(stack: Stack) -> Iterator[StackContainers]:
    """The stack's PostgreSQL and Redis containers; both running again after the test."""
    if stack.services != "containers":
        pytest.skip(
            "needs --stack containers (PostgreSQL and Redis in containers, to pause and stop "
            f"them): this run's services are {stack.services} ({stack.reason})"
        )
    found = StackContainers(
        service_container(stack.server_database_url), service_container(stack.redis_url)
    )
    try:
        yield found
    finally:
        found.postgres.ensure_running()
        found.redis.ensure_running()


@pytest.fixture
def api(stack: Stack, db: AppDatabase) -> Iterator[httpx.Client]:
    """The real job API with a short database bound (API_DB_TIMEOUT_SECONDS)."""
    from standins._http_runner import ServerThread
    from workers.api.app import create_app, deps_from_settings
    from workers.common.settings import Role, load_settings

    env = {**stack.settings(), "API_DB_TIMEOUT_SECONDS": str(DB_TIMEOUT_S)}
    server = ServerThread(create_app(deps_from_settings(load_settings(Role.API, env=env))))
    server.start()
    try:
        # The client's own timeout is generous: a hanging API must fail the asserts on
        # time taken, not be cut short into a transport error.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def _post(api: httpx.Client, creator: str) -> httpx.Response:
    return api.post(CHAT, json={"creatorId": creator, "fanMessage": "still there?"})


def _wave(api: httpx.Client, creator: str) -> list[str]:
    ids = []
    for _ in range(WAVE):
        response = _post(api, creator)
        assert response.status_code == 200, response.text
        ids.append(str(response.json()["jobId"]))
    return ids


def _post_as_a_client_does(api: httpx.Client, creator: str) -> str:
    """POST until accepted, waiting Retry-After after each 503 (what CreatorUser does),
    within RECOVERY_S; only 200 or 503 may come back."""
    deadline = time.monotonic() + RECOVERY_S
    while True:
        response = _post(api, creator)
        if response.status_code == 200:
            return str(response.json()["jobId"])
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, f"still refused after {RECOVERY_S} s: {response.text}"
        time.sleep(float(response.headers["Retry-After"]))  # as told, as a client does


def _refused_promptly(api: httpx.Client, creator: str, cause: str) -> None:
    """A POST and a status read both answer 503 Database unavailable within PROMPT_S."""
    for method, path in (("POST", CHAT), ("GET", "/api/jobs/job_0_unknown")):
        started = time.monotonic()
        response = _post(api, creator) if method == "POST" else api.get(path)
        took = time.monotonic() - started
        assert took < PROMPT_S, f"{method} {path} took {took:.1f} s with PostgreSQL {cause}"
        assert response.status_code == 503, (method, response.status_code, response.text)
        assert response.headers.get("Retry-After"), response.headers
        body = response.json()
        assert body["error"] == "Database unavailable", body


def _all_completed_once(
    running: WorkerFactory, db: AppDatabase, events: Events, accepted: list[str], creator: str
) -> None:
    """Every accepted job completes, with one terminal event; no other row for the creator."""
    running.wait_for_condition(
        lambda: all((db.job(j) or {}).get("status") == "completed" for j in accepted),
        function="ChatSuggestionsWorker",
        timeout=RECOVERY_S,
        what="every accepted job to complete after the container came back",
    )
    for job_id in accepted:
        events.wait_for(job_id, "completed", timeout=RECOVERY_S)
    terminal = {
        job_id: [
            e.status
            for e in events.all
            if e.event_type == "job.update"
            and e.job_id == job_id
            and e.status in ("completed", "failed", "timeout")
        ]
        for job_id in accepted
    }
    assert all(statuses == ["completed"] for statuses in terminal.values()), terminal
    rows = db.query("SELECT id FROM jobs WHERE creator_id = :c", c=creator)
    assert {row["id"] for row in rows} == set(accepted), "a refused request left a job row"


@pytest.mark.parametrize("fault", ["paused", "stopped"])
def test_postgres_gone_mid_jobs_api_answers_503_and_every_job_completes_after(
    fault: str,
    containers: StackContainers,
    api: httpx.Client,
    workers: WorkerFactory,
    db: AppDatabase,
    events: Events,
    ai_stub: AIServer,
) -> None:
    ai_stub.behaviour.latency = Latency.fixed(0.3)  # jobs are still running at the fault
    running = workers("jobs")
    creator = f"c-pg-{fault}-{uuid.uuid4().hex[:8]}"
    accepted = _wave(api, creator)

    postgres = containers.postgres
    postgres.pause() if fault == "paused" else postgres.stop(grace_seconds=2)
    try:
        _refused_promptly(api, creator, fault)
    finally:
        postgres.unpause() if fault == "paused" else postgres.start()

    # The client retries as told (Retry-After) while PostgreSQL starts: accepted again.
    accepted.append(_post_as_a_client_does(api, creator))
    _all_completed_once(running, db, events, accepted, creator)


def test_redis_stopped_mid_jobs_jobs_still_complete_and_status_reads_go_to_postgres(
    containers: StackContainers,
    api: httpx.Client,
    workers: WorkerFactory,
    db: AppDatabase,
    events: Events,
    ai_stub: AIServer,
) -> None:
    ai_stub.behaviour.latency = Latency.fixed(0.3)
    running = workers("jobs")
    creator = f"c-redis-{uuid.uuid4().hex[:8]}"
    accepted = _wave(api, creator)
    containers.redis.stop(grace_seconds=2)
    try:
        accepted += _wave(api, creator)  # posting needs no Redis
        _all_completed_once(running, db, events, accepted, creator)
        started = time.monotonic()
        status = api.get(f"/api/jobs/{accepted[-1]}")
        assert status.status_code == 200 and status.json()["status"] == "completed"
        assert status.headers["X-Cache"] == "miss", "read from a Redis that is stopped?"
        assert time.monotonic() - started < PROMPT_S
    finally:
        containers.redis.start()
