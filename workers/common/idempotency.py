"""Idempotency guard: a Redis fast path in front of the database, plus a run lease.

* `finished_status` answers "was this job already completed or failed?" from Redis, and on
  a miss from the database (the source of truth), back-filling Redis.
* `acquire` takes a per-job lease (SET NX PX) so a message redelivered while the first run
  still works — the video lock-loss case — is not processed a second time in parallel.

Redis is an accelerator: when it is unreachable the guard falls back to the database and
lets the run proceed, logging a warning, rather than stopping all work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from workers.common.clock import Clock
from workers.common.contracts import TERMINAL_STATUSES, JobStatus
from workers.common.repository import JobRepository

log = logging.getLogger(__name__)

_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class KeyValueStore(Protocol):
    """The few Redis operations the guard and the API cache need."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_seconds: float, *, only_new: bool) -> bool: ...

    async def ttl(self, key: str) -> float | None: ...

    async def delete_if_equals(self, key: str, value: str) -> bool: ...


class RedisStore:
    """KeyValueStore on redis-py's asyncio client."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        return cls(Redis.from_url(url, decode_responses=True))

    async def get(self, key: str) -> str | None:
        value = await self.client.get(key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl_seconds: float, *, only_new: bool) -> bool:
        ms = max(1, int(ttl_seconds * 1000))
        return bool(await self.client.set(key, value, px=ms, nx=only_new))

    async def ttl(self, key: str) -> float | None:
        ms = await self.client.pttl(key)
        return None if ms is None or ms < 0 else ms / 1000

    async def delete_if_equals(self, key: str, value: str) -> bool:
        return bool(await self.client.eval(_RELEASE_SCRIPT, 1, key, value))


@dataclass
class MemoryStore:
    """In-process KeyValueStore driven by a Clock; for tests and single-process local runs."""

    clock: Clock
    data: dict[str, tuple[str, float]] = field(default_factory=dict)

    def _live(self, key: str) -> tuple[str, float] | None:
        item = self.data.get(key)
        if item and item[1] <= self.clock.monotonic():
            del self.data[key]
            return None
        return item

    async def get(self, key: str) -> str | None:
        item = self._live(key)
        return item[0] if item else None

    async def set(self, key: str, value: str, ttl_seconds: float, *, only_new: bool) -> bool:
        if only_new and self._live(key):
            return False
        self.data[key] = (value, self.clock.monotonic() + ttl_seconds)
        return True

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        return item[1] - self.clock.monotonic() if item else None

    async def delete_if_equals(self, key: str, value: str) -> bool:
        item = self._live(key)
        if item and item[0] == value:
            del self.data[key]
            return True
        return False


class IdempotencyGuard:
    """Decides whether a delivery may run; see the module docstring."""

    def __init__(
        self,
        store: KeyValueStore,
        repository: JobRepository,
        *,
        prefix: str = "huntaze:",
        finished_ttl_seconds: float = 7 * 24 * 3600,
    ) -> None:
        self.store = store
        self.repository = repository
        self.prefix = prefix
        self.finished_ttl_seconds = finished_ttl_seconds

    def _final_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:final"

    def _lease_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:lease"

    async def finished_status(self, job_id: str) -> JobStatus | None:
        try:
            cached = await self.store.get(self._final_key(job_id))
        except RedisError as exc:
            log.warning("idempotency cache unavailable, using the database: %s", exc)
            cached = None
        if cached:
            return JobStatus(cached)
        record = await self.repository.get(job_id)
        if record and record.status in TERMINAL_STATUSES:
            await self.mark_finished(job_id, record.status)
            return record.status
        return None

    async def mark_finished(self, job_id: str, status: JobStatus) -> None:
        try:
            await self.store.set(
                self._final_key(job_id), status.value, self.finished_ttl_seconds, only_new=False
            )
        except RedisError as exc:
            log.warning("could not cache final status of %s: %s", job_id, exc)

    async def forget_finished(self, job_id: str, status: JobStatus) -> None:
        """Drop the cached final status of a job a replay restarted (only if still `status`)."""
        try:
            await self.store.delete_if_equals(self._final_key(job_id), status.value)
        except RedisError as exc:
            log.warning("could not forget final status of %s: %s", job_id, exc)

    async def acquire(self, job_id: str, token: str, ttl_seconds: float) -> bool:
        try:
            return await self.store.set(self._lease_key(job_id), token, ttl_seconds, only_new=True)
        except RedisError as exc:
            log.warning("lease store unavailable, running %s without a lease: %s", job_id, exc)
            return True

    async def lease_remaining(self, job_id: str) -> float:
        try:
            return (await self.store.ttl(self._lease_key(job_id))) or 0.0
        except RedisError:
            return 0.0

    async def release(self, job_id: str, token: str) -> None:
        try:
            await self.store.delete_if_equals(self._lease_key(job_id), token)
        except RedisError as exc:
            log.warning("could not release lease of %s: %s", job_id, exc)
