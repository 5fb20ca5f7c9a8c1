"""One stack interface over every provider, and the fluent builder that starts one.

    with StackBuilder().provider("auto").with_topology(path).isolated(worker_id).start() as s:
        env.update(s.settings())

Whatever the provider, a started :class:`Stack` is a Service Bus (in-process emulator or a
namespace by connection string, topology applied), an empty PostgreSQL database of its own
and a Redis key prefix of its own; `stop()` (or leaving the `with`) drops the database,
deletes the keys and stops whatever the stack started, leaving no thread or process behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, get_args

from . import services
from .containers import resolve_images
from .docker import (
    EngineClient,
    EngineStatus,
    ImageClient,
    detect_docker_engine,
    images_problem,
    required_images,
    testcontainers_settings,
)
from .embedded import embedded_available
from .errors import StackError
from .servicebus import (
    SENDER_POLICY,
    WORKER_POLICY,
    TopologyReport,
    apply_topology,
    load_topology,
    policy_or_root,
    topic_names,
)

if TYPE_CHECKING:
    from emulator.servicebus import ServiceBusEmulator
    from emulator.servicebus.topology import NamespaceTopology

log = logging.getLogger("harness.stack")

ProviderName = Literal["auto", "local", "embedded", "containers", "connection-string"]
ServicesName = Literal["auto", "local", "embedded", "containers"]
PROVIDERS: tuple[str, ...] = get_args(ProviderName)


def _project_config() -> Path:
    from emulator.servicebus import PROJECT_CONFIG

    return Path(PROJECT_CONFIG)


def current_worker_id(env: Mapping[str, str] | None = None) -> str:
    """The pytest-xdist worker (`gw0`, `gw1` ...) or `main` outside xdist."""
    env = os.environ if env is None else env
    return env.get("PYTEST_XDIST_WORKER", "").strip() or "main"


@dataclass
class Stack:
    """A started stack: everything the workers need, and how to take it down."""

    name: str
    """The provider that ran: local, embedded, containers or connection-string."""
    reason: str
    """Why this provider (for `auto`, what was tried and what answered)."""
    services: str
    """Where PostgreSQL and Redis come from: local, embedded or containers."""
    servicebus_connection: str
    servicebus_send_connection: str
    database_url: str
    redis_url: str
    redis_key_prefix: str
    database_name: str
    worker_id: str
    topology_path: Path
    topic_jobs: str
    topic_events: str
    emulator: ServiceBusEmulator | None = None
    topology_report: TopologyReport | None = None
    server_database_url: str = ""
    """The server's maintenance database (where `database_name` was created)."""
    clock_file: Path | None = None
    """The in-process emulator's clock offset, published for readers on this machine."""
    timings: dict[str, float] = field(default_factory=dict)
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def settings(self) -> dict[str, str]:
        """The workers' environment names (see workers/common/settings.py)."""
        extra = {}
        if self.emulator is not None:  # its management API has a certificate of its own
            extra["SERVICEBUS_ADMIN_CONNECTION"] = self.emulator.connection_string
            extra["SERVICEBUS_ADMIN_CA_BUNDLE"] = str(self.emulator.ca_bundle)
            # One clock for the system under test: the apps and the job API follow the
            # emulator's (movable) clock, so their schedules match the broker's now.
            extra["WORKERS_CLOCK_URL"] = f"{self.emulator.control_url}/clock"
        if self.clock_file is not None:
            extra["WORKERS_CLOCK_FILE"] = str(self.clock_file)
        return {
            **extra,
            "SERVICEBUS_CONNECTION": self.servicebus_connection,
            "SERVICEBUS_CONNECTION_SEND": self.servicebus_send_connection,
            "TOPIC_JOBS": self.topic_jobs,
            "TOPIC_EVENTS": self.topic_events,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.redis_key_prefix,
        }

    def broker_now(self) -> datetime:
        """Now, as the Service Bus sees it: the in-process emulator's (movable) clock, or
        wall time for a namespace we do not control."""
        if self.emulator is not None:
            return self.emulator.clock.now_datetime()
        return datetime.now(UTC)

    def describe(self) -> str:
        """A few readable lines for `harness up` and test logs."""
        lines = [
            f"stack: {self.name} (services: {self.services}, worker {self.worker_id})",
            f"  why: {self.reason}",
            f"  Service Bus: {self.servicebus_connection}",
            f"  database: {services._safe(self.database_url)}",
            f"  redis: {self.redis_url} (key prefix {self.redis_key_prefix!r})",
        ]
        if self.emulator is not None:
            lines.append(f"  emulator health: {self.emulator.health_url}")
        if self.timings:
            took = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
            lines.append(f"  start: {took}")
        return "\n".join(lines)

    def stop(self) -> None:
        """Drop the database, delete the keys, stop servers and emulator. Idempotent."""
        self._exit.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Choice:
    """What `auto` resolved to, and why."""

    services: str
    reason: str


