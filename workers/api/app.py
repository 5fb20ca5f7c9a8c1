"""Job API (FastAPI) replacing the seed's Next.js routes.

POST routes validate the request, create the job row as `pending`, then send the seed's
message body and application properties to the jobs topic with the send-only connection.
GET returns the job status from the Redis cache (terminal states only, so it is never
stale) or from PostgreSQL, the source of truth.

Run: `uvicorn --factory workers.api.app:app_from_env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from workers.api.requests import (
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    ROUTES,
    ChatSuggestionsRequest,
    ContentAnalysisRequest,
    ContentSuggestionsRequest,
    JobRoute,
    Rejected,
    VideoAnalysisRequest,
    check_message_size,
    decode_object,
    idempotency_key,
    read_body,
    request_hash,
    route_for,
    validate,
)
from workers.common.clock import Clock, SystemClock, clock_from_settings
from workers.common.contracts import (
    DEFAULT_DEADLINE_MS,
    TERMINAL_STATUSES,
    JobError,
    JobMessage,
    job_application_properties,
)
from workers.common.db import make_engine
from workers.common.idempotency import KeyValueStore, MemoryStore, RedisStore
from workers.common.repository import IdempotencyKeyTaken, JobRecord, JobRepository
from workers.common.runtime import SchemaGate
from workers.common.settings import Role, Settings, load_settings

log = logging.getLogger(__name__)

__all__ = [
    "ApiDeps",
    "ChatSuggestionsRequest",
    "ContentAnalysisRequest",
    "ContentSuggestionsRequest",
    "VideoAnalysisRequest",
    "create_app",
    "new_job_id",
]

CACHE_TTL_SECONDS = 3600.0
REDIS_TIMEOUT_SECONDS = 2.0
"""The status cache's connect and read timeout: a Redis that stops answering (a paused
server) falls back to the database instead of holding the request."""

T = TypeVar("T")


class JobSender(Protocol):
    """Sends one job message to the jobs topic."""

    async def send(self, body: dict[str, Any], application_properties: dict[str, str]) -> None: ...


class ServiceBusJobSender:
    """JobSender with the azure-servicebus async client and the send-only policy.

    Opening a sender attaches a link and closing one costs about a second (the SDK joins
    its keep-alive), so senders are kept and reused: at most `pool_size` of them, each
    used by one request at a time since SDK senders are not coroutine-safe. A sender whose
    send failed is closed and dropped, so a broken link is never handed out again.
    """

    def __init__(
        self, connection: str, topic: str, *, pool_size: int = 4, busy_wait: float | None = None
    ) -> None:
        from azure.servicebus.aio import ServiceBusClient

        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._client = ServiceBusClient.from_connection_string(connection)
        self._topic = topic
        self._idle: list[Any] = []
        self._slots: asyncio.Semaphore | None = None  # made on the loop that serves requests
        self.pool_size = pool_size
        self.busy_wait = busy_wait
        """How long a send waits for a free sender before `Busy` (None: as long as it takes)."""
        self.opened = 0

    async def send(self, body: dict[str, Any], application_properties: dict[str, str]) -> None:
        from azure.servicebus import ServiceBusMessage

        message = ServiceBusMessage(
            json.dumps(body),
            content_type="application/json",
            application_properties=dict(application_properties),
            message_id=f"{body['jobId']}:{body['attempt']}",
        )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.pool_size)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.busy_wait)
        except TimeoutError:
            raise Busy(f"all {self.pool_size} senders busy for {self.busy_wait} s") from None
        try:
            sender = self._idle.pop() if self._idle else self._open()
            try:
                await sender.send_messages(message)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sender.close()
                raise
            self._idle.append(sender)
        finally:
            self._slots.release()

    def _open(self) -> Any:
        self.opened += 1
        return self._client.get_topic_sender(self._topic)

    async def aclose(self) -> None:
        senders, self._idle = self._idle, []
        for sender in senders:
            with contextlib.suppress(Exception):
                await sender.close()
        await self._client.close()


_ALPHABET = string.ascii_lowercase + string.digits


def new_job_id() -> str:
    """`job_<ms>_<9 chars>` like the seed, with a CSPRNG suffix."""
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(9))
    return f"job_{int(time.time() * 1000)}_{suffix}"


class Busy(Exception):
    """The server is past its capacity: nothing was written or sent; the caller may retry."""


class DatabaseUnavailable(Exception):
    """The database refused us or did not answer in time; the caller may retry."""


async def _bounded(step: Awaitable[T], seconds: float) -> T:
    """`step`'s result, or TimeoutError after `seconds` (module-level: scenarios/mutants.py
    removes the bound). Not `asyncio.timeout`, which waits for the cancelled step: psycopg
    then asks the server to cancel the query and waits for it, ~10 s more from a server that
    does not answer. The step is cancelled (an uncommitted write is rolled back with its
    connection) and left to finish that on its own."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(_drop_outcome)
    raise TimeoutError


