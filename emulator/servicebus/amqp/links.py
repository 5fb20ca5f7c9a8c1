"""Per-connection AMQP bookkeeping: sessions, links and unsettled outgoing deliveries."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.sessions import MessageSession
from ..core.store import MessageStore, ReceiveMode
from .performatives import Attach, Source, Target

MAX_FRAME_SIZE = 1024 * 1024
"""The largest frame the emulator accepts (and announces in its open)."""
LINK_CREDIT = 1000
"""Credit the emulator grants a client sender, topped up when half is used."""
SESSION_WINDOW = 5000
"""The emulator's incoming session window, re-announced when half is used."""
MAX_UINT = 2**32 - 1


class LinkKind(enum.Enum):
    ENTITY = "entity"
    CBS = "cbs"
    MANAGEMENT = "management"


@dataclass(eq=False)
class Link:
    """One attached link, seen from the emulator's side.

    ``is_sender`` is the emulator's role: True when the emulator sends (a client receiver).
    """

    session: Session
    name: str
    remote_handle: int
    local_handle: int
    is_sender: bool
    kind: LinkKind
    address: str
    entity_path: str
    source: Source | None
    target: Target | None
    snd_settle_mode: int = 0
    rcv_settle_mode: int = 0
    store: MessageStore | None = None
    receive_mode: ReceiveMode = ReceiveMode.PEEK_LOCK
    # outgoing (emulator is sender)
    credit: int = 0
    delivery_count: int = 0
    drain: bool = False
    # incoming (emulator is receiver)
    granted: int = 0
    partial: bytearray | None = None
    partial_delivery_id: int | None = None
    partial_settled: bool = False
    partial_format: int = 0
    closed: bool = False
    # message sessions (emulator is sender on a session entity)
    pending_accept: PendingAccept | None = None
    """A session receiver's attach, unanswered until a session can be locked for it."""
    message_session: MessageSession | None = None
    delayed_until: float = 0.0
    """Injected receive latency: no deliveries before this (broker clock) time."""
    wake: Callable[[Link], None] | None = None
    """Called when the link's store has messages for it (it then wants a pump)."""

    def on_store_change(self, _store: MessageStore) -> None:
        """The store listener: one bound method per link, so it can be added and removed."""
        if self.wake is not None and not self.closed:
            self.wake(self)


@dataclass(eq=False, slots=True)
class PendingAccept:
    """An attach for a message session that waits for one to become available."""

    frame: Attach
    session_id: str | None
    """The session asked for; None for the next available one."""
    deadline: float
    """Emulator-clock time at which the wait ends with ``com.microsoft:timeout``."""


@dataclass(slots=True)
class OutgoingDelivery:
    link: Link
    store: MessageStore
    lock_token: uuid.UUID


@dataclass(eq=False)
class Session:
    remote_channel: int
    local_channel: int
    next_incoming_id: int = 0
    incoming_window: int = 0
    next_outgoing_id: int = 0
    outgoing_window: int = 0
    remote_incoming_window: int = 0
    remote_next_incoming_id: int = 0
    frames_since_flow: int = 0
    links: dict[int, Link] = field(default_factory=dict)  # by remote handle
    local_handles: dict[int, Link] = field(default_factory=dict)
    unsettled: dict[int, OutgoingDelivery] = field(default_factory=dict)  # by delivery id
    next_local_handle: int = 0
    ended: bool = False

    def allocate_handle(self) -> int:
        handle = self.next_local_handle
        while handle in self.local_handles:
            handle += 1
        self.next_local_handle = handle + 1
        return handle
