"""One broker message as one row of the ``messages`` table, and back.

The message itself is stored the way it travels: the sender's header, message annotations and
bare sections (``wire``), so reading it back is the same ``to_broker_message`` the AMQP adapter
runs on a transfer, and every property type and body kind survives byte for byte. Only when
the broker changed the properties (a rule action, a dead-letter reason, properties given with
an abandon) are its ``system`` / ``user`` maps stored beside it, AMQP-encoded, so their types
survive too. Broker state (sequence number, state, times, delivery count, whether it was
locked) sits in plain columns, readable with any SQLite tool.
"""

from __future__ import annotations

from ..amqp.codec import decode, encode_value
from ..amqp.convert import WirePayload, to_broker_message
from ..amqp.message import (
    decode_application_properties,
    encode_application_properties,
    encode_header,
    encode_message_annotations,
)
from ..core.message import BrokerMessage, MessageState

COLUMNS = (
    "store, seq, state, locked, delivery_count, enqueued_time, expires_at, "
    "size, dead_letter_source, hops, wire, system, user"
)
Row = tuple[
    str, int, int, int, int, float, float, int, str | None, int, bytes, bytes | None, bytes | None
]


def wire_bytes(message: BrokerMessage) -> bytes:
    """The message as its sender encoded it (header, annotations, bare sections)."""
    payload = message.payload
    if not isinstance(payload, WirePayload):
        raise TypeError(f"cannot store a message whose payload is {type(payload).__name__}")
    parts = [encode_header(payload.header)] if payload.header is not None else []
    if message.annotations:
        parts.append(encode_message_annotations(message.annotations))
    parts += (
        payload.properties_raw,
        payload.application_properties_raw,
        payload.body_raw,
        payload.footer_raw,
    )
    return b"".join(parts)


def to_row(store: str, message: BrokerMessage) -> Row:
    modified = message.modified
    return (
        store,
        message.sequence_number,
        int(message.state),
        message.lock_token is not None,
        message.delivery_count,
        message.enqueued_time,
        message.expires_at,
        message.size,
        message.dead_letter_source,
        message.hops,
        wire_bytes(message),
        encode_value(message.system) if modified else None,
        encode_application_properties(message.user) if modified else None,
    )


def from_row(row: tuple[object, ...]) -> tuple[str, BrokerMessage, bool]:
    """(store, message, was locked) from a row selected with ``COLUMNS``."""
    (
        store,
        seq,
        state,
        locked,
        delivery_count,
        enqueued_time,
        expires_at,
        size,
        dead_letter_source,
        hops,
        wire,
        system,
        user,
    ) = row
    message = to_broker_message(bytes(wire))  # type: ignore[arg-type]
    message.sequence_number = int(seq)  # type: ignore[call-overload]
    message.state = MessageState(state)
    message.delivery_count = int(delivery_count)  # type: ignore[call-overload]
    message.enqueued_time = float(enqueued_time)  # type: ignore[arg-type]
    message.expires_at = float(expires_at)  # type: ignore[arg-type]
    message.size = int(size)  # type: ignore[call-overload]
    message.dead_letter_source = None if dead_letter_source is None else str(dead_letter_source)
    message.hops = int(hops)  # type: ignore[call-overload]
    if system is not None:
        message.system = dict(decode(bytes(system))[0])  # type: ignore[arg-type]
        message.user = dict(decode_application_properties(bytes(user or b"")) if user else {})  # type: ignore[arg-type]
        message.modified = True
    return str(store), message, bool(locked)
