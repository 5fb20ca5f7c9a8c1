"""One AMQP 1.0 connection: frames in, frames out.

This module only translates: it tracks sessions, links and flow, and hands each decision to
the room that owns it — ``handshake`` (headers, SASL), ``authorisation`` (who may attach),
``session_accept`` (locking a message session for a receiver), ``transfers`` (messages both
ways), ``outcomes`` (what a transfer or disposition does to the broker), ``cbs`` (tokens)
and ``management`` (request/response operations). Service Bus semantics live in ``core``.

It stays one module of ~530 lines on purpose: the per-performative handlers (open, begin,
attach, flow, transfer, disposition, detach, end, close) share the connection's session and
link tables and its write path, and split across files they would only pass that state
around; every decision they reach is already in the rooms above.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ..core.errors import BrokerError
from ..core.store import ReceiveMode
from ..faults import FaultEffect
from . import transfers
from .authorisation import Refusal, TokenRights, authorise_link
from .codec import DecodeError
from .conditions import ProtocolViolation
from .framing import FrameReader, FramingError, encode_frame
from .handshake import Handshake
from .links import LINK_CREDIT, MAX_FRAME_SIZE, MAX_UINT, SESSION_WINDOW, Link, LinkKind, Session
from .performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    Transfer,
)
from .session_accept import SessionAccepts, accepted_attach_fields
from .types import Symbol, UInt, ULong, UShort

if TYPE_CHECKING:
    from .server import AmqpServer

log = logging.getLogger("emulator.servicebus.amqp")


def entity_path_of(address: str | None) -> str:
    """``amqps://host:5672/t/Subscriptions/s`` -> ``t/Subscriptions/s``."""
    if not address:
        return ""
    if "://" in address:
        address = urlparse(address).path
    return unquote(address).strip("/")