def needed_images(postgres: str | None = None, redis: str | None = None) -> list[str]:
    """What a containers stack runs: Ryuk (unless disabled), PostgreSQL and Redis (the given
    images, else SBH_POSTGRES_IMAGE / SBH_REDIS_IMAGE, else the pinned upstream ones)."""
    try:
        ryuk, prefix = testcontainers_settings()
    except ImportError as exc:
        raise StackError(
            "containers provider: testcontainers is not installed (pip install -e '.[stack]')"
        ) from exc
    resolved = resolve_images(postgres, redis)
    images = [resolved.postgres, resolved.redis]
    return required_images(images, ryuk_image=ryuk, prefix=prefix)


def docker_client(status: EngineStatus) -> ImageClient:
    """The client that asks the engine about images (tests replace it with a fake)."""
    return EngineClient.for_status(status)


def choose_services(
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    engine: Callable[[], EngineStatus] = detect_docker_engine,
    probe_local: Callable[[str, str], list[str]] = services.probe_local,
    embedded: Callable[[], tuple[bool, str]] = embedded_available,
    containers_installed: Callable[[], bool] | None = None,
    client: Callable[[EngineStatus], ImageClient] | None = None,
    images: Callable[[], list[str]] | None = None,
) -> Choice:
    """containers if an engine answers and has (or can pull) the images, else local if
    PostgreSQL and Redis answer, else embedded; each step's finding goes into the reason.
    Every check is bounded."""
    tried: list[str] = []
    status = engine()
    has_tc = containers_installed() if containers_installed else _testcontainers_installed()
    if status.available and has_tc:
        problem = images_problem((client or docker_client)(status), (images or needed_images)())
        if problem is None:
            return Choice("containers", f"containers: {status.reason}")
        log.warning("stack auto: not using containers, %s", problem)
        tried.append(f"{status.reason}, but {problem}")
    elif status.available:
        tried.append(f"{status.reason}, but testcontainers is not installed")
    else:
        tried.append(f"{status.reason} ({status.elapsed:.2f}s)")
    db_url, rd_url = services.local_urls(database_url, redis_url)
    problems = probe_local(db_url, rd_url)
    if not problems:
        tried.append(f"PostgreSQL and Redis answer at {services._safe(db_url)} and {rd_url}")
        return Choice("local", "local: " + "; ".join(tried))
    tried.append("local services unusable: " + "; ".join(problems))
    ok, why = embedded()
    if ok:
        tried.append(why)
        return Choice("embedded", "embedded: " + "; ".join(tried))
    raise StackError("auto: no provider can run here: " + "; ".join([*tried, why]))


def _testcontainers_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("testcontainers") is not None


