"""Frame encoding and the incremental FrameReader."""

from __future__ import annotations

import struct

import pytest
from azure.servicebus._pyamqp import _encode as sdk_encode
from azure.servicebus._pyamqp import performatives as sdk_perf

from emulator.servicebus.amqp.codec import DecodeError
from emulator.servicebus.amqp.framing import (
    AMQP_HEADER,
    FRAME_TYPE_SASL,
    SASL_HEADER,
    Frame,
    FrameReader,
    FramingError,
    encode_frame,
)
from emulator.servicebus.amqp.performatives import (
    Begin,
    Close,
    Flow,
    Open,
    SaslMechanisms,
    Transfer,
    encode_performative_bytes,
)


def test_headers() -> None:
    assert AMQP_HEADER == b"AMQP\x00\x01\x00\x00"
    assert SASL_HEADER == b"AMQP\x03\x01\x00\x00"


def test_heartbeat_frame() -> None:
    assert encode_frame(0, None) == b"\x00\x00\x00\x08\x02\x00\x00\x00"
    assert encode_frame(3, None) == b"\x00\x00\x00\x08\x02\x00\x00\x03"
    assert FrameReader().feed(encode_frame(0, None)) == [Frame(0, 0, None, b"")]
    with pytest.raises(ValueError):
        encode_frame(0, None, b"payload")


def test_frame_layout() -> None:
    close = Close()
    data = encode_frame(5, close)
    body = encode_performative_bytes(close)
    assert data == struct.pack(">IBBH", 8 + len(body), 2, 0, 5) + body
    sasl = encode_frame(0, SaslMechanisms(sasl_server_mechanisms=["ANONYMOUS"]), frame_type=1)
    assert sasl[5] == FRAME_TYPE_SASL
    transfer = encode_frame(1, Transfer(handle=0, delivery_id=0, delivery_tag=b"t"), b"PAYLOAD")
    assert transfer.endswith(b"PAYLOAD")
    assert struct.unpack(">I", transfer[:4])[0] == len(transfer)


def _stream() -> tuple[bytes, list[tuple[int, int, object, bytes]]]:
    items = [
        (0, 0, Open(container_id="c", max_frame_size=65536), b""),
        (1, 0, Begin(next_outgoing_id=0, incoming_window=10, outgoing_window=10), b""),
        (1, 0, Transfer(handle=0, delivery_id=0, delivery_tag=b"t", message_format=0), b"x" * 700),
        (0, 0, None, b""),
        (1, 0, Flow(incoming_window=1, next_outgoing_id=0, outgoing_window=1), b""),
        (0, 1, SaslMechanisms(sasl_server_mechanisms=["ANONYMOUS"]), b""),
    ]
    data = b"".join(encode_frame(ch, perf, payload, ft) for ch, ft, perf, payload in items)  # type: ignore[arg-type]
    return data, items


def _check(frames: list[Frame], items: list[tuple[int, int, object, bytes]]) -> None:
    assert len(frames) == len(items)
    for frame, (channel, frame_type, perf, payload) in zip(frames, items, strict=True):
        assert frame.channel == channel
        assert frame.frame_type == frame_type
        if perf is None:
            assert frame.performative is None
        else:
            assert type(frame.performative) is type(perf)
            assert frame.performative == perf
        assert bytes(frame.payload) == payload


def test_reader_whole_stream() -> None:
    data, items = _stream()
    reader = FrameReader()
    _check(reader.feed(data), items)
    assert reader.buffered == 0


def test_reader_one_byte_at_a_time() -> None:
    data, items = _stream()
    reader = FrameReader()
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += reader.feed(data[i : i + 1])
    _check(frames, items)
    assert reader.buffered == 0


@pytest.mark.parametrize("chunk", [2, 3, 7, 8, 9, 64, 1000])
def test_reader_chunked(chunk: int) -> None:
    data, items = _stream()
    reader = FrameReader()
    frames: list[Frame] = []
    for i in range(0, len(data), chunk):
        frames += reader.feed(memoryview(data)[i : i + chunk])
    _check(frames, items)


