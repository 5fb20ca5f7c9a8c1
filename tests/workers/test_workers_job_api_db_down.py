"""Job API with its database or cache gone: 503 + Retry-After promptly, never a hang or a 500.

A stopped PostgreSQL refuses connections (a DBAPI OperationalError); a paused or wedged one
accepts and never answers, which no driver times out by itself. Both must reach the client
as 503 `Database unavailable` so it retries later (scenarios/test_container_faults.py does
it with real containers). A Redis cache that stops answering is skipped for the database.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from test_workers_job_api import CapturingSender
from workers_fakes import FakeClock

from workers.api import app as api_app
from workers.api.app import ApiDeps, create_app
from workers.common.db import make_engine
from workers.common.repository import JobRepository

CHAT = "/api/jobs/chat-suggestions"
BODY = {"fanMessage": "x", "creatorId": "1"}


class _StalledRepository(JobRepository):
    """A database server that accepted the connection and then stopped answering."""

    async def create_pending(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    async def get(self, job_id: str) -> Any:
        await asyncio.Event().wait()


class _BrokenRepository(JobRepository):
    """A database that answers with an error that is not about the connection."""

    async def create_pending(self, *args: Any, **kwargs: Any) -> None:
        raise IntegrityError("INSERT INTO jobs ...", {}, Exception("duplicate key"))


async def _client(deps: ApiDeps) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(deps))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


async def test_a_database_that_stops_answering_is_503_within_its_timeout(
    repo: JobRepository, clock: FakeClock
) -> None:
    sender = CapturingSender()
    deps = ApiDeps(
        repository=_StalledRepository(repo.engine),
        sender=sender,
        clock=clock,
        db_timeout_seconds=0.2,
        retry_after_seconds=2,
    )
    async with await _client(deps) as api:
        for method, path in (("POST", CHAT), ("GET", "/api/jobs/job_1")):
            started = time.monotonic()
            response = await api.request(method, path, json=BODY if method == "POST" else None)
            took = time.monotonic() - started
            assert response.status_code == 503, (method, response.text)
            assert response.headers["Retry-After"] == "2"
            assert response.json()["error"] == "Database unavailable"
            assert "did not answer within 0.2 s" in response.json()["details"][0]
            assert took < 2, f"{method} waited {took:.1f} s"
    assert sender.sent == [], "a job was sent that has no row"


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_database_connection_is_503_not_500(closed_port: int) -> None:
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{closed_port}/gone")
    sender = CapturingSender()
    deps = ApiDeps(repository=JobRepository(engine), sender=sender, db_timeout_seconds=5)
    try:
        async with await _client(deps) as api:
            for method, path in (("POST", CHAT), ("GET", "/api/jobs/job_1")):
                started = time.monotonic()
                response = await api.request(method, path, json=BODY if method == "POST" else None)
                assert response.status_code == 503, (method, response.text)
                assert response.headers["Retry-After"] == "1"
                body = response.json()
                assert body["error"] == "Database unavailable"
                assert body["details"][0].startswith("the database is unreachable: "), body
                assert str(closed_port) in body["details"][0], body
                assert time.monotonic() - started < 3
    finally:
        await engine.dispose()
    assert sender.sent == []


async def test_other_database_errors_stay_500(repo: JobRepository, clock: FakeClock) -> None:
    deps = ApiDeps(repository=_BrokenRepository(repo.engine), sender=CapturingSender())
    async with await _client(deps) as api:
        response = await api.post(CHAT, json=BODY)
    assert response.status_code == 500


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A TCP port that accepts connections (the kernel does) and never answers: a paused Redis."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@pytest.fixture
async def api_on_silent_redis(
    silent_redis: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ApiDeps]:
    from workers.common.settings import Role, load_settings

    monkeypatch.setattr(api_app, "REDIS_TIMEOUT_SECONDS", 0.2)
    env = {
        "SERVICEBUS_CONNECTION_SEND": "Endpoint=sb://localhost/;SharedAccessKeyName=a;"
        "SharedAccessKey=b",
        "TOPIC_JOBS": "huntaze-jobs",
        "DATABASE_URL": "sqlite://",
        "REDIS_URL": silent_redis,
    }
    deps = api_app.deps_from_settings(load_settings(Role.API, env))
    try:
        yield deps
    finally:
        await deps.aclose()


async def test_a_status_cache_that_stops_answering_falls_back_to_the_database(
    api_on_silent_redis: ApiDeps,
) -> None:
    from workers.common.contracts import JobMessage, JobType

    deps = api_on_silent_redis
    await deps.schema.ensure()
    job = JobMessage(
        job_id="job_cached",
        job_type=JobType.CHAT_SUGGEST,
        creator_id="1",
        payload={"fanMessage": "x"},
        attempt=0,
        created_at=deps.clock.now(),
        deadline_ms=90_000,
    )
    await deps.repository.create_pending(job, deps.clock.now())
    async with await _client(deps) as api:
        started = time.monotonic()
        response = await api.get("/api/jobs/job_cached")
        took = time.monotonic() - started
    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert response.headers["X-Cache"] == "miss"
    assert took < 2, f"the status read waited {took:.1f} s on the cache"
