"""Wiring of the real collaborators for the function apps (thin adapters stay in apps).

`function_app.py` validates settings at import (the host reports a clear startup error),
builds a `JobWorkerRuntime` per subscription and forwards each trigger invocation to it.
Network clients connect lazily, on the first message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from functions_shared.hostjson import apply_overrides, parse_timespan
from workers.common.ai_client import AIClient, ModelRoute
from workers.common.clock import Clock, clock_from_settings
from workers.common.contracts import SUBSCRIPTION_FOR_JOB_TYPE, JobType
from workers.common.db import create_schema, make_engine
from workers.common.deadletters import (
    DeadLetterSweeper,
    ServiceBusDeadLetterPeeker,
    SweepReport,
)
from workers.common.handlers import (
    ChatSuggestHandler,
    ContentAnalyzeHandler,
    ContentSuggestHandler,
    JobHandler,
    VideoAnalysisHandler,
)
from workers.common.idempotency import IdempotencyGuard, KeyValueStore, MemoryStore, RedisStore
from workers.common.messaging import (
    MessageActionsSettler,
    ServiceBusOutbox,
    received_job_from_sdk,
)
from workers.common.processor import JobProcessor, Outcome
from workers.common.repository import JobRepository
from workers.common.settings import Settings

log = logging.getLogger(__name__)

# Time kept back from the lock-renewal window for the DB write, event and settlement
# that follow the work.
SETTLE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class HostProfile:
    """The host.json settings the processor must respect."""

    function_timeout: float
    lock_renewal: float
    auto_complete: bool
    max_concurrent_calls: int
    prefetch_count: int

    @classmethod
    def load(cls, path: Path, settings: Mapping[str, str] | None = None) -> HostProfile:
        """The file plus the `AzureFunctionsJobHost__` app settings (default: the process
        environment), which the host applies too: a run budget sized from the file alone
        would outlive a renewal window shortened by such a setting."""
        environ = os.environ if settings is None else settings
        data = apply_overrides(json.loads(path.read_text()), environ)
        sb = data.get("extensions", {}).get("serviceBus", {})
        return cls(
            function_timeout=parse_timespan(data.get("functionTimeout", "00:30:00")),
            lock_renewal=parse_timespan(sb.get("maxAutoLockRenewalDuration", "00:05:00")),
            auto_complete=str(sb.get("autoCompleteMessages", True)).lower() == "true",
            max_concurrent_calls=int(sb.get("maxConcurrentCalls", 16)),
            prefetch_count=int(sb.get("prefetchCount", 0)),
        )

    @property
    def run_budget(self) -> float:
        """Longest a handler may run: inside both the lock renewal window and the timeout.

        The seed's video profile renews locks for 5 min but lets a run last 10 min; a run
        past ~7 min lost its lock and was processed twice. Capping the work here (and
        retrying it as SOFT_TIMEOUT) keeps every run inside the window.
        """
        window = min(self.lock_renewal, self.function_timeout)
        return max(1.0, window - SETTLE_MARGIN_SECONDS)

    @property
    def lease_ttl(self) -> float:
        """The run lease outlives any run the host lets live."""
        return self.function_timeout + SETTLE_MARGIN_SECONDS


class SchemaGate:
    """Creates the tables once per process, on first use (not at import)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._ready = False
        self._lock: asyncio.Lock | None = None

    async def ensure(self) -> None:
        if self._ready:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._ready:
                await create_schema(self.engine)
                self._ready = True


@dataclass
class SharedDeps:
    """Clients shared by all functions of one app (one per worker process)."""

    settings: Settings
    repository: JobRepository
    store: KeyValueStore
    outbox: ServiceBusOutbox
    ai: AIClient
    schema: SchemaGate
    clock: Clock

    @classmethod
    def from_settings(cls, settings: Settings) -> SharedDeps:
        clock = clock_from_settings(settings)
        store: KeyValueStore
        if settings.redis_url.startswith("memory://"):
            store = MemoryStore(clock)
        else:
            store = RedisStore.from_url(settings.redis_url)
        repository = JobRepository(make_engine(settings.database_url))
        return cls(
            settings=settings,
            repository=repository,
            schema=SchemaGate(repository.engine),
            store=store,
            outbox=ServiceBusOutbox.from_connection_string(
                settings.servicebus_connection, settings.topic_jobs, settings.topic_events
            ),
            ai=AIClient(
                httpx.AsyncClient(),
                api_key=settings.ai_api_key,
                api_version=settings.ai_api_version,
                timeout_seconds=settings.ai_timeout_seconds,
            ),
            clock=clock,
        )

    async def ensure_schema(self) -> None:
        await self.schema.ensure()


def build_handler(job_type: JobType, deps: SharedDeps) -> JobHandler:
    s = deps.settings
    if job_type is JobType.VIDEO_ANALYSIS:
        return VideoAnalysisHandler(deps.ai, ModelRoute(s.phi4_multimodal_endpoint, s.model_video))
    if job_type is JobType.CHAT_SUGGEST:
        return ChatSuggestHandler(deps.ai, ModelRoute(s.chat_endpoint, s.model_chat))
    if job_type is JobType.CONTENT_SUGGEST:
        return ContentSuggestHandler(deps.ai, ModelRoute(s.deepseek_v3_endpoint, s.model_content))
    return ContentAnalyzeHandler(deps.ai, ModelRoute(s.deepseek_v3_endpoint, s.model_content))


class JobWorkerRuntime:
    """One subscription's processor plus the adapter from the SDK-type binding, and the
    sweeper that ends the jobs of that subscription's dead letters."""

    def __init__(
        self,
        processor: JobProcessor,
        deps: SharedDeps | None = None,
        sweeper: DeadLetterSweeper | None = None,
    ) -> None:
        self.processor = processor
        self.deps = deps
        self.sweeper = sweeper

    @classmethod
    def build(cls, job_type: JobType, deps: SharedDeps, profile: HostProfile) -> JobWorkerRuntime:
        guard = IdempotencyGuard(deps.store, deps.repository, prefix=deps.settings.redis_key_prefix)
        processor = JobProcessor(
            {job_type: build_handler(job_type, deps)},
            repository=deps.repository,
            guard=guard,
            publisher=deps.outbox,
            scheduler=deps.outbox,
            clock=deps.clock,
            run_budget_seconds=profile.run_budget,
            lease_ttl_seconds=profile.lease_ttl,
        )
        subscription = SUBSCRIPTION_FOR_JOB_TYPE[job_type]
        sweeper = DeadLetterSweeper(
            subscription,
            ServiceBusDeadLetterPeeker.from_connection_string(
                deps.settings.servicebus_connection, deps.settings.topic_jobs, subscription
            ),
            deps.repository,
            deps.outbox,
            guard=guard,
            clock=deps.clock,
        )
        return cls(processor, deps, sweeper)

    async def sweep_dead_letters(self) -> SweepReport | None:
        """Entry point of the subscription's dead-letter sweeper timer."""
        if self.sweeper is None:
            return None
        if self.deps is not None:
            await self.deps.ensure_schema()
        return await self.sweeper.sweep()

    async def handle(self, message: Any, actions: Any) -> Outcome | None:
        """Entry point of a trigger: `ServiceBusReceivedMessage` + `ServiceBusMessageActions`."""
        if message is None:
            # The binding could not decode the delivery: nothing to settle; the lock
            # expires and the service dead-letters it at MaxDeliveryCount.
            log.error("received an undecodable Service Bus delivery")
            return None
        if self.deps is not None:
            await self.deps.ensure_schema()
        return await self.processor.process(
            received_job_from_sdk(message), MessageActionsSettler(actions, message)
        )
