"""Per-connection AMQP bookkeeping: sessions, links and unsettled outgoing deliveries."""

from __future__ import annotations

import asyncio
import enum
import uuid
from dataclasses import dataclass, field

from ..core.sessions import MessageSession
from ..core.store import MessageStore, ReceiveMode
from .performatives import Source, Target


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
    requested_session: str | None = None
    pending_attach: object | None = None
    wait_handle: asyncio.TimerHandle | None = None
    message_session: MessageSession | None = None
    delayed_until: float = 0.0
    """Injected receive latency: no deliveries before this (broker clock) time."""


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
