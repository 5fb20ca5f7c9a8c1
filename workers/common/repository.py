"""Job and creator storage with guarded transitions so status never regresses.

Every status change is a single conditional UPDATE (`WHERE status IN allowed-from`), so two
runs racing on the same job cannot move a finished job back to `processing` or flip
`failed` to `completed`: the database is the source of truth for idempotency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from workers.common.clock import ensure_utc
from workers.common.contracts import JobError, JobMessage, JobStatus
from workers.common.db import AICostMetric, Creator, Job, JobTypeMetric

_OPEN = (JobStatus.PENDING.value, JobStatus.PROCESSING.value)
_REPLAYABLE = (JobStatus.FAILED.value, JobStatus.TIMEOUT.value)


class IdempotencyKeyTaken(Exception):
    """Another job already holds this `Idempotency-Key` (a concurrent identical POST)."""


class StartResult(StrEnum):
    STARTED = "started"
    FINISHED = "finished"  # job already completed or failed: do not reprocess
    STALE = "stale"  # a later attempt already exists: this message is an old copy


@dataclass(frozen=True)
class JobRecord:
    id: str
    job_type: str
    creator_id: str
    status: JobStatus
    progress: int
    attempt: int
    result: Any
    error: Any
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    replay_of: str | None = None
    history: tuple[dict[str, Any], ...] = ()

    def to_api(self) -> dict[str, Any]:
        return {
            "jobId": self.id,
            "jobType": self.job_type,
            "creatorId": self.creator_id,
            "status": self.status.value,
            "progress": self.progress,
            "attempt": self.attempt,
            "result": self.result,
            "error": self.error,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class CreatorRecord:
    id: str
    email: str | None
    name: str | None
    webhook_url: str | None
    webhook_secret: str | None


def _record(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        job_type=row.job_type,
        creator_id=row.creator_id,
        status=JobStatus(row.status),
        progress=row.progress,
        attempt=row.attempt,
        result=row.result,
        error=row.error,
        created_at=ensure_utc(row.created_at),
        updated_at=ensure_utc(row.updated_at),
        finished_at=ensure_utc(row.finished_at) if row.finished_at else None,
        replay_of=row.replay_of,
        history=tuple(row.history or ()),
    )


def _pending_row(job: JobMessage, now: datetime) -> dict[str, Any]:
    """The columns of a job's first row, as the API and a message that beat it write it."""
    return {
        "id": job.job_id,
        "job_type": job.job_type.value,
        "creator_id": job.creator_id,
        "status": JobStatus.PENDING.value,
        "progress": 0,
        "attempt": job.attempt,
        "payload": job.payload,
        "deadline_ms": job.deadline_ms,
        "created_at": job.created_at,
        "updated_at": now,
    }


