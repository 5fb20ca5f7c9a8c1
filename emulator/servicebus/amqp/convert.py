"""Wire messages <-> broker messages.

The bare message is kept as the raw sections the sender encoded, so every property type and body
kind reaches the receiver byte for byte; only the header and message annotations (broker state)
are re-encoded on delivery, and properties/application-properties only when a rule action or a
dead-letter reason changed them.
"""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, datetime
from typing import NamedTuple

from ..core.message import BrokerMessage, MessageState
from .codec import DecodeError, decode
from .message import (
    APPLICATION_PROPERTIES,
    DATA,
    FAST_SECTION_VALUES,
    FOOTER,
    HEADER,
    MESSAGE_ANNOTATIONS,
    PROPERTIES,
    Header,
    Properties,
    RawMessage,
    decode_annotations,
    decode_application_properties,
    decode_header,
    decode_properties,
    encode_application_properties,
    encode_delivery_annotations,
    encode_header,
    encode_message_annotations,
    encode_properties,
    split_sections,
)
from .types import Int, Long, Symbol

SEQUENCE_NUMBER = Symbol("x-opt-sequence-number")
ENQUEUED_TIME = Symbol("x-opt-enqueued-time")
LOCKED_UNTIL = Symbol("x-opt-locked-until")
SCHEDULED_ENQUEUE_TIME = Symbol("x-opt-scheduled-enqueue-time")
PARTITION_KEY = Symbol("x-opt-partition-key")
MESSAGE_STATE = Symbol("x-opt-message-state")
DEAD_LETTER_SOURCE = Symbol("x-opt-deadletter-source")
ENQUEUE_SEQUENCE_NUMBER = Symbol("x-opt-enqueue-sequence-number")
LOCK_TOKEN = Symbol("x-opt-lock-token")

_BROKER_ANNOTATIONS = frozenset(
    {
        SEQUENCE_NUMBER,
        ENQUEUED_TIME,
        LOCKED_UNTIL,
        MESSAGE_STATE,
        DEAD_LETTER_SOURCE,
        ENQUEUE_SEQUENCE_NUMBER,
        LOCK_TOKEN,
    }
)


class WirePayload(NamedTuple):
    """The sender's encoding of one message, shared read-only between fan-out copies.

    A tuple of bytes rather than an object graph: the garbage collector stops tracking it, so
    a full collection with many messages held visits one object per message, not three.
    """

    header: Header | None
    properties_raw: bytes
    application_properties_raw: bytes
    body_raw: bytes
    footer_raw: bytes

    @property
    def properties(self) -> Properties | None:
        """The decoded properties section (decoded when read: rarely, and already valid)."""
        return decode_properties(self.properties_raw) if self.properties_raw else None


