"""Message sections: splitting raw messages, batches, section codecs, SDK interop."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus._pyamqp import _decode as sdk_decode
from azure.servicebus._pyamqp import _encode as sdk_encode
from azure.servicebus._pyamqp import message as sdk_message
from azure.servicebus._pyamqp.utils import add_batch

from emulator.servicebus.amqp.codec import DecodeError, decode, encode_value
from emulator.servicebus.amqp.message import (
    BODY_DATA,
    BODY_SEQUENCE,
    BODY_VALUE,
    MESSAGE_FORMAT_BATCH,
    Header,
    Properties,
    RawMessage,
    decode_annotations,
    decode_application_properties,
    decode_header,
    decode_properties,
    encode_application_properties,
    encode_data_section,
    encode_delivery_annotations,
    encode_footer,
    encode_header,
    encode_message_annotations,
    encode_properties,
    encode_sequence_section,
    encode_value_section,
    split_batch,
    split_sections,
)
from emulator.servicebus.amqp.types import Described, Long, Symbol, ULong

U = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")
T = datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)


def sdk_payload(message: sdk_message.Message) -> bytes:
    out = bytearray()
    sdk_encode.encode_payload(out, message)
    return bytes(out)


def full_sdk_message() -> sdk_message.Message:
    return sdk_message.Message(
        header=sdk_message.Header(durable=True, priority=7, ttl=30000),
        delivery_annotations={b"x-da": 1},
        message_annotations={b"x-opt-partition-key": "pk", b"x-opt-scheduled-enqueue-time": T},
        properties=sdk_message.Properties(
            message_id="mid",
            user_id=b"user",
            to="to",
            subject="label",
            reply_to="reply",
            correlation_id=U,
            content_type=b"application/json",
            creation_time=1700000000000,
            absolute_expiry_time=1700000030000,
            group_id="session",
            group_sequence=3,
            reply_to_group_id="reply-session",
        ),
        application_properties={"k": "v", "n": 5},
        data=[b"hello", b"world"],
        footer={b"x-f": 1},
    )


def test_split_sdk_message() -> None:
    raw = sdk_payload(full_sdk_message())
    msg = split_sections(raw)
    assert msg.body_kind == BODY_DATA
    assert msg.body == encode_data_section(b"hello") + encode_data_section(b"world")
    assert decode_header(msg.header) == Header(durable=True, priority=7, ttl=30000)  # type: ignore[arg-type]
    props = decode_properties(msg.properties)  # type: ignore[arg-type]
    assert props.message_id == "mid"
    assert props.user_id == b"user"
    assert props.correlation_id == U
    assert props.content_type == "application/json" and type(props.content_type) is Symbol
    assert props.creation_time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert props.absolute_expiry_time == datetime(2023, 11, 14, 22, 13, 50, tzinfo=UTC)
    assert props.group_id == "session" and props.group_sequence == 3
    assert props.reply_to_group_id == "reply-session" and props.subject == "label"
    annotations = decode_annotations(msg.message_annotations)  # type: ignore[arg-type]
    assert annotations == {
        Symbol("x-opt-partition-key"): "pk",
        Symbol("x-opt-scheduled-enqueue-time"): T,
    }
    assert all(type(k) is Symbol for k in annotations)
    assert decode_annotations(msg.delivery_annotations) == {"x-da": 1}  # type: ignore[arg-type]
    assert decode_annotations(msg.footer) == {"x-f": 1}  # type: ignore[arg-type]
    assert decode_application_properties(msg.application_properties) == {"k": "v", "n": 5}  # type: ignore[arg-type]
    # slices are exact: nothing lost, and reassembly is a valid message for the SDK
    assert sum(len(p) for p in _parts(msg)) == len(raw)
    again = sdk_decode.decode_payload(memoryview(msg.to_bytes()))
    assert again.data == [b"hello", b"world"]
    assert again.delivery_annotations == {b"x-da": 1}


def _parts(msg: RawMessage) -> list[bytes]:
    return [
        p
        for p in (
            msg.header,
            msg.delivery_annotations,
            msg.message_annotations,
            msg.properties,
            msg.application_properties,
            msg.body,
            msg.footer,
        )
        if p
    ]


def test_split_value_and_sequence_bodies() -> None:
    value = sdk_payload(sdk_message.Message(value={"a": 1}))
    msg = split_sections(value)
    assert msg.body_kind == BODY_VALUE
    assert decode(msg.body)[0] == Described(ULong(0x77), {"a": 1})  # type: ignore[arg-type]
    seq = encode_sequence_section([1, 2]) + encode_sequence_section(["x"])
    msg = split_sections(seq)
    assert msg.body_kind == BODY_SEQUENCE and msg.body == seq
    assert split_sections(b"") == RawMessage()


def test_split_accepts_memoryview_and_symbolic_descriptors() -> None:
    raw = encode_value(Described(Symbol("amqp:data:binary"), b"x"))
    msg = split_sections(memoryview(raw))
    assert msg.body == raw and msg.body_kind == BODY_DATA


def test_split_joins_non_contiguous_body_sections() -> None:
    da = encode_delivery_annotations({"x-a": 1})
    raw = encode_data_section(b"a") + da + encode_data_section(b"b")
    msg = split_sections(raw)
    assert msg.body == encode_data_section(b"a") + encode_data_section(b"b")
    assert msg.delivery_annotations == da


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x40", "expected a described section"),
        (encode_value(Described(ULong(0x99), [])), "unknown message section descriptor"),
        (encode_value(Described(Symbol("x"), [])), "unknown message section descriptor"),
        (encode_value(Described(ULong(0x70), {})), "bad value constructor"),
        (encode_value(Described(ULong(0x75), "text")), "bad value constructor"),
        (encode_header(Header()) * 2, "duplicate header section"),
        (encode_value_section(1) + encode_value_section(2), "value body section after"),
        (encode_data_section(b"x") + encode_value_section(2), "value body section after"),
        (encode_data_section(b"x")[:-1], "truncated"),
        (b"\x00\x53", "truncated"),
        (b"\x00\x53\x75", "truncated"),
    ],
)
def test_split_errors(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        split_sections(raw)


def test_split_batch_from_sdk_batch_message() -> None:
    inner = [
        sdk_message.Message(
            properties=sdk_message.Properties(message_id=f"m{i}"),
            application_properties={"i": i},
            data=[f"body-{i}".encode()],
        )
        for i in range(3)
    ]
    batch = sdk_message.BatchMessage(data=[])
    for m in inner:
        add_batch(batch, m)
    raw = sdk_payload(batch)
    assert batch._code == MESSAGE_FORMAT_BATCH
    envelope = split_sections(raw)
    parts = split_batch(envelope.body)  # type: ignore[arg-type]
    assert parts == [sdk_payload(m) for m in inner]
    for i, part in enumerate(parts):
        msg = split_sections(part)
        assert decode_properties(msg.properties).message_id == f"m{i}"  # type: ignore[arg-type]
        assert decode(msg.body)[0] == Described(ULong(0x75), f"body-{i}".encode())  # type: ignore[arg-type]


def test_split_batch_from_the_real_sdk_transport() -> None:
    """Build a batch the way ServiceBusSender.send_messages([...]) does."""
    from azure.servicebus import ServiceBusMessageBatch
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    batch = ServiceBusMessageBatch(max_size_in_bytes=262144, amqp_transport=PyamqpTransport)
    for i in (1, 2):
        batch.add_message(ServiceBusMessage(f"payload {i}", session_id="s", message_id=str(i)))
    raw = sdk_payload(sdk_message.BatchMessage(*batch._message))
    envelope = split_sections(raw)
    # the envelope carries the first message's properties (session id) as Service Bus needs
    assert decode_properties(envelope.properties).group_id == "s"  # type: ignore[arg-type]
    parts = split_batch(split_sections(raw).body)  # type: ignore[arg-type]
    assert len(parts) == 2
    props = decode_properties(split_sections(parts[1]).properties)  # type: ignore[arg-type]
    assert props.message_id == "2" and props.group_id == "s"


def test_split_batch_errors_and_empty() -> None:
    assert split_batch(b"") == []
    with pytest.raises(DecodeError, match="not a data section"):
        split_batch(encode_value_section(1))
    with pytest.raises(DecodeError):
        split_batch(encode_data_section(b"abc")[:-1])


# ------------------------------------------------------------------ section codecs


def test_header_codec() -> None:
    header = Header(durable=True, priority=9, ttl=1000, first_acquirer=True, delivery_count=2)
    raw = encode_header(header)
    assert decode_header(raw) == header
    # all five fields written; null priority decodes as the default 4
    assert len(decode(raw)[0].value) == 5
    elided = encode_value(Described(ULong(0x70), [True]))
    assert decode_header(elided) == Header(durable=True)
    assert decode_header(elided).priority == 4
    sdk = sdk_decode.decode_payload(memoryview(raw))
    assert sdk.header.durable is True and sdk.header.priority == 9 and sdk.header.ttl == 1000


def test_properties_codec_keeps_id_types() -> None:
    for message_id in ("text", U, ULong(5), b"\x01\x02"):
        props = Properties(message_id=message_id, correlation_id=message_id)
        decoded = decode_properties(encode_properties(props))
        assert decoded.message_id == message_id
        assert type(decoded.message_id) is type(message_id)
    # plain ints are message-id-ulong
    assert type(decode_properties(encode_properties(Properties(message_id=7))).message_id) is ULong
    props = Properties(
        message_id="m",
        content_type="text/plain",
        creation_time=T,
        absolute_expiry_time=1700000000000,
        group_sequence=4,
    )
    decoded = decode_properties(encode_properties(props))
    assert type(decoded.content_type) is Symbol
    assert decoded.creation_time == T
    assert decoded.absolute_expiry_time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    sdk = sdk_decode.decode_payload(memoryview(encode_properties(props)))
    assert sdk.properties.message_id == b"m"
    assert sdk.properties.content_type == b"text/plain"
    assert sdk.properties.group_sequence == 4


def test_annotation_codecs() -> None:
    annotations = {
        "x-opt-sequence-number": Long(42),
        Symbol("x-opt-enqueued-time"): T,
        "x-opt-locked-until": T,
        7: "ulong key",
    }
    raw = encode_message_annotations(annotations)
    assert raw[:3] == b"\x00\x53\x72"
    decoded = decode_annotations(raw)
    assert decoded[Symbol("x-opt-sequence-number")] == 42
    assert type(decoded[Symbol("x-opt-sequence-number")]) is Long
    assert decoded[Symbol("x-opt-enqueued-time")] == T
    assert type(next(iter(decoded))) is Symbol
    assert type(list(decoded)[3]) is ULong
    sdk = sdk_decode.decode_payload(memoryview(raw))
    assert sdk.message_annotations[b"x-opt-sequence-number"] == 42
    assert decode_annotations(encode_delivery_annotations({"a": 1})) == {"a": 1}
    assert decode_annotations(encode_footer({"f": None})) == {"f": None}
    assert decode_annotations(encode_value(Described(ULong(0x72), None))) == {}


def test_application_properties_codec() -> None:
    props = {"s": "v", "n": 5, "sym": Symbol("key-not-symbol"), "t": T, "u": U, "b": b"x"}
    raw = encode_application_properties(props)
    decoded = decode_application_properties(raw)
    assert decoded == props
    assert all(type(k) is str for k in decoded)
    symbol_keyed = decode_application_properties(encode_application_properties({Symbol("k"): 1}))
    assert symbol_keyed == {"k": 1}
    assert type(next(iter(symbol_keyed))) is str  # keys are written as strings
    sdk = sdk_decode.decode_payload(memoryview(raw))
    assert sdk.application_properties[b"n"] == 5


def test_body_section_encoders() -> None:
    assert encode_data_section(b"ab") == b"\x00\x53\x75\xa0\x02ab"
    assert encode_value_section(None) == b"\x00\x53\x77\x40"
    assert encode_value_section({"a": 1}) == b"\x00\x53\x77" + encode_value({"a": 1})
    big = encode_data_section(b"x" * 1000)
    assert big[3] == 0xB0
    sdk = sdk_decode.decode_payload(memoryview(encode_data_section(b"ab")))
    assert sdk.data == [b"ab"]


@pytest.mark.parametrize(
    ("fn", "raw", "message"),
    [
        (decode_header, encode_properties(Properties()), "unexpected section descriptor"),
        (decode_properties, encode_header(Header()), "unexpected section descriptor"),
        (decode_annotations, encode_application_properties({}), "unexpected section"),
        (decode_application_properties, encode_message_annotations({}), "unexpected section"),
        (decode_header, encode_header(Header()) + b"\x40", "trailing bytes"),
        (decode_header, b"\x40", "must be a described value"),
        (decode_header, encode_header(Header())[:-1], "truncated"),
        (decode_annotations, encode_value(Described(ULong(0x72), [1])), "must be a map"),
        (decode_properties, encode_value(Described(ULong(0x73), 5)), "must be a list"),
    ],
)
def test_section_decode_errors(fn: object, raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        fn(raw)  # type: ignore[operator]


def test_our_message_reads_in_the_sdk() -> None:
    raw = (
        encode_header(Header(delivery_count=1))
        + encode_message_annotations({"x-opt-sequence-number": Long(9), "x-opt-enqueued-time": T})
        + encode_properties(Properties(message_id="id", group_id="s"))
        + encode_application_properties({"a": 1})
        + encode_data_section(b"body")
    )
    sdk = sdk_decode.decode_payload(memoryview(raw))
    assert sdk.header.delivery_count == 1
    assert sdk.message_annotations[b"x-opt-sequence-number"] == 9
    assert sdk.properties.group_id == b"s"
    assert sdk.data == [b"body"]
    assert split_sections(raw).to_bytes() == raw