def _drop_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a step we gave up on fails quietly


def _is_connection_error(exc: DBAPIError) -> bool:
    """Refused, reset or closed: the server's absence (503), not a bug in a query (500)."""
    return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated


@dataclass
class ApiDeps:
    repository: JobRepository
    sender: JobSender
    cache: KeyValueStore | None = None
    clock: Clock = field(default_factory=SystemClock)
    new_id: Callable[[], str] = new_job_id
    cache_prefix: str = "huntaze:"
    retry_after_seconds: int = 1
    """What a 503 tells a client to wait (the Retry-After header)."""
    db_timeout_seconds: float = 5.0
    """How long one database step of a request may take before 503: a server that stops
    answering (paused, a dead host) never times out by itself, and the request would hang."""

    def __post_init__(self) -> None:
        self.schema = SchemaGate(self.repository.engine)

    async def aclose(self) -> None:
        """Close the pooled senders and the database pool (at server shutdown)."""
        closer = getattr(self.sender, "aclose", None)
        if closer is not None:
            await closer()
        clock_closer = getattr(self.clock, "close", None)
        if clock_closer is not None:
            clock_closer()
        await self.repository.engine.dispose()


def _validation_details(exc: RequestValidationError) -> list[str]:
    details = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ()) if p != "body"]
        details.append(f"{'.'.join(loc) or 'body'}: {item.get('msg')}")
    return details