def _timestamp(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def _text(value: object) -> object:
    return str(value) if isinstance(value, str) else value


def to_broker_message(raw: bytes) -> BrokerMessage:
    """Decode what the broker needs from one encoded message (DecodeError on bad input)."""
    if type(raw) is bytes:
        message = _fast_broker_message(raw)
        if message is not None:
            return message
    return _broker_message(raw)


_PROPERTY_FIELDS = (
    ("MessageId", "message_id"),
    ("CorrelationId", "correlation_id"),
    ("To", "to"),
    ("ReplyTo", "reply_to"),
    ("Label", "subject"),
    ("SessionId", "group_id"),
    ("ReplyToSessionId", "reply_to_group_id"),
    ("ContentType", "content_type"),
)
"""(system property, AMQP properties field) for the fields Service Bus exposes by name."""
_PROPERTY_SLOTS = tuple(f.name for f in fields(Properties))
_PROPERTY_COUNT = len(_PROPERTY_SLOTS)
_SYSTEM_SLOTS = tuple((key, _PROPERTY_SLOTS.index(attr)) for key, attr in _PROPERTY_FIELDS)
"""(system property, index in the properties list), in the general path's order."""


def _fast_broker_message(raw: bytes) -> BrokerMessage | None:
    """``_broker_message`` for the messages SDKs send, or None to take the general path.

    It is the send path's hot spot (once per message of every batch): sections are sliced
    here with inline size arithmetic instead of ``split_sections`` / ``codec.skip``, the
    properties list and application-properties map are decoded straight from ``raw``, and no
    intermediate ``RawMessage`` / ``Described`` is built. Whatever it does not handle exactly
    like the general path (repeated or out-of-line body sections, sequence or value bodies, a
    descriptor other than a small ulong, any error) returns None, and the general path then
    gives the same result or the same DecodeError as before.
    """
    try:
        n = len(raw)
        pos = 0
        seen = 0
        header = annotations = properties = application = body = footer = None
        props_at = app_at = 0
        while pos < n:
            if raw[pos] or raw[pos + 1] != 0x53:
                return None
            code = raw[pos + 2]
            constructor = raw[pos + 3]
            allowed = FAST_SECTION_VALUES.get(code)
            if allowed is None or constructor not in allowed:
                return None
            if constructor < 0xA0:  # 0x40 null / 0x45 empty list
                end = pos + 4
            elif constructor < 0xB0 or constructor == 0xC0 or constructor == 0xC1:  # size8
                end = pos + 5 + raw[pos + 4]
            else:  # four-byte size
                end = pos + 8 + int.from_bytes(raw[pos + 4 : pos + 8], "big")
            if end > n:
                return None
            bit = 1 << (code - HEADER)
            if seen & bit:
                return None
            seen |= bit
            if code == PROPERTIES:
                properties, props_at = raw[pos:end], pos + 3
            elif code == APPLICATION_PROPERTIES:
                application, app_at = raw[pos:end], pos + 3
            elif code == DATA:
                body = raw[pos:end]
            elif code == HEADER:
                header = raw[pos:end]
            elif code == MESSAGE_ANNOTATIONS:
                annotations = raw[pos:end]
            elif code == FOOTER:
                footer = raw[pos:end]
            pos = end
        values: list[object] | None = None
        if properties is not None:
            values, _ = decode(raw, props_at)
            if type(values) is not list:
                return None
            if len(values) < _PROPERTY_COUNT:
                values += [None] * (_PROPERTY_COUNT - len(values))
        user: dict[object, object] = {}
        if application is not None:
            user = decode(raw, app_at)[0] or {}
        decoded_header = decode_header(header) if header is not None else None
        sent = decode_annotations(annotations) if annotations is not None else {}
    except (DecodeError, IndexError, TypeError):
        return None
    system: dict[str, object] = {}
    if values is not None:
        for key, slot in _SYSTEM_SLOTS:
            value = values[slot]
            if value is not None:
                system[key] = str(value) if isinstance(value, str) else value
    return _assemble(
        raw,
        decoded_header,
        sent,
        user,
        system,
        properties or b"",
        application or b"",
        body or b"",
        footer or b"",
    )


def _broker_message(raw: bytes) -> BrokerMessage:
    """The general decoding of one message, whatever its sections (DecodeError on bad input)."""
    sections: RawMessage = split_sections(raw)
    header = decode_header(sections.header) if sections.header else None
    properties = decode_properties(sections.properties) if sections.properties else None
    annotations = (
        decode_annotations(sections.message_annotations) if sections.message_annotations else {}
    )
    user = (
        decode_application_properties(sections.application_properties)
        if sections.application_properties
        else {}
    )
    system: dict[str, object] = {}
    if properties is not None:
        for key, attr in _PROPERTY_FIELDS:
            value = getattr(properties, attr)
            if value is not None:
                system[key] = _text(value)
    return _assemble(
        raw,
        header,
        annotations,
        dict(user),
        system,
        sections.properties or b"",
        sections.application_properties or b"",
        sections.body or b"",
        sections.footer or b"",
    )


def _assemble(
    raw: bytes,
    header: Header | None,
    annotations: dict[object, object],
    user: dict[object, object],
    system: dict[str, object],
    properties_raw: bytes,
    application_properties_raw: bytes,
    body_raw: bytes,
    footer_raw: bytes,
) -> BrokerMessage:
    """The broker message of decoded sections (both decoding paths end here)."""
    scheduled: float | None = None
    sender_annotations: dict[object, object] = {}
    if annotations:
        partition_key = annotations.get(PARTITION_KEY)
        if partition_key is not None:
            system["PartitionKey"] = str(partition_key)
        scheduled = _timestamp(annotations.get(SCHEDULED_ENQUEUE_TIME))
        sender_annotations = {k: v for k, v in annotations.items() if k not in _BROKER_ANNOTATIONS}
    ttl = header.ttl / 1000.0 if header is not None and header.ttl else None
    if ttl is not None:
        system["TimeToLive"] = ttl
    payload = WirePayload(header, properties_raw, application_properties_raw, body_raw, footer_raw)
    return BrokerMessage(
        payload,
        system,
        user,
        len(raw),
        ttl,
        scheduled,
        sender_annotations,  # type: ignore[arg-type]
    )


def _properties_from_system(message: BrokerMessage, original: Properties | None) -> Properties:
    base = original if original is not None else Properties()
    values = {attr: message.system.get(key) for key, attr in _PROPERTY_FIELDS}
    if original is not None:
        # Keep the original AMQP types (uuid/ulong ids, symbol content type) when unchanged.
        for _, attr in _PROPERTY_FIELDS:
            old = getattr(original, attr)
            if old is not None and _text(old) == values[attr]:
                values[attr] = old
    if values["content_type"] is not None and not isinstance(values["content_type"], Symbol):
        values["content_type"] = Symbol(str(values["content_type"]))
    return Properties(
        message_id=values["message_id"],
        user_id=base.user_id,
        to=values["to"],
        subject=values["subject"],
        reply_to=values["reply_to"],
        correlation_id=values["correlation_id"],
        content_type=values["content_type"],
        content_encoding=base.content_encoding,
        absolute_expiry_time=base.absolute_expiry_time,
        creation_time=base.creation_time,
        group_id=values["group_id"],
        group_sequence=base.group_sequence,
        reply_to_group_id=values["reply_to_group_id"],
    )


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def encode_for_delivery(message: BrokerMessage, *, locked: bool) -> bytes:
    """A transfer's bytes: fresh header and annotations, the original bare message.

    Delivery annotations are always present, as the service sends them: a locked message
    carries its lock token as ``x-opt-lock-token`` (equal to the delivery tag's token on a
    link, and the only place it travels over ``$management``); any other map is empty.
    """
    payload = message.payload
    assert isinstance(payload, WirePayload)
    original = payload.header
    header = Header(
        durable=original.durable if original else False,
        priority=original.priority if original else 4,
        ttl=original.ttl if original else None,
        first_acquirer=original.first_acquirer if original else False,
        delivery_count=message.delivery_count,
    )
    annotations: dict[object, object] = dict(message.annotations)
    annotations[SEQUENCE_NUMBER] = Long(message.sequence_number)
    annotations[ENQUEUE_SEQUENCE_NUMBER] = Long(message.sequence_number)
    annotations[ENQUEUED_TIME] = _when(message.enqueued_time)
    if locked and message.lock_token is not None:
        annotations[LOCKED_UNTIL] = _when(message.locked_until)
    if message.state is not MessageState.ACTIVE:
        annotations[MESSAGE_STATE] = Int(int(message.state))
    if message.scheduled_enqueue_time is not None:
        annotations[SCHEDULED_ENQUEUE_TIME] = _when(message.scheduled_enqueue_time)
    if message.dead_letter_source is not None:
        annotations[DEAD_LETTER_SOURCE] = message.dead_letter_source
    delivery: dict[object, object] = {}
    if locked and message.lock_token is not None:
        delivery[LOCK_TOKEN] = message.lock_token
    parts = [encode_header(header), encode_delivery_annotations(delivery)]
    parts.append(encode_message_annotations(annotations))
    if message.modified:
        parts.append(encode_properties(_properties_from_system(message, payload.properties)))
        if message.user:
            parts.append(encode_application_properties(message.user))
    else:
        parts.append(payload.properties_raw)
        parts.append(payload.application_properties_raw)
    parts.append(payload.body_raw)
    parts.append(payload.footer_raw)
    return b"".join(parts)


def lock_token_tag(token: uuid.UUID) -> bytes:
    """Delivery tags carry the lock token in .NET byte order (the SDK reads ``bytes_le``)."""
    return token.bytes_le
