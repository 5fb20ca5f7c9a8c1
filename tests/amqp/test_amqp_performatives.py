"""Performatives: field order/types on the wire, padding of elided fields, SDK interop."""

from __future__ import annotations

import dataclasses

import pytest
from azure.servicebus._pyamqp import _decode as sdk_decode
from azure.servicebus._pyamqp import _encode as sdk_encode
from azure.servicebus._pyamqp import endpoints as sdk_endpoints
from azure.servicebus._pyamqp import outcomes as sdk_outcomes
from azure.servicebus._pyamqp import performatives as sdk_perf

from emulator.servicebus.amqp.codec import DecodeError, decode, encode_value
from emulator.servicebus.amqp.performatives import (
    ROLE_RECEIVER,
    ROLE_SENDER,
    SND_SETTLED,
    Accepted,
    Attach,
    Begin,
    Close,
    Composite,
    Detach,
    Disposition,
    End,
    Error,
    ErrorCondition,
    Flow,
    Modified,
    Open,
    Received,
    Rejected,
    Released,
    SaslChallenge,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    Source,
    Target,
    Transfer,
    composite_class,
    decode_described,
    decode_performative,
    encode_performative,
    encode_performative_bytes,
)
from emulator.servicebus.amqp.types import (
    Array,
    Described,
    Symbol,
    UByte,
    UInt,
    ULong,
    UShort,
)

SESSION_FILTER = Symbol("com.microsoft:session-filter")

SAMPLES: list[Composite] = [
    Open(
        container_id="emulator",
        hostname="localhost",
        max_frame_size=65536,
        channel_max=255,
        idle_time_out=120000,
        offered_capabilities=["ANONYMOUS-RELAY"],
        properties={"product": "sbemu"},
    ),
    Begin(remote_channel=0, next_outgoing_id=1, incoming_window=5000, outgoing_window=5000),
    Attach(
        name="receiver-link",
        handle=3,
        role=ROLE_RECEIVER,
        snd_settle_mode=0,
        rcv_settle_mode=1,
        source=Source(
            address="queue",
            filter={SESSION_FILTER: Described(SESSION_FILTER, "session-1")},
            outcomes=["amqp:accepted:list"],
        ),
        target=Target(address="receiver-link"),
        initial_delivery_count=0,
        max_message_size=262144,
        desired_capabilities=[SESSION_FILTER],
        properties={"com.microsoft:timeout": UInt(60000)},
    ),
    Flow(
        next_incoming_id=1,
        incoming_window=5000,
        next_outgoing_id=1,
        outgoing_window=5000,
        handle=3,
        delivery_count=0,
        link_credit=100,
        drain=True,
    ),
    Transfer(
        handle=0,
        delivery_id=7,
        delivery_tag=b"\x00" * 16,
        message_format=0x80013700,
        settled=False,
        state=Received(section_number=1, section_offset=10),
    ),
    Disposition(role=ROLE_RECEIVER, first=1, last=5, settled=True, state=Accepted()),
    Disposition(role=ROLE_SENDER, first=1, state=Rejected(Error(ErrorCondition.NOT_FOUND, "x"))),
    Disposition(role=ROLE_RECEIVER, first=2, state=Released()),
    Disposition(
        role=ROLE_RECEIVER,
        first=2,
        state=Modified(True, False, {"x-opt-deadletter-reason": "why"}),
    ),
    Detach(
        handle=1,
        closed=True,
        error=Error(ErrorCondition.DETACH_FORCED, "bye", {"com.microsoft:tracking-id": "t"}),
    ),
    End(),
    End(error=Error(condition=ErrorCondition.INTERNAL_ERROR)),
    Close(),
    SaslMechanisms(sasl_server_mechanisms=["MSSBCBS", "ANONYMOUS"]),
    SaslInit(mechanism="PLAIN", initial_response=b"\x00user\x00pw", hostname="h"),
    SaslChallenge(challenge=b"c"),
    SaslResponse(response=b"r"),
    SaslOutcome(code=0, additional_data=b"welcome"),
    Accepted(),
]


def _normalized(obj: Composite) -> Composite:
    """What decoding gives: capability fields become symbol Arrays, str keys symbols."""
    value, _ = decode(encode_performative_bytes(obj))
    return decode_described(value)  # type: ignore[no-any-return]


