"""Injected time for the broker core.

The broker never calls ``time.time()`` itself: tests move an :class:`EmulatorClock` forward so a
three-minute retry ladder or a two-minute lock runs in milliseconds, without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the broker reads: seconds since the Unix epoch, UTC."""

    def now(self) -> float: ...


class ManualClock:
    """A clock that only moves when told to (pure unit tests of the core)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock cannot go backwards")
        self._now += seconds


class EmulatorClock:
    """Wall-clock time plus an offset that tests can push forward.

    Real time keeps flowing (the SDK's own timers and lock checks read the wall clock), while
    ``advance`` jumps the broker ahead: due scheduled messages, lapsed locks and expired TTLs
    all take effect before ``advance`` returns, because listeners are told synchronously.
    """

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offset = 0.0
        self._advanced = 0.0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._wall() + self._offset

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    @property
    def offset(self) -> float:
        return self._offset

    @property
    def advanced(self) -> float:
        """Seconds skipped by `advance` since the clock was made (a reset does not undo it):
        the simulated time a test session covered."""
        return self._advanced

    def advance(self, seconds: float) -> None:
        """Move time forward and let the broker process everything that became due."""
        if seconds < 0:
            raise ValueError("the clock cannot go backwards")
        with self._lock:
            self._offset += seconds
            self._advanced += seconds
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def restore_offset(self, offset: float) -> None:
        """Take up an offset read from durable state, before anything reads the clock.

        Not an ``advance``: nothing was skipped in this run, and no listener is told.
        """
        with self._lock:
            self._offset = offset

    def reset(self) -> None:
        """Back to wall time (offset 0).

        Whatever was set in the advanced time (locks, schedules, TTLs) then lies that much
        further ahead, so only reset when nothing relies on it. Clients that follow this
        clock (the harness points the apps at it) see time go back.
        """
        with self._lock:
            self._offset = 0.0
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def on_advance(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
