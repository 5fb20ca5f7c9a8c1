"""pytest plugin (`pytest11` entry point `sbharness`): the harness as fixtures.

Tests ask for what they need and get it running, isolated per xdist worker:

    def test_chat(workers, job_api, events, db, signalr):
        db.add_creator("c1", email="c1@example.com")
        running = workers("jobs", "notify")
        job_id = job_api.post("/api/jobs/chat-suggestions", json={...}).json()["jobId"]
        events.wait_for_statuses(job_id, ["processing", "completed"])

Options: `--stack auto|local|embedded|containers|connection-string` (where Service Bus,
PostgreSQL and Redis come from) and `--sb-connection-string` (a Service Bus namespace or
the official emulator instead of the in-process emulator). Heavy imports happen inside the
fixtures, so the plugin costs nothing to suites that do not use it.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx
    from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusSender
    from sqlalchemy.engine import Engine

    from emulator.servicebus.core.clock import EmulatorClock
    from harness.host import FunctionsHost, Invocation
    from harness.stack import Stack
    from standins.ai import AIServer
    from standins.mail import MailSink
    from standins.signalr import SignalRServer
    from standins.webhook import WebhookSink

log = logging.getLogger("harness.pytest")

ROOT = Path(__file__).resolve().parents[1]
WORKERS_DIR = ROOT / "workers"
APPS = ("video", "jobs", "notify")
STACK_CHOICES = ("auto", "local", "embedded", "containers", "connection-string")
AI_API_KEY = "harness-ai-key"
WEBHOOK_SECRET = "harness-webhook-secret"
DEFAULT_TIMEOUT = 30.0

# -- options ---------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sbharness", "Service Bus harness")
    group.addoption(
        "--stack",
        choices=STACK_CHOICES,
        default=os.environ.get("HARNESS_STACK", "auto"),
        help="where Service Bus, PostgreSQL and Redis come from (default auto, or "
        "$HARNESS_STACK); auto prints what it chose and why",
    )
    group.addoption(
        "--sb-connection-string",
        default=os.environ.get("HARNESS_SB_CONNECTION_STRING") or None,
        help="use this Service Bus (official emulator or a namespace; needs Manage rights to "
        "apply the topology) instead of the in-process emulator",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    stack = config.getoption("--stack", None)
    if stack is None:
        return None
    sb = " with --sb-connection-string" if config.getoption("--sb-connection-string") else ""
    return f"sbharness: --stack {stack}{sb}"


# -- stack -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One stack per xdist worker (own emulator, database and Redis key prefix)."""
    from harness.stack import StackBuilder, StackError

    config = request.config
    provider = config.getoption("--stack")
    connection = config.getoption("--sb-connection-string")
    if provider == "connection-string" and not connection:
        raise pytest.UsageError("--stack connection-string needs --sb-connection-string")
    if connection and provider == "auto":
        provider = "connection-string"
    builder = StackBuilder().provider(provider).isolated()
    if connection:
        builder = builder.with_servicebus(connection)
    try:
        started = builder.start()
    except StackError as exc:
        pytest.fail(f"stack {provider!r} did not start: {exc}", pytrace=False)
    _report(config, started.describe())
    try:
        yield started
    finally:
        started.stop()


def _report(config: pytest.Config, text: str) -> None:
    """Say which stack ran: on the terminal when there is one (not under xdist), else log."""
    log.info("%s", text)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not os.environ.get("PYTEST_XDIST_WORKER"):
        reporter.write_line("")
        reporter.write_line(text)


def _admin_connection(stack: Stack) -> tuple[str, dict[str, Any]]:
    """A Manage connection string and the admin-client kwargs (CA bundle for the emulator)."""
    if stack.emulator is not None:
        return stack.emulator.connection_string, {
            "connection_verify": str(stack.emulator.ca_bundle)
        }
    return stack.servicebus_connection, {}


# -- events collector ------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One message seen on the events topic."""

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
        if self.event_type == "metric.ai_cost":
            bits.append(f"model={self.properties.get('model')}")
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

        conn, kwargs = _admin_connection(self.stack)
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

        conn, kwargs = _admin_connection(self.stack)
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


# -- Service Bus -----------------------------------------------------------------------------


