"""Run an ASGI app with uvicorn in a background thread, on a free port, for tests and tools.

Stand-ins must start inside a pytest fixture in milliseconds and stop without leaking
threads or sockets. We bind the socket ourselves (port 0 → the kernel picks), so the port
is known before the server runs, and readiness is a `threading.Event` set by uvicorn's own
startup — no sleeping, no polling of the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, Self

import uvicorn

from emulator._lifecycle import Lifecycle

KEEP_ALIVE_S = 75.0
"""How long an idle keep-alive connection stays open. uvicorn's 5 s is shorter than a
creator's think time, so under load a client reusing a connection raced the server closing
it and got a reset instead of an answer; front ends such as Azure's keep idle connections
for minutes. Clients (httpx: 5 s) still close theirs first."""
LISTEN_BACKLOG = 1024
"""Connections the kernel queues before accept: a burst of users all connecting at once."""


class _SignallingServer(uvicorn.Server):
    """uvicorn.Server that sets an Event once its sockets accept connections."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready_event = ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready_event.set()

    async def main_loop(self) -> None:
        """uvicorn's tick loop, but woken at once by `request_exit()` instead of polling
        `should_exit` every 0.1 s — a fixture teardown should not cost a tick per server."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def request_exit(self) -> None:
        """Thread-safe: ask the server to shut down now."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, so it is exiting anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)


class ServerThread(Lifecycle):
    """An ASGI app served by uvicorn in a daemon thread; `.url` once started.

    `before_stop` callbacks run first on `stop()` (e.g. release requests that a sink holds
    open on purpose), so shutdown never waits for a deliberately hanging handler.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "standin",
        startup_timeout: float = 10.0,
        graceful_timeout: float = 2.0,
        log_level: str = "warning",
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.name = name
        self.startup_timeout = startup_timeout
        self.graceful_timeout = graceful_timeout
        self.log_level = log_level
        self.before_stop: list[Callable[[], None]] = []
        self._server: _SignallingServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. `http://127.0.0.1:54321`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then, and
        # without it every keep-alive response waits ~40 ms on Nagle + delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.graceful_timeout,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
        ready = threading.Event()
        self._server = _SignallingServer(config, ready)
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"{self.name}-uvicorn", daemon=True
        )
        self._thread.start()
        if not ready.wait(self.startup_timeout) or self._error is not None:
            error = self._error
            self.stop()
            raise RuntimeError(f"{self.name} did not start on {self.host}") from error
        return self

    def _run(self, ready: threading.Event) -> None:
        assert self._server is not None and self._socket is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            ready.set()  # wake start() if serving ended before startup completed

    def stop(self, timeout: float = 10.0) -> None:
        """Release held requests, ask uvicorn to exit, join the thread, close the socket."""
        for callback in self.before_stop:
            callback()
        if self._server is not None:
            self._server.request_exit()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{self.name} server thread did not stop within {timeout}s")
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None
        self._port = None


class Holds:
    """Interruptible waits for handlers that delay or hang on purpose.

    A stand-in answering slowly must not make `stop()` wait for the delay: each wait is an
    asyncio.Event on the serving loop, and `release_all()` (from any thread) sets them all.
    `wait_held()` lets a test block until a request is actually being held.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._total = 0

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when released early."""
        if seconds <= 0:
            return False
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._cond:
            self._waiters.add(entry)
            self._total += 1
            self._cond.notify_all()
        try:
            await asyncio.wait_for(event.wait(), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            with self._cond:
                self._waiters.discard(entry)

    def release_all(self) -> None:
        with self._cond:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    @property
    def held(self) -> int:
        """Requests being held right now."""
        with self._cond:
            return len(self._waiters)

    def wait_held(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until `count` holds have started (in total), or raise AssertionError."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._total >= count, timeout):
                raise AssertionError(f"{count} held request(s) expected, {self._total} started")


class HttpStandin(Lifecycle):
    """A stand-in whose HTTP face is a :class:`ServerThread` kept in ``self._runner``."""

    _runner: ServerThread

    def start(self) -> Self:
        self._runner.start()
        return self

    def stop(self) -> None:
        self._runner.stop()

    @property
    def url(self) -> str:
        return self._runner.url
