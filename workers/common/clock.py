"""Injectable time so retry scheduling and deadlines are testable without sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

Sleeper = Callable[[float], Awaitable[None]]
"""An awaitable sleep; the processor's soft-timeout watchdog awaits it (tests inject one)."""


class Clock(Protocol):
    """Wall time for timestamps and monotonic time for measuring elapsed work."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


async def real_sleep(seconds: float) -> None:
    """Default sleeper for production."""
    await asyncio.sleep(seconds)


def ensure_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in this package is UTC-aware."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