class ServiceBusHelper:
    """Sync SDK access to the stack's Service Bus, plus job sending and event waits."""

    def __init__(self, stack: Stack, client: ServiceBusClient, events: Events) -> None:
        self.stack = stack
        self.client = client
        self.events = events
        self.connection_string = stack.servicebus_connection
        self.send_connection_string = stack.servicebus_send_connection
        self.topic_jobs = stack.topic_jobs
        self.topic_events = stack.topic_events
        # Opening and closing an SDK sender costs ~1 s against the emulator; keep one per topic.
        self._senders: dict[str, ServiceBusSender] = {}

    def sender(self, topic: str | None = None) -> ServiceBusSender:
        """A sender on `topic` (default the jobs topic), kept open until the test ends."""
        topic = topic or self.topic_jobs
        sender = self._senders.get(topic)
        if sender is None:
            sender = self._senders[topic] = self.client.get_topic_sender(topic)
        return sender

    def close(self) -> None:
        senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            with contextlib.suppress(Exception):
                sender.close()

    @property
    def admin_connection_string(self) -> str:
        return _admin_connection(self.stack)[0]

    def send_job(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        creator_id: str = "creator-1",
        job_id: str | None = None,
        attempt: int = 0,
        deadline_ms: int | None = None,
    ) -> str:
        """Send a job message exactly as the job API does (body, properties, message id);
        returns the job id. No database row is created: use `job_api` for that."""

        from workers.common.contracts import (
            DEFAULT_DEADLINE_MS,
            JobMessage,
            JobType,
            job_application_properties,
        )

        kind = JobType(job_type)
        job = JobMessage(
            job_id=job_id or f"job_{uuid.uuid4().hex[:12]}",
            job_type=kind,
            creator_id=creator_id,
            payload=dict(payload),
            attempt=attempt,
            created_at=datetime.now(UTC),
            deadline_ms=deadline_ms or DEFAULT_DEADLINE_MS[kind],
        )
        self.send_raw(
            json.dumps(job.to_wire()),
            job_application_properties(job),
            message_id=f"{job.job_id}:{attempt}",
        )
        return job.job_id

    def send_raw(
        self,
        body: str | bytes,
        application_properties: Mapping[str, Any],
        *,
        message_id: str | None = None,
        topic: str | None = None,
    ) -> str:
        """Send any body (e.g. an invalid payload) to the jobs topic; returns the message id."""
        from azure.servicebus import ServiceBusMessage

        message_id = message_id or uuid.uuid4().hex
        message = ServiceBusMessage(
            body,
            content_type="application/json",
            application_properties=dict(application_properties),
            message_id=message_id,
        )
        self.sender(topic).send_messages(message)
        return message_id

    @contextlib.contextmanager
    def subscription_changed(
        self, subscription: str, *, topic: str | None = None, **properties: Any
    ) -> Iterator[Any]:
        """Change a subscription's properties (e.g. `lock_duration=timedelta(seconds=2)`)
        through the administration client for the `with` block, then put them back."""
        from azure.servicebus.management import ServiceBusAdministrationClient

        topic = topic or self.topic_jobs
        conn, kwargs = _admin_connection(self.stack)
        with ServiceBusAdministrationClient.from_connection_string(conn, **kwargs) as admin:
            current = admin.get_subscription(topic, subscription)
            unknown = [name for name in properties if not hasattr(current, name)]
            if unknown:
                raise AttributeError(f"subscriptions have no property {', '.join(unknown)}")
            before = {name: getattr(current, name) for name in properties}
            for name, value in properties.items():
                setattr(current, name, value)
            admin.update_subscription(topic, current)
            try:
                yield admin.get_subscription(topic, subscription)
            finally:
                restored = admin.get_subscription(topic, subscription)
                for name, value in before.items():
                    setattr(restored, name, value)
                admin.update_subscription(topic, restored)

    def peek_dead_letters(self, subscription: str, max_count: int = 50) -> list[Any]:
        """Dead letters of a jobs-topic subscription, peeked (not locked, not counted)."""
        with self.client.get_subscription_receiver(
            self.topic_jobs, subscription, sub_queue="deadletter"
        ) as receiver:
            return list(receiver.peek_messages(max_message_count=max_count))

    def wait_for_event(self, *args: Any, **kwargs: Any) -> list[Event]:
        """Shortcut for `events.wait_for(...)`."""
        return self.events.wait_for(*args, **kwargs)


@pytest.fixture(scope="session")
def _servicebus_client(stack: Stack) -> Iterator[ServiceBusClient]:
    from azure.servicebus import ServiceBusClient

    with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client:
        yield client


@pytest.fixture
def servicebus(
    stack: Stack, _servicebus_client: ServiceBusClient, events: Events
) -> Iterator[ServiceBusHelper]:
    """SDK clients on the stack's connection string, `send_job`, `wait_for_event`."""
    helper = ServiceBusHelper(stack, _servicebus_client, events)
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def emulator_clock(stack: Stack) -> Iterator[EmulatorClock]:
    """The in-process emulator's clock (`advance(seconds)`); skips on a real namespace.

    Reset to wall time after the test: the apps schedule retries by their own clock, so a
    clock left ahead would make the next test's "retry in 15 s" due at once."""
    if stack.emulator is None:
        pytest.skip("emulator_clock needs the in-process emulator (not --sb-connection-string)")
    clock = stack.emulator.clock
    try:
        yield clock
    finally:
        clock.reset()


