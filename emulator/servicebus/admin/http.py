"""A small HTTP/1.1 server on the emulator's own event loop, with TLS and port sniffing.

The broker is single-threaded and lives on one asyncio loop, so the admin API cannot run in
a separate server (uvicorn, a thread): requests are parsed with h11 (sans-IO) inside
asyncio protocols and answered synchronously on the loop.

TLS is done with ``ssl.MemoryBIO`` rather than ``loop.start_tls`` because the first bytes of
a connection are already read when we sniff them (0x16 = TLS ClientHello) and ``start_tls``
cannot be given bytes that were already consumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

import h11

log = logging.getLogger("emulator.servicebus.admin")

MAX_BODY = 4 * 1024 * 1024
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
TLS_HANDSHAKE = 0x16


@dataclass
class HttpRequest:
    method: str
    target: str
    segments: list[str]
    """Path segments, each percent-decoded after splitting (``a%2Fb`` stays one segment)."""
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    secure: bool

    @property
    def path(self) -> str:
        return "/" + "/".join(self.segments)


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[HttpRequest], HttpResponse]


def parse_target(target: str) -> tuple[list[str], dict[str, str]]:
    path, _, query = target.partition("?")
    segments = [unquote(s) for s in path.split("/") if s]
    return segments, dict(parse_qsl(query, keep_blank_values=True))


class HttpConnection:
    """One HTTP/1.1 server connection: feed it bytes, it writes responses (keep-alive)."""

    def __init__(
        self,
        handler: Handler,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        *,
        secure: bool,
    ) -> None:
        self.handler = handler
        self._write = write
        self._close = close
        self.secure = secure
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self.closed = False

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        self.h11.receive_data(data)
        self._process()

    def eof(self) -> None:
        if not self.closed:
            self.h11.receive_data(b"")
            self._process()

    def _process(self) -> None:
        while not self.closed:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(exc.error_status_hint, f"malformed HTTP request: {exc}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and self._ready_for_next():
                    continue
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._body.clear()
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_BODY:
                    self._fail(413, f"request body larger than {MAX_BODY} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
                if not self._ready_for_next():
                    return
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _ready_for_next(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        if self.h11.our_state in (h11.MUST_CLOSE, h11.CLOSED):
            self.close()
        return False

    def _respond(self) -> None:
        event = self._request
        assert event is not None
        target = event.target.decode("latin-1")
        segments, query = parse_target(target)
        request = HttpRequest(
            method=event.method.decode("ascii").upper(),
            target=target,
            segments=segments,
            query=query,
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
            body=bytes(self._body),
            secure=self.secure,
        )
        try:
            response = self.handler(request)
        except Exception:
            log.exception("admin request %s %s failed", request.method, target)
            response = HttpResponse(500, b'{"error": "internal error in the emulator"}')
        level = logging.WARNING if response.status >= 400 else logging.DEBUG
        if log.isEnabledFor(level):
            detail = response.body[:300].decode("utf-8", "replace") if level > logging.DEBUG else ""
            log.log(level, "%s %s -> %d %s", request.method, target, response.status, detail)
        self._send(response, head=request.method == "HEAD")

    def _send(self, response: HttpResponse, *, head: bool = False) -> None:
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("server", "sbemu"),
            *response.headers.items(),
        ]
        try:
            reason = _REASONS.get(response.status, b"")
            out = self.h11.send(
                h11.Response(status_code=response.status, headers=headers, reason=reason)
            )
            if response.body and not head:
                out += self.h11.send(h11.Data(data=response.body))
            out += self.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            log.warning("cannot answer: %s", exc)
            self.close()
            return
        self._write(out)

    def _fail(self, status: int, message: str) -> None:
        log.warning("admin connection: %s", message)
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = ('{{"error": "{}"}}'.format(message.replace('"', "'"))).encode()
            self._send(HttpResponse(status, body, headers={"connection": "close"}))
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()


class TlsStream:
    """Server-side TLS over a transport with memory BIOs; plaintext goes to ``on_data``."""

    def __init__(
        self,
        context: ssl.SSLContext,
        transport: asyncio.Transport,
        on_data: Callable[[bytes], None],
    ) -> None:
        self.transport = transport
        self.on_data = on_data
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.handshaken = False
        self.closed = False

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        self.incoming.write(data)
        if not self.handshaken:
            try:
                self.tls.do_handshake()
                self.handshaken = True
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake failed: %s", exc)
                self._flush()
                self.abort()
                return
        self._flush()
        while not self.closed:
            try:
                chunk = self.tls.read(64 * 1024)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.close()
                break
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS error: %s", exc)
                self.abort()
                break
            if not chunk:
                break
            self.on_data(chunk)
        self._flush()

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.tls.write(data)
        self._flush()

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending and not self.transport.is_closing():
            self.transport.write(pending)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ssl.SSLError, OSError):
            self.tls.unwrap()
        self._flush()
        self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.transport.close()


class HttpProtocol(asyncio.Protocol):
    """HTTP (optionally over TLS) on one accepted connection."""

    def __init__(
        self,
        handler: Handler,
        tls: ssl.SSLContext | None,
        registry: set[HttpProtocol],
    ) -> None:
        self.handler = handler
        self.tls_context = tls
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.tls: TlsStream | None = None
        self.http: HttpConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.registry.add(self)
        if self.tls_context is not None:
            self.tls = TlsStream(self.tls_context, transport, self._plaintext)
            self.http = HttpConnection(self.handler, self.tls.write, self.tls.close, secure=True)
        else:
            self.http = HttpConnection(self.handler, transport.write, transport.close, secure=False)

    def _plaintext(self, data: bytes) -> None:
        assert self.http is not None
        self.http.feed(data)

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            self.tls.feed(data)
        elif self.http is not None:
            self.http.feed(data)

    def eof_received(self) -> bool | None:
        if self.http is not None:
            self.http.eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        if self.http is not None:
            self.http.closed = True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SniffingProtocol(asyncio.Protocol):
    """Looks at a connection's first byte, then hands the connection to the right protocol.

    0x16 (a TLS ClientHello) means HTTPS, which is how ``ServiceBusAdministrationClient``
    reaches the AMQP port of a connection string; anything else goes to ``plain``.
    """

    def __init__(
        self,
        plain: Callable[[], asyncio.Protocol],
        https: Callable[[], asyncio.Protocol],
    ) -> None:
        self.plain = plain
        self.https = https
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        protocol = self.https() if data[:1] == bytes([TLS_HANDSHAKE]) else self.plain()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        pass
