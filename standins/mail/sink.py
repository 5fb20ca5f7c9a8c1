"""SMTP sink: an aiosmtpd server on a free port that records every mail, parsed.

The notify worker sends through `smtplib`; tests need to assert "the creator got the
job-completed mail" without a mail server. aiosmtpd's own `Controller` wants a fixed port
and probes it with a connection; we run the SMTP protocol on our own loop in a thread
instead, bound to port 0, ready when the listening socket exists (an Event, no sleep).
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from emulator._lifecycle import Lifecycle
from standins._recorder import Recorder


@dataclass(frozen=True)
class Mail:
    """One accepted mail: envelope, the headers tests ask about, and the text body."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    sender: str
    to: tuple[str, ...]
    subject: str
    body: str
    headers: dict[str, str] = field(repr=False)
    raw: bytes = field(repr=False)
    received_at: float = 0.0

    @property
    def recipients(self) -> tuple[str, ...]:
        """Where it was delivered (envelope), which may differ from the To header."""
        return self.rcpt_tos

    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


def parse_mail(envelope: Envelope, received_at: float) -> Mail:
    raw = envelope.original_content or envelope.content or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(preferencelist=("plain", "html"))
    # SMTP carries CRLF line ends; tests compare with the text the sender built.
    body = part.get_content().replace("\r\n", "\n") if part is not None else ""
    return Mail(
        mail_from=envelope.mail_from or "",
        rcpt_tos=tuple(envelope.rcpt_tos),
        sender=str(msg.get("From", "")),
        to=tuple(addr for _, addr in getaddresses([str(v) for v in msg.get_all("To", [])])),
        subject=str(msg.get("Subject", "")),
        body=body,
        headers={k: str(v) for k, v in msg.items()},
        raw=raw,
        received_at=received_at,
    )


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self.sink._take_failure()
        if refusal is not None:
            return refusal
        self.sink.mails.append(parse_mail(envelope, time.time()))
        return "250 2.0.0 Message accepted for delivery"


class MailSink(Lifecycle):
    """`with MailSink() as smtp:` → `smtp.host`, `smtp.port`, `smtp.mails`, `smtp.wait_for(...)`.

    `credentials=("user", "secret")` enables AUTH (PLAIN/LOGIN, allowed without TLS since
    this is loopback-only) and requires it; without it any client may send.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: tuple[str, str] | None = None,
        hostname: str = "smtp.standin.local",
        startup_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.credentials = credentials
        self.hostname = hostname
        self.startup_timeout = startup_timeout
        self.mails: Recorder[Mail] = Recorder("mails")
        self.auth_attempts: list[tuple[str, bool]] = []
        self._failures: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._error: BaseException | None = None
        self._protocols: set[SMTP] = set()

    # -- behaviour ------------------------------------------------------------------------

    def fail_next(self, count: int = 1, reply: str = "451 4.3.0 Temporary failure") -> None:
        """Refuse the next `count` mails at DATA with `reply` (4xx/5xx)."""
        with self._lock:
            self._failures.extend([reply] * count)

    def _take_failure(self) -> str | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = False
        login = ""
        if isinstance(data, LoginPassword) and self.credentials is not None:
            login = data.login.decode()
            ok = (login, data.password.decode()) == self.credentials
        self.auth_attempts.append((login, ok))
        # handled=False: let aiosmtpd answer 535 itself on failure
        return AuthResult(success=ok, handled=False)

    def _factory(self) -> SMTP:
        assert self._loop is not None
        options: dict[str, Any] = {}
        if self.credentials is not None:
            options.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=False
            )
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate: the sink only listens on loopback.
            warnings.simplefilter("ignore", UserWarning)
            protocol = SMTP(
                _Handler(self),
                hostname=self.hostname,
                enable_SMTPUTF8=True,
                loop=self._loop,
                **options,
            )
        self._protocols.add(protocol)
        return protocol

    # -- queries --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("MailSink is not running; call start() first")
        return self._port

    def to(self, address: str) -> list[Mail]:
        address = address.lower()
        return [m for m in self.mails if address in {a.lower() for a in m.rcpt_tos}]

    def wait_for(
        self,
        to: str | None = None,
        *,
        subject: str | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[Mail]:
        """Block until `count` mails to `to` (and containing `subject`) arrived."""

        def match(m: Mail) -> bool:
            return (to is None or to.lower() in {a.lower() for a in m.rcpt_tos}) and (
                subject is None or subject in m.subject
            )

        return self.mails.wait_for(match, count=count, timeout=timeout)

    def environment(self) -> dict[str, str]:
        """The notify worker's SMTP settings pointing here."""
        env = {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port)}
        if self.credentials is not None:
            env.update(SMTP_USERNAME=self.credentials[0], SMTP_PASSWORD=self.credentials[1])
        return env

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("MailSink already started")
        ready = threading.Event()
        self._error = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="mail-standin", daemon=True
        )
        self._thread.start()
        if not ready.wait(self.startup_timeout) or self._error is not None:
            error = self._error
            self.stop()
            raise RuntimeError(f"SMTP sink did not start on {self.host}") from error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                loop.create_server(self._factory, self.host, self.requested_port)
            )
            self._port = server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for protocol in list(self._protocols):
                if protocol.transport is not None:
                    protocol.transport.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        loop = self._loop
        if thread is not None and loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"SMTP sink thread did not stop within {timeout}s")
        self._loop = None
        self._port = None
        self._protocols.clear()
