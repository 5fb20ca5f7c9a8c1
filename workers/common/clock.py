"""Injectable time so retry scheduling and deadlines are testable without sleeping.

Two clocks serve the apps: `SystemClock` against a real namespace, and `RemoteOffsetClock`
when something else owns "now" (under the harness, the emulator's movable clock). Which
one an app gets is `clock_from_settings`' decision, from `WORKERS_CLOCK_URL`.
`RemoteOffsetClock` lives in `functions_shared`, since the local host follows the same clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from functions_shared.offset_clock import ClockReadError, RemoteOffsetClock

if TYPE_CHECKING:
    from workers.common.settings import Settings

__all__ = [
    "Clock",
    "ClockReadError",
    "RemoteOffsetClock",
    "Sleeper",
    "SystemClock",
    "clock_from_settings",
    "ensure_utc",
    "real_sleep",
]

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


def clock_from_settings(settings: Settings) -> Clock:
    """The broker's clock when the settings name a clock service, else the system's."""
    if settings.clock_url:
        return RemoteOffsetClock(settings.clock_url, offset_file=settings.clock_file or None)
    return SystemClock()


async def real_sleep(seconds: float) -> None:
    """Default sleeper for production."""
    await asyncio.sleep(seconds)


def ensure_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in this package is UTC-aware."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
