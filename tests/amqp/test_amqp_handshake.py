"""The bytes before frames: protocol headers and SASL, fed in any split."""

from __future__ import annotations

import pytest

from emulator.servicebus.amqp.conditions import ProtocolViolation
from emulator.servicebus.amqp.framing import AMQP_HEADER, SASL_HEADER, FramingError, encode_frame
from emulator.servicebus.amqp.handshake import Handshake
from emulator.servicebus.amqp.performatives import Open, SaslInit, SaslOutcome
from emulator.servicebus.amqp.types import Symbol

SASL_INIT = encode_frame(0, SaslInit(mechanism=Symbol("ANONYMOUS")), frame_type=1)


def _handshake() -> tuple[Handshake, list[bytes]]:
    written: list[bytes] = []
    return Handshake(written.append), written


def test_sasl_then_amqp_header_then_frames_follow_even_byte_by_byte() -> None:
    handshake, written = _handshake()
    first_frame = encode_frame(0, Open(container_id="c"))
    stream = SASL_HEADER + SASL_INIT + AMQP_HEADER + first_frame
    rest = b"".join(handshake.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert handshake.done
    assert rest == first_frame
    assert written[0] == SASL_HEADER
    assert written[2] == encode_frame(0, SaslOutcome(code=0), frame_type=1)
    assert written[3] == AMQP_HEADER


def test_plain_amqp_header_skips_sasl() -> None:
    handshake, written = _handshake()
    assert handshake.feed(AMQP_HEADER + b"xyz") == b"xyz"
    assert handshake.done and written == [AMQP_HEADER]


def test_unknown_header_is_answered_with_ours_then_refused() -> None:
    handshake, written = _handshake()
    with pytest.raises(ProtocolViolation) as raised:
        handshake.feed(b"HTTP/1.1")
    assert raised.value.condition == "amqp:not-implemented"
    assert written == [AMQP_HEADER]


def test_sasl_header_twice_is_refused() -> None:
    handshake, _ = _handshake()
    handshake.feed(SASL_HEADER + SASL_INIT)
    with pytest.raises(ProtocolViolation):
        handshake.feed(SASL_HEADER)


def test_unexpected_sasl_frame_is_refused() -> None:
    handshake, _ = _handshake()
    with pytest.raises(ProtocolViolation) as raised:
        handshake.feed(SASL_HEADER + encode_frame(0, SaslOutcome(code=0), frame_type=1))
    assert raised.value.condition == "amqp:not-allowed"


@pytest.mark.parametrize("size", [4, 70_000])
def test_bad_sasl_frame_size_is_a_framing_error(size: int) -> None:
    handshake, _ = _handshake()
    with pytest.raises(FramingError):
        handshake.feed(SASL_HEADER + size.to_bytes(4, "big") + b"\x02\x01\x00\x00")
