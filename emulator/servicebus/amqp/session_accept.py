"""Accepting a message session: a receiver's attach is answered once a session is locked.

A receiver that sets the ``com.microsoft:session-filter`` asks for one named session, or
(filter value null) for the next session with messages. The service answers the attach
when it has locked one for the receiver, refuses it when the session cannot be locked, and
with nothing available waits up to the ``com.microsoft:timeout`` the client sent (the SDK
sends its ``max_wait_time``), at most the service's 65 s operation timeout, before refusing
with ``com.microsoft:timeout``. The wait runs on the emulator clock, so a test can advance
past it. The answer carries the session id in the filter and the lock's expiry as
``com.microsoft:locked-until-utc`` (.NET ticks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from ..core.clock import Clock
from ..core.errors import BrokerError
from ..core.sessions import MessageSession
from . import conditions
from .links import Link, PendingAccept
from .outcomes import error_for
from .performatives import Attach, Source
from .types import Long, Symbol

SESSION_FILTER = Symbol("com.microsoft:session-filter")
SESSION_LOCKED_UNTIL = Symbol("com.microsoft:locked-until-utc")
LINK_TIMEOUT = "com.microsoft:timeout"
OPERATION_TIMEOUT_SECONDS = 65.0
"""The service's operation timeout: the longest an accept waits, and the wait when none is asked."""
_DOTNET_EPOCH_TICKS = 621355968000000000

REQUIRES_SESSION = (
    "It is not possible for an entity that requires sessions to create a "
    "non-sessionful message receiver."
)
NO_SESSION_AVAILABLE = "No session was available to accept within the requested timeout."

log = logging.getLogger("emulator.servicebus.amqp")


class AttachAnswers(Protocol):
    """What the connection does with an attach once it is decided."""

    def complete_attach(self, link: Link, frame: Attach) -> None: ...

    def refuse_link(self, link: Link, frame: Attach, condition: str, description: str) -> None: ...


def dotnet_ticks(seconds: float) -> int:
    """Unix seconds as .NET ticks (100 ns since year 1), as the service sends lock expiries."""
    return _DOTNET_EPOCH_TICKS + int(seconds * 10_000_000)


def link_property(frame: Attach, name: str) -> object:
    for key, value in (frame.properties or {}).items():
        if str(key) == name:
            return value
    return None


def accept_wait_seconds(timeout_ms: object) -> float:
    """How long an accept waits for a session: the client's timeout, capped by the service's."""
    if not timeout_ms:
        return OPERATION_TIMEOUT_SECONDS
    return min(float(timeout_ms) / 1000, OPERATION_TIMEOUT_SECONDS)  # type: ignore[arg-type]


def accepted_attach_fields(
    session: MessageSession, source: Source | None, properties: dict[object, object] | None
) -> tuple[Source | None, dict[object, object] | None]:
    """The source filter and link properties of the answer that tell the client its session."""
    if source is None:
        return source, properties
    filters = dict(source.filter or {})
    filters[SESSION_FILTER] = session.id
    answered = dict(properties or {})
    answered[SESSION_LOCKED_UNTIL] = Long(dotnet_ticks(session.locked_until))
    return replace(source, filter=filters), answered


class SessionAccepts:
    """Session receivers of one connection: accepted now, waiting for a session, or refused."""

    def __init__(
        self, answers: AttachAnswers, clock: Clock, after_activity: Callable[[], None]
    ) -> None:
        self._answers = answers
        self._clock = clock
        self._after_activity = after_activity
        self.waiting: set[Link] = set()
        """Links whose attach waits for a session (each with its ``pending_accept``)."""

    def start(self, link: Link, frame: Attach) -> bool:
        """True when the attach proceeds as a plain receiver; False when answered or waiting."""
        store = link.store
        assert store is not None
        filters = (frame.source.filter if frame.source is not None else None) or {}
        requested = [v for k, v in filters.items() if str(k) == SESSION_FILTER]
        if not requested:
            if store.policy.requires_session:
                self._answers.refuse_link(link, frame, conditions.NOT_ALLOWED, REQUIRES_SESSION)
                return False
            return True
        session_id = None if requested[0] is None else str(requested[0])
        wait = accept_wait_seconds(link_property(frame, LINK_TIMEOUT))
        link.pending_accept = PendingAccept(frame, session_id, self._clock.now() + wait)
        if self.retry(link):
            return False
        log.debug(
            "link %s waits up to %.1fs for a session on %s", link.name, wait, link.entity_path
        )
        self.waiting.add(link)
        store.add_listener(link.on_store_change)
        return False

    def retry(self, link: Link) -> bool:
        """Try to lock a session for a waiting link; True once its attach has been answered."""
        pending = link.pending_accept
        store = link.store
        assert store is not None and pending is not None
        try:
            session = store.accept_session(pending.session_id, link, self._clock.now())
        except BrokerError as exc:
            self._finish(link)
            error = error_for(exc)
            self._answers.refuse_link(
                link, pending.frame, str(error.condition), str(error.description)
            )
            return True
        if session is None:
            return False
        self._finish(link)
        link.message_session = session
        self._answers.complete_attach(link, pending.frame)
        return True

    def cancel(self, link: Link) -> None:
        """The link went away while waiting."""
        self._finish(link)

    def next_deadline(self) -> float | None:
        """When the first waiting accept gives up (emulator clock); None if none waits."""
        deadlines = [link.pending_accept.deadline for link in self.waiting if link.pending_accept]
        return min(deadlines, default=None)

    def expire_due(self, now: float) -> None:
        """Refuse every accept whose wait is over (called by the server as time moves)."""
        expired = [
            link
            for link in self.waiting
            if link.pending_accept is not None and link.pending_accept.deadline <= now
        ]
        for link in expired:
            pending = link.pending_accept
            assert pending is not None
            self._finish(link)
            if not link.closed:
                self._answers.refuse_link(
                    link, pending.frame, conditions.TIMEOUT, NO_SESSION_AVAILABLE
                )
        if expired:
            self._after_activity()

    def _finish(self, link: Link) -> None:
        link.pending_accept = None
        self.waiting.discard(link)
