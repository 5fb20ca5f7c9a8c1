"""AMQP 1.0 performatives and composite types as dataclasses (parts 2, 3 and 5 of the spec).

Fields are declared in spec order with spec defaults. Each field also has a wire type, so
callers can pass plain Python values (``handle=0``) and still get ``uint`` on the wire.

Encoding writes EVERY field (``null`` for ``None``): the SDK's pyamqp client decodes
composites positionally (e.g. ``Source(*frame[5])``) and breaks on elided trailing fields.
Decoding pads elided trailing fields with their defaults, as Proton and .NET elide them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar

from .codec import (
    COMPOUND_PLACEHOLDER,
    DecodeError,
    decode,
    encode,
    encode_annotations,
    encode_binary,
    encode_bool,
    encode_fields,
    encode_string,
    encode_symbol,
    encode_timestamp,
    encode_ubyte,
    encode_uint,
    encode_ulong,
    encode_ushort,
    finish_compound,
)
from .types import Array, Described, Symbol, ULong, symbol_array

Encoder = Callable[[Any, bytearray], None]

# Link roles (attach/disposition ``role``).
ROLE_SENDER = False
ROLE_RECEIVER = True
# sender-settle-mode
SND_UNSETTLED = 0
SND_SETTLED = 1
SND_MIXED = 2
# receiver-settle-mode
RCV_FIRST = 0
RCV_SECOND = 1
# terminus-durability
DURABLE_NONE = 0
DURABLE_CONFIGURATION = 1
DURABLE_UNSETTLED_STATE = 2
# sasl-code
SASL_OK = 0
SASL_AUTH = 1
SASL_SYS = 2
SASL_SYS_PERM = 3
SASL_SYS_TEMP = 4


class ErrorCondition:
    """Standard AMQP error conditions (spec 2.8.15-2.8.18)."""

    INTERNAL_ERROR = Symbol("amqp:internal-error")
    NOT_FOUND = Symbol("amqp:not-found")
    UNAUTHORIZED_ACCESS = Symbol("amqp:unauthorized-access")
    DECODE_ERROR = Symbol("amqp:decode-error")
    RESOURCE_LIMIT_EXCEEDED = Symbol("amqp:resource-limit-exceeded")
    NOT_ALLOWED = Symbol("amqp:not-allowed")
    INVALID_FIELD = Symbol("amqp:invalid-field")
    NOT_IMPLEMENTED = Symbol("amqp:not-implemented")
    RESOURCE_LOCKED = Symbol("amqp:resource-locked")
    PRECONDITION_FAILED = Symbol("amqp:precondition-failed")
    RESOURCE_DELETED = Symbol("amqp:resource-deleted")
    ILLEGAL_STATE = Symbol("amqp:illegal-state")
    FRAME_SIZE_TOO_SMALL = Symbol("amqp:frame-size-too-small")
    CONNECTION_FORCED = Symbol("amqp:connection:forced")
    FRAMING_ERROR = Symbol("amqp:connection:framing-error")
    CONNECTION_REDIRECT = Symbol("amqp:connection:redirect")
    WINDOW_VIOLATION = Symbol("amqp:session:window-violation")
    ERRANT_LINK = Symbol("amqp:session:errant-link")
    HANDLE_IN_USE = Symbol("amqp:session:handle-in-use")
    UNATTACHED_HANDLE = Symbol("amqp:session:unattached-handle")
    DETACH_FORCED = Symbol("amqp:link:detach-forced")
    TRANSFER_LIMIT_EXCEEDED = Symbol("amqp:link:transfer-limit-exceeded")
    MESSAGE_SIZE_EXCEEDED = Symbol("amqp:link:message-size-exceeded")
    LINK_REDIRECT = Symbol("amqp:link:redirect")
    STOLEN = Symbol("amqp:link:stolen")


class Composite:
    """Base of every described-list type; subclasses are registered with ``register_composite``."""

    __slots__ = ()
    DESCRIPTOR: ClassVar[int]
    NAME: ClassVar[str]
    _spec: ClassVar[_Spec]

    def amqp_encode(self, out: bytearray) -> None:
        """Hook used by ``codec.encode`` so composites can be nested in any value."""
        encode_performative(self, out)


# ---------------------------------------------------------------- field wire types


def _encode_symbols(value: Any, out: bytearray) -> None:
    """``symbol multiple="true"``: a single symbol or an array of symbols."""
    if isinstance(value, str):
        encode_symbol(value, out)
    elif isinstance(value, Array):
        encode(value, out)
    else:
        encode(symbol_array(value), out)


def _to_symbol_array(value: Any) -> Any:
    """Normalize a decoded multiple-symbol field so ``x in field`` is a membership test."""
    if isinstance(value, Array):
        return value
    if isinstance(value, str):
        return Array([Symbol(value)], 0xA3)
    if isinstance(value, list):
        return symbol_array(value)
    return value


def _encode_composite(value: Any, out: bytearray) -> None:
    if isinstance(value, Composite):
        encode_performative(value, out)
    else:
        encode(value, out)  # a raw Described, e.g. an unknown outcome type


def _to_composite(value: Any) -> Any:
    """Turn a nested described list into its dataclass; unknown descriptors stay Described."""
    if type(value) is Described:
        cls = _REGISTRY.get(value[0])
        if cls is not None:
            return _from_list(cls, value[1])
    return value


def _encode_message_id(value: Any, out: bytearray) -> None:
    """message-id / correlation-id: plain ints are message-id-ulong, not long."""
    if type(value) is int:
        encode_ulong(value, out)
    else:
        encode(value, out)


# wire-type name -> (encoder, decode converter or None)
_KINDS: dict[str, tuple[Encoder, Callable[[Any], Any] | None]] = {
    "string": (encode_string, None),
    "symbol": (encode_symbol, None),
    "symbols": (_encode_symbols, _to_symbol_array),
    "bool": (encode_bool, None),
    "ubyte": (encode_ubyte, None),
    "ushort": (encode_ushort, None),
    "uint": (encode_uint, None),
    "ulong": (encode_ulong, None),
    "binary": (encode_binary, None),
    "timestamp": (encode_timestamp, None),
    "fields": (encode_fields, None),
    "annotations": (encode_annotations, None),
    "message_id": (_encode_message_id, None),
    "composite": (_encode_composite, _to_composite),
    "any": (encode, None),
}


@dataclass(frozen=True, slots=True)
class _Spec:
    names: tuple[str, ...]
    encoders: tuple[Encoder, ...]
    required: tuple[int, ...]  # indexes of mandatory fields
    defaults: tuple[Any, ...]
    fill: tuple[tuple[int, Any], ...]  # (index, default) for fields whose default is not null
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    prefix: bytes  # encoded "0x00 descriptor"
    getter: Callable[[Any], tuple[Any, ...]]


_REGISTRY: dict[object, type[Composite]] = {}


def register_composite(code: int, name: str, kinds: dict[str, str]) -> Callable[[type], type]:
    """Attach descriptor and per-field wire types; ``!`` marks a mandatory field."""

    def wrap(cls: type) -> type:
        fields = dataclasses.fields(cls)
        names = tuple(f.name for f in fields)
        if tuple(kinds) != names:
            raise TypeError(f"{cls.__name__}: kinds {tuple(kinds)} do not match {names}")
        defaults = tuple(f.default for f in fields)
        encoders, mandatory, converters = [], [], []
        for i, kind in enumerate(kinds.values()):
            enc, conv = _KINDS[kind.rstrip("!")]
            encoders.append(enc)
            mandatory.append(kind.endswith("!"))
            if conv is not None:
                converters.append((i, conv))
        prefix = bytearray(b"\x00")
        encode_ulong(code, prefix)
        cls.DESCRIPTOR = code  # type: ignore[attr-defined]
        cls.NAME = name  # type: ignore[attr-defined]
        cls._spec = _Spec(  # type: ignore[attr-defined]
            names=names,
            encoders=tuple(encoders),
            required=tuple(i for i, m in enumerate(mandatory) if m),
            defaults=defaults,
            fill=tuple((i, d) for i, d in enumerate(defaults) if d is not None),
            converters=tuple(converters),
            prefix=bytes(prefix),
            getter=_getter(names),
        )
        _REGISTRY[ULong(code)] = cls
        _REGISTRY[Symbol(name)] = cls
        return cls

    return wrap


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


# ---------------------------------------------------------------- encode / decode


def encode_performative(obj: Composite, out: bytearray) -> None:
    """Append ``obj`` as a described list with every field present (null for None)."""
    spec = obj._spec
    out += spec.prefix
    values = spec.getter(obj)
    if not values:
        out.append(0x45)
        return
    for i in spec.required:
        if values[i] is None:
            del out[len(out) - len(spec.prefix) :]
            raise ValueError(f"{type(obj).__name__}.{spec.names[i]} is mandatory")
    start = len(out)
    out += COMPOUND_PLACEHOLDER
    for value, enc in zip(values, spec.encoders, strict=True):
        if value is None:
            out.append(0x40)
        else:
            enc(value, out)
    finish_compound(out, start, len(values), 0xC0, 0xD0)


def encode_performative_bytes(obj: Composite) -> bytes:
    """Convenience wrapper returning the encoding of ``obj``."""
    out = bytearray()
    encode_performative(obj, out)
    return bytes(out)


def _from_list(cls: type[Composite], items: Any) -> Any:
    if type(items) is not list:
        raise DecodeError(f"{cls.__name__} body must be a list, got {type(items).__name__}")
    spec = cls._spec
    count = len(spec.names)
    n = len(items)
    if n < count:
        values = items + list(spec.defaults[n:])
    elif n > count:
        values = items[:count]  # fields from a later spec revision: ignore
    else:
        values = list(items)
    for i, default in spec.fill:
        if values[i] is None:  # explicit null means "the default"
            values[i] = default
    for i, conv in spec.converters:
        v = values[i]
        if v is not None:
            values[i] = conv(v)
    for i in spec.required:
        if values[i] is None:
            raise DecodeError(f"{cls.__name__}.{spec.names[i]} is mandatory but null")
    return cls(*values)


def decode_described(value: Described) -> Any:
    """Build the dataclass for a decoded described list (positional; elided fields padded)."""
    if type(value) is not Described:
        raise DecodeError(f"expected a described value, got {type(value).__name__}")
    cls = _REGISTRY.get(value[0])  # type: ignore[call-overload]
    if cls is None:
        raise DecodeError(f"unknown composite descriptor {value[0]!r}")
    return _from_list(cls, value[1])


def decode_performative(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """Decode the composite at ``offset``; return it and the offset after it."""
    value, end = decode(buf, offset)
    try:
        return decode_described(value), end
    except DecodeError as exc:
        raise DecodeError(str(exc), offset) from None


def composite_class(descriptor: object) -> type[Composite] | None:
    """The registered class for a ulong code or symbolic descriptor, if any."""
    return _REGISTRY.get(descriptor)


# ---------------------------------------------------------------- part 2: transport


@register_composite(
    0x1D, "amqp:error:list", {"condition": "symbol!", "description": "string", "info": "fields"}
)
@dataclass(slots=True)
class Error(Composite):
    condition: str | None = None
    description: str | None = None
    info: dict[Any, Any] | None = None


@register_composite(
    0x10,
    "amqp:open:list",
    {
        "container_id": "string!",
        "hostname": "string",
        "max_frame_size": "uint",
        "channel_max": "ushort",
        "idle_time_out": "uint",
        "outgoing_locales": "symbols",
        "incoming_locales": "symbols",
        "offered_capabilities": "symbols",
        "desired_capabilities": "symbols",
        "properties": "fields",
    },
)
@dataclass(slots=True)
class Open(Composite):
    container_id: str | None = None
    hostname: str | None = None
    max_frame_size: int = 4294967295
    channel_max: int = 65535
    idle_time_out: int | None = None
    outgoing_locales: Any = None
    incoming_locales: Any = None
    offered_capabilities: Any = None
    desired_capabilities: Any = None
    properties: dict[Any, Any] | None = None


@register_composite(
    0x11,
    "amqp:begin:list",
    {
        "remote_channel": "ushort",
        "next_outgoing_id": "uint!",
        "incoming_window": "uint!",
        "outgoing_window": "uint!",
        "handle_max": "uint",
        "offered_capabilities": "symbols",
        "desired_capabilities": "symbols",
        "properties": "fields",
    },
)
@dataclass(slots=True)
class Begin(Composite):
    remote_channel: int | None = None
    next_outgoing_id: int | None = None
    incoming_window: int | None = None
    outgoing_window: int | None = None
    handle_max: int = 4294967295
    offered_capabilities: Any = None
    desired_capabilities: Any = None
    properties: dict[Any, Any] | None = None


@register_composite(
    0x12,
    "amqp:attach:list",
    {
        "name": "string!",
        "handle": "uint!",
        "role": "bool!",
        "snd_settle_mode": "ubyte",
        "rcv_settle_mode": "ubyte",
        "source": "composite",
        "target": "composite",
        "unsettled": "any",
        "incomplete_unsettled": "bool",
        "initial_delivery_count": "uint",
        "max_message_size": "ulong",
        "offered_capabilities": "symbols",
        "desired_capabilities": "symbols",
        "properties": "fields",
    },
)
@dataclass(slots=True)
class Attach(Composite):
    name: str | None = None
    handle: int | None = None
    role: bool | None = None
    snd_settle_mode: int = SND_MIXED
    rcv_settle_mode: int = RCV_FIRST
    source: Any = None
    target: Any = None
    unsettled: dict[Any, Any] | None = None
    incomplete_unsettled: bool = False
    initial_delivery_count: int | None = None
    max_message_size: int | None = None
    offered_capabilities: Any = None
    desired_capabilities: Any = None
    properties: dict[Any, Any] | None = None


@register_composite(
    0x13,
    "amqp:flow:list",
    {
        "next_incoming_id": "uint",
        "incoming_window": "uint!",
        "next_outgoing_id": "uint!",
        "outgoing_window": "uint!",
        "handle": "uint",
        "delivery_count": "uint",
        "link_credit": "uint",
        "available": "uint",
        "drain": "bool",
        "echo": "bool",
        "properties": "fields",
    },
)
@dataclass(slots=True)
class Flow(Composite):
    next_incoming_id: int | None = None
    incoming_window: int | None = None
    next_outgoing_id: int | None = None
    outgoing_window: int | None = None
    handle: int | None = None
    delivery_count: int | None = None
    link_credit: int | None = None
    available: int | None = None
    drain: bool = False
    echo: bool = False
    properties: dict[Any, Any] | None = None


@register_composite(
    0x14,
    "amqp:transfer:list",
    {
        "handle": "uint!",
        "delivery_id": "uint",
        "delivery_tag": "binary",
        "message_format": "uint",
        "settled": "bool",
        "more": "bool",
        "rcv_settle_mode": "ubyte",
        "state": "composite",
        "resume": "bool",
        "aborted": "bool",
        "batchable": "bool",
    },
)
@dataclass(slots=True)
class Transfer(Composite):
    handle: int | None = None
    delivery_id: int | None = None
    delivery_tag: bytes | None = None
    message_format: int | None = None
    settled: bool | None = None
    more: bool = False
    rcv_settle_mode: int | None = None
    state: Any = None
    resume: bool = False
    aborted: bool = False
    batchable: bool = False


@register_composite(
    0x15,
    "amqp:disposition:list",
    {
        "role": "bool!",
        "first": "uint!",
        "last": "uint",
        "settled": "bool",
        "state": "composite",
        "batchable": "bool",
    },
)
@dataclass(slots=True)
class Disposition(Composite):
    role: bool | None = None
    first: int | None = None
    last: int | None = None
    settled: bool = False
    state: Any = None
    batchable: bool = False


@register_composite(
    0x16, "amqp:detach:list", {"handle": "uint!", "closed": "bool", "error": "composite"}
)
@dataclass(slots=True)
class Detach(Composite):
    handle: int | None = None
    closed: bool = False
    error: Error | None = None


@register_composite(0x17, "amqp:end:list", {"error": "composite"})
@dataclass(slots=True)
class End(Composite):
    error: Error | None = None


@register_composite(0x18, "amqp:close:list", {"error": "composite"})
@dataclass(slots=True)
class Close(Composite):
    error: Error | None = None


# ---------------------------------------------------------------- part 5: SASL


@register_composite(0x40, "amqp:sasl-mechanisms:list", {"sasl_server_mechanisms": "symbols!"})
@dataclass(slots=True)
class SaslMechanisms(Composite):
    sasl_server_mechanisms: Any = None


@register_composite(
    0x41,
    "amqp:sasl-init:list",
    {"mechanism": "symbol!", "initial_response": "binary", "hostname": "string"},
)
@dataclass(slots=True)
class SaslInit(Composite):
    mechanism: str | None = None
    initial_response: bytes | None = None
    hostname: str | None = None


@register_composite(0x42, "amqp:sasl-challenge:list", {"challenge": "binary!"})
@dataclass(slots=True)
class SaslChallenge(Composite):
    challenge: bytes | None = None


@register_composite(0x43, "amqp:sasl-response:list", {"response": "binary!"})
@dataclass(slots=True)
class SaslResponse(Composite):
    response: bytes | None = None


@register_composite(0x44, "amqp:sasl-outcome:list", {"code": "ubyte!", "additional_data": "binary"})
@dataclass(slots=True)
class SaslOutcome(Composite):
    code: int | None = None
    additional_data: bytes | None = None


# ---------------------------------------------------------------- part 3: messaging


@register_composite(
    0x23, "amqp:received:list", {"section_number": "uint!", "section_offset": "ulong!"}
)
@dataclass(slots=True)
class Received(Composite):
    section_number: int | None = None
    section_offset: int | None = None


@register_composite(0x24, "amqp:accepted:list", {})
@dataclass(slots=True)
class Accepted(Composite):
    pass


@register_composite(0x25, "amqp:rejected:list", {"error": "composite"})
@dataclass(slots=True)
class Rejected(Composite):
    error: Error | None = None


@register_composite(0x26, "amqp:released:list", {})
@dataclass(slots=True)
class Released(Composite):
    pass


@register_composite(
    0x27,
    "amqp:modified:list",
    {"delivery_failed": "bool", "undeliverable_here": "bool", "message_annotations": "fields"},
)
@dataclass(slots=True)
class Modified(Composite):
    delivery_failed: bool | None = None
    undeliverable_here: bool | None = None
    message_annotations: dict[Any, Any] | None = None


EXPIRY_LINK_DETACH = Symbol("link-detach")
EXPIRY_SESSION_END = Symbol("session-end")
EXPIRY_CONNECTION_CLOSE = Symbol("connection-close")
EXPIRY_NEVER = Symbol("never")


@register_composite(
    0x28,
    "amqp:source:list",
    {
        "address": "any",
        "durable": "uint",
        "expiry_policy": "symbol",
        "timeout": "uint",
        "dynamic": "bool",
        "dynamic_node_properties": "fields",
        "distribution_mode": "symbol",
        "filter": "fields",
        "default_outcome": "composite",
        "outcomes": "symbols",
        "capabilities": "symbols",
    },
)
@dataclass(slots=True)
class Source(Composite):
    address: str | None = None
    durable: int = DURABLE_NONE
    expiry_policy: str = EXPIRY_SESSION_END
    timeout: int = 0
    dynamic: bool = False
    dynamic_node_properties: dict[Any, Any] | None = None
    distribution_mode: str | None = None
    filter: dict[Any, Any] | None = None
    default_outcome: Any = None
    outcomes: Any = None
    capabilities: Any = None


@register_composite(
    0x29,
    "amqp:target:list",
    {
        "address": "any",
        "durable": "uint",
        "expiry_policy": "symbol",
        "timeout": "uint",
        "dynamic": "bool",
        "dynamic_node_properties": "fields",
        "capabilities": "symbols",
    },
)
@dataclass(slots=True)
class Target(Composite):
    address: str | None = None
    durable: int = DURABLE_NONE
    expiry_policy: str = EXPIRY_SESSION_END
    timeout: int = 0
    dynamic: bool = False
    dynamic_node_properties: dict[Any, Any] | None = None
    capabilities: Any = None


DeliveryState = Received | Accepted | Rejected | Released | Modified
Performative = (
    Open
    | Begin
    | Attach
    | Flow
    | Transfer
    | Disposition
    | Detach
    | End
    | Close
    | SaslMechanisms
    | SaslInit
    | SaslChallenge
    | SaslResponse
    | SaslOutcome
)

__all__ = [
    "DURABLE_CONFIGURATION",
    "DURABLE_NONE",
    "DURABLE_UNSETTLED_STATE",
    "EXPIRY_CONNECTION_CLOSE",
    "EXPIRY_LINK_DETACH",
    "EXPIRY_NEVER",
    "EXPIRY_SESSION_END",
    "RCV_FIRST",
    "RCV_SECOND",
    "ROLE_RECEIVER",
    "ROLE_SENDER",
    "SASL_AUTH",
    "SASL_OK",
    "SASL_SYS",
    "SASL_SYS_PERM",
    "SASL_SYS_TEMP",
    "SND_MIXED",
    "SND_SETTLED",
    "SND_UNSETTLED",
    "Accepted",
    "Attach",
    "Begin",
    "Close",
    "Composite",
    "DeliveryState",
    "Detach",
    "Disposition",
    "End",
    "Error",
    "ErrorCondition",
    "Flow",
    "Modified",
    "Open",
    "Performative",
    "Received",
    "Rejected",
    "Released",
    "SaslChallenge",
    "SaslInit",
    "SaslMechanisms",
    "SaslOutcome",
    "SaslResponse",
    "Source",
    "Target",
    "Transfer",
    "composite_class",
    "decode_described",
    "decode_performative",
    "encode_performative",
    "encode_performative_bytes",
    "register_composite",
]