# -- stand-ins -------------------------------------------------------------------------------


@pytest.fixture
def ai_stub() -> Iterator[AIServer]:
    """The AI inference stand-in over HTTP (the workers run in threads and call httpx)."""
    from standins.ai import AIServer

    with AIServer(api_key=AI_API_KEY) as server:
        yield server


@pytest.fixture
def signalr() -> Iterator[SignalRServer]:
    """SignalR Service REST stand-in; the notify app's output binding posts here."""
    from standins.signalr import SignalRServer

    with SignalRServer() as server:
        yield server


@pytest.fixture
def mailbox() -> Iterator[MailSink]:
    """SMTP sink the notify app mails to."""
    from standins.mail import MailSink

    with MailSink() as sink:
        yield sink


@pytest.fixture
def webhooks() -> Iterator[WebhookSink]:
    """Webhook sink; give a creator `webhooks.url_for(path)` (see `db.add_creator`)."""
    from standins.webhook import WebhookSink

    with WebhookSink() as sink:
        yield sink


# -- database --------------------------------------------------------------------------------


class Database:
    """Sync SQLAlchemy access to the stack's database, for arranging and asserting."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        from workers.common.db import Base

        self.url = url
        sync_url = url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                sync_url = "postgresql+psycopg://" + url[len(prefix) :]
        self.engine: Engine = create_engine(sync_url, pool_pre_ping=True)
        # Tables exist before any worker starts, so worker and test never race on DDL.
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]

    def execute(self, sql: str, **params: Any) -> int:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            return conn.execute(text(sql), params).rowcount

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM jobs WHERE id = :id", id=job_id)
        return rows[0] if rows else None

    def add_creator(
        self,
        creator_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        """Insert or replace a creator (notifications read email and webhook from here)."""
        self.execute("DELETE FROM creators WHERE id = :id", id=creator_id)
        self.execute(
            "INSERT INTO creators (id, email, name, webhook_url, webhook_secret) "
            "VALUES (:id, :email, :name, :url, :secret)",
            id=creator_id,
            email=email,
            name=name,
            url=webhook_url,
            secret=webhook_secret,
        )

    def job_type_metric(self, job_type: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM job_type_metrics WHERE job_type = :t", t=job_type)
        return rows[0] if rows else {"completed_count": 0, "failed_count": 0}

    def ai_cost(self, model: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM ai_cost_metrics WHERE model = :m", m=model)
        return rows[0] if rows else {"calls": 0, "input_tokens": 0, "output_tokens": 0}


@pytest.fixture(scope="session")
def db(stack: Stack) -> Iterator[Database]:
    """The stack's (per-worker) PostgreSQL database, tables created."""
    database = Database(stack.database_url)
    try:
        yield database
    finally:
        database.close()


# -- workers ---------------------------------------------------------------------------------