@pytest.mark.parametrize("obj", SAMPLES, ids=[type(s).__name__ for s in SAMPLES])
def test_round_trip(obj: Composite) -> None:
    data = encode_performative_bytes(obj)
    decoded, end = decode_performative(data)
    assert end == len(data)
    assert type(decoded) is type(obj)
    assert decoded == obj
    # re-encoding a decoded performative is byte-identical
    assert encode_performative_bytes(decoded) == data
    # composites also encode through the generic codec (e.g. nested in a map)
    assert encode_value(obj) == data
    assert encode_value({"k": obj}) == encode_value({"k": decode(data)[0]})


def test_every_field_is_written() -> None:
    data = encode_performative_bytes(End())
    assert data == bytes.fromhex("005317c0020140")
    value, _ = decode(encode_performative_bytes(Attach(name="n", handle=0, role=True)))
    assert len(value.value) == 14
    assert value.value[5] is None and value.value[13] is None
    source, _ = decode(encode_performative_bytes(Source()))
    assert len(source.value) == 11
    assert decode(encode_performative_bytes(Accepted()))[0] == Described(ULong(0x24), [])


def test_wire_types() -> None:
    attach, _ = decode(
        encode_performative_bytes(
            Attach(name="n", handle=300, role=False, max_message_size=5, initial_delivery_count=0)
        )
    )
    fields = attach.value
    assert type(fields[0]) is str
    assert type(fields[1]) is UInt and fields[1] == 300
    assert fields[2] is False
    assert type(fields[3]) is UByte and type(fields[4]) is UByte
    assert type(fields[9]) is UInt
    assert type(fields[10]) is ULong
    opened, _ = decode(encode_performative_bytes(Open(container_id="c", idle_time_out=1000)))
    assert type(opened.value[2]) is UInt and opened.value[2] == 2**32 - 1
    assert type(opened.value[3]) is UShort
    assert type(opened.value[4]) is UInt
    props = decode(encode_performative_bytes(Open(container_id="c", properties={"a": 1})))[0]
    assert type(next(iter(props.value[9]))) is Symbol
    transfer = decode(encode_performative_bytes(Transfer(handle=0, delivery_tag=b"t")))[0]
    assert transfer.value[2] == b"t" and type(transfer.value[2]) is bytes
    err = decode(encode_performative_bytes(Error(condition="amqp:not-found")))[0]
    assert type(err.value[0]) is Symbol


def test_capabilities_single_symbol_or_array() -> None:
    single = Open(container_id="c", offered_capabilities="ONE")
    data = encode_performative_bytes(single)
    assert decode(data)[0].value[7] == Symbol("ONE")  # single symbol on the wire
    decoded = decode_performative(data)[0]
    assert isinstance(decoded.offered_capabilities, Array)
    assert decoded.offered_capabilities == [Symbol("ONE")]
    mechanisms = SaslMechanisms(sasl_server_mechanisms="ANONYMOUS")
    decoded = decode_performative(encode_performative_bytes(mechanisms))[0]
    assert decoded == SaslMechanisms(sasl_server_mechanisms=[Symbol("ANONYMOUS")])
    many = decode_performative(encode_performative_bytes(Open("c", offered_capabilities=["A"])))
    assert many[0].offered_capabilities.code in (0xA3, 0xB3)


def test_elided_trailing_fields_are_padded_with_defaults() -> None:
    decoded = decode_described(Described(ULong(0x12), ["link", UInt(0), True]))
    assert decoded == Attach(name="link", handle=0, role=True)
    assert decoded.snd_settle_mode == 2 and decoded.rcv_settle_mode == 0
    assert decoded.incomplete_unsettled is False
    flow = decode_described(Described(ULong(0x13), [None, UInt(10), UInt(0), UInt(10)]))
    assert flow.drain is False and flow.echo is False and flow.handle is None
    opened = decode_described(Described(ULong(0x10), ["container"]))
    assert opened.max_frame_size == 2**32 - 1 and opened.channel_max == 65535
    source = decode_described(Described(ULong(0x28), ["addr"]))
    assert source.expiry_policy == "session-end" and source.timeout == 0 and source.durable == 0
    # explicit null means the default as well
    begin = decode_described(Described(ULong(0x11), [None, UInt(0), UInt(1), UInt(1), None]))
    assert begin.handle_max == 2**32 - 1
    # a nested source/target elided by Proton is padded too
    attach = decode_described(
        Described(
            ULong(0x12),
            ["l", UInt(0), False, None, None, Described(ULong(0x28), ["q"]), None],
        )
    )
    assert attach.source == Source(address="q")
    # list0 body, symbolic descriptor
    assert decode_described(Described(Symbol("amqp:end:list"), [])) == End()
    header = decode(bytes.fromhex("00531745"))[0]
    assert decode_described(header) == End()


