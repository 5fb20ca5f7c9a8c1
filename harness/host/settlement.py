"""The `Settlement` gRPC service the Functions host provides to the SDK-type binding.

`ServiceBusMessageActions` (azurefunctions-extensions-bindings-servicebus) is a process-wide
singleton that, on first use, reads `--host`/`--port` from `sys.argv` and sends every
settlement as a gRPC request carrying the lock token. The Azure host serves that service
and settles through its own receiver; so does this one, so `function_app.py` runs unchanged.

One server per process, shared by every `FunctionsHost` in it (lock tokens are unique, so
one registry routes each request to the host that holds the message). Pointing the
singleton: we build a fresh `ServiceBusMessageActions` while `sys.argv` carries the same
three arguments the real host passes to its worker, and install it as the singleton under
the class's own lock; when the last host stops the singleton is reset to None, so the next
user (another host, another port) starts clean. Argv injection uses only the package's public
contract; replacing `_instance` is the one private touch, needed because the singleton is
never re-read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from azurefunctions.extensions.bindings.protos import settlement_pb2_grpc
from azurefunctions.extensions.bindings.servicebus import ServiceBusMessageActions
from google.protobuf import empty_pb2

log = logging.getLogger("harness.host.settlement")

# What the Functions host passes its Python worker (int32 max).
GRPC_MAX_MESSAGE_LENGTH = 2147483647
SETTLE_TIMEOUT = 60.0


class SettlementRefused(Exception):
    """The host could not settle as asked (unknown/expired lock token, lock lost, ...)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass
class Route:
    """Where a lock token's settlement goes: a coroutine on the owning host's loop."""

    loop: asyncio.AbstractEventLoop
    settle: Callable[..., Awaitable[None]]


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}

    def add(self, token: str, route: Route) -> None:
        with self._lock:
            self._routes[token.lower()] = route

    def remove(self, token: str) -> None:
        with self._lock:
            self._routes.pop(token.lower(), None)

    def get(self, token: str) -> Route | None:
        with self._lock:
            return self._routes.get(token.lower())


class _Servicer(settlement_pb2_grpc.SettlementServicer):
    def __init__(self, registry: _Registry) -> None:
        self.registry = registry

    def _settle(self, context: grpc.ServicerContext, token: str, action: str, **kw: Any) -> Any:
        route = self.registry.get(token)
        if route is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"lock token {token} is not held by this host (settled, expired or unknown)",
            )
        try:
            if not route.loop.is_running():
                raise RuntimeError("the host is stopping")
            future = asyncio.run_coroutine_threadsafe(route.settle(token, action, **kw), route.loop)
        except RuntimeError as exc:  # loop stopped or closed: the host is going away
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{action}: {exc}")
        try:
            future.result(timeout=SETTLE_TIMEOUT)
        except SettlementRefused as exc:
            context.abort(exc.code, exc.details)
        except concurrent.futures.TimeoutError:
            future.cancel()
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{action} timed out")
        except Exception as exc:
            context.abort(grpc.StatusCode.INTERNAL, f"{action} failed: {exc!r}")
        return empty_pb2.Empty()

    def Complete(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._settle(context, request.locktoken, "complete")

    def Abandon(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._settle(context, request.locktoken, "abandon")

    def Deadletter(self, request: Any, context: grpc.ServicerContext) -> Any:
        reason = request.deadletterReason.value if request.HasField("deadletterReason") else None
        description = (
            request.deadletterErrorDescription.value
            if request.HasField("deadletterErrorDescription")
            else None
        )
        return self._settle(
            context, request.locktoken, "deadletter", reason=reason, description=description
        )

    def Defer(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._settle(context, request.locktoken, "defer")

    def RenewMessageLock(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._settle(context, request.locktoken, "renew")

    # Session methods stay UNIMPLEMENTED (inherited): the host runs no session triggers.


class SettlementServer:
    """The process-wide server; `acquire`/`release` count the hosts using it."""

    _lock = threading.Lock()
    _current: SettlementServer | None = None
    _users = 0

    def __init__(self) -> None:
        self.registry = _Registry()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="funchost-settlement"
        )
        self._server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_LENGTH),
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_LENGTH),
            ],
        )
        settlement_pb2_grpc.add_SettlementServicer_to_server(_Servicer(self.registry), self._server)
        self.host = "127.0.0.1"
        self.port = self._server.add_insecure_port(f"{self.host}:0")
        self._server.start()
        log.info("settlement service on %s:%s", self.host, self.port)

    @property
    def worker_args(self) -> list[str]:
        """The command-line arguments the Functions host gives its language worker."""
        return [
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--functions-grpc-max-message-length",
            str(GRPC_MAX_MESSAGE_LENGTH),
        ]

    @classmethod
    def acquire(cls) -> SettlementServer:
        with cls._lock:
            if cls._current is None:
                cls._current = cls()
                cls._current._point_message_actions()
            cls._users += 1
            return cls._current

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users > 0 or cls._current is None:
                return
            server, cls._current = cls._current, None
        with ServiceBusMessageActions._lock:
            ServiceBusMessageActions._instance = None
        server._server.stop(None).wait()
        server._executor.shutdown(wait=True)

    def _point_message_actions(self) -> None:
        saved = sys.argv
        with ServiceBusMessageActions._lock:
            sys.argv = [saved[0] if saved else "worker", *self.worker_args]
            try:
                ServiceBusMessageActions._instance = ServiceBusMessageActions()
            finally:
                sys.argv = saved
