"""The `events` fixture: every message on the stack's events topic, waited on readably.

A collector per session drains a subscription of its own (so it never competes with the
apps for messages); each test sees the events from its own start. A wait that times out
fails with what did arrive (a diff for status sequences), which is most of a diagnosis.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from .stack import admin_connection

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusReceivedMessage

    from harness.stack import Stack

log = logging.getLogger("harness.pytest")

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Event:
    """One message seen on the events topic.

    The envelope is the stack's events-topic convention: `eventType`, `jobId` and `status`
    as application properties or body fields (`job.update` when no type is given)."""

    body: Any
    properties: dict[str, Any]
    received_at: float
    sequence_number: int | None = None

    @property
    def event_type(self) -> str:
        return str(self.properties.get("eventType") or "job.update")

    @property
    def job_id(self) -> str | None:
        value = self.properties.get("jobId") or _get(self.body, "jobId")
        return None if value is None else str(value)

    @property
    def status(self) -> str | None:
        value = _get(self.body, "status") or self.properties.get("status")
        return None if value is None else str(value)

    @property
    def progress(self) -> int | None:
        value = _get(self.body, "progress")
        return value if isinstance(value, int) else None

    def line(self) -> str:
        bits = [self.event_type, f"jobId={self.job_id}"]
        if self.status:
            bits.append(f"status={self.status}")
        if self.progress is not None:
            bits.append(f"progress={self.progress}")
        if "model" in self.properties:  # metric events say which model they count
            bits.append(f"model={self.properties['model']}")
        return " ".join(bits)


def _get(body: Any, key: str) -> Any:
    return body.get(key) if isinstance(body, dict) else None


def _decode(message: ServiceBusReceivedMessage) -> Event:
    raw = b"".join(message.body) if not isinstance(message.body, bytes) else message.body
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    props = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else v
        )
        for k, v in (message.application_properties or {}).items()
    }
    return Event(body, props, time.monotonic(), message.sequence_number)


class EventCollector:
    """Drains a subscription of its own on the events topic in a thread, so tests can wait
    for events without competing with the notify workers for them."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.topic = stack.topic_events
        self.subscription = f"harness-{stack.worker_id}-{uuid.uuid4().hex[:8]}"
        self._cond = threading.Condition()
        self._items: list[Event] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EventCollector:
        from azure.servicebus.management import ServiceBusAdministrationClient

        conn, kwargs = admin_connection(self.stack)
        try:
            with ServiceBusAdministrationClient.from_connection_string(conn, **kwargs) as admin:
                admin.create_subscription(self.topic, self.subscription)
        except Exception as exc:
            raise RuntimeError(
                f"cannot create the events subscription {self.topic}/{self.subscription} "
                f"(needs Manage rights on the connection string): {exc}"
            ) from exc
        self._thread = threading.Thread(target=self._run, name="harness-events", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            self.stop()
            raise RuntimeError(f"events collector did not start: {self._error}")
        return self

    def _run(self) -> None:
        from azure.servicebus import ServiceBusClient, ServiceBusReceiveMode

        try:
            with ServiceBusClient.from_connection_string(self.stack.servicebus_connection) as c:
                with c.get_subscription_receiver(
                    self.topic,
                    self.subscription,
                    receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
                    prefetch_count=100,
                ) as receiver:
                    self._ready.set()
                    while not self._stop.is_set():
                        batch = receiver.receive_messages(max_message_count=100, max_wait_time=0.5)
                        if batch:
                            events = [_decode(m) for m in batch]
                            with self._cond:
                                self._items.extend(events)
                                self._cond.notify_all()
        except BaseException as exc:  # surfaced by start() or by the next wait
            self._error = exc
            self._ready.set()
            log.exception("events collector stopped")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        from azure.servicebus.management import ServiceBusAdministrationClient

        conn, kwargs = admin_connection(self.stack)
        with contextlib.suppress(Exception):
            with ServiceBusAdministrationClient.from_connection_string(conn, **kwargs) as admin:
                admin.delete_subscription(self.topic, self.subscription)

    def mark(self) -> int:
        with self._cond:
            return len(self._items)

    def since(self, mark: int = 0) -> list[Event]:
        with self._cond:
            return list(self._items[mark:])

    def wait(
        self, probe: Callable[[list[Event]], Any], timeout: float, mark: int = 0
    ) -> Any | None:
        """`probe(events since mark)` once truthy, or None at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = probe(self._items[mark:])
                if result:
                    return result
                if self._error is not None:
                    raise RuntimeError(f"events collector failed: {self._error}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)


class Events:
    """The events that arrived during one test, and waits on them that fail readably."""

    def __init__(self, collector: EventCollector) -> None:
        self.collector = collector
        self.mark = collector.mark()

    @property
    def all(self) -> list[Event]:
        return self.collector.since(self.mark)

    def for_job(self, job_id: str, event_type: str | None = "job.update") -> list[Event]:
        return [
            e
            for e in self.all
            if e.job_id == job_id and (event_type is None or e.event_type == event_type)
        ]

    def wait_for(
        self,
        job_id: str | None = None,
        status: str | None = None,
        *,
        event_type: str | None = "job.update",
        where: Callable[[Event], bool] | None = None,
        count: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[Event]:
        """Block until `count` matching events arrived; AssertionError lists what did."""

        def match(e: Event) -> bool:
            return (
                (job_id is None or e.job_id == job_id)
                and (status is None or e.status == status)
                and (event_type is None or e.event_type == event_type)
                and (where is None or where(e))
            )

        found = self.collector.wait(
            lambda items: (
                [e for e in items if match(e)] if sum(map(match, items)) >= count else None
            ),
            timeout,
            self.mark,
        )
        if found:
            return found
        wanted = ", ".join(
            f"{k}={v!r}"
            for k, v in (("jobId", job_id), ("status", status), ("eventType", event_type))
            if v is not None
        )
        raise AssertionError(
            f"timed out after {timeout}s waiting for {count} event(s) with {wanted or 'any'}"
            + (" (and the where= predicate)" if where else "")
            + "\n"
            + self._arrived(job_id)
        )

    def wait_for_statuses(
        self, job_id: str, statuses: Sequence[str], timeout: float = DEFAULT_TIMEOUT
    ) -> list[Event]:
        """Block until the job's update statuses (repeats collapsed) end with `statuses`;
        on timeout the AssertionError is a diff of expected against arrived."""
        wanted = list(statuses)

        def probe(items: list[Event]) -> list[Event] | None:
            mine = [e for e in items if e.job_id == job_id and e.event_type == "job.update"]
            return mine if _collapse(e.status for e in mine)[-len(wanted) :] == wanted else None

        found = self.collector.wait(probe, timeout, self.mark)
        if found:
            return found
        got = _collapse(e.status for e in self.for_job(job_id))
        diff = "\n".join(
            difflib.unified_diff(wanted, got, "expected statuses", "arrived statuses", lineterm="")
        )
        raise AssertionError(
            f"timed out after {timeout}s waiting for job {job_id} statuses {wanted}\n"
            f"{diff or '(same statuses, but not in a terminal position)'}\n" + self._arrived(job_id)
        )

    def _arrived(self, job_id: str | None) -> str:
        items = self.all
        mine = [e for e in items if job_id is not None and e.job_id == job_id]
        others = [e for e in items if e not in mine]
        lines = []
        if job_id is not None:
            lines.append(f"events for jobId={job_id!r} that arrived ({len(mine)}):")
            lines += [f"  + {e.line()}" for e in mine] or ["  (none)"]
        lines.append(f"other events during this test ({len(others)}):")
        lines += [f"  . {e.line()}" for e in others[-30:]] or ["  (none)"]
        return "\n".join(lines)


def _collapse(statuses: Iterator[str | None] | Sequence[str | None]) -> list[str]:
    out: list[str] = []
    for s in statuses:
        if s is not None and (not out or out[-1] != s):
            out.append(s)
    return out


@pytest.fixture(scope="session")
def _event_collector(stack: Stack) -> Iterator[EventCollector]:
    collector = EventCollector(stack).start()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def events(_event_collector: EventCollector) -> Events:
    """Events on the events topic from the start of this test (collector is per session)."""
    return Events(_event_collector)
