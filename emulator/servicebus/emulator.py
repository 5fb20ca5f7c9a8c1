"""The emulator as an object: start it in-process, get a connection string, move its clock.

Each instance owns one event loop on one background thread, its own ports and its own
broker, so many can run side by side in one process (pytest-xdist, parallel fixtures).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from .amqp.server import AmqpServer
from .config import load_config
from .core.broker import Broker
from .core.clock import EmulatorClock
from .health import handle_admin
from .topology import ROOT_POLICY_KEY, ROOT_POLICY_NAME, NamespaceTopology

log = logging.getLogger("emulator.servicebus")

T = TypeVar("T")

PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "Config.json"


class ServiceBusEmulator:
    """A running (or ready-to-run) emulator. Use as a context manager or call start/stop."""

    def __init__(
        self,
        topology: NamespaceTopology,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_port: int = 0,
        clock: EmulatorClock | None = None,
    ) -> None:
        self.topology = topology
        self.host = host
        self.port = port
        self.admin_port = admin_port
        self.clock = clock or EmulatorClock()
        self.broker = Broker(topology, self.clock)
        self._server = AmqpServer(self.broker, topology)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._admin: asyncio.Server | None = None
        self._advance_listener = self._on_clock_advanced

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, path: str | Path = PROJECT_CONFIG, **kwargs: object) -> ServiceBusEmulator:
        return cls(load_config(path), **kwargs)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ServiceBusEmulator:
        if self._thread is not None:
            raise RuntimeError("emulator already started")
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
        self.port = await self._server.start(self.host, self.port)
        self._admin = await asyncio.start_server(handle_admin, self.host, self.admin_port)
        self.admin_port = int(self._admin.sockets[0].getsockname()[1])

    async def _stop_servers(self) -> None:
        await self._server.stop()
        if self._admin is not None:
            self._admin.close()
            await self._admin.wait_closed()

    def stop(self) -> None:
        self.clock.remove_listener(self._advance_listener)
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> ServiceBusEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
