"""SQLAlchemy 2 models: creators, jobs and the aggregated metrics.

Portable between PostgreSQL (production, psycopg 3 async) and SQLite (aiosqlite) so the
same repository code runs in unit tests and in Azure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool


class Base(DeclarativeBase):
    pass


class Creator(Base):
    __tablename__ = "creators"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String(200))


IDEMPOTENCY_INDEX = "ux_jobs_idempotency_key"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index(IDEMPOTENCY_INDEX, "idempotency_key", unique=True),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(32))
    # No foreign key: a job for an unknown creator is still processed; notifications skip it.
    creator_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[Any] = mapped_column(JSON, nullable=True)
    deadline_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The API's `Idempotency-Key` and a hash of the request it came with: a repeated POST
    # replays this job, a different request under the same key is refused. NULL for jobs
    # posted without a key (unique ignores NULLs on both dialects).
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # A replay (`harness dlq replay`) restarts a failed job at attempt 0: the run it ended is
    # appended to `history` and the replay's marker kept, so that copy never restarts it twice.
    replay_of: Mapped[str | None] = mapped_column(String(255))
    history: Mapped[Any] = mapped_column(JSON, nullable=True)


class JobTypeMetric(Base):
    """Latency from enqueue to final status, per job type."""

    __tablename__ = "job_type_metrics"

    job_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    completed_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms_total: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms_max: Mapped[int] = mapped_column(Integer, default=0)


class AICostMetric(Base):
    """Token usage and cost per model (the seed's `azure.ai.cost` metric)."""

    __tablename__ = "ai_cost_metrics"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)


def async_database_url(url: str) -> str:
    """Map the seed's `postgresql://` URL onto an async driver SQLAlchemy understands."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def make_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float | None = None,
) -> AsyncEngine:
    """An async engine; in-memory SQLite shares one connection so tables persist. The pool
    options (SQLAlchemy's defaults when None) bound what a busy server waits for."""
    url = async_database_url(url)
    if url in ("sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"):
        return create_async_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    options = {
        name: value
        for name, value in (
            ("pool_size", pool_size),
            ("max_overflow", max_overflow),
            ("pool_timeout", pool_timeout),
        )
        if value is not None
    }
    return create_async_engine(url, pool_pre_ping=True, **options)


# Columns added after the first release: (table, column, DDL type). `create_all` creates
# missing tables only, so a database made by an older version gets them by ALTER TABLE.
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("jobs", "idempotency_key", "VARCHAR(255)"),
    ("jobs", "request_hash", "VARCHAR(64)"),
    ("jobs", "replay_of", "VARCHAR(255)"),
    ("jobs", "history", "JSON"),
)


def _upgrade(conn: Connection) -> None:
    """Bring tables created by an older version up to the current columns and indexes."""
    inspector = inspect(conn)
    for table, column, ddl in _ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table)}
        if column not in present:
            guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {guard}{column} {ddl}"))
    conn.execute(
        text(f"CREATE UNIQUE INDEX IF NOT EXISTS {IDEMPOTENCY_INDEX} ON jobs (idempotency_key)")
    )


# Any constant: every process creating the schema takes this PostgreSQL advisory lock.
_SCHEMA_LOCK_ID = 0x6875_6E74


async def create_schema(engine: AsyncEngine) -> None:
    """Idempotent table creation plus the in-place upgrade of older tables (no migrations
    tool in this project yet). On PostgreSQL a transaction-scoped advisory lock serialises
    the apps and the API starting together, so their DDL never races."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(_upgrade)
