"""Test doubles for the worker seams (settler, outbox, clock, sleeper, handlers)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.common.contracts import AICostEvent, DlqAlertEvent, EventMessage, JobMessage, JobType

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """Wall and monotonic time that only move when a test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


class ManualSleeper:
    """A sleeper for the soft-timeout watchdog that fires only when told (or never)."""

    def __init__(self, *, fire_immediately: bool = False) -> None:
        self.requested: list[float] = []
        self._event = asyncio.Event()
        if fire_immediately:
            self._event.set()

    def fire(self) -> None:
        self._event.set()

    async def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        await self._event.wait()


@dataclass
class FakeSettler:
    """Records settlement; `probe` runs at settle time to snapshot state (ordering checks)."""

    probe: Callable[[], Awaitable[Any]] | None = None
    fail_on: set[str] = field(default_factory=set)
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    snapshots: list[Any] = field(default_factory=list)

    async def _record(self, *action: Any) -> None:
        if action[0] in self.fail_on:
            raise RuntimeError(f"settlement {action[0]} failed")
        if self.probe is not None:
            self.snapshots.append(await self.probe())
        self.actions.append(action)

    async def complete(self) -> None:
        await self._record("complete")

    async def abandon(self) -> None:
        await self._record("abandon")

    async def dead_letter(self, reason: str, description: str) -> None:
        await self._record("dead_letter", reason, description)

    async def defer(self) -> None:
        await self._record("defer")

    @property
    def kinds(self) -> list[str]:
        return [a[0] for a in self.actions]


@dataclass
class ScheduledCopy:
    job: JobMessage
    application_properties: dict[str, Any]
    enqueue_at: datetime


@dataclass
class FakeOutbox:
    """RetryScheduler + EventPublisher recording what would be sent."""

    fail_publish_status: set[str] = field(default_factory=set)
    fail_schedule: bool = False
    events: list[EventMessage] = field(default_factory=list)
    costs: list[AICostEvent] = field(default_factory=list)
    alerts: list[DlqAlertEvent] = field(default_factory=list)
    scheduled: list[ScheduledCopy] = field(default_factory=list)

    async def schedule(
        self, job: JobMessage, application_properties: dict[str, Any], enqueue_at: datetime
    ) -> None:
        if self.fail_schedule:
            raise ConnectionError("service bus unavailable")
        self.scheduled.append(ScheduledCopy(job, dict(application_properties), enqueue_at))

    async def publish(self, event: EventMessage) -> None:
        if event.status.value in self.fail_publish_status:
            raise ConnectionError("events topic unavailable")
        self.events.append(event)

    async def publish_cost(self, event: AICostEvent) -> None:
        self.costs.append(event)

    async def publish_alert(self, event: DlqAlertEvent) -> None:
        self.alerts.append(event)

    def statuses(self) -> list[tuple[str, int]]:
        return [(e.status.value, e.progress) for e in self.events]


Behaviour = Any  # a result, an exception instance, or an async callable(job, ctx)


class ScriptedHandler:
    """Handler whose successive runs follow a script; records the attempts it saw."""

    def __init__(self, job_type: JobType, *script: Behaviour) -> None:
        self.job_type = job_type
        self.script = list(script)
        self.calls: list[int] = []

    async def run(self, job: JobMessage, ctx: Any) -> Any:
        self.calls.append(job.attempt)
        step = self.script.pop(0) if self.script else {"ok": True}
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return await step(job, ctx)
        return step


PAYLOADS: dict[JobType, dict[str, Any]] = {
    JobType.VIDEO_ANALYSIS: {"videoUrl": "https://media.example/v.mp4"},
    JobType.CHAT_SUGGEST: {"fanMessage": "hi!", "context": {"tier": "vip"}},
    JobType.CONTENT_SUGGEST: {"contentType": "post", "tone": "playful"},
    JobType.CONTENT_ANALYZE: {
        "contentId": "c1",
        "contentType": "photo",
        "contentUrl": "https://media.example/p.jpg",
    },
}


def job_body(
    job_type: JobType = JobType.CHAT_SUGGEST,
    *,
    job_id: str = "job_1",
    attempt: int = 0,
    payload: dict[str, Any] | None = None,
    deadline_ms: int = 90_000,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "jobId": job_id,
        "jobType": job_type.value,
        "creatorId": "creator-1",
        "payload": PAYLOADS[job_type] if payload is None else payload,
        "attempt": attempt,
        "createdAt": T0.isoformat().replace("+00:00", "Z"),
        "deadlineMs": deadline_ms,
    }
    body.update(extra)
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()
