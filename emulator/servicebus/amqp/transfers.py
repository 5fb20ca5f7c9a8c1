"""Transfers both ways: messages a client sends, and deliveries to a client receiver.

An incoming transfer may span frames; once whole it goes to the entity (``outcomes``), to
``$cbs`` or to ``$management``, and is settled back unless the client pre-settled it.

The pump runs once per loop turn for each link that wants it (see ``server``): it sends as
many available messages as the link's credit and the session's window allow, honouring
injected receive faults and, on drain, giving back the unused credit. A peek-lock delivery
stays unsettled until the client's disposition, which ``outcomes.settle`` applies.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ..core.errors import SessionLockLostError
from ..core.message import BrokerMessage
from ..core.store import ReceiveMode
from .conditions import ProtocolViolation
from .convert import encode_for_delivery, lock_token_tag
from .links import (
    LINK_CREDIT,
    MAX_FRAME_SIZE,
    SESSION_WINDOW,
    Link,
    LinkKind,
    OutgoingDelivery,
    Session,
)
from .outcomes import accept_messages, error_for, rejected, settle
from .performatives import Accepted, Disposition, Error, Transfer
from .types import Symbol, UInt

if TYPE_CHECKING:
    from .connection import AmqpConnection

MAX_BATCH = 64
"""Messages taken from the store per receive call while credit lasts."""


def on_transfer(
    connection: AmqpConnection, session: Session, frame: Transfer, payload: bytes | memoryview
) -> None:
    """One transfer frame from a client sender (or a $cbs / $management request)."""
    session.next_incoming_id += 1
    session.frames_since_flow += 1
    if session.frames_since_flow >= SESSION_WINDOW // 2:
        connection.send_session_flow(session)
    link = session.links.get(int(frame.handle))
    if link is None:
        raise ProtocolViolation("amqp:session:unattached-handle", "transfer on unknown handle")
    if link.is_sender:
        raise ProtocolViolation("amqp:not-allowed", "transfer on a receiving link")
    if link.closed:
        return
    if link.partial is None:
        link.partial = bytearray()
        link.partial_delivery_id = int(frame.delivery_id) if frame.delivery_id is not None else None
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
        connection.send_link_flow(link)
    if link.kind is LinkKind.ENTITY:
        effect = connection.fault("send", link.entity_path)
        if connection.closed:
            return
        if effect is not None and effect.condition is not None:
            state = rejected(effect.condition, effect.description)
        else:
            state = accept_messages(
                connection.server.broker, link.entity_path, body, message_format
            )
        if not settled and delivery_id is not None:
            reply = Disposition(role=True, first=UInt(delivery_id), settled=True, state=state)
            connection.after_fault(effect, lambda: connection.send(session.local_channel, reply))
    elif link.kind is LinkKind.CBS:
        connection.server.cbs.handle(connection, session, body)
        _settle_request(connection, session, delivery_id, settled)
    else:
        connection.server.management.handle(connection, link, body)
        _settle_request(connection, session, delivery_id, settled)


def _settle_request(
    connection: AmqpConnection, session: Session, delivery_id: int | None, settled: bool
) -> None:
    if not settled and delivery_id is not None:
        connection.send(
            session.local_channel,
            Disposition(role=True, first=UInt(delivery_id), settled=True, state=Accepted()),
        )


def pump(connection: AmqpConnection, link: Link) -> None:
    """Send as many available messages as the link's credit and the session window allow."""
    if link.closed or connection.closed or link.store is None:
        return
    if link.pending_accept is not None:
        connection.session_accepts.retry(link)
        return
    clock = connection.server.broker.clock
    if link.credit > 0 and link.store.has_any_available(link.message_session):
        if link.delayed_until > clock.now():
            return
        effect = connection.fault("receive", link.entity_path)
        if connection.closed:
            return
        if effect is not None and effect.condition is not None:
            error = Error(condition=Symbol(effect.condition), description=effect.description)
            connection.detach_with_error(link, error)
            return
        if effect is not None and effect.effect == "latency":
            link.delayed_until = clock.now() + effect.latency_ms / 1000
            connection.server.call_later(
                effect.latency_ms / 1000, lambda: connection.server.want_pump(connection, link)
            )
            return
    session = link.session
    now = clock.now()
    while link.credit > 0 and session.remote_incoming_window > 0:
        batch = min(link.credit, session.remote_incoming_window, MAX_BATCH)
        try:
            messages = link.store.receive(batch, now, link.receive_mode, link.message_session)
        except SessionLockLostError as exc:
            connection.detach_with_error(link, error_for(exc))
            return
        if not messages:
            break
        for message in messages:
            _send_message(connection, link, message)
    if link.drain and link.credit > 0:
        link.delivery_count += link.credit
        link.credit = 0
        link.drain = False
        connection.send_link_flow(link, drain=True)


def _send_message(connection: AmqpConnection, link: Link, message: BrokerMessage) -> None:
    session = link.session
    locked = link.receive_mode is ReceiveMode.PEEK_LOCK
    data = encode_for_delivery(message, locked=locked)
    token = message.lock_token if locked else uuid.uuid4()
    assert token is not None
    delivery_id = session.next_outgoing_id
    if locked:
        assert link.store is not None
        session.unsettled[delivery_id] = OutgoingDelivery(link, link.store, token)
    connection.send_transfer(link, delivery_id, lock_token_tag(token), data, settled=not locked)
    link.credit -= 1
    link.delivery_count += 1


def on_disposition(connection: AmqpConnection, session: Session, frame: Disposition) -> None:
    """The client settled deliveries the emulator sent; answer each unless pre-settled."""
    if not frame.role:
        return  # the client, as sender, settling our dispositions: nothing to do
    first = int(frame.first)
    last = int(frame.last) if frame.last is not None else first
    for delivery_id in range(first, last + 1):
        delivery = session.unsettled.pop(delivery_id, None)
        if delivery is None:
            continue
        effect = connection.fault("settle", delivery.link.entity_path)
        if connection.closed:
            return
        if effect is not None and effect.condition is not None:
            outcome = rejected(effect.condition, effect.description)
        else:
            now = connection.server.broker.clock.now()
            outcome = settle(delivery.store, delivery.lock_token, frame.state, now)
        if not frame.settled:
            reply = Disposition(role=False, first=UInt(delivery_id), settled=True, state=outcome)
            connection.after_fault(
                effect, lambda reply=reply: connection.send(session.local_channel, reply)
            )