@dataclass
class RunningWorkers:
    """The hosts started for one test, by app name, with waits across all of them."""

    hosts: dict[str, FunctionsHost] = field(default_factory=dict)

    def __getitem__(self, app: str) -> FunctionsHost:
        return self.hosts[app]

    def invocations(self, where: Callable[[Invocation], bool] | None = None) -> list[Invocation]:
        return [i for h in self.hosts.values() for i in h.invocations if where is None or where(i)]

    def for_message(self, message_id: str) -> list[Invocation]:
        return self.invocations(lambda i: i.message_id == message_id)

    def for_job(self, job_id: str, function: str | None = None) -> list[Invocation]:
        """Runs of a job's messages (ids `<jobId>:<attempt>`, every attempt), oldest first."""
        runs = self.invocations(
            lambda i: (
                (i.message_id or "").startswith(f"{job_id}:") and function in (None, i.function)
            )
        )
        return sorted(runs, key=lambda i: i.started_at)

    def host_of(self, function: str) -> FunctionsHost:
        for host in self.hosts.values():
            if function in host.functions:
                return host
        raise KeyError(f"no running app has {function}; running: {sorted(self.hosts)}")

    def wait_for_invocation(
        self,
        function: str,
        *,
        message_id: str | None = None,
        where: Callable[[Invocation], bool] | None = None,
        count: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[Invocation]:
        """Block until `count` finished runs of `function` (of `message_id`) are recorded."""

        def match(i: Invocation) -> bool:
            return (message_id is None or i.message_id == message_id) and (
                where is None or where(i)
            )

        return self.host_of(function).wait_for_invocations(
            count, function=function, where=match, timeout=timeout
        )

    def wait_for_condition(
        self,
        check: Callable[[], Any],
        *,
        function: str,
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "condition",
    ) -> Any:
        """Re-check `check()` (e.g. a database query) each time a run of `function`
        finishes, until it is truthy. Event-driven: no polling, no sleeps."""
        host = self.host_of(function)
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            seen = sum(1 for i in host.invocations if i.function == function and i.finished)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                host.wait_until(
                    lambda items, seen=seen: (
                        sum(1 for i in items if i.function == function and i.finished) > seen
                    ),
                    timeout=remaining,
                    what=f"a new finished run of {function}",
                )


class WorkerFactory:
    """`workers("jobs", "notify")` loads and starts apps under FunctionsHost with the
    stack's and stand-ins' settings; every host is stopped at teardown (reverse order)."""

    def __init__(
        self,
        base_settings: Mapping[str, str],
        broker_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.base_settings = dict(base_settings)
        self.broker_clock = broker_clock
        self.running = RunningWorkers()
        self._started: list[FunctionsHost] = []
        self._env_before: dict[str, str | None] = {}

    def __call__(
        self,
        *apps: str,
        settings: Mapping[str, str] | None = None,
        host_only_settings: Mapping[str, str] | None = None,
        run_timers: bool = False,
        shutdown_grace: float = 10.0,
    ) -> RunningWorkers:
        from harness.host import FunctionsHost

        for app in apps:
            if app not in APPS:
                raise ValueError(f"unknown worker app {app!r}; choose from {APPS}")
            if app in self.running.hosts:
                raise ValueError(f"{app} is already running in this test")
        values = {**self.base_settings, **(settings or {})}
        for key in values:
            self._env_before.setdefault(key, os.environ.get(key))
        # Loading writes os.environ and imports, so one at a time; starting (attaching
        # receivers) is network-bound, so all at once.
        loaded = []
        try:
            for app in apps:
                loaded.append(
                    FunctionsHost.load(
                        WORKERS_DIR / app,
                        settings=values,
                        host_only_settings=host_only_settings,
                        run_timers=run_timers,
                        shutdown_grace=shutdown_grace,
                        broker_clock=self.broker_clock,
                    )
                )
            _in_parallel([host.start for host in loaded])
        except BaseException:
            _in_parallel([host.stop for host in reversed(loaded)])
            raise
        self._started.extend(loaded)
        self.running.hosts.update((host.name, host) for host in loaded)
        return self.running

    def stop(self) -> None:
        """Stop every host (in parallel: each waits on its own receivers and clients)."""
        hosts, self._started = self._started, []
        try:
            _in_parallel([host.stop for host in reversed(hosts)])
        finally:
            # Each host restores what it wrote; stopped concurrently they can interleave,
            # so put back the environment as it was before the first app was loaded.
            for key, value in self._env_before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _in_parallel(calls: Sequence[Callable[[], Any]]) -> None:
    """Run the calls in threads; all run even if some fail, then the first error raises."""
    if len(calls) <= 1:
        for call in calls:
            call()
        return
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,), name="harness-parallel") for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def worker_settings(
    stack: Stack, ai: AIServer, signalr: SignalRServer, mail: MailSink
) -> dict[str, str]:
    """Every app setting the three worker apps read, pointing at this stack and stand-ins."""
    return {
        **stack.settings(),
        **ai.environment(),
        **mail.environment(),
        "AzureSignalRConnectionString": signalr.connection_string,
        "WEBHOOK_SIGNING_SECRET": WEBHOOK_SECRET,
        "SMTP_FROM": "noreply@harness.local",
    }


@pytest.fixture
def workers(
    stack: Stack,
    db: Database,
    ai_stub: AIServer,
    signalr: SignalRServer,
    mailbox: MailSink,
) -> Iterator[WorkerFactory]:
    """Factory: `running = workers("video", "jobs", "notify")`; hosts stop at teardown."""
    factory = WorkerFactory(worker_settings(stack, ai_stub, signalr, mailbox), stack.broker_now)
    try:
        yield factory
    finally:
        factory.stop()


# -- job API ---------------------------------------------------------------------------------


@pytest.fixture
def job_api(stack: Stack, db: Database) -> Iterator[httpx.Client]:
    """httpx client on the real job API (uvicorn in a thread), send-only connection string."""
    import httpx

    from standins._http_runner import ServerThread
    from workers.api.app import create_app, deps_from_settings
    from workers.common.settings import Role, load_settings

    settings = load_settings(Role.API, env=stack.settings())
    server = ServerThread(create_app(deps_from_settings(settings)), name="job-api")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()
