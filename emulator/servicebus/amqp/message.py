"""Service Bus messages on the wire (AMQP 1.0 part 3.2): sections, raw and decoded.

The broker keeps a message's bare sections (properties, application-properties, body,
footer) as the raw bytes the sender produced and only rewrites the header and message
annotations on delivery, so ``split_sections`` slices sections with ``codec.skip`` instead of
decoding them; the decoders below are used only for the sections the broker must read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .codec import (
    DecodeError,
    decode,
    encode,
    encode_annotations,
    encode_binary,
    encode_list,
    encode_string,
    finish_compound,
    skip,
)
from .performatives import Composite, decode_described, encode_performative, register_composite
from .types import Described

MESSAGE_FORMAT = 0
MESSAGE_FORMAT_BATCH = 0x80013700  # Service Bus/Event Hubs batch: data sections = messages

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

BODY_DATA = "data"
BODY_SEQUENCE = "sequence"
BODY_VALUE = "value"

_SECTION_NAMES = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}
_SECTION_ATTR = {
    HEADER: "header",
    DELIVERY_ANNOTATIONS: "delivery_annotations",
    MESSAGE_ANNOTATIONS: "message_annotations",
    PROPERTIES: "properties",
    APPLICATION_PROPERTIES: "application_properties",
    FOOTER: "footer",
}
_BODY_KIND = {DATA: BODY_DATA, AMQP_SEQUENCE: BODY_SEQUENCE, AMQP_VALUE: BODY_VALUE}
_LISTS = frozenset((0x45, 0xC0, 0xD0))
_MAPS = frozenset((0x40, 0xC1, 0xD1))
# Allowed constructor of each section's value (None: anything, for amqp-value).
_SECTION_VALUE: dict[int, frozenset[int] | None] = {
    HEADER: _LISTS,
    DELIVERY_ANNOTATIONS: _MAPS,
    MESSAGE_ANNOTATIONS: _MAPS,
    PROPERTIES: _LISTS,
    APPLICATION_PROPERTIES: _MAPS,
    DATA: frozenset((0xA0, 0xB0)),
    AMQP_SEQUENCE: _LISTS,
    AMQP_VALUE: None,
    FOOTER: _MAPS,
}


@register_composite(
    HEADER,
    "amqp:header:list",
    {
        "durable": "bool",
        "priority": "ubyte",
        "ttl": "uint",
        "first_acquirer": "bool",
        "delivery_count": "uint",
    },
)
@dataclass(slots=True)
class Header(Composite):
    """Message header section; ``ttl`` is in milliseconds."""

    durable: bool = False
    priority: int = 4
    ttl: int | None = None
    first_acquirer: bool = False
    delivery_count: int = 0


@register_composite(
    PROPERTIES,
    "amqp:properties:list",
    {
        "message_id": "message_id",
        "user_id": "binary",
        "to": "any",
        "subject": "string",
        "reply_to": "any",
        "correlation_id": "message_id",
        "content_type": "symbol",
        "content_encoding": "symbol",
        "absolute_expiry_time": "timestamp",
        "creation_time": "timestamp",
        "group_id": "string",
        "group_sequence": "uint",
        "reply_to_group_id": "string",
    },
)
@dataclass(slots=True)
class Properties(Composite):
    """Message properties section; ids keep their AMQP type (str, UUID, ULong or bytes).

    A plain ``int`` id is encoded as ulong. Timestamps are UTC datetimes (ms ints accepted).
    """

    message_id: Any = None
    user_id: bytes | None = None
    to: str | None = None
    subject: str | None = None
    reply_to: str | None = None
    correlation_id: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    absolute_expiry_time: datetime | int | None = None
    creation_time: datetime | int | None = None
    group_id: str | None = None
    group_sequence: int | None = None
    reply_to_group_id: str | None = None


@dataclass(slots=True)
class RawMessage:
    """Encoded sections of one message, each the full section bytes (descriptor included).

    ``body`` holds all body sections together, in order; ``body_kind`` is ``"data"``,
    ``"sequence"``, ``"value"`` or None when the message has no body.
    """

    header: bytes | None = None
    delivery_annotations: bytes | None = None
    message_annotations: bytes | None = None
    properties: bytes | None = None
    application_properties: bytes | None = None
    body: bytes | None = None
    body_kind: str | None = None
    footer: bytes | None = None

    def to_bytes(self) -> bytes:
        """Re-assemble the message in spec section order."""
        return b"".join(
            part
            for part in (
                self.header,
                self.delivery_annotations,
                self.message_annotations,
                self.properties,
                self.application_properties,
                self.body,
                self.footer,
            )
            if part
        )


def _section_code(buf: Any, pos: int) -> tuple[int, int]:
    """Section code and value offset of the section at ``pos``."""
    if buf[pos] != 0x00:
        raise DecodeError(f"expected a described section, got constructor 0x{buf[pos]:02x}", pos)
    if buf[pos + 1 : pos + 2] == b"\x53" and pos + 2 < len(buf):  # smallulong: the usual case
        code, p = buf[pos + 2], pos + 3
        descriptor: Any = code
    else:
        descriptor, p = decode(buf, pos + 1)
        code = _SECTION_NAMES.get(descriptor) if isinstance(descriptor, str) else descriptor
    if not isinstance(code, int) or isinstance(code, bool) or not HEADER <= code <= FOOTER:
        raise DecodeError(f"unknown message section descriptor {descriptor!r}", pos)
    if p >= len(buf):
        raise DecodeError("truncated message section", pos)
    allowed = _SECTION_VALUE[code]
    if allowed is not None and buf[p] not in allowed:
        raise DecodeError(f"bad value constructor 0x{buf[p]:02x} for section 0x{code:x}", pos)
    return int(code), p


def split_sections(raw: bytes | bytearray | memoryview) -> RawMessage:
    """Slice an encoded message into raw sections without decoding them.

    Sections are accepted in any order (the SDK writes delivery-annotations last), but each
    non-body section at most once and only one body kind (a single amqp-value).
    """
    if not isinstance(raw, bytes):
        raw = bytes(raw)
    msg = RawMessage()
    n = len(raw)
    pos = 0
    body_parts: list[tuple[int, int]] = []
    while pos < n:
        code, p = _section_code(raw, pos)
        end = skip(raw, p)
        kind = _BODY_KIND.get(code)
        if kind is None:
            attr = _SECTION_ATTR[code]
            if getattr(msg, attr) is not None:
                raise DecodeError(f"duplicate {attr} section", pos)
            setattr(msg, attr, raw[pos:end])
        else:
            if msg.body_kind is None:
                msg.body_kind = kind
            elif msg.body_kind != kind or kind == BODY_VALUE:
                raise DecodeError(f"{kind} body section after a {msg.body_kind} body", pos)
            if body_parts and body_parts[-1][1] == pos:
                body_parts[-1] = (body_parts[-1][0], end)
            else:
                body_parts.append((pos, end))
        pos = end
    if body_parts:
        msg.body = b"".join(raw[a:b] for a, b in body_parts)
    return msg


def _decode_section(raw: bytes | bytearray | memoryview, codes: tuple[int, ...]) -> Any:
    """Decode one whole section and return its value after checking the descriptor."""
    value, end = decode(raw)
    if end != len(raw):
        raise DecodeError("trailing bytes after the section", end)
    if type(value) is not Described:
        raise DecodeError("a message section must be a described value", 0)
    descriptor = value[0]
    code = _SECTION_NAMES.get(descriptor) if isinstance(descriptor, str) else descriptor
    if code not in codes:
        raise DecodeError(f"unexpected section descriptor {descriptor!r}", 0)
    return value


def decode_header(raw: bytes | bytearray | memoryview) -> Header:
    """Decode a header section; elided or null fields take their spec defaults."""
    return decode_described(_decode_section(raw, (HEADER,)))  # type: ignore[no-any-return]


def decode_properties(raw: bytes | bytearray | memoryview) -> Properties:
    """Decode a properties section."""
    return decode_described(_decode_section(raw, (PROPERTIES,)))  # type: ignore[no-any-return]


def _map_value(value: Described) -> dict[Any, Any]:
    body = value[1]
    if body is None:
        return {}
    if type(body) is not dict:
        raise DecodeError("section value must be a map", 0)
    return body


def decode_annotations(raw: bytes | bytearray | memoryview) -> dict[Any, Any]:
    """Decode a message-annotations, delivery-annotations or footer section (Symbol keys)."""
    return _map_value(_decode_section(raw, (MESSAGE_ANNOTATIONS, DELIVERY_ANNOTATIONS, FOOTER)))


def decode_application_properties(raw: bytes | bytearray | memoryview) -> dict[Any, Any]:
    """Decode an application-properties section."""
    return _map_value(_decode_section(raw, (APPLICATION_PROPERTIES,)))


def _section(code: int) -> bytearray:
    return bytearray((0x00, 0x53, code))


def encode_header(header: Header) -> bytes:
    """Encode a header section (every field written)."""
    out = bytearray()
    encode_performative(header, out)
    return bytes(out)


def encode_properties(properties: Properties) -> bytes:
    """Encode a properties section (every field written)."""
    out = bytearray()
    encode_performative(properties, out)
    return bytes(out)


def _encode_annotations_section(code: int, annotations: dict[Any, Any]) -> bytes:
    out = _section(code)
    encode_annotations(annotations, out)
    return bytes(out)


def encode_message_annotations(annotations: dict[Any, Any]) -> bytes:
    """Encode message annotations: str keys become symbols, plain ints keep long/etc."""
    return _encode_annotations_section(MESSAGE_ANNOTATIONS, annotations)


def encode_delivery_annotations(annotations: dict[Any, Any]) -> bytes:
    """Encode a delivery-annotations section."""
    return _encode_annotations_section(DELIVERY_ANNOTATIONS, annotations)


def encode_footer(annotations: dict[Any, Any]) -> bytes:
    """Encode a footer section."""
    return _encode_annotations_section(FOOTER, annotations)


def encode_application_properties(properties: dict[Any, Any]) -> bytes:
    """Encode application properties; keys are written as strings, as the spec requires."""
    out = _section(APPLICATION_PROPERTIES)
    start = len(out)
    out += b"\x00" * 9
    for key, value in properties.items():
        if isinstance(key, str):
            encode_string(key, out)
        else:
            encode(key, out)
        encode(value, out)
    finish_compound(out, start, 2 * len(properties), 0xC1, 0xD1)
    return bytes(out)


def encode_data_section(data: bytes | bytearray | memoryview) -> bytes:
    """Encode one data body section."""
    out = _section(DATA)
    encode_binary(data, out)
    return bytes(out)


def encode_sequence_section(items: list[Any]) -> bytes:
    """Encode one amqp-sequence body section."""
    out = _section(AMQP_SEQUENCE)
    encode_list(items, out)
    return bytes(out)


def encode_value_section(value: Any) -> bytes:
    """Encode an amqp-value body section (management responses use a map here)."""
    out = _section(AMQP_VALUE)
    encode(value, out)
    return bytes(out)


# Section code -> the value constructors the fast paths (``batch_messages`` here, and
# ``convert.to_broker_message``) take: ``_SECTION_VALUE`` restricted to what SDKs send, whose
# sizes are plain arithmetic. Anything else goes the general way.
FAST_SECTION_VALUES: dict[int, tuple[int, ...]] = {
    HEADER: (0x45, 0xC0, 0xD0),
    DELIVERY_ANNOTATIONS: (0x40, 0xC1, 0xD1),
    MESSAGE_ANNOTATIONS: (0x40, 0xC1, 0xD1),
    PROPERTIES: (0x45, 0xC0, 0xD0),
    APPLICATION_PROPERTIES: (0x40, 0xC1, 0xD1),
    DATA: (0xA0, 0xB0),
    FOOTER: (0x40, 0xC1, 0xD1),
}


def batch_messages(raw: bytes | bytearray | memoryview) -> list[bytes]:
    """The inner messages of a batch transfer (message-format 0x80013700), raw.

    The same as ``split_batch(split_sections(raw).body)``, once per batch on the send path:
    a batch as SDKs encode it (a few sections, then one data section per message) is sliced
    in one pass; anything else takes that general way, which also raises its errors.
    """
    if type(raw) is bytes:
        messages = _fast_batch(raw)
        if messages is not None:
            return messages
    return split_batch(split_sections(raw).body or b"")


def _fast_batch(raw: bytes) -> list[bytes] | None:
    n = len(raw)
    pos = 0
    seen = 0
    messages: list[bytes] = []
    append = messages.append
    try:
        while pos < n:
            if raw[pos] or raw[pos + 1] != 0x53:
                return None
            code = raw[pos + 2]
            constructor = raw[pos + 3]
            if code == DATA:
                if constructor == 0xA0:
                    start = pos + 5
                    end = start + raw[pos + 4]
                elif constructor == 0xB0:
                    start = pos + 8
                    end = start + int.from_bytes(raw[pos + 4 : pos + 8], "big")
                else:
                    return None
                if end > n:
                    return None
                append(raw[start:end])
                pos = end
                continue
            allowed = FAST_SECTION_VALUES.get(code)
            if allowed is None or constructor not in allowed:
                return None
            if constructor < 0xA0:
                pos += 4
            elif constructor < 0xD0:
                pos += 5 + raw[pos + 4]
            else:
                pos += 8 + int.from_bytes(raw[pos + 4 : pos + 8], "big")
            bit = 1 << (code - HEADER)
            if pos > n or seen & bit:
                return None
            seen |= bit
    except IndexError:
        return None
    return messages


def split_batch(body_raw: bytes | bytearray | memoryview) -> list[bytes]:
    """The inner messages of a batch body (message-format 0x80013700): one per data section."""
    if not isinstance(body_raw, bytes):
        body_raw = bytes(body_raw)
    messages: list[bytes] = []
    n = len(body_raw)
    pos = 0
    while pos < n:
        code, p = _section_code(body_raw, pos)
        if code != DATA:
            raise DecodeError(f"batch body section 0x{code:x} is not a data section", pos)
        data, pos = decode(body_raw, p)
        messages.append(data)
    return messages


__all__ = [
    "AMQP_SEQUENCE",
    "AMQP_VALUE",
    "APPLICATION_PROPERTIES",
    "BODY_DATA",
    "BODY_SEQUENCE",
    "BODY_VALUE",
    "DATA",
    "DELIVERY_ANNOTATIONS",
    "FAST_SECTION_VALUES",
    "FOOTER",
    "HEADER",
    "MESSAGE_ANNOTATIONS",
    "MESSAGE_FORMAT",
    "MESSAGE_FORMAT_BATCH",
    "PROPERTIES",
    "Header",
    "Properties",
    "RawMessage",
    "batch_messages",
    "decode_annotations",
    "decode_application_properties",
    "decode_header",
    "decode_properties",
    "encode_application_properties",
    "encode_data_section",
    "encode_delivery_annotations",
    "encode_footer",
    "encode_header",
    "encode_message_annotations",
    "encode_properties",
    "encode_sequence_section",
    "encode_value_section",
    "split_batch",
    "split_sections",
]
