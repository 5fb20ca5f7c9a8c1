"""Shared fixtures of the stand-in tests: a leak check and a SQLite repository with a creator."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from workers.common.db import create_schema, make_engine
from workers.common.repository import JobRepository


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """Fail when a test leaves threads behind (stand-ins must stop cleanly)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.daemon]
    leaked += [
        t
        for t in set(threading.enumerate()) - before
        if t.is_alive() and t.name.endswith(("-uvicorn", "standin"))
    ]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
async def repo() -> AsyncIterator[JobRepository]:
    engine = make_engine("sqlite://")
    await create_schema(engine)
    yield JobRepository(engine)
    await engine.dispose()
