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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from workers.common.clock import Clock, SystemClock
from workers.common.contracts import (
    DEFAULT_DEADLINE_MS,
    TERMINAL_STATUSES,
    JobError,
    JobMessage,
    JobType,
    job_application_properties,
)
from workers.common.db import make_engine
from workers.common.idempotency import KeyValueStore, MemoryStore, RedisStore
from workers.common.repository import JobRepository
from workers.common.runtime import SchemaGate
from workers.common.settings import Role, Settings, load_settings

log = logging.getLogger(__name__)

CACHE_TTL_SECONDS = 3600.0


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

    def __init__(self, connection: str, topic: str, *, pool_size: int = 4) -> None:
        from azure.servicebus.aio import ServiceBusClient

        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._client = ServiceBusClient.from_connection_string(connection)
        self._topic = topic
        self._idle: list[Any] = []
        self._slots: asyncio.Semaphore | None = None  # made on the loop that serves requests
        self.pool_size = pool_size
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
        async with self._slots:
            sender = self._idle.pop() if self._idle else self._open()
            try:
                await sender.send_messages(message)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sender.close()
                raise
            self._idle.append(sender)

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


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    creatorId: str = Field(min_length=1, max_length=128)


class VideoAnalysisRequest(_Request):
    videoUrl: AnyHttpUrl
    videoId: str | None = Field(default=None, max_length=200)


class ChatSuggestionsRequest(_Request):
    fanMessage: str = Field(min_length=1, max_length=4000)
    context: Any = None


class ContentSuggestionsRequest(_Request):
    contentType: str = Field(min_length=1, max_length=200)
    tone: str = Field(min_length=1, max_length=200)
    topic: str | None = Field(default=None, max_length=500)


class ContentAnalysisRequest(_Request):
    contentId: str = Field(min_length=1, max_length=200)
    contentType: str = Field(min_length=1, max_length=200)
    contentUrl: AnyHttpUrl


@dataclass
class ApiDeps:
    repository: JobRepository
    sender: JobSender
    cache: KeyValueStore | None = None
    clock: Clock = field(default_factory=SystemClock)
    new_id: Callable[[], str] = new_job_id
    cache_prefix: str = "huntaze:"

    def __post_init__(self) -> None:
        self.schema = SchemaGate(self.repository.engine)

    async def aclose(self) -> None:
        """Close the pooled senders and the database pool (at server shutdown)."""
        closer = getattr(self.sender, "aclose", None)
        if closer is not None:
            await closer()
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

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=400,
            content={"error": "Invalid request", "details": _validation_details(exc)},
        )

    async def enqueue(job_type: JobType, payload: dict[str, Any], creator_id: str, label: str):
        await deps.schema.ensure()
        job = JobMessage(
            job_id=deps.new_id(),
            job_type=job_type,
            creator_id=creator_id,
            payload=payload,
            attempt=0,
            created_at=deps.clock.now(),
            deadline_ms=DEFAULT_DEADLINE_MS[job_type],
        )
        await deps.repository.create_pending(job, deps.clock.now())
        try:
            await deps.sender.send(job.to_wire(), job_application_properties(job))
        except Exception as exc:
            log.exception("failed to queue %s", job.job_id)
            await deps.repository.fail(
                job.job_id, JobError(code="ENQUEUE_FAILED", message=str(exc)), deps.clock.now()
            )
            return JSONResponse(
                status_code=500, content={"error": "Failed to queue job", "details": str(exc)}
            )
        return {
            "success": True,
            "jobId": job.job_id,
            "status": "pending",
            "message": f"{label} job queued",
        }

    def payload_of(body: BaseModel) -> dict[str, Any]:
        return body.model_dump(mode="json", exclude={"creatorId"}, exclude_none=True)

    @app.post("/api/jobs/video-analysis", response_model=None)
    async def video_analysis(body: VideoAnalysisRequest) -> Any:
        return await enqueue(
            JobType.VIDEO_ANALYSIS, payload_of(body), body.creatorId, "Video analysis"
        )

    @app.post("/api/jobs/chat-suggestions", response_model=None)
    async def chat_suggestions(body: ChatSuggestionsRequest) -> Any:
        payload = {"fanMessage": body.fanMessage, "context": body.context}
        return await enqueue(JobType.CHAT_SUGGEST, payload, body.creatorId, "Chat suggestions")

    @app.post("/api/jobs/content-suggestions", response_model=None)
    async def content_suggestions(body: ContentSuggestionsRequest) -> Any:
        return await enqueue(
            JobType.CONTENT_SUGGEST, payload_of(body), body.creatorId, "Content suggestions"
        )

    @app.post("/api/jobs/content-analysis", response_model=None)
    async def content_analysis(body: ContentAnalysisRequest) -> Any:
        return await enqueue(
            JobType.CONTENT_ANALYZE, payload_of(body), body.creatorId, "Content analysis"
        )

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
        await deps.schema.ensure()
        record = await deps.repository.get(job_id)
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
    cache: KeyValueStore
    if settings.redis_url.startswith("memory://"):
        cache = MemoryStore(SystemClock())
    else:
        cache = RedisStore.from_url(settings.redis_url)
    return ApiDeps(
        repository=JobRepository(make_engine(settings.database_url)),
        sender=ServiceBusJobSender(settings.servicebus_connection_send, settings.topic_jobs),
        cache=cache,
        cache_prefix=settings.redis_key_prefix,
    )


def app_from_env() -> FastAPI:
    """Factory for uvicorn: settings validated at startup (role `api`)."""
    return create_app(deps_from_settings(load_settings(Role.API)))
