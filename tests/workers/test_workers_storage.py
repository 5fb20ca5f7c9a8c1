"""Repository on SQLite and on PostgreSQL; the guard on Redis.

PostgreSQL and Redis come from the stack providers (the sbharness plugin's `stack` fixture,
`--stack auto|local|embedded|containers`): the stack's own database, created for this
session and dropped afterwards, and its Redis key prefix. `auto` falls back to embedded
servers, so these tests run on any machine instead of skipping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from workers_fakes import T0, FakeClock, encode, job_body

from workers.common.contracts import JobError, JobMessage, JobStatus, JobType, parse_job_message
from workers.common.db import (
    IDEMPOTENCY_INDEX,
    async_database_url,
    create_schema,
    make_engine,
)
from workers.common.idempotency import IdempotencyGuard, MemoryStore, RedisStore
from workers.common.repository import (
    CreatorRecord,
    IdempotencyKeyTaken,
    JobRepository,
    StartResult,
)

if TYPE_CHECKING:
    from harness.stack import Stack


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """SQLite in memory, and the stack's PostgreSQL database (started only when asked for)."""
    if request.param == "sqlite":
        return "sqlite://"
    stack: Stack = request.getfixturevalue("stack")
    return stack.database_url


@pytest.fixture
async def any_repo(database_url: str) -> AsyncIterator[JobRepository]:
    engine = make_engine(database_url)
    await create_schema(engine)
    repository = JobRepository(engine)
    yield repository
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (the upgrade test alters tables): a file, or a fresh database
    on the stack's PostgreSQL server, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    from harness.stack.services import create_database, drop_database

    stack: Stack = request.getfixturevalue("stack")
    name = f"workers_upgrade_{uuid.uuid4().hex[:10]}"
    url = create_database(stack.server_database_url, name)
    try:
        yield url
    finally:
        drop_database(stack.server_database_url, name)


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
async def redis_store(stack: Stack) -> AsyncIterator[tuple[RedisStore, str]]:
    """The stack's Redis, under a key prefix of this test's inside the stack's own."""
    from redis.asyncio import Redis

    client = Redis.from_url(stack.redis_url, decode_responses=True)
    prefix = f"{stack.redis_key_prefix}workers-test:{uuid.uuid4().hex[:8]}:"
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


def _downgrade(conn: Connection) -> None:
    """Make the jobs table what the first release created: no idempotency columns."""
    conn.execute(text(f"DROP INDEX {IDEMPOTENCY_INDEX}"))
    conn.execute(text("ALTER TABLE jobs DROP COLUMN idempotency_key"))
    conn.execute(text("ALTER TABLE jobs DROP COLUMN request_hash"))


def _shape(conn: Connection) -> tuple[set[str], dict[str, bool]]:
    inspector = inspect(conn)
    columns = {c["name"] for c in inspector.get_columns("jobs")}
    indexes = {i["name"]: bool(i["unique"]) for i in inspector.get_indexes("jobs")}
    return columns, indexes


async def test_workers_create_schema_upgrades_an_older_jobs_table(empty_database: str) -> None:
    engine = make_engine(empty_database)
    try:
        await create_schema(engine)
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade)
        old = JobRepository(engine)
        async with engine.begin() as conn:  # a row written by the old version survives
            await conn.execute(
                text(
                    "INSERT INTO jobs (id, job_type, creator_id, status, progress, attempt, "
                    "deadline_ms, created_at, updated_at) VALUES ('job_old', 'chat.suggest', "
                    "'c', 'pending', 0, 0, 90000, :t, :t)"
                ),
                {"t": T0},
            )
        async with engine.connect() as conn:
            columns, _ = await conn.run_sync(_shape)
        assert "idempotency_key" not in columns

        await create_schema(engine)
        await create_schema(engine)  # idempotent
        async with engine.connect() as conn:
            columns, indexes = await conn.run_sync(_shape)
        assert {"idempotency_key", "request_hash"} <= columns
        assert indexes[IDEMPOTENCY_INDEX] is True
        record = await old.get("job_old")
        assert record is not None and record.status is JobStatus.PENDING
        await old.create_pending(_job(job_id="job_new"), T0, idempotency_key="k", request_hash="h")
        with pytest.raises(IdempotencyKeyTaken):
            await old.create_pending(_job(job_id="job_dup"), T0, idempotency_key="k")
    finally:
        await engine.dispose()


