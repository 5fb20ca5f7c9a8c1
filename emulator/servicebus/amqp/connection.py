"""One AMQP 1.0 connection: SASL, sessions, links, transfers and dispositions.

This module translates frames into broker calls and broker results into frames. It decides
nothing about Service Bus semantics: those live in ``core`` (messages), ``management``
(request/response operations) and ``cbs`` (tokens).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ..core.entities import Queue, Topic
from ..core.errors import (
    BrokerError,
    EntityNotFoundError,
    InvalidOperationError,
    MessageLockLostError,
    MessageNotFoundError,
    MessageSizeExceededError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from ..core.store import ReceiveMode
from ..faults import FaultEffect
from ..topology import AccessRights
from . import conditions
from .codec import DecodeError, decode, encode_value
from .convert import encode_for_delivery, lock_token_tag, to_broker_message
from .framing import AMQP_HEADER, SASL_HEADER, FrameReader, FramingError, encode_frame
from .links import Link, LinkKind, OutgoingDelivery, Session
from .message import split_batch, split_sections
from .performatives import (
    Accepted,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Modified,
    Open,
    Rejected,
    Released,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
    decode_described,
)
from .types import Long, Symbol, UInt, ULong

if TYPE_CHECKING:
    from .server import AmqpServer

log = logging.getLogger("emulator.servicebus.amqp")

BATCH_MESSAGE_FORMAT = 0x80013700
MAX_FRAME_SIZE = 1024 * 1024
LINK_CREDIT = 1000
SESSION_WINDOW = 5000
DEAD_LETTER_CONDITION = "com.microsoft:dead-letter"
SESSION_FILTER = Symbol("com.microsoft:session-filter")
SESSION_LOCKED_UNTIL = Symbol("com.microsoft:locked-until-utc")
_DOTNET_EPOCH_TICKS = 621355968000000000
_MAX_UINT = 2**32 - 1


class ProtocolViolation(Exception):
    """The peer broke the protocol: the connection is closed with this condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


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
        self.buffer = bytearray()
        self.phase = "header"
        self.reader = FrameReader(max_frame_size=MAX_FRAME_SIZE)
        self.sessions: dict[int, Session] = {}  # by remote channel
        self.peer_max_frame = 512
        self.tokens: dict[str, tuple[AccessRights, float]] = {}
        self.closed = False
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

    # -- input phases --------------------------------------------------------------------------

    def _consume(self, data: bytes) -> None:
        if self.phase == "frames":
            for frame in self.reader.feed(data):
                self._on_frame(frame.channel, frame.performative, frame.payload)
                if self.closed:
                    return
            return
        self.buffer += data
        while self.phase != "frames" and not self.closed:
            if self.phase in ("header", "amqp-header"):
                if len(self.buffer) < 8:
                    return
                header = bytes(self.buffer[:8])
                del self.buffer[:8]
                self._on_protocol_header(header)
            elif self.phase == "sasl":
                if len(self.buffer) < 8:
                    return
                size = int.from_bytes(self.buffer[:4], "big")
                if size < 8 or size > 65536:
                    raise FramingError(f"bad SASL frame size {size}")
                if len(self.buffer) < size:
                    return
                frame = bytes(self.buffer[:size])
                del self.buffer[:size]
                doff = frame[4] * 4
                value, _ = decode(frame, doff)
                self._on_sasl(decode_described(value))
        if self.phase == "frames" and self.buffer:
            rest = bytes(self.buffer)
            self.buffer.clear()
            self._consume(rest)

    def _on_protocol_header(self, header: bytes) -> None:
        if header == SASL_HEADER and self.phase == "header":
            self.write(SASL_HEADER)
            self.write(
                encode_frame(
                    0,
                    SaslMechanisms(sasl_server_mechanisms=[Symbol("ANONYMOUS")]),
                    frame_type=1,
                )
            )
            self.phase = "sasl"
        elif header == AMQP_HEADER:
            self.write(AMQP_HEADER)
            self.phase = "frames"
        else:
            # Answer with the header we speak, then hang up, as the spec asks.
            self.write(AMQP_HEADER)
            raise ProtocolViolation(
                "amqp:not-implemented", f"unsupported protocol header {header!r}"
            )

    def _on_sasl(self, performative: object) -> None:
        if isinstance(performative, SaslInit):
            self.write(encode_frame(0, SaslOutcome(code=0), frame_type=1))
            self.phase = "amqp-header"
        else:
            raise ProtocolViolation("amqp:not-allowed", f"unexpected SASL frame {performative!r}")

    # -- output --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, channel: int, performative: object, payload: bytes = b"") -> None:
        self.write(encode_frame(channel, performative, payload))

    def close(self, condition: str | None = None, description: str | None = None) -> None:
        if self.closed:
            return
        error = Error(condition=Symbol(condition), description=description) if condition else None
        if self.phase == "frames":
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
            self._on_transfer(session, performative, payload)
        elif isinstance(performative, Disposition):
            self._on_disposition(session, performative)
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
        self.peer_max_frame = int(frame.max_frame_size or _MAX_UINT)
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
        if effect is not None and effect.condition is not None:
            self.close(effect.condition, effect.description)

    def _on_begin(self, channel: int, frame: Begin) -> None:
        if channel in self.sessions:
            raise ProtocolViolation("amqp:session:window-violation", "channel already in use")
        session = Session(
            remote_channel=channel,
            local_channel=channel,
            incoming_window=SESSION_WINDOW,
            outgoing_window=_MAX_UINT,
            next_incoming_id=int(frame.next_outgoing_id),
            remote_incoming_window=int(frame.incoming_window),
        )
        self.sessions[channel] = session
        self.send(
            channel,
            Begin(
                remote_channel=frame_channel(channel),
                next_outgoing_id=UInt(0),
                incoming_window=UInt(SESSION_WINDOW),
                outgoing_window=UInt(_MAX_UINT),
                handle_max=UInt(_MAX_UINT),
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
        )
        session.links[link.remote_handle] = link
        session.local_handles[link.local_handle] = link
        refusal = self._authorise_link(link)
        if refusal is not None:
            self._refuse_link(session, link, frame, *refusal)
            return
        if link.kind is LinkKind.ENTITY and link.is_sender:
            link.receive_mode = (
                ReceiveMode.RECEIVE_AND_DELETE
                if link.snd_settle_mode == 1
                else ReceiveMode.PEEK_LOCK
            )
        is_entity_receiver = link.kind is LinkKind.ENTITY and link.is_sender
        if is_entity_receiver and not self._start_message_session(link, frame):
            return
        self._complete_attach(link, frame)

    def _complete_attach(self, link: Link, frame: Attach) -> None:
        """Answer an accepted attach; a session receiver learns its session and lock here."""
        source = frame.source
        properties = frame.properties
        if link.message_session is not None and source is not None:
            filters = dict(source.filter or {})
            filters[SESSION_FILTER] = link.message_session.id
            source = replace(source, filter=filters)
            properties = dict(properties or {})
            properties[SESSION_LOCKED_UNTIL] = Long(dotnet_ticks(link.message_session.locked_until))
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
                link.store.add_listener(self._store_listener(link))
                self.server.want_pump(self, link)
        else:
            self._grant_credit(link)

    # -- message sessions ----------------------------------------------------------------------

    def _start_message_session(self, link: Link, frame: Attach) -> bool:
        """Lock the session a receiver asks for. False when the attach is refused or waits."""
        store = link.store
        assert store is not None
        filters = (frame.source.filter if frame.source is not None else None) or {}
        wants_session = any(str(k) == SESSION_FILTER for k in filters)
        if not wants_session:
            if store.policy.requires_session:
                self._refuse_link(
                    link.session,
                    link,
                    frame,
                    conditions.NOT_ALLOWED,
                    "It is not possible for an entity that requires sessions to create a "
                    "non-sessionful message receiver.",
                )
                return False
            return True
        requested = next(v for k, v in filters.items() if str(k) == SESSION_FILTER)
        link.requested_session = None if requested is None else str(requested)
        link.pending_attach = frame
        if self._try_accept_session(link):
            return False  # answered (accepted or refused) inside
        timeout_ms = _link_property(frame, "com.microsoft:timeout")
        wait = float(timeout_ms) / 1000 if timeout_ms else 60.0
        link.wait_handle = self.server.call_later(wait, lambda: self._session_wait_expired(link))
        link.store.add_listener(self._store_listener(link))
        return False

    def _try_accept_session(self, link: Link) -> bool:
        """True once the pending attach has been answered."""
        store = link.store
        frame = link.pending_attach
        assert store is not None and frame is not None
        try:
            session = store.accept_session(
                link.requested_session, link, self.server.broker.clock.now()
            )
        except BrokerError as exc:
            link.pending_attach = None
            error = error_for(exc)
            self._refuse_link(
                link.session, link, frame, str(error.condition), str(error.description)
            )
            return True
        if session is None:
            return False
        link.pending_attach = None
        if link.wait_handle is not None:
            link.wait_handle.cancel()
            link.wait_handle = None
        link.message_session = session
        self._complete_attach(link, frame)
        return True

    def _session_wait_expired(self, link: Link) -> None:
        link.wait_handle = None
        if link.pending_attach is None or link.closed or self.closed:
            return
        frame = link.pending_attach
        link.pending_attach = None
        self._refuse_link(
            link.session,
            link,
            frame,
            conditions.TIMEOUT,
            "No session was available to accept within the requested timeout.",
        )
        self.server.after_activity()

    def _max_message_size(self, link: Link) -> int:
        if link.kind is LinkKind.ENTITY and not link.is_sender:
            try:
                entity = self.server.broker.resolve(link.entity_path).entity
                return int(getattr(entity, "max_message_size", 0) or 0)
            except BrokerError:
                return 0
        return 0

    def _authorise_link(self, link: Link) -> tuple[str, str] | None:
        """None when the link may attach, else the (condition, description) to refuse it."""
        if link.kind is LinkKind.CBS:
            return None
        try:
            resolved = self.server.broker.resolve(link.entity_path)
        except EntityNotFoundError as exc:
            return conditions.NOT_FOUND, str(exc)
        needed = AccessRights.LISTEN if link.is_sender else AccessRights.SEND
        if link.kind is LinkKind.MANAGEMENT:
            needed = AccessRights(0)
        rights = self.rights_for(link.entity_path)
        if rights is None:
            return (
                conditions.UNAUTHORIZED,
                f"Unauthorized access. No valid token for '{link.entity_path}' was put on $cbs.",
            )
        if needed and not (rights & needed):
            claim = "Listen" if needed is AccessRights.LISTEN else "Send"
            return (
                conditions.UNAUTHORIZED,
                f"Unauthorized access. '{claim}' claim(s) are required to perform this operation. "
                f"Resource: '{link.entity_path}'.",
            )
        if link.kind is LinkKind.ENTITY:
            if link.is_sender:
                if resolved.store is None:
                    return (
                        conditions.NOT_ALLOWED,
                        f"Cannot receive from topic '{link.entity_path}'.",
                    )
                link.store = resolved.store
            elif not isinstance(resolved.entity, Queue | Topic) or resolved.sub_queue:
                return conditions.NOT_ALLOWED, f"Cannot send to '{link.entity_path}'."
        return None

    def rights_for(self, entity_path: str) -> AccessRights | None:
        """The rights granted by the put tokens whose audience covers ``entity_path``."""
        now = time.time()
        granted: AccessRights | None = None
        wanted = entity_path.casefold().strip("/")
        for audience_path, (rights, expires) in self.tokens.items():
            if expires <= now:
                continue
            if (
                wanted == audience_path
                or wanted.startswith(audience_path + "/")
                or not audience_path
            ):
                granted = rights if granted is None else granted | rights
        return granted

    def _refuse_link(
        self, session: Session, link: Link, frame: Attach, condition: str, description: str
    ) -> None:
        log.info("refusing link %s to %s: %s", link.name, link.entity_path, description)
        self.send(
            session.local_channel,
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
            session.local_channel,
            Detach(
                handle=UInt(link.local_handle),
                closed=True,
                error=Error(condition=Symbol(condition), description=description),
            ),
        )
        link.closed = True

    def _detach_with_error(self, link: Link, error: Error) -> None:
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
        """Forget a link. Its messages stay locked until their locks lapse, as in the service."""
        link.closed = True
        if link.wait_handle is not None:
            link.wait_handle.cancel()
            link.wait_handle = None
        if link.store is not None and link.is_sender:
            link.store.remove_listener(self._store_listener(link))
            if link.message_session is not None:
                link.store.release_session(
                    link.message_session, link, self.server.broker.clock.now()
                )

    def _store_listener(self, link: Link) -> Callable[[object], None]:
        listener = getattr(link, "_listener", None)
        if listener is None:

            def listener(_store: object, link: Link = link) -> None:
                self.server.want_pump(self, link)

            link._listener = listener  # type: ignore[attr-defined]
        return listener

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
                self._send_session_flow(session)
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
            self._send_link_flow(link)

    def _send_session_flow(self, session: Session) -> None:
        session.frames_since_flow = 0
        self.send(
            session.local_channel,
            Flow(
                next_incoming_id=UInt(session.next_incoming_id & _MAX_UINT),
                incoming_window=UInt(SESSION_WINDOW),
                next_outgoing_id=UInt(session.next_outgoing_id & _MAX_UINT),
                outgoing_window=UInt(_MAX_UINT),
            ),
        )

    def _send_link_flow(self, link: Link, *, drain: bool = False) -> None:
        session = link.session
        self.send(
            session.local_channel,
            Flow(
                next_incoming_id=UInt(session.next_incoming_id & _MAX_UINT),
                incoming_window=UInt(SESSION_WINDOW),
                next_outgoing_id=UInt(session.next_outgoing_id & _MAX_UINT),
                outgoing_window=UInt(_MAX_UINT),
                handle=UInt(link.local_handle),
                delivery_count=UInt(link.delivery_count & _MAX_UINT),
                link_credit=UInt(link.credit if link.is_sender else link.granted),
                drain=drain,
            ),
        )

    def _grant_credit(self, link: Link) -> None:
        link.granted = LINK_CREDIT
        self._send_link_flow(link)

    # -- incoming transfers (client -> emulator) ---------------------------------------------

    def _on_transfer(self, session: Session, frame: Transfer, payload: bytes | memoryview) -> None:
        session.next_incoming_id += 1
        session.frames_since_flow += 1
        if session.frames_since_flow >= SESSION_WINDOW // 2:
            self._send_session_flow(session)
        link = session.links.get(int(frame.handle))
        if link is None:
            raise ProtocolViolation("amqp:session:unattached-handle", "transfer on unknown handle")
        if link.is_sender:
            raise ProtocolViolation("amqp:not-allowed", "transfer on a receiving link")
        if link.closed:
            return
        if link.partial is None:
            link.partial = bytearray()
            link.partial_delivery_id = (
                int(frame.delivery_id) if frame.delivery_id is not None else None
            )
            link.partial_settled = bool(frame.settled)
            link.partial_format = int(frame.message_format or 0)
        link.partial += payload
        if frame.settled:
            link.partial_settled = True
        if frame.aborted:
            link.partial = None
            return
        if frame.more:
            if len(link.partial) > 64 * MAX_FRAME_SIZE:
                raise ProtocolViolation("amqp:frame-size-too-small", "message too large")
            return
        body = bytes(link.partial)
        delivery_id = link.partial_delivery_id
        settled = link.partial_settled
        message_format = link.partial_format
        link.partial = None
        link.delivery_count += 1
        link.granted -= 1
        if link.granted < LINK_CREDIT // 2:
            link.granted = LINK_CREDIT
            self._send_link_flow(link)
        if link.kind is LinkKind.ENTITY:
            effect = self.fault("send", link.entity_path)
            if self.closed:
                return
            if effect is not None and effect.condition is not None:
                state: object = Rejected(
                    error=Error(condition=Symbol(effect.condition), description=effect.description)
                )
            else:
                state = self._accept_messages(link, body, message_format)
            if not settled and delivery_id is not None:
                reply = Disposition(role=True, first=UInt(delivery_id), settled=True, state=state)
                self.after_fault(effect, lambda: self.send(session.local_channel, reply))
        elif link.kind is LinkKind.CBS:
            self.server.cbs.handle(self, session, body)
            self._settle_request(session, delivery_id, settled)
        else:
            self.server.management.handle(self, link, body)
            self._settle_request(session, delivery_id, settled)

    def _settle_request(self, session: Session, delivery_id: int | None, settled: bool) -> None:
        if not settled and delivery_id is not None:
            self.send(
                session.local_channel,
                Disposition(role=True, first=UInt(delivery_id), settled=True, state=Accepted()),
            )

    def _accept_messages(self, link: Link, body: bytes, message_format: int) -> object:
        broker = self.server.broker
        try:
            broker.check_size(link.entity_path, len(body))
            if message_format == BATCH_MESSAGE_FORMAT:
                envelope = split_sections(body)
                raws = split_batch(envelope.body or b"")
            else:
                raws = [body]
            messages = [to_broker_message(raw) for raw in raws]
            broker.send(link.entity_path, messages)
        except MessageSizeExceededError as exc:
            return Rejected(
                error=Error(condition=Symbol(conditions.SIZE_EXCEEDED), description=str(exc))
            )
        except DecodeError as exc:
            return Rejected(
                error=Error(condition=Symbol(conditions.DECODE_ERROR), description=str(exc))
            )
        except EntityNotFoundError as exc:
            return Rejected(
                error=Error(condition=Symbol(conditions.NOT_FOUND), description=str(exc))
            )
        except BrokerError as exc:
            return Rejected(error=error_for(exc))
        return Accepted()

    # -- outgoing transfers (emulator -> client) ---------------------------------------------

    def pump(self, link: Link) -> None:
        """Send as many available messages as the link's credit and the session window allow."""
        if link.closed or self.closed or link.store is None:
            return
        if link.pending_attach is not None:
            self._try_accept_session(link)
            return
        if link.credit > 0 and link.store.has_any_available(link.message_session):
            if link.delayed_until > self.server.broker.clock.now():
                return
            effect = self.fault("receive", link.entity_path)
            if self.closed:
                return
            if effect is not None and effect.condition is not None:
                error = Error(condition=Symbol(effect.condition), description=effect.description)
                self._detach_with_error(link, error)
                return
            if effect is not None and effect.effect == "latency":
                link.delayed_until = self.server.broker.clock.now() + effect.latency_ms / 1000
                self.server.call_later(
                    effect.latency_ms / 1000, lambda: self.server.want_pump(self, link)
                )
                return
        session = link.session
        now = self.server.broker.clock.now()
        while link.credit > 0 and session.remote_incoming_window > 0:
            batch = min(link.credit, session.remote_incoming_window, 64)
            try:
                messages = link.store.receive(batch, now, link.receive_mode, link.message_session)
            except SessionLockLostError as exc:
                self._detach_with_error(link, error_for(exc))
                return
            if not messages:
                break
            for message in messages:
                self._send_message(link, message)
        if link.drain and link.credit > 0:
            link.delivery_count += link.credit
            link.credit = 0
            link.drain = False
            self._send_link_flow(link, drain=True)

    def _send_message(self, link: Link, message: object) -> None:
        from ..core.message import BrokerMessage

        assert isinstance(message, BrokerMessage)
        session = link.session
        locked = link.receive_mode is ReceiveMode.PEEK_LOCK
        data = encode_for_delivery(message, locked=locked)
        token = message.lock_token if locked else uuid.uuid4()
        assert token is not None
        delivery_id = session.next_outgoing_id
        if locked:
            assert link.store is not None
            session.unsettled[delivery_id] = OutgoingDelivery(link, link.store, token)
        self.send_transfer(link, delivery_id, lock_token_tag(token), data, settled=not locked)
        link.credit -= 1
        link.delivery_count += 1

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
                delivery_id=UInt(delivery_id & _MAX_UINT) if first else None,
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

    # -- dispositions (client settles what the emulator sent) --------------------------------

    def _on_disposition(self, session: Session, frame: Disposition) -> None:
        if not frame.role:
            return  # the client, as sender, settling our dispositions: nothing to do
        first = int(frame.first)
        last = int(frame.last) if frame.last is not None else first
        for delivery_id in range(first, last + 1):
            delivery = session.unsettled.pop(delivery_id, None)
            if delivery is None:
                continue
            effect = self.fault("settle", delivery.link.entity_path)
            if self.closed:
                return
            if effect is not None and effect.condition is not None:
                outcome: object = Rejected(
                    error=Error(condition=Symbol(effect.condition), description=effect.description)
                )
            else:
                outcome = self._settle(delivery, frame.state)
            if not frame.settled:
                reply = Disposition(
                    role=False, first=UInt(delivery_id), settled=True, state=outcome
                )
                self.after_fault(
                    effect, lambda reply=reply: self.send(session.local_channel, reply)
                )

    def _settle(self, delivery: OutgoingDelivery, state: object) -> object:
        """Apply the client's outcome; answer it back, or a rejection saying why it failed."""
        store = delivery.store
        token = delivery.lock_token
        now = self.server.broker.clock.now()
        try:
            if isinstance(state, Accepted):
                store.complete(token, now)
            elif isinstance(state, Released):
                store.release(token, now)
            elif isinstance(state, Modified):
                properties = {str(k): v for k, v in (state.message_annotations or {}).items()}
                if state.undeliverable_here:
                    store.defer(token, now, properties)
                elif state.delivery_failed:
                    store.abandon(token, now, properties)
                else:
                    store.release(token, now)
            elif isinstance(state, Rejected):
                info = dict(state.error.info or {}) if state.error is not None else {}
                reason = _info(info, "DeadLetterReason")
                description = _info(info, "DeadLetterErrorDescription")
                extra = {
                    str(k): v
                    for k, v in info.items()
                    if str(k) not in ("DeadLetterReason", "DeadLetterErrorDescription")
                }
                store.dead_letter(token, now, reason, description, extra)
                return Rejected(error=None)
            else:
                return state
        except BrokerError as exc:
            return Rejected(error=error_for(exc))
        return state


def _info(info: dict[object, object], key: str) -> str | None:
    for k, v in info.items():
        if str(k) == key:
            return None if v is None else str(v)
    return None


def frame_channel(channel: int) -> object:
    from .types import UShort

    return UShort(channel)


def error_for(exc: BrokerError) -> Error:
    """The AMQP error the service sends for each broker failure."""
    condition = {
        MessageLockLostError: conditions.MESSAGE_LOCK_LOST,
        MessageNotFoundError: conditions.MESSAGE_NOT_FOUND,
        EntityNotFoundError: conditions.NOT_FOUND,
        MessageSizeExceededError: conditions.SIZE_EXCEEDED,
        InvalidOperationError: conditions.NOT_ALLOWED,
        SessionLockLostError: conditions.SESSION_LOCK_LOST,
        SessionCannotBeLockedError: conditions.SESSION_CANNOT_BE_LOCKED,
    }.get(type(exc), conditions.INTERNAL)
    condition = getattr(exc, "condition", None) or condition
    return Error(condition=Symbol(condition), description=str(exc))


__all__ = ["AmqpConnection", "encode_value"]


def dotnet_ticks(seconds: float) -> int:
    """Unix seconds as .NET ticks (100 ns since year 1), as the service sends lock expiries."""
    return _DOTNET_EPOCH_TICKS + int(seconds * 10_000_000)


def _link_property(frame: Attach, name: str) -> object:
    for key, value in (frame.properties or {}).items():
        if str(key) == name:
            return value
    return None
