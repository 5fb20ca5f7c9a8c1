"""The admin listener: ``/health``, the Atom management API and the control API on one port.

The same handler also answers HTTPS that arrives on the AMQP port: the administration client
always dials the host:port of the connection string's Endpoint, so that port sniffs each
connection's first byte (see :class:`~.http.SniffingProtocol`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable

from ..health import HEALTHY
from .atom_api import AtomApi
from .control_api import ControlApi
from .http import Handler, HttpProtocol, HttpRequest, HttpResponse, SniffingProtocol

log = logging.getLogger("emulator.servicebus.admin")


def _wants_html(request: HttpRequest) -> bool:
    """A browser opening the admin port's root (the management API never asks for HTML)."""
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


class AdminServer:
    def __init__(
        self,
        atom_api: AtomApi,
        control_api: ControlApi,
        tls: ssl.SSLContext,
        console: Handler | None = None,
    ) -> None:
        self.atom = atom_api
        self.control = control_api
        self.tls = tls
        self.console = console
        """Answers ``/console/...`` (the web console, given by the emulator)."""
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.Server | None = None

    def handle(self, request: HttpRequest) -> HttpResponse:
        segments = request.segments
        if segments == ["health"]:
            if request.method not in ("GET", "HEAD"):
                return HttpResponse(405, b'{"error": "use GET /health"}')
            return HttpResponse(200, json.dumps(HEALTHY).encode())
        if segments and segments[0] == "control":
            return self.control.handle(request)
        if segments == ["favicon.ico"] and request.method == "GET":
            return HttpResponse(204, b"", "image/x-icon")  # a browser asks; none to give
        if self.console is not None and (
            (segments and segments[0] == "console") or (not segments and _wants_html(request))
        ):
            if not segments:
                return HttpResponse(303, b"", "text/plain", {"Location": "/console"})
            return self.console(request)
        return self.atom.handle(request)

    def https_protocol(self) -> HttpProtocol:
        return HttpProtocol(self.handle, self.tls, self.connections)

    def http_protocol(self) -> HttpProtocol:
        return HttpProtocol(self.handle, None, self.connections)

    def sniffing(self, amqp: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for the AMQP port: TLS → HTTPS admin API, else ``amqp()``."""
        return lambda: SniffingProtocol(amqp, self.https_protocol)

    async def start(self, host: str, port: int) -> int:
        """Listen for plain HTTP (health, control) and HTTPS (everything) on the admin port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SniffingProtocol(self.http_protocol, self.https_protocol), host, port
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
