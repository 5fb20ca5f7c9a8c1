"""Fixtures of the worker tests: an in-memory SQLite repository and a processor factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from workers_fakes import FakeClock, FakeOutbox, ManualSleeper

from workers.common.contracts import JobType
from workers.common.db import create_schema, make_engine
from workers.common.handlers import JobHandler
from workers.common.idempotency import IdempotencyGuard, MemoryStore
from workers.common.processor import JobProcessor
from workers.common.repository import JobRepository


@pytest.fixture
async def repo() -> AsyncIterator[JobRepository]:
    engine = make_engine("sqlite://")
    await create_schema(engine)
    yield JobRepository(engine)
    await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox() -> FakeOutbox:
    return FakeOutbox()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
def guard(store: MemoryStore, repo: JobRepository) -> IdempotencyGuard:
    return IdempotencyGuard(store, repo, prefix="test:")


@pytest.fixture
def make_processor(
    repo: JobRepository, guard: IdempotencyGuard, outbox: FakeOutbox, clock: FakeClock
) -> Callable[..., JobProcessor]:
    def build(*handlers: JobHandler, **kwargs: Any) -> JobProcessor:
        kwargs.setdefault("sleeper", ManualSleeper())
        mapping: dict[JobType, JobHandler] = {h.job_type: h for h in handlers}
        return JobProcessor(
            mapping,
            repository=repo,
            guard=guard,
            publisher=outbox,
            scheduler=outbox,
            clock=clock,
            **kwargs,
        )

    return build