def test_reader_partial_then_rest() -> None:
    data, items = _stream()
    reader = FrameReader()
    assert reader.feed(data[:5]) == []
    assert reader.buffered == 5
    _check(reader.feed(data[5:]), items)


def test_reader_skips_extended_header() -> None:
    body = encode_performative_bytes(Close())
    frame = struct.pack(">IBBH", 16 + len(body), 4, 0, 2) + b"\xee" * 8 + body + b"pl"
    frame = struct.pack(">I", len(frame)) + frame[4:]
    [got] = FrameReader().feed(frame)
    assert got.channel == 2 and got.performative == Close() and got.payload == b"pl"


def test_reader_reads_sdk_frames() -> None:
    header, body = sdk_encode.encode_frame(
        sdk_perf.TransferFrame(
            handle=0,
            delivery_id=1,
            delivery_tag=b"tag",
            message_format=0x80013700,
            settled=False,
            payload=b"\x00\x53\x75\xa0\x01x",
        )
    )
    heartbeat, _ = sdk_encode.encode_frame(None)
    # The SDK's encode_frame leaves the 2-byte channel to its transport.
    data = bytes(header) + b"\x00\x07" + bytes(body) + bytes(heartbeat) + b"\x00\x00"
    [frame, beat] = FrameReader().feed(data)
    assert frame.channel == 7
    assert frame.performative == Transfer(
        handle=0, delivery_id=1, delivery_tag=b"tag", message_format=0x80013700, settled=False
    )
    assert frame.payload == b"\x00\x53\x75\xa0\x01x"
    assert beat.performative is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">IBBH", 7, 2, 0, 0), "below the 8-byte minimum"),
        (struct.pack(">IBBH", 0, 2, 0, 0), "below the 8-byte minimum"),
        (struct.pack(">IBBH", 8, 1, 0, 0), "bad data offset 1"),
        (struct.pack(">IBBH", 12, 4, 0, 0), "bad data offset 4"),
        (struct.pack(">IBBH", 2000, 2, 0, 0), "exceeds max-frame-size 1024"),
        (b"AMQP\x00\x01\x00\x00", "exceeds max-frame-size"),
    ],
)
def test_reader_framing_errors(data: bytes, message: str) -> None:
    reader = FrameReader(max_frame_size=1024)
    with pytest.raises(FramingError, match=message):
        reader.feed(data)
    assert FramingError.condition == "amqp:connection:framing-error"


def test_reader_rejects_oversized_frame_before_it_arrives() -> None:
    reader = FrameReader(max_frame_size=512)
    with pytest.raises(FramingError):
        reader.feed(struct.pack(">IBBH", 513, 2, 0, 0))


def test_reader_max_frame_size_is_adjustable() -> None:
    reader = FrameReader(max_frame_size=512)
    big = encode_frame(0, Transfer(handle=0), b"x" * 600)
    reader.max_frame_size = 4096
    assert len(reader.feed(big)) == 1


def test_reader_bad_body_is_decode_error() -> None:
    frame = struct.pack(">IBBH", 10, 2, 0, 0) + b"\xff\xff"
    with pytest.raises(DecodeError):
        FrameReader().feed(frame)
    not_a_performative = struct.pack(">IBBH", 9, 2, 0, 0) + b"\x40"
    with pytest.raises(DecodeError):
        FrameReader().feed(not_a_performative)


def test_reader_performative_overrunning_its_frame() -> None:
    body = encode_performative_bytes(Close())
    # The frame claims to end two bytes before the performative does; the next frame's
    # bytes follow, so decoding succeeds but must still be rejected.
    short = struct.pack(">IBBH", 8 + len(body) - 2, 2, 0, 0) + body + encode_frame(0, None)
    with pytest.raises((FramingError, DecodeError)):
        FrameReader().feed(short)
