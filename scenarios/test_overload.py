"""Overload family: past its capacity the job API says "busy" instead of hanging or failing.

A slow broker (every send to the jobs topic held 200 ms by the emulator's fault injection)
and one pooled sender that a request may wait for only 100 ms: a burst of creators posting
at once meets 503 + Retry-After. Each creator does what the load profile's `CreatorUser`
does (wait as told, post again). The scenario asserts: only 200 or 503 answers (no 500, no
reset connection, no request held for long), every creator's job is accepted in the end,
every accepted job completes, and the database holds exactly the accepted jobs (a shed
request leaves nothing behind).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from scenario_apps import AppDatabase

from harness.pytest_plugin import WorkerFactory
from harness.stack import Stack

CREATORS = 10
TRIES = 20
SLOW_SEND_MS = 200
BUSY_WAIT_S = 0.1
TIMEOUT = 60.0


@pytest.fixture
def busy_api(stack: Stack, db: AppDatabase) -> Iterator[str]:
    """The real job API with one sender it waits for at most BUSY_WAIT_S."""
    from standins._http_runner import ServerThread
    from workers.api.app import create_app, deps_from_settings
    from workers.common.settings import Role, load_settings

    env = {
        **stack.settings(),
        "API_SENDER_POOL_SIZE": "1",
        "API_BUSY_WAIT_SECONDS": str(BUSY_WAIT_S),
        "API_RETRY_AFTER_SECONDS": "1",
    }
    server = ServerThread(create_app(deps_from_settings(load_settings(Role.API, env=env))))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _creator(url: str, creator_id: str) -> dict[str, Any]:
    """Post until accepted, honouring Retry-After; every answer is kept for the asserts."""
    statuses: list[int] = []
    slowest = 0.0
    with httpx.Client(base_url=url, timeout=10) as api:
        for _ in range(TRIES):
            started = time.monotonic()
            response = api.post(
                "/api/jobs/chat-suggestions",
                json={"creatorId": creator_id, "fanMessage": "are you there?"},
            )
            slowest = max(slowest, time.monotonic() - started)
            statuses.append(response.status_code)
            if response.status_code == 503:
                time.sleep(float(response.headers["Retry-After"]))  # as told, as a client does
                continue
            return {"statuses": statuses, "slowest": slowest, "job": response.json()["jobId"]}
    return {"statuses": statuses, "slowest": slowest, "job": None}


def test_a_burst_past_capacity_is_shed_with_503_and_nothing_is_lost(
    busy_api: str,
    workers: WorkerFactory,
    db: AppDatabase,
    emulator_control: Any,
    stack: Stack,
) -> None:
    running = workers("jobs")
    emulator_control.add_fault("send", "latency", entity=stack.topic_jobs, latency_ms=SLOW_SEND_MS)
    tag = uuid.uuid4().hex[:8]
    creators = [f"creator-busy-{tag}-{n}" for n in range(CREATORS)]
    with ThreadPoolExecutor(CREATORS) as pool:
        results = list(pool.map(lambda c: _creator(busy_api, c), creators))
    emulator_control.clear_faults()

    statuses = [s for r in results for s in r["statuses"]]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) > 0, "the burst never went past capacity: the test proves nothing"
    assert all(r["job"] for r in results), [r["statuses"] for r in results]
    assert max(r["slowest"] for r in results) < 5, "a request waited instead of being shed"

    accepted = {r["job"] for r in results}
    rows = db.query("SELECT id FROM jobs WHERE creator_id LIKE :c", c=f"creator-busy-{tag}-%")
    assert {row["id"] for row in rows} == accepted, "a shed request left a job behind"
    running.wait_for_condition(
        lambda: all((db.job(j) or {}).get("status") == "completed" for j in accepted),
        function="ChatSuggestionsWorker",
        timeout=TIMEOUT,
        what="every accepted job to complete",
    )