async def test_workers_idempotency_keys_are_unique_and_releasable(any_repo: JobRepository) -> None:
    key = f"key-{uuid.uuid4().hex[:8]}"
    first, second = (f"job_{uuid.uuid4().hex[:8]}" for _ in range(2))
    await any_repo.create_pending(_job(job_id=first), T0, idempotency_key=key, request_hash="h1")
    with pytest.raises(IdempotencyKeyTaken):
        await any_repo.create_pending(_job(job_id=second), T0, idempotency_key=key)
    assert await any_repo.get(second) is None
    found = await any_repo.by_idempotency_key(key)
    assert found is not None and found[0].id == first and found[1] == "h1"
    for _ in range(2):  # jobs without a key do not collide with each other
        await any_repo.create_pending(_job(job_id=f"job_{uuid.uuid4().hex[:8]}"), T0)

    await any_repo.release_idempotency_key(first)
    assert await any_repo.by_idempotency_key(key) is None
    await any_repo.create_pending(_job(job_id=second), T0, idempotency_key=key, request_hash="h2")
    found = await any_repo.by_idempotency_key(key)
    assert found is not None and found[0].id == second


async def test_workers_a_duplicate_job_id_is_not_mistaken_for_a_key_conflict(
    any_repo: JobRepository,
) -> None:
    job_id = f"job_{uuid.uuid4().hex[:8]}"
    await any_repo.create_pending(_job(job_id=job_id), T0)
    with pytest.raises(Exception) as caught:
        await any_repo.create_pending(_job(job_id=job_id), T0, idempotency_key=f"k{job_id}")
    assert not isinstance(caught.value, IdempotencyKeyTaken)


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
async def test_workers_apps_starting_together_upgrade_the_schema_once(empty_database: str) -> None:
    """The API and three apps run create_schema at once: the advisory lock orders them."""
    setup = make_engine(empty_database)
    await create_schema(setup)
    async with setup.begin() as conn:
        await conn.run_sync(_downgrade)
    await setup.dispose()
    engines = [make_engine(empty_database) for _ in range(4)]
    try:
        await asyncio.gather(*(create_schema(e) for e in engines))
        async with engines[0].connect() as conn:
            columns, indexes = await conn.run_sync(_shape)
        assert {"idempotency_key", "request_hash"} <= columns and indexes[IDEMPOTENCY_INDEX]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_workers_replay_restart_claims_a_failed_job_once(any_repo: JobRepository) -> None:
    """Two copies of one replay race for a failed job: one conditional UPDATE wins; the
    ended run goes to the history; a completed job and a repeated replay are refused."""
    job_id = f"job_{uuid.uuid4().hex[:8]}"
    last = _job(3, job_id)
    assert await any_repo.start_attempt(last, T0) is StartResult.STARTED
    assert await any_repo.fail(job_id, JobError(code="AI_SERVER_ERROR", message="down"), T0)
    later = T0 + timedelta(hours=1)

    wins = await asyncio.gather(
        *(any_repo.restart_for_replay(job_id, "dlq:7", later) for _ in range(4))
    )
    assert sorted(wins) == [False, False, False, True]
    record = await any_repo.get(job_id)
    assert record is not None
    assert (record.status, record.attempt, record.error, record.replay_of) == (
        JobStatus.PROCESSING,
        0,
        None,
        "dlq:7",
    )
    assert [(h["attempt"], h["status"], h["error"]["code"]) for h in record.history] == [
        (3, "failed", "AI_SERVER_ERROR")
    ]
    assert await any_repo.start_attempt(_job(0, job_id), later) is StartResult.STARTED

    assert await any_repo.fail(job_id, JobError(code="AI_SERVER_ERROR", message="again"), later)
    assert not await any_repo.restart_for_replay(job_id, "dlq:7", later)  # same replay: no
    assert await any_repo.restart_for_replay(job_id, "dlq:9", later)  # a new dead letter: yes
    record = await any_repo.get(job_id)
    assert record is not None and len(record.history) == 2

    assert await any_repo.complete(job_id, {"ok": True}, later)
    assert not await any_repo.restart_for_replay(job_id, "dlq:10", later)
    assert not await any_repo.restart_for_replay("job_missing", "dlq:1", later)
