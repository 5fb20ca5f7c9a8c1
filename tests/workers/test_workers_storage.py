"""Repository on SQLite and on the local PostgreSQL; the guard on the local Redis.

PostgreSQL tests use a database created for this session and dropped afterwards; Redis
tests use a unique key prefix. Both skip when the server is not reachable.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from workers_fakes import T0, FakeClock, encode, job_body

from workers.common.contracts import JobError, JobMessage, JobStatus, JobType, parse_job_message
from workers.common.db import async_database_url, create_schema, make_engine
from workers.common.idempotency import IdempotencyGuard, MemoryStore, RedisStore
from workers.common.repository import CreatorRecord, JobRepository, StartResult

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"workers_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_repo(request: pytest.FixtureRequest) -> AsyncIterator[JobRepository]:
    if request.param == "sqlite":
        engine = make_engine("sqlite://")
    else:
        engine = make_engine(request.getfixturevalue("pg_database"))
    await create_schema(engine)
    repository = JobRepository(engine)
    yield repository
    await engine.dispose()


def _job(attempt: int = 0, job_id: str | None = None) -> JobMessage:
    return parse_job_message(
        encode(job_body(JobType.CHAT_SUGGEST, attempt=attempt, job_id=job_id or "job_1"))
    )


def test_workers_database_urls_map_to_async_drivers() -> None:
    assert async_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert async_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert async_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"


async def test_workers_status_transitions_never_regress(any_repo: JobRepository) -> None:
    job_id = f"job_{uuid.uuid4().hex[:8]}"
    job = _job(job_id=job_id)
    await any_repo.create_pending(job, T0)
    record = await any_repo.get(job_id)
    assert record is not None and record.status is JobStatus.PENDING

    assert await any_repo.start_attempt(job, T0) is StartResult.STARTED
    assert await any_repo.set_progress(job_id, 30, T0)
    assert not await any_repo.set_progress(job_id, 10, T0)  # progress moves forward only
    assert await any_repo.complete(job_id, {"ok": True}, T0 + timedelta(seconds=5))

    assert not await any_repo.fail(job_id, JobError(code="TIMEOUT", message="late"), T0)
    assert await any_repo.start_attempt(job, T0) is StartResult.FINISHED
    record = await any_repo.get(job_id)
    assert record is not None
    assert (record.status, record.progress, record.result) == (
        JobStatus.COMPLETED,
        100,
        {"ok": True},
    )
    assert record.finished_at == T0 + timedelta(seconds=5)


async def test_workers_retry_note_makes_older_copies_stale(any_repo: JobRepository) -> None:
    job_id = f"job_{uuid.uuid4().hex[:8]}"
    first = _job(0, job_id)
    assert await any_repo.start_attempt(first, T0) is StartResult.STARTED
    assert await any_repo.note_retry(job_id, 1, JobError(code="TIMEOUT", message="t"), T0)
    assert await any_repo.start_attempt(first, T0) is StartResult.STALE
    second = _job(1, job_id)
    assert await any_repo.start_attempt(second, T0) is StartResult.STARTED
    record = await any_repo.get(job_id)
    assert record is not None and record.attempt == 1 and record.error["code"] == "TIMEOUT"


async def test_workers_metrics_aggregate(any_repo: JobRepository) -> None:
    job_type = f"t.{uuid.uuid4().hex[:6]}"
    await any_repo.record_job_latency(job_type, JobStatus.COMPLETED, 1200)
    await any_repo.record_job_latency(job_type, JobStatus.FAILED, 3000)
    await any_repo.record_job_latency(job_type, JobStatus.COMPLETED, 800)
    assert await any_repo.job_type_metric(job_type) == {
        "completed": 2,
        "failed": 1,
        "latency_ms_total": 5000,
        "latency_ms_max": 3000,
    }
    model = f"m-{uuid.uuid4().hex[:6]}"
    await any_repo.record_ai_cost(model, 100, 200, 0.5)
    await any_repo.record_ai_cost(model, 10, 20, 0.25)
    cost = await any_repo.ai_cost_metric(model)
    assert cost is not None
    assert (cost["calls"], cost["input_tokens"], cost["output_tokens"]) == (2, 110, 220)
    assert cost["cost_usd"] == pytest.approx(0.75)


async def test_workers_creators_upsert(any_repo: JobRepository) -> None:
    cid = f"c-{uuid.uuid4().hex[:6]}"
    await any_repo.upsert_creator(CreatorRecord(cid, "a@x.test", "A", None, None))
    await any_repo.upsert_creator(CreatorRecord(cid, "b@x.test", "B", "https://h.test/w", "s"))
    creator = await any_repo.get_creator(cid)
    assert creator == CreatorRecord(cid, "b@x.test", "B", "https://h.test/w", "s")
    assert await any_repo.get_creator("nobody") is None


@pytest.fixture
async def redis_store() -> AsyncIterator[tuple[RedisStore, str]]:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        pytest.skip(f"Redis not reachable: {exc}")
    prefix = f"workers-test:{uuid.uuid4().hex[:8]}:"
    yield RedisStore(client), prefix
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_workers_redis_lease_is_exclusive_and_released_by_owner_only(
    redis_store: tuple[RedisStore, str],
) -> None:
    store, prefix = redis_store
    engine = make_engine("sqlite://")
    await create_schema(engine)
    guard = IdempotencyGuard(store, JobRepository(engine), prefix=prefix)
    assert await guard.acquire("j1", "owner", 30)
    assert not await guard.acquire("j1", "intruder", 30)
    assert 0 < await guard.lease_remaining("j1") <= 30
    await guard.release("j1", "intruder")  # not the owner: no effect
    assert not await guard.acquire("j1", "intruder", 30)
    await guard.release("j1", "owner")
    assert await guard.acquire("j1", "next", 30)

    assert await guard.finished_status("j1") is None
    await guard.mark_finished("j1", JobStatus.COMPLETED)
    assert await guard.finished_status("j1") is JobStatus.COMPLETED
    await engine.dispose()


async def test_workers_memory_store_expires_with_the_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    assert await store.set("k", "v", 10, only_new=True)
    assert not await store.set("k", "w", 10, only_new=True)
    clock.advance(10.5)
    assert await store.get("k") is None
    assert await store.set("k", "w", 10, only_new=True)