def create_app(deps: ApiDeps) -> FastAPI:
    """Build the API around injected collaborators (tests pass fakes)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await deps.aclose()

    app = FastAPI(title="Huntaze job API", lifespan=lifespan)

    def busy(detail: str, error: str = "Service busy") -> JSONResponse:
        log.warning("answering 503: %s", detail)
        return JSONResponse(
            status_code=503,
            content={"error": error, "details": [detail, "retry after Retry-After"]},
            headers={"Retry-After": str(deps.retry_after_seconds)},
        )

    async def database(step: Awaitable[T]) -> T:
        """One database step under `db_timeout_seconds` (see DatabaseUnavailable)."""
        try:
            return await _bounded(step, deps.db_timeout_seconds)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"the database did not answer within {deps.db_timeout_seconds:g} s"
            ) from None

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy) -> JSONResponse:
        return busy(str(exc))

    @app.exception_handler(PoolTimeout)
    async def _pool_busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        return busy("no database connection free within the pool timeout")

    @app.exception_handler(DatabaseUnavailable)
    async def _db_timeout(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return busy(str(exc), "Database unavailable")

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> Response:
        """Connection-level errors (refused, reset, closed) are the server's absence, not
        a bug: 503 so the client retries. Anything else (a constraint, bad SQL) stays 500."""
        if not _is_connection_error(exc):
            log.error("database error: %s", exc, exc_info=exc)
            return PlainTextResponse("Internal Server Error", status_code=500)
        lines = str(exc.orig or exc).strip().splitlines()
        return busy(
            f"the database is unreachable: {lines[0] if lines else type(exc).__name__}",
            "Database unavailable",
        )

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=400,
            content={"error": "Invalid request", "details": _validation_details(exc)},
        )

    def accepted(route: JobRoute, record: JobRecord | None, job_id: str) -> dict[str, Any]:
        return {
            "success": True,
            "jobId": job_id,
            "status": record.status.value if record else "pending",
            "message": f"{route.label} job queued",
        }

    async def replay(route: JobRoute, key: str, digest: str) -> JSONResponse:
        found = await database(deps.repository.by_idempotency_key(key))
        if found is None:  # released by a failed enqueue in the meantime
            raise Rejected(409, "Idempotency-Key in use", ["retry the request"])
        record, stored = found
        if stored != digest:
            raise Rejected(
                422,
                "Idempotency-Key reused with a different request",
                [f"{IDEMPOTENCY_HEADER} {key!r} was first used with another body or job type"],
            )
        return JSONResponse(accepted(route, record, record.id), headers={REPLAYED_HEADER: "true"})

    async def enqueue(route: JobRoute, request: Request) -> Any:
        """Every check runs before the first write; see `workers.api.requests`."""
        key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
        raw = await read_body(request.stream(), request.headers.get("content-length"))
        data = decode_object(raw)
        body = validate(route, data)
        job = JobMessage(
            job_id=deps.new_id(),
            job_type=route.job_type,
            creator_id=body.creatorId,
            payload=route.payload(body),
            attempt=0,
            created_at=deps.clock.now(),
            deadline_ms=DEFAULT_DEADLINE_MS[route.job_type],
        )
        wire = job.to_wire()
        check_message_size(json.dumps(wire).encode())
        await database(deps.schema.ensure())
        digest = request_hash(route, data) if key else None
        if key and digest and await database(deps.repository.by_idempotency_key(key)):
            return await replay(route, key, digest)
        try:
            await database(
                deps.repository.create_pending(
                    job, deps.clock.now(), idempotency_key=key, request_hash=digest
                )
            )
        except IdempotencyKeyTaken:  # an identical POST won the race
            assert key is not None and digest is not None
            return await replay(route, key, digest)
        try:
            await deps.sender.send(wire, job_application_properties(job))
        except Busy:  # nothing was sent: the job row goes, so a retry starts clean
            await database(deps.repository.delete_pending(job.job_id))
            raise
        except Exception as exc:
            log.exception("failed to queue %s", job.job_id)
            error = JobError(code="ENQUEUE_FAILED", message=str(exc))
            await database(deps.repository.fail(job.job_id, error, deps.clock.now()))
            if key is not None:  # nothing was queued: a retry under this key may succeed
                await database(deps.repository.release_idempotency_key(job.job_id))
            return JSONResponse(
                status_code=500, content={"error": "Failed to queue job", "details": str(exc)}
            )
        return accepted(route, None, job.job_id)

    def register(route: JobRoute) -> None:
        async def post(request: Request) -> Any:
            try:
                return await enqueue(route, request)
            except Rejected as exc:
                return JSONResponse(status_code=exc.status, content=exc.body)

        post.__name__ = route.name.replace("-", "_")
        app.post(f"/api/jobs/{route.name}", response_model=None, name=route.name)(post)

    for job_route in ROUTES.values():
        register(job_route)

    @app.post("/api/jobs/{name}", response_model=None)
    async def unknown_job_type(name: str) -> Any:
        """Without this, the GET route's path answers 405 for `POST /api/jobs/<typo>`."""
        try:
            route_for(name)
        except Rejected as exc:
            return JSONResponse(status_code=exc.status, content=exc.body)
        raise AssertionError(f"{name} has its own route")  # pragma: no cover

    async def job_status(job_id: str) -> Any:
        key = f"{deps.cache_prefix}api:job:{job_id}"
        if deps.cache is not None:
            try:
                cached = await deps.cache.get(key)
            except Exception as exc:  # the cache is an accelerator only
                log.warning("status cache unavailable: %s", exc)
                cached = None
            if cached:
                return JSONResponse(json.loads(cached), headers={"X-Cache": "hit"})
        await database(deps.schema.ensure())
        record = await database(deps.repository.get(job_id))
        if record is None:
            return JSONResponse(status_code=404, content={"error": "Job not found"})
        data = record.to_api()
        if deps.cache is not None and record.status in TERMINAL_STATUSES:
            try:
                await deps.cache.set(key, json.dumps(data), CACHE_TTL_SECONDS, only_new=False)
            except Exception as exc:
                log.warning("status cache unavailable: %s", exc)
        return JSONResponse(data, headers={"X-Cache": "miss"})

    @app.get("/api/jobs/{job_id}", response_model=None)
    async def get_job(job_id: str) -> Any:
        return await job_status(job_id)

    @app.get("/api/jobs/status/{job_id}", response_model=None)
    async def get_job_status(job_id: str) -> Any:
        """The path the seed's integration test uses."""
        return await job_status(job_id)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def deps_from_settings(settings: Settings) -> ApiDeps:
    clock = clock_from_settings(settings)
    cache: KeyValueStore
    if settings.redis_url.startswith("memory://"):
        cache = MemoryStore(clock)
    else:
        cache = RedisStore(
            Redis.from_url(
                settings.redis_url,
                decode_responses=True,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
        )
    engine = make_engine(
        settings.database_url,
        pool_size=settings.api_db_pool_size,
        max_overflow=settings.api_db_max_overflow,
        pool_timeout=settings.api_busy_wait_seconds,
    )
    return ApiDeps(
        repository=JobRepository(engine),
        sender=ServiceBusJobSender(
            settings.servicebus_connection_send,
            settings.topic_jobs,
            pool_size=settings.api_sender_pool_size,
            busy_wait=settings.api_busy_wait_seconds,
        ),
        cache=cache,
        clock=clock,
        cache_prefix=settings.redis_key_prefix,
        retry_after_seconds=settings.api_retry_after_seconds,
        db_timeout_seconds=settings.api_db_timeout_seconds,
    )


def app_from_env() -> FastAPI:
    """Factory for uvicorn: settings validated at startup (role `api`)."""
    return create_app(deps_from_settings(load_settings(Role.API)))