class StackBuilder:
    """Fluent, typed entry point (in the style of testcontainers); `start()` returns a Stack."""

    def __init__(self) -> None:
        self._provider: ProviderName = "auto"
        self._services: ServicesName = "auto"
        self._topology: Path | None = None
        self._worker_id: str | None = None
        self._database_url: str | None = None
        self._redis_url: str | None = None
        self._sb_connection: str | None = None
        self._sb_send_connection: str | None = None
        self._apply_topology = True
        self._admin_kwargs: dict[str, Any] = {}
        self._emulator_kwargs: dict[str, Any] = {}
        self._images: dict[str, str] = {}

    def provider(self, name: ProviderName) -> Self:
        """auto | local | embedded | containers | connection-string."""
        if name not in PROVIDERS:
            raise StackError(f"unknown stack provider {name!r}; choose one of {PROVIDERS}")
        self._provider = name
        return self

    def with_topology(self, path: str | Path) -> Self:
        """The Config.json to load into the emulator or apply to a namespace."""
        self._topology = Path(path)
        return self

    def isolated(self, worker_id: str | None = None) -> Self:
        """Name this stack's database and key prefix after a worker (default: the xdist one).
        Isolation itself is always on: a stack never shares a database or key space."""
        self._worker_id = worker_id
        return self

    def with_services(
        self,
        name: ServicesName | None = None,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
    ) -> Self:
        """Where PostgreSQL/Redis come from for `connection-string` (default auto), and the
        server URLs the local provider uses instead of DATABASE_URL / REDIS_URL."""
        if name is not None:
            if name not in get_args(ServicesName):
                raise StackError(f"unknown services {name!r}; choose one of auto, local, ...")
            self._services = name
        self._database_url = database_url or self._database_url
        self._redis_url = redis_url or self._redis_url
        return self

    def with_servicebus(
        self,
        connection_string: str,
        *,
        send_connection_string: str | None = None,
        apply_topology: bool = True,
        **admin_client_kwargs: Any,
    ) -> Self:
        """Use this namespace (official emulator or Azure) instead of the in-process emulator.
        `admin_client_kwargs` go to the administration client (e.g. `connection_verify`)."""
        self._sb_connection = connection_string
        self._sb_send_connection = send_connection_string
        self._apply_topology = apply_topology
        self._admin_kwargs = dict(admin_client_kwargs)
        return self

    def with_emulator_options(self, **kwargs: Any) -> Self:
        """Extra ServiceBusEmulator arguments (host, port, clock, ``data_dir`` to keep the
        emulator's state across stacks: see "Durable state" in docs/emulator.md)."""
        self._emulator_kwargs = dict(kwargs)
        return self

    def with_images(self, *, postgres: str | None = None, redis: str | None = None) -> Self:
        """The containers provider's images (default: SBH_POSTGRES_IMAGE / SBH_REDIS_IMAGE,
        else postgres:16-alpine / redis:7-alpine; `make images` builds local equivalents)."""
        given = {"postgres": postgres, "redis": redis}
        self._images.update({k: v for k, v in given.items() if v})
        return self

    # -- start ------------------------------------------------------------------------------

    def _resolve(self) -> tuple[str, str, str]:
        """(provider name, services, reason)."""
        provider = self._provider
        if provider == "connection-string":
            if not self._sb_connection:
                raise StackError(
                    "connection-string provider: no connection string; call "
                    ".with_servicebus(connection_string) (pytest: --sb-connection-string)"
                )
            if self._services == "auto":
                choice = self._choose()
                return (
                    provider,
                    choice.services,
                    f"Service Bus by connection string; {choice.reason}",
                )
            asked = f"Service Bus by connection string; {self._services} services as asked"
            return provider, self._services, asked
        if provider == "auto":
            choice = self._choose()
            return choice.services, choice.services, choice.reason
        return provider, provider, f"asked for {provider}"

    def _choose(self) -> Choice:
        images = (lambda: needed_images(**self._images)) if self._images else None
        choice = choose_services(
            database_url=self._database_url, redis_url=self._redis_url, images=images
        )
        log.info("stack auto: chose %s because %s", choice.services, choice.reason)
        return choice

    def _backend(self, name: str) -> contextlib.AbstractContextManager[services.ServerUrls]:
        if name == "local":
            db_url, rd_url = services.local_urls(self._database_url, self._redis_url)
            return services.local_backend(db_url, rd_url)
        if name == "embedded":
            return services.embedded_backend()
        if name == "containers":
            status = detect_docker_engine()
            if not status.available:
                raise StackError(f"containers provider: {status.reason}")
            problem = images_problem(docker_client(status), needed_images(**self._images))
            if problem is not None:
                raise StackError(f"containers provider: {problem}")
            images = resolve_images(**self._images)
            return services.containers_backend(images.postgres, images.redis)
        raise StackError(f"unknown services {name!r}")

    def start(self) -> Stack:
        """Start everything; on any failure, stop what was started and raise StackError."""
        topology_path = self._topology or _project_config()
        topology = load_topology(topology_path)
        worker = self._worker_id or current_worker_id()
        timings: dict[str, float] = {}
        clock = time.monotonic()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.monotonic()
            timings[name] = now - clock
            clock = now

        name, services_name, reason = self._resolve()
        lap("choose")
        exit_stack = contextlib.ExitStack()
        try:
            urls = exit_stack.enter_context(self._backend(services_name))
            lap(services_name)
            db_name, prefix = services.isolation_names(worker)
            database_url = services.create_database(urls.postgres_url, db_name)
            exit_stack.callback(services.drop_database, urls.postgres_url, db_name)
            exit_stack.callback(services.delete_prefixed_keys, urls.redis_url, prefix)
            lap("isolate")
            emulator, report, connection, send, clock_file = self._servicebus(
                exit_stack, topology, topology_path
            )
            lap("servicebus")
        except BaseException:
            exit_stack.close()
            raise
        jobs, events = topic_names(topology)
        stack = Stack(
            name=name,
            reason=reason,
            services=services_name,
            servicebus_connection=connection,
            servicebus_send_connection=send,
            database_url=database_url,
            redis_url=urls.redis_url,
            redis_key_prefix=prefix,
            database_name=db_name,
            worker_id=worker,
            topology_path=topology_path,
            topic_jobs=jobs,
            topic_events=events,
            emulator=emulator,
            topology_report=report,
            server_database_url=urls.postgres_url,
            clock_file=clock_file,
            timings=timings,
            _exit=exit_stack,
        )
        log.info("%s", stack.describe())
        return stack

    def _servicebus(
        self, exit_stack: contextlib.ExitStack, topology: NamespaceTopology, topology_path: Path
    ) -> tuple[ServiceBusEmulator | None, TopologyReport | None, str, str, Path | None]:
        if self._sb_connection:
            report = None
            if self._apply_topology:
                report = apply_topology(self._sb_connection, topology, **self._admin_kwargs)
            send = self._sb_send_connection or self._sb_connection
            return None, report, self._sb_connection, send, None
        from emulator.servicebus import ServiceBusEmulator

        emulator = ServiceBusEmulator(topology, config_path=topology_path, **self._emulator_kwargs)
        # Before the emulator starts, so this listener runs ahead of its own (which delivers
        # what became due): a worker handed such a message already reads the new offset.
        clock_file = publish_clock(exit_stack, emulator)
        exit_stack.enter_context(emulator)
        connection = emulator.connection_string_for(policy_or_root(topology, WORKER_POLICY))
        send = emulator.connection_string_for(policy_or_root(topology, SENDER_POLICY))
        return emulator, None, connection, send, clock_file


def publish_clock(exit_stack: contextlib.ExitStack, emulator: ServiceBusEmulator) -> Path:
    """Keep the emulator's clock offset in a file (`WORKERS_CLOCK_FILE`) for the apps, the
    job API and the host processes: one file read per clock read instead of a `GET
    /control/clock`. Written at once and by an advance listener, which the emulator runs
    before an advance returns, so no reader sees the old offset after the move."""
    from functions_shared.offset_clock import OffsetFile

    folder = Path(tempfile.mkdtemp(prefix="sbh-clock-"))
    exit_stack.callback(shutil.rmtree, folder, ignore_errors=True)
    published = OffsetFile(folder / "offset", writable=True)
    exit_stack.callback(published.close)
    clock = emulator.clock

    def write() -> None:
        published.write(clock.offset)

    write()
    clock.on_advance(write)
    exit_stack.callback(clock.remove_listener, write)
    return published.path
