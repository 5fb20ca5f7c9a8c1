"""AMQP 1.0 performatives and composite types as dataclasses (parts 2, 3 and 5 of the spec).

Declarations only, one dataclass per spec type, fields in spec order with spec defaults and
their wire types; how a composite is encoded and decoded is `composite`'s (re-exported here,
since every user of a performative needs both). About 500 lines because the spec has that
many types; each is a short declaration, and splitting them would only scatter the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .composite import Composite as Composite
from .composite import composite_class as composite_class
from .composite import decode_described as decode_described
from .composite import decode_performative as decode_performative
from .composite import encode_performative as encode_performative
from .composite import encode_performative_bytes as encode_performative_bytes
from .composite import register_composite as register_composite
from .types import Symbol

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
