"""The emulator as an object: start it in-process, get a connection string, move its clock.

Each instance owns one event loop on one background thread, its own ports and its own
broker, so many can run side by side in one process (pytest-xdist, parallel fixtures).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import ipaddress
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .._lifecycle import Lifecycle
from .admin import AdminServer, AtomApi, ControlApi
from .admin import tls as admin_tls
from .admin.atom import ParsedRule
from .amqp.server import AmqpServer
from .config import load_config
from .console import Console
from .core.broker import Broker
from .core.clock import EmulatorClock
from .faults import FaultInjector
from .persistence import LoadReport, SqliteJournal
from .topology import ROOT_POLICY_KEY, ROOT_POLICY_NAME, NamespaceTopology

log = logging.getLogger("emulator.servicebus")

T = TypeVar("T")


def _is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: only this machine reaches the console."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "Config.json"


class ServiceBusEmulator(Lifecycle):
    """A running (or ready-to-run) emulator. Use as a context manager or call start/stop."""

    def __init__(
        self,
        topology: NamespaceTopology,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_port: int = 0,
        clock: EmulatorClock | None = None,
        tls_dir: str | Path | None = None,
        config_path: str | Path | None = None,
        data_dir: str | Path | None = None,
        console_writable: bool | None = None,
    ) -> None:
        """``data_dir`` keeps the state across restarts (see "Durable state" in
        docs/emulator.md); an unusable one raises ``persistence.DataDirError`` at once.
        ``console_writable``: whether the web console may change anything (default: only
        when bound to a loopback address)."""
        self.topology = topology
        self.host = host
        self.port = port
        self.admin_port = admin_port
        self.clock = clock or EmulatorClock()
        self.config_path = Path(config_path) if config_path is not None else None
        self._initial = copy.deepcopy(topology)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.journal: SqliteJournal | None = None
        self.load_report: LoadReport | None = None
        """What the start found in ``data_dir`` (None without one)."""
        if self.data_dir is not None:
            self.journal = SqliteJournal.open(self.data_dir)
            try:
                self.journal.restore_clock(self.clock)
                self.journal.merge_topology(topology)
                self.broker = Broker(topology, self.clock)
                self.load_report = self.journal.restore(self.broker)
            except BaseException:
                self.journal.close()
                raise
            self.clock.on_advance(self._save_clock)
        else:
            self.broker = Broker(topology, self.clock)
        self.faults = FaultInjector()
        """Fault rules and per-entity operation counts; the AMQP layer calls ``check``."""
        self._server = AmqpServer(
            self.broker, topology, self.faults, wrap_protocol=self._share_amqp_port
        )
        self.atom_api = AtomApi(self.broker, topology, self.clock)
        self.control_api = ControlApi(
            self.broker,
            topology,
            self.clock,
            self.faults,
            self.atom_api,
            reload=self._reload_topology,
            after_reload=self._drop_amqp_connections,
        )
        if self.journal is not None:
            self._remember_rule_parameters()
        loopback = _is_loopback(host)
        self.console = Console(
            self.broker,
            self.clock,
            self.faults,
            writable=loopback if console_writable is None else console_writable,
            namespace=f"{topology.name} · {topology.tier.value}",
            read_only_reason=(
                f"bound to {host}, not a loopback address; start with --console-write to allow "
                "changes"
                if not loopback
                else "started with console_writable=False"
            ),
        )
        """The web console at ``/console`` on the admin port; ``add_panel`` adds tables."""
        self._tls_dir = Path(tls_dir) if tls_dir is not None else None
        self._tls: admin_tls.TlsMaterial | None = None
        self._admin_server: AdminServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._advance_listener = self._on_clock_advanced

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, path: str | Path = PROJECT_CONFIG, **kwargs: object) -> ServiceBusEmulator:
        kwargs.setdefault("config_path", path)
        return cls(load_config(path), **kwargs)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ServiceBusEmulator:
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        if self.journal is not None and self.journal.closed:
            raise RuntimeError("a durable emulator cannot start again: make a new one")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"sbemu-{id(self):x}", daemon=True
        )
        self._thread.start()
        ready.result(timeout=30)
        self.clock.on_advance(self._advance_listener)
        return self

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_servers())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.run_until_complete(self._stop_servers())
        loop.close()

    async def _start_servers(self) -> None:
        # One certificate serves both ports; the CA bundle lands under the bound AMQP port.
        material = admin_tls.generate(admin_tls.staging_directory(), self.host)
        admin = AdminServer(
            self.atom_api, self.control_api, material.server_context(), self.console.handle
        )
        self._admin_server = admin
        try:
            self.port = await self._server.start(self.host, self.port)
            self.admin_port = await admin.start(self.host, self.admin_port)
        except BaseException:
            material.remove()
            raise
        self._tls = material.move_to(self._tls_dir or admin_tls.default_directory(self.port))

    def _share_amqp_port(
        self, amqp: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """The AMQP port also answers HTTPS: the admin client dials the Endpoint's port."""
        assert self._admin_server is not None, "the admin server starts before the AMQP port"
        return self._admin_server.sniffing(amqp)

    async def _stop_servers(self) -> None:
        await self._server.stop()
        if self._admin_server is not None:
            await self._admin_server.stop()
        if self._tls is not None:
            self._tls.remove()

    def stop(self) -> None:
        self.clock.remove_listener(self._advance_listener)
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self._loop = None
        if self.journal is not None:
            self.clock.remove_listener(self._save_clock)
            self.journal.close()

    # -- what clients need -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"sb://{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        """The root policy's connection string, as the official emulator prints it."""
        return self.connection_string_for(ROOT_POLICY_NAME)

    def connection_string_for(self, policy: str, key: str | None = None) -> str:
        """A connection string for ``policy`` (the root Manage policy by default)."""
        if key is None:
            found = [p for p in self.topology.policies if p.name == policy]
            key = found[0].key if found else ROOT_POLICY_KEY
        return (
            f"Endpoint={self.endpoint};SharedAccessKeyName={policy};"
            f"SharedAccessKey={key};UseDevelopmentEmulator=true;"
        )

    @property
    def health_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}/health"

    @property
    def control_url(self) -> str:
        """Base URL of the JSON control API (plain HTTP on the admin port)."""
        return f"http://{self.host}:{self.admin_port}/control"

    @property
    def console_url(self) -> str:
        """The web console (plain HTTP on the admin port)."""
        return f"http://{self.host}:{self.admin_port}/console"

    @property
    def admin_endpoint(self) -> str:
        """HTTPS base URL of the management API on the admin port (the AMQP port works too)."""
        return f"https://{self.host}:{self.admin_port}"

    @property
    def ca_bundle(self) -> Path:
        """The CA certificate that signed the HTTPS certificate (``connection_verify=...``)."""
        if self._tls is None:
            raise RuntimeError("the emulator is not running")
        return self._tls.ca_bundle

    # -- running code on the emulator's loop ------------------------------------------------------

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the emulator's loop (where the broker lives); return its result."""
        loop = self._loop
        if loop is None:
            return function()
        if threading.current_thread() is self._thread:
            return function()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def _on_clock_advanced(self) -> None:
        self.call(self._server.process_due)

    def _remember_rule_parameters(self) -> None:
        """Rules restored with ``@name`` parameters read them back over HTTPS as created."""
        for topic in self.broker.topics.values():
            for sub in topic.subscriptions.values():
                for rule in sub.rules:
                    if rule.filter_parameters or rule.action_parameters:
                        parsed = ParsedRule(
                            rule.description,
                            dict(rule.filter_parameters or {}),
                            dict(rule.action_parameters or {}),
                        )
                        key = f"{sub.path}/Rules/{rule.name}".casefold()
                        self.atom_api.rules[key] = (parsed, sub.created_at)

    def _save_clock(self) -> None:
        """The clock's offset is state: keep it (on the loop, where the journal is used)."""
        journal = self.journal
        assert journal is not None
        offset = self.clock.offset

        def save() -> None:
            journal.clock_offset(offset)
            journal.commit()

        self.call(save)

    def describe_links(self) -> list[str]:
        """The open receiver links and their flow state (see ``AmqpServer.describe_links``)."""
        return self.call(self._server.describe_links)

    # -- control API hooks -------------------------------------------------------------------

    def _reload_topology(self) -> NamespaceTopology:
        """What ``reset`` with reload re-creates: the config file again, else the start state."""
        if self.config_path is not None:
            return load_config(self.config_path)
        return copy.deepcopy(self._initial)

    def _drop_amqp_connections(self) -> None:
        """After a reload, links point at entities that no longer exist: make clients reconnect."""
        for connection in list(self._server.connections):
            connection.close("amqp:connection:forced", "the emulator's entities were reloaded")