class AmqpConnection(asyncio.Protocol):
    def __init__(self, server: AmqpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.handshake = Handshake(self.write)
        self.reader = FrameReader(max_frame_size=MAX_FRAME_SIZE)
        self.sessions: dict[int, Session] = {}  # by remote channel
        self.peer_max_frame = 512
        self.tokens = TokenRights()
        """What the tokens put on ``$cbs`` grant; ``cbs`` adds, attach and management read."""
        self.session_accepts = SessionAccepts(self, server.broker.clock, server.after_activity)
        self.closed = False
        self.opened = False
        """True once the emulator has answered the client's open (heartbeats may flow)."""
        self.last_write = 0.0
        """``time.monotonic()`` of the last bytes written (heartbeats fill longer silences)."""
        self.container_id = ""
        self.id = uuid.uuid4().hex[:8]

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)
        log.debug("connection %s opened from %s", self.id, transport.get_extra_info("peername"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for session in self.sessions.values():
            self._drop_session(session)
        self.sessions.clear()
        log.debug("connection %s closed", self.id)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._consume(data)
        except (DecodeError, FramingError, ProtocolViolation) as exc:
            condition = getattr(exc, "condition", "amqp:decode-error")
            log.warning("connection %s: protocol error: %s", self.id, exc)
            self.close(condition, str(exc))
        except Exception:  # a bug must cost one connection, never the emulator
            log.exception("connection %s: internal error", self.id)
            self.close("amqp:internal-error", "internal error in the emulator")
        finally:
            self.server.after_activity()

    def _consume(self, data: bytes) -> None:
        if not self.handshake.done:
            data = self.handshake.feed(data)
            if not self.handshake.done or not data:
                return
        for frame in self.reader.feed(data):
            self._on_frame(frame.channel, frame.performative, frame.payload)
            if self.closed:
                return

    # -- output --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_write = time.monotonic()

    def heartbeat(self, now: float, quiet: float) -> None:
        """Send an empty frame if nothing was sent for ``quiet`` seconds (see ``server``)."""
        if self.opened and not self.closed and now - self.last_write >= quiet:
            self.write(encode_frame(0, None))

    def send(self, channel: int, performative: object, payload: bytes = b"") -> None:
        self.write(encode_frame(channel, performative, payload))

    def close(self, condition: str | None = None, description: str | None = None) -> None:
        if self.closed:
            return
        error = Error(condition=Symbol(condition), description=description) if condition else None
        if self.handshake.done:
            self.send(0, Close(error=error))
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- injected faults ------------------------------------------------------------------------

    def fault(self, operation: str, entity_path: str) -> FaultEffect | None:
        """Ask the fault injector; a connection drop is carried out here and now."""
        effect = self.server.faults.check(operation, entity_path)
        if effect is not None and effect.effect == "connection-drop":
            log.info("fault: dropping connection %s on %s %s", self.id, operation, entity_path)
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        return effect

    def after_fault(self, effect: FaultEffect | None, action: Callable[[], None]) -> None:
        """Run ``action`` now, or after the injected latency."""
        if effect is not None and effect.effect == "latency":
            self.server.call_later(effect.latency_ms / 1000, lambda: self._delayed(action))
        else:
            action()

    def _delayed(self, action: Callable[[], None]) -> None:
        if not self.closed:
            action()
            self.server.after_activity()

    # -- frame dispatch ------------------------------------------------------------------------

    def _on_frame(self, channel: int, performative: object, payload: bytes | memoryview) -> None:
        if performative is None:
            return  # heartbeat
        if isinstance(performative, Begin | End | Open | Close):
            self._on_connection_frame(channel, performative)
            return
        session = self._session(channel)
        if session is None:
            return
        if isinstance(performative, Transfer):
            transfers.on_transfer(self, session, performative, payload)
        elif isinstance(performative, Disposition):
            transfers.on_disposition(self, session, performative)
        elif isinstance(performative, Flow):
            self._on_flow(session, performative)
        elif isinstance(performative, Attach):
            self._on_attach(session, performative)
        elif isinstance(performative, Detach):
            self._on_detach(session, performative)
        else:
            raise ProtocolViolation("amqp:not-allowed", f"unexpected frame {performative!r}")

    def _on_connection_frame(self, channel: int, performative: object) -> None:
        if isinstance(performative, Begin):
            self._on_begin(channel, performative)
        elif isinstance(performative, End):
            self._on_end(channel)
        elif isinstance(performative, Open):
            self._on_open(performative)
        elif isinstance(performative, Close):
            self.send(0, Close())
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        else:
            raise ProtocolViolation("amqp:not-allowed", f"unexpected frame {performative!r}")

    def _session(self, channel: int) -> Session | None:
        session = self.sessions.get(channel)
        if session is None:
            # Clients keep sending detach/disposition frames after their own End; drop them.
            log.debug("connection %s: frame for ended channel %s ignored", self.id, channel)
        return session

    def _on_open(self, frame: Open) -> None:
        self.container_id = str(frame.container_id)
        self.peer_max_frame = int(frame.max_frame_size or MAX_UINT)
        effect = self.fault("connect", "")
        if self.closed:
            return
        self.after_fault(effect, lambda: self._answer_open(frame, effect))

    def _answer_open(self, frame: Open, effect: FaultEffect | None) -> None:
        self.send(
            0,
            Open(
                container_id=f"sbemu-{self.server.namespace}",
                hostname=frame.hostname,
                max_frame_size=UInt(MAX_FRAME_SIZE),
                channel_max=frame.channel_max if frame.channel_max is not None else None,
                idle_time_out=None,
            ),
        )
        self.opened = True
        if effect is not None and effect.condition is not None:
            self.close(effect.condition, effect.description)

    def _on_begin(self, channel: int, frame: Begin) -> None:
        if channel in self.sessions:
            raise ProtocolViolation("amqp:session:window-violation", "channel already in use")
        session = Session(
            remote_channel=channel,
            local_channel=channel,
            incoming_window=SESSION_WINDOW,
            outgoing_window=MAX_UINT,
            next_incoming_id=int(frame.next_outgoing_id),
            remote_incoming_window=int(frame.incoming_window),
        )
        self.sessions[channel] = session
        self.send(
            channel,
            Begin(
                remote_channel=UShort(channel),
                next_outgoing_id=UInt(0),
                incoming_window=UInt(SESSION_WINDOW),
                outgoing_window=UInt(MAX_UINT),
                handle_max=UInt(MAX_UINT),
            ),
        )

    def _on_end(self, channel: int) -> None:
        session = self.sessions.pop(channel, None)
        if session is not None:
            self._drop_session(session)
            self.send(session.local_channel, End())

    def _drop_session(self, session: Session) -> None:
        session.ended = True
        for link in list(session.links.values()):
            self._drop_link(link)
        session.links.clear()

    # -- links ---------------------------------------------------------------------------------

    def _on_attach(self, session: Session, frame: Attach) -> None:
        client_is_receiver = bool(frame.role)
        address = (
            (frame.source.address if frame.source else None)
            if client_is_receiver
            else (frame.target.address if frame.target else None)
        )
        path = entity_path_of(str(address) if address is not None else None)
        kind = LinkKind.ENTITY
        entity_path = path
        if path.casefold() == "$cbs":
            kind = LinkKind.CBS
        elif path.casefold().endswith("$management"):
            kind = LinkKind.MANAGEMENT
            entity_path = path[: -len("$management")].rstrip("/")
        link = Link(
            session=session,
            name=str(frame.name),
            remote_handle=int(frame.handle),
            local_handle=session.allocate_handle(),
            is_sender=client_is_receiver,
            kind=kind,
            address=str(address) if address is not None else "",
            entity_path=entity_path,
            source=frame.source,
            target=frame.target,
            snd_settle_mode=int(frame.snd_settle_mode or 0),
            rcv_settle_mode=int(frame.rcv_settle_mode or 0),
            wake=lambda link: self.server.want_pump(self, link),
        )
        session.links[link.remote_handle] = link
        session.local_handles[link.local_handle] = link
        decision = authorise_link(
            self.server.broker, self.tokens, kind, entity_path, emulator_sends=link.is_sender
        )
        if isinstance(decision, Refusal):
            self.refuse_link(link, frame, decision.condition, decision.description)
            return
        link.store = decision.store
        if link.kind is LinkKind.ENTITY and link.is_sender:
            link.receive_mode = (
                ReceiveMode.RECEIVE_AND_DELETE
                if link.snd_settle_mode == 1
                else ReceiveMode.PEEK_LOCK
            )
            if not self.session_accepts.start(link, frame):
                return
        self.complete_attach(link, frame)

    def complete_attach(self, link: Link, frame: Attach) -> None:
        """Answer an accepted attach; a session receiver learns its session and lock here."""
        source, properties = frame.source, frame.properties
        if link.message_session is not None:
            source, properties = accepted_attach_fields(link.message_session, source, properties)
        self.send(
            link.session.local_channel,
            Attach(
                name=frame.name,
                handle=UInt(link.local_handle),
                role=link.is_sender,
                snd_settle_mode=frame.snd_settle_mode,
                rcv_settle_mode=frame.rcv_settle_mode,
                source=source,
                target=frame.target,
                initial_delivery_count=UInt(0) if link.is_sender else None,
                max_message_size=ULong(self._max_message_size(link)),
                properties=properties,
            ),
        )
        if link.is_sender:
            if link.store is not None:
                link.store.add_listener(link.on_store_change)
                self.server.want_pump(self, link)
        else:
            self._grant_credit(link)

    def _max_message_size(self, link: Link) -> int:
        if link.kind is LinkKind.ENTITY and not link.is_sender:
            try:
                entity = self.server.broker.resolve(link.entity_path).entity
                return int(getattr(entity, "max_message_size", 0) or 0)
            except BrokerError:
                return 0
        return 0

    def refuse_link(self, link: Link, frame: Attach, condition: str, description: str) -> None:
        """Answer an attach and detach at once with the error: how the service refuses."""
        log.info("refusing link %s to %s: %s", link.name, link.entity_path, description)
        channel = link.session.local_channel
        self.send(
            channel,
            Attach(
                name=frame.name,
                handle=UInt(link.local_handle),
                role=not frame.role,
                snd_settle_mode=frame.snd_settle_mode,
                rcv_settle_mode=frame.rcv_settle_mode,
                source=None if frame.role else frame.source,
                target=frame.target if frame.role else None,
                initial_delivery_count=UInt(0) if frame.role else None,
            ),
        )
        self.send(
            channel,
            Detach(
                handle=UInt(link.local_handle),
                closed=True,
                error=Error(condition=Symbol(condition), description=description),
            ),
        )
        link.closed = True

    def detach_with_error(self, link: Link, error: Error) -> None:
        """The emulator ends a link (e.g. its session lock lapsed); the client sees the error."""
        self._drop_link(link)
        self.send(
            link.session.local_channel,
            Detach(handle=UInt(link.local_handle), closed=True, error=error),
        )

    def _on_detach(self, session: Session, frame: Detach) -> None:
        link = session.links.pop(int(frame.handle), None)
        if link is None:
            return
        session.local_handles.pop(link.local_handle, None)
        already_closed = link.closed
        self._drop_link(link)
        if not already_closed:
            self.send(session.local_channel, Detach(handle=UInt(link.local_handle), closed=True))

    def _drop_link(self, link: Link) -> None:
        """Forget a link. Its messages stay locked until their locks lapse, as in the service.

        Its unsettled deliveries are forgotten too: a disposition arriving for one after the
        link is gone settles nothing (the client then settles by lock token over
        ``$management``, which the lock still allows).
        """
        link.closed = True
        unsettled = link.session.unsettled
        for delivery_id in [i for i, d in unsettled.items() if d.link is link]:
            del unsettled[delivery_id]
        self.session_accepts.cancel(link)
        if link.store is not None and link.is_sender:
            link.store.remove_listener(link.on_store_change)
            if link.message_session is not None:
                link.store.release_session(
                    link.message_session, link, self.server.broker.clock.now()
                )

    def find_link(self, session: Session, address: str) -> Link | None:
        """The emulator-sender link of ``session`` whose address is ``address`` (a reply-to)."""
        wanted = entity_path_of(address).casefold()
        for link in session.links.values():
            if (
                link.is_sender
                and not link.closed
                and entity_path_of(link.address).casefold() == wanted
            ):
                return link
        return None

    # -- flow control ------------------------------------------------------------------------

    def _on_flow(self, session: Session, frame: Flow) -> None:
        remote_next_incoming = (
            int(frame.next_incoming_id) if frame.next_incoming_id is not None else 0
        )
        session.remote_incoming_window = (
            remote_next_incoming + int(frame.incoming_window) - session.next_outgoing_id
        )
        if frame.handle is None:
            if frame.echo:
                self.send_session_flow(session)
            self.server.want_pump_session(self, session)
            return
        link = session.links.get(int(frame.handle))
        if link is None or link.closed:
            return
        if link.is_sender:
            remote_count = int(frame.delivery_count) if frame.delivery_count is not None else 0
            credit = int(frame.link_credit or 0)
            link.credit = remote_count + credit - link.delivery_count
            link.drain = bool(frame.drain)
            self.server.want_pump(self, link)
        elif frame.echo:
            self.send_link_flow(link)

    def send_session_flow(self, session: Session) -> None:
        session.frames_since_flow = 0
        self.send(
            session.local_channel,
            Flow(
                next_incoming_id=UInt(session.next_incoming_id & MAX_UINT),
                incoming_window=UInt(SESSION_WINDOW),
                next_outgoing_id=UInt(session.next_outgoing_id & MAX_UINT),
                outgoing_window=UInt(MAX_UINT),
            ),
        )

    def send_link_flow(self, link: Link, *, drain: bool = False) -> None:
        session = link.session
        self.send(
            session.local_channel,
            Flow(
                next_incoming_id=UInt(session.next_incoming_id & MAX_UINT),
                incoming_window=UInt(SESSION_WINDOW),
                next_outgoing_id=UInt(session.next_outgoing_id & MAX_UINT),
                outgoing_window=UInt(MAX_UINT),
                handle=UInt(link.local_handle),
                delivery_count=UInt(link.delivery_count & MAX_UINT),
                link_credit=UInt(link.credit if link.is_sender else link.granted),
                drain=drain,
            ),
        )

    def _grant_credit(self, link: Link) -> None:
        link.granted = LINK_CREDIT
        self.send_link_flow(link)

    # -- outgoing transfers (emulator -> client) ---------------------------------------------

    def pump(self, link: Link) -> None:
        """Send what the link's credit allows (the server calls this once per loop turn)."""
        transfers.pump(self, link)

    def send_transfer(
        self, link: Link, delivery_id: int, tag: bytes, data: bytes, *, settled: bool
    ) -> None:
        """Write one delivery, split into frames no larger than the peer accepts."""
        session = link.session
        limit = min(self.peer_max_frame, MAX_FRAME_SIZE) - 256
        offset = 0
        first = True
        while True:
            chunk = data[offset : offset + limit]
            offset += len(chunk)
            more = offset < len(data)
            transfer = Transfer(
                handle=UInt(link.local_handle),
                delivery_id=UInt(delivery_id & MAX_UINT) if first else None,
                delivery_tag=tag if first else None,
                message_format=UInt(0) if first else None,
                settled=settled,
                more=more,
            )
            self.send(session.local_channel, transfer, chunk)
            session.next_outgoing_id += 1
            session.remote_incoming_window -= 1
            first = False
            if not more:
                break

    def send_reply(self, link: Link, data: bytes) -> None:
        """A pre-settled request/response reply ($cbs, $management)."""
        session = link.session
        delivery_id = session.next_outgoing_id
        self.send_transfer(link, delivery_id, uuid.uuid4().bytes, data, settled=True)
        link.credit -= 1
        link.delivery_count += 1