def test_extra_fields_are_ignored() -> None:
    decoded = decode_described(Described(ULong(0x17), [None, "future"]))
    assert decoded == End()


def test_unknown_nested_composite_stays_described() -> None:
    tx_state = Described(ULong(0x34), [b"txn", None])
    decoded = decode_described(Described(ULong(0x15), [True, UInt(1), None, True, tx_state]))
    assert decoded.state == tx_state
    assert decode(encode_performative_bytes(decoded))[0].value[4] == tx_state


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Described(ULong(0x99), []), "unknown composite descriptor"),
        (Described(ULong(0x12), "not a list"), "must be a list"),
        (Described(ULong(0x12), [None, UInt(0), True]), "Attach.name is mandatory"),
        (Described(ULong(0x14), []), "Transfer.handle is mandatory"),
        ("not described", "expected a described value"),
    ],
)
def test_decode_errors(value: object, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_described(value)  # type: ignore[arg-type]


def test_decode_performative_error_has_offset() -> None:
    data = b"\x40" + encode_value(Described(ULong(0x14), []))
    with pytest.raises(DecodeError) as info:
        decode_performative(data, 1)
    assert info.value.offset == 1


def test_missing_mandatory_field_on_encode() -> None:
    out = bytearray(b"keep")
    with pytest.raises(ValueError, match=r"Attach\.handle is mandatory"):
        encode_performative(Attach(name="x", role=True), out)
    assert out == b"keep"


def test_registry() -> None:
    assert composite_class(ULong(0x14)) is Transfer
    assert composite_class(0x14) is Transfer
    assert composite_class(Symbol("amqp:transfer:list")) is Transfer
    assert composite_class(0x99) is None
    for cls in (Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close):
        assert dataclasses.is_dataclass(cls)
    assert [f.name for f in dataclasses.fields(Transfer)] == [
        "handle",
        "delivery_id",
        "delivery_tag",
        "message_format",
        "settled",
        "more",
        "rcv_settle_mode",
        "state",
        "resume",
        "aborted",
        "batchable",
    ]


# ------------------------------------------------------------------ SDK interop


def _sdk_frame_body(frame: object) -> bytes:
    _header, body = sdk_encode.encode_frame(frame)
    return bytes(body or b"")


def test_sdk_attach_decodes_with_ours() -> None:
    frame = sdk_perf.AttachFrame(
        name=b"sender-link",
        handle=2,
        role=False,
        send_settle_mode=SND_SETTLED,
        rcv_settle_mode=0,
        source=sdk_endpoints.Source(address=b"sender-link"),
        target=sdk_endpoints.Target(address=b"amqps://host/queue"),
        unsettled=None,
        incomplete_unsettled=False,
        initial_delivery_count=0,
        max_message_size=None,
        offered_capabilities=None,
        desired_capabilities=[SESSION_FILTER.encode()],
        properties={b"com.microsoft:client-version": b"7.15"},
    )
    decoded, _ = decode_performative(_sdk_frame_body(frame))
    assert isinstance(decoded, Attach)
    assert decoded.name == "sender-link"
    assert decoded.handle == 2 and decoded.role is False
    assert decoded.snd_settle_mode == 1
    assert decoded.source.address == "sender-link"
    assert decoded.target.address == "amqps://host/queue"
    assert decoded.initial_delivery_count == 0
    assert decoded.desired_capabilities == [SESSION_FILTER]
    assert decoded.properties == {Symbol("com.microsoft:client-version"): b"7.15"}


def test_sdk_receiver_attach_with_session_filter() -> None:
    frame = sdk_perf.AttachFrame(
        name=b"receiver",
        handle=0,
        role=True,
        send_settle_mode=0,
        rcv_settle_mode=1,
        source=sdk_endpoints.Source(
            address=b"amqps://host/queue",
            filters={SESSION_FILTER.encode(): (SESSION_FILTER.encode(), "s1")},
        ),
        target=sdk_endpoints.Target(address=b"receiver"),
        unsettled=None,
        incomplete_unsettled=False,
        initial_delivery_count=None,
        max_message_size=None,
        offered_capabilities=None,
        desired_capabilities=None,
        properties=None,
    )
    decoded, _ = decode_performative(_sdk_frame_body(frame))
    assert decoded.source.filter == {SESSION_FILTER: Described(SESSION_FILTER, "s1")}


def test_sdk_transfer_and_flow_decode_with_ours() -> None:
    transfer = sdk_perf.TransferFrame(
        handle=1,
        delivery_id=3,
        delivery_tag=b"\x01\x02",
        message_format=0,
        settled=False,
        more=False,
        payload=b"payload-bytes",
    )
    body = _sdk_frame_body(transfer)
    decoded, end = decode_performative(body)
    assert decoded == Transfer(
        handle=1, delivery_id=3, delivery_tag=b"\x01\x02", message_format=0, settled=False
    )
    assert body[end:] == b"payload-bytes"
    flow = sdk_perf.FlowFrame(
        next_incoming_id=0,
        incoming_window=65536,
        next_outgoing_id=0,
        outgoing_window=65536,
        handle=0,
        delivery_count=0,
        link_credit=300,
        available=None,
        drain=False,
        echo=False,
        properties=None,
    )
    decoded, _ = decode_performative(_sdk_frame_body(flow))
    assert decoded.link_credit == 300 and decoded.handle == 0 and decoded.available is None


def test_sdk_disposition_and_sasl_decode_with_ours() -> None:
    disposition = sdk_perf.DispositionFrame(
        role=True,
        first=4,
        last=4,
        settled=True,
        state=sdk_outcomes.Modified(
            delivery_failed=True, undeliverable_here=None, message_annotations=None
        ),
        batchable=None,
    )
    # The SDK sends outcome states as {code: value} dicts through describe_performative.
    body = bytearray()
    desc = sdk_encode.describe_performative(disposition._replace(state=None))
    sdk_encode.encode_value(body, desc)
    decoded, _ = decode_performative(bytes(body))
    assert decoded == Disposition(role=True, first=4, last=4, settled=True)
    init = sdk_perf.SASLInit(mechanism=b"ANONYMOUS", initial_response=b"", hostname=b"h")
    decoded, _ = decode_performative(_sdk_frame_body(init))
    assert decoded == SaslInit(mechanism="ANONYMOUS", initial_response=b"", hostname="h")
    empty = sdk_perf.EndFrame(error=None)
    assert decode_performative(_sdk_frame_body(empty))[0] == End()


@pytest.mark.parametrize("obj", SAMPLES, ids=[type(s).__name__ for s in SAMPLES])
def test_sdk_decodes_ours(obj: Composite) -> None:
    body = encode_performative_bytes(obj)
    frame_type, fields = sdk_decode.decode_frame(memoryview(body))
    if obj.DESCRIPTOR not in sdk_decode._PERFORMATIVE_FIELD_COUNT:
        return  # delivery states are not frames; covered in the nested cases below
    assert frame_type == obj.DESCRIPTOR
    expected = len(dataclasses.fields(obj)) + (1 if isinstance(obj, Transfer) else 0)
    assert len(fields) == expected


def test_sdk_reads_our_attach_positionally() -> None:
    """The SDK link does Source(*frame[5]) / Target(*frame[6]); all fields must be there."""
    attach = SAMPLES[2]
    _, fields = sdk_decode.decode_frame(memoryview(encode_performative_bytes(attach)))
    source = sdk_endpoints.Source(*fields[5])
    target = sdk_endpoints.Target(*fields[6])
    assert source.address == b"queue"
    assert target.address == b"receiver-link"
    assert fields[1] == 3 and fields[2] is True and fields[10] == 262144
    assert fields[11] is None
    assert fields[12] == [SESSION_FILTER.encode()]


def test_sdk_reads_our_detach_error_and_disposition_state() -> None:
    detach = SAMPLES[9]
    _, fields = sdk_decode.decode_frame(memoryview(encode_performative_bytes(detach)))
    assert fields[2][0] == b"amqp:link:detach-forced"
    assert fields[2][1] == b"bye"
    assert fields[2][2] == {b"com.microsoft:tracking-id": b"t"}
    _, fields = sdk_decode.decode_frame(memoryview(encode_performative_bytes(SAMPLES[5])))
    assert fields[4] == {"accepted": []}  # the SDK maps outcomes to {name: fields}
    _, fields = sdk_decode.decode_frame(memoryview(encode_performative_bytes(SAMPLES[6])))
    assert fields[4] == {"rejected": [[b"amqp:not-found", b"x", None]]}


def test_normalized_helper_matches_round_trip() -> None:
    opened = SAMPLES[0]
    assert _normalized(opened) == opened