class JobRepository:
    """Async data access for jobs, creators and metrics."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _insert_if_missing(self, job: JobMessage, now: datetime) -> Any:
        """INSERT the job's row as `pending` unless one exists (a message may arrive before,
        or without, the API's row)."""
        return (
            self._upsert(Job)
            .values(**_pending_row(job, now))
            .on_conflict_do_nothing(index_elements=["id"])
        )

    def _upsert(self, table: Any) -> Any:
        """Dialect-specific INSERT supporting ON CONFLICT (PostgreSQL and SQLite)."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            return postgresql.insert(table)
        if dialect == "sqlite":
            return sqlite.insert(table)
        raise NotImplementedError(f"unsupported database dialect {dialect}")

    async def create_pending(
        self,
        job: JobMessage,
        now: datetime,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> None:
        """Insert the job row as `pending` (the API does this before sending).

        Raises IdempotencyKeyTaken when `idempotency_key` is already some job's key.
        """
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(Job).values(
                        **_pending_row(job, now),
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                    )
                )
        except IntegrityError:
            if idempotency_key is not None and await self.by_idempotency_key(idempotency_key):
                raise IdempotencyKeyTaken(idempotency_key) from None
            raise

    async def by_idempotency_key(self, key: str) -> tuple[JobRecord, str | None] | None:
        """The job created under `key` and the hash of the request that created it."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Job).where(Job.idempotency_key == key))).first()
        return (_record(row), row.request_hash) if row else None

    async def release_idempotency_key(self, job_id: str) -> None:
        """Forget the key of a job that was never queued, so a retry may use it again."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(Job).where(Job.id == job_id).values(idempotency_key=None, request_hash=None)
            )

    async def delete_pending(self, job_id: str) -> None:
        """Remove a job row that was never queued (the API answered 503: the caller never
        learnt its id, so a row left behind would be a job nobody can follow)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(Job).where(Job.id == job_id, Job.status == JobStatus.PENDING.value)
            )

    async def get(self, job_id: str) -> JobRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Job).where(Job.id == job_id))).first()
        return _record(row) if row else None

    async def start_attempt(self, job: JobMessage, now: datetime) -> StartResult:
        """Move the job to `processing` for this attempt, creating the row if missing."""
        async with self.engine.begin() as conn:
            await conn.execute(self._insert_if_missing(job, now))
            result = await conn.execute(
                update(Job)
                .where(Job.id == job.job_id, Job.status.in_(_OPEN), Job.attempt <= job.attempt)
                .values(
                    status=JobStatus.PROCESSING.value,
                    attempt=job.attempt,
                    progress=0,
                    started_at=now,
                    updated_at=now,
                )
            )
            if result.rowcount == 1:
                return StartResult.STARTED
            row = (
                await conn.execute(select(Job.status, Job.attempt).where(Job.id == job.job_id))
            ).one()
        if row.status in _OPEN:
            return StartResult.STALE
        return StartResult.FINISHED

    async def restart_for_replay(self, job_id: str, replay_of: str, now: datetime) -> bool:
        """Claim a `failed`/`timeout` job for the replayed copy `replay_of`: back to
        `processing` at attempt 0, the ended run appended to `history`.

        One conditional UPDATE (status still failed/timeout, not restarted by this replay
        already), so of two copies racing only one wins; False for the loser, for a job that
        is open or completed, and for a second delivery of the same replay.
        """
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(select(Job).where(Job.id == job_id).with_for_update())
            ).first()
            if row is None or row.status not in _REPLAYABLE or row.replay_of == replay_of:
                return False
            ended = {
                "attempt": row.attempt,
                "status": row.status,
                "error": row.error,
                "startedAt": row.started_at.isoformat() if row.started_at else None,
                "finishedAt": row.finished_at.isoformat() if row.finished_at else None,
                "replayOf": row.replay_of,
            }
            result = await conn.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status.in_(_REPLAYABLE),
                    (Job.replay_of.is_(None)) | (Job.replay_of != replay_of),
                )
                .values(
                    status=JobStatus.PROCESSING.value,
                    attempt=0,
                    progress=0,
                    result=None,
                    error=None,
                    started_at=now,
                    finished_at=None,
                    updated_at=now,
                    replay_of=replay_of,
                    history=[*(row.history or ()), ended],
                )
            )
        return result.rowcount == 1

    async def set_progress(self, job_id: str, progress: int, now: datetime) -> bool:
        """Progress only moves forward, and only while processing."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status == JobStatus.PROCESSING.value,
                    Job.progress <= progress,
                )
                .values(progress=progress, updated_at=now)
            )
        return result.rowcount == 1

    async def note_retry(
        self, job_id: str, next_attempt: int, error: JobError, now: datetime
    ) -> bool:
        """Record that attempt `next_attempt` is scheduled; status stays `processing`."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(_OPEN), Job.attempt < next_attempt)
                .values(attempt=next_attempt, error=error.to_wire(), updated_at=now)
            )
        return result.rowcount == 1

    async def complete(self, job_id: str, result: Any, now: datetime) -> bool:
        return await self._finish(job_id, JobStatus.COMPLETED, now, result=result, error=None)

    async def fail(self, job_id: str, error: JobError, now: datetime) -> bool:
        return await self._finish(job_id, JobStatus.FAILED, now, result=None, error=error)

    async def _finish(
        self,
        job_id: str,
        status: JobStatus,
        now: datetime,
        *,
        result: Any,
        error: JobError | None,
    ) -> bool:
        values: dict[str, Any] = {
            "status": status.value,
            "updated_at": now,
            "finished_at": now,
            "result": result,
            "error": error.to_wire() if error else None,
        }
        if status is JobStatus.COMPLETED:
            values["progress"] = 100
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(Job).where(Job.id == job_id, Job.status.in_(_OPEN)).values(**values)
            )
        return res.rowcount == 1

    async def statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Current status of each of `job_ids` that has a row."""
        if not job_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Job.id, Job.status).where(Job.id.in_(set(job_ids))))
        return {row.id: JobStatus(row.status) for row in rows}

    async def end_open_job(
        self,
        job_id: str,
        status: JobStatus,
        error: JobError,
        now: datetime,
        *,
        max_attempt: int | None = None,
        seed: JobMessage | None = None,
        before_commit: Callable[[JobRecord], Awaitable[None]] | None = None,
    ) -> JobRecord | None:
        """End a job still open (and not past `max_attempt`) from outside the processor.

        `seed` creates the row first if there is none. `before_commit` runs with the ended
        row inside the transaction (the sweeper publishes the final event there): if it
        raises, nothing is changed. None when the job was not open or has moved on to a
        later attempt: a second call changes nothing, so callers may repeat it freely.
        """
        conditions = [Job.id == job_id, Job.status.in_(_OPEN)]
        if max_attempt is not None:
            conditions.append(Job.attempt <= max_attempt)
        async with self.engine.begin() as conn:
            if seed is not None:
                await conn.execute(self._insert_if_missing(seed, now))
            result = await conn.execute(
                update(Job)
                .where(*conditions)
                .values(
                    status=status.value,
                    error=error.to_wire(),
                    result=None,
                    updated_at=now,
                    finished_at=now,
                )
            )
            if result.rowcount != 1:
                return None
            record = _record((await conn.execute(select(Job).where(Job.id == job_id))).one())
            if before_commit is not None:
                await before_commit(record)
        return record

    async def upsert_creator(self, creator: CreatorRecord) -> None:
        values = {
            "id": creator.id,
            "email": creator.email,
            "name": creator.name,
            "webhook_url": creator.webhook_url,
            "webhook_secret": creator.webhook_secret,
        }
        stmt = self._upsert(Creator).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"}
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def get_creator(self, creator_id: str) -> CreatorRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Creator).where(Creator.id == creator_id))).first()
        if row is None:
            return None
        return CreatorRecord(row.id, row.email, row.name, row.webhook_url, row.webhook_secret)

    async def record_job_latency(self, job_type: str, status: JobStatus, latency_ms: int) -> None:
        """Aggregate one final status into the per-type latency metrics."""
        completed = 1 if status is JobStatus.COMPLETED else 0
        failed = 0 if completed else 1
        latency_ms = max(0, latency_ms)
        stmt = self._upsert(JobTypeMetric).values(
            job_type=job_type,
            completed_count=completed,
            failed_count=failed,
            latency_ms_total=latency_ms,
            latency_ms_max=latency_ms,
        )
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_type"],
            set_={
                "completed_count": JobTypeMetric.completed_count + excluded.completed_count,
                "failed_count": JobTypeMetric.failed_count + excluded.failed_count,
                "latency_ms_total": JobTypeMetric.latency_ms_total + excluded.latency_ms_total,
                "latency_ms_max": _greatest(
                    self.engine.dialect.name, JobTypeMetric.latency_ms_max, excluded.latency_ms_max
                ),
            },
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def record_ai_cost(
        self, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        stmt = self._upsert(AICostMetric).values(
            model=model,
            calls=1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
        )
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["model"],
            set_={
                "calls": AICostMetric.calls + 1,
                "input_tokens": AICostMetric.input_tokens + excluded.input_tokens,
                "output_tokens": AICostMetric.output_tokens + excluded.output_tokens,
                "cost_usd": AICostMetric.cost_usd + excluded.cost_usd,
            },
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def job_type_metric(self, job_type: str) -> dict[str, int] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(JobTypeMetric).where(JobTypeMetric.job_type == job_type))
            ).first()
        if row is None:
            return None
        return {
            "completed": row.completed_count,
            "failed": row.failed_count,
            "latency_ms_total": row.latency_ms_total,
            "latency_ms_max": row.latency_ms_max,
        }

    async def ai_cost_metric(self, model: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(AICostMetric).where(AICostMetric.model == model))
            ).first()
        if row is None:
            return None
        return {
            "calls": row.calls,
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "cost_usd": row.cost_usd,
        }


def _greatest(dialect: str, a: Any, b: Any) -> Any:
    """GREATEST on PostgreSQL; SQLite's two-argument MAX is the scalar equivalent."""
    return func.greatest(a, b) if dialect == "postgresql" else func.max(a, b)
