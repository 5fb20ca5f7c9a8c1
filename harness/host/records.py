"""What the host did, kept so tests can assert on it and wait for it without sleeping."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("harness.host.invocations")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Invocation:
    """One run of one function. Mutated only by the host, under the log's lock."""

    id: int
    function: str
    trigger: str  # "serviceBusTrigger" | "timerTrigger"
    started_at: datetime
    message_id: str | None = None
    delivery_count: int | None = None
    sequence_number: int | None = None
    lock_token: str | None = None
    ended_at: datetime | None = None
    # "running" → "succeeded" | "failed" | "timeout" | "cancelled"
    outcome: str = "running"
    error: str | None = None
    traceback: str | None = None
    """The formatted exception of a failed run (what `harness dlq reproduce` shows)."""
    # "completed" | "abandoned" | "dead-lettered" | "deferred" | None (left to lock expiry)
    settlement: str | None = None
    settled_by: str | None = None  # "host" (auto) | "function" (ServiceBusMessageActions)
    settlement_error: str | None = None
    dead_letter_reason: str | None = None
    lock_renewals: int = 0
    renewal_stopped: str | None = None  # why the host stopped renewing, when it did
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.outcome != "running"

    @property
    def duration(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def summary(self) -> str:
        return (
            f"#{self.id} {self.function} msg={self.message_id} dc={self.delivery_count} "
            f"{self.outcome} settlement={self.settlement}"
            + (f" error={self.error}" if self.error else "")
            + (f" settle_error={self.settlement_error}" if self.settlement_error else "")
        )


class InvocationLog:
    """Invocation records plus a condition variable, so waits block instead of polling."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Invocation] = []
        self._running: dict[str, int] = {}
        self._peak: dict[str, int] = {}

    def start(self, function: str, trigger: str, **fields: Any) -> Invocation:
        with self._cond:
            item = Invocation(len(self._items) + 1, function, trigger, utcnow(), **fields)
            self._items.append(item)
            running = self._running.get(function, 0) + 1
            self._running[function] = running
            self._peak[function] = max(self._peak.get(function, 0), running)
            self._cond.notify_all()
            return item

    def update(self, item: Invocation, **fields: Any) -> None:
        with self._cond:
            for key, value in fields.items():
                setattr(item, key, value)
            self._cond.notify_all()

    def bump(self, item: Invocation, name: str) -> None:
        with self._cond:
            setattr(item, name, getattr(item, name) + 1)
            self._cond.notify_all()

    def finish(
        self,
        item: Invocation,
        outcome: str,
        error: str | None = None,
        traceback: str | None = None,
    ) -> None:
        with self._cond:
            item.outcome = outcome
            item.error = error
            item.traceback = traceback
            item.ended_at = utcnow()
            self._running[item.function] -= 1
            self._cond.notify_all()
            line = f"{item.summary()} in {item.duration:.2f}s"
        log.info("%s", line)

    def snapshot(self) -> list[Invocation]:
        """Copies, so a caller's view does not change under it."""
        with self._cond:
            return [replace(item, outputs=dict(item.outputs)) for item in self._items]

    def recent(self, count: int) -> list[Invocation]:
        """Copies of the last ``count`` invocations (a console refresh, not a whole snapshot)."""
        with self._cond:
            return [replace(item, outputs=dict(item.outputs)) for item in self._items[-count:]]

    def running(self, function: str | None = None) -> int:
        with self._cond:
            if function is not None:
                return self._running.get(function, 0)
            return sum(self._running.values())

    def peak_concurrency(self, function: str) -> int:
        with self._cond:
            return self._peak.get(function, 0)

    def wait(self, probe: Callable[[list[Invocation]], T | None], timeout: float, what: str) -> T:
        """Block until `probe(snapshot)` returns something truthy; TimeoutError lists the log."""
        with self._cond:
            result = self._cond.wait_for(lambda: probe(self._items), timeout=timeout)
            if result:
                return result
            lines = "\n  ".join(item.summary() for item in self._items) or "(none)"
        raise TimeoutError(
            f"timed out after {timeout}s waiting for {what}; invocations:\n  {lines}"
        )
