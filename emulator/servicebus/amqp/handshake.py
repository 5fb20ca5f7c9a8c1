"""The bytes before AMQP frames: protocol headers and the SASL exchange (sans-IO).

The SDK opens with the SASL header and offers ANONYMOUS-style init; authorisation happens
later, per link, with tokens put on ``$cbs``. So SASL always succeeds here, then the client
sends the AMQP header and frames follow.
"""

from __future__ import annotations

from collections.abc import Callable

from .codec import decode
from .conditions import ProtocolViolation
from .framing import AMQP_HEADER, SASL_HEADER, FramingError, encode_frame
from .performatives import SaslInit, SaslMechanisms, SaslOutcome, decode_described
from .types import Symbol

_MAX_SASL_FRAME = 65536


class Handshake:
    """Consumes input until AMQP frames begin; answers through ``write``."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._buffer = bytearray()
        self.phase = "header"
        """``header`` → (``sasl`` → ``amqp-header``) → ``frames``."""

    @property
    def done(self) -> bool:
        return self.phase == "frames"

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; once the handshake is done, return the bytes that follow it.

        Raises ProtocolViolation or FramingError when the peer does not speak AMQP 1.0.
        """
        self._buffer += data
        while not self.done:
            if self.phase in ("header", "amqp-header"):
                if len(self._buffer) < 8:
                    return b""
                header = bytes(self._buffer[:8])
                del self._buffer[:8]
                self._on_protocol_header(header)
            else:
                frame = self._take_sasl_frame()
                if frame is None:
                    return b""
                value, _ = decode(frame, frame[4] * 4)
                self._on_sasl(decode_described(value))
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def _take_sasl_frame(self) -> bytes | None:
        if len(self._buffer) < 8:
            return None
        size = int.from_bytes(self._buffer[:4], "big")
        if size < 8 or size > _MAX_SASL_FRAME:
            raise FramingError(f"bad SASL frame size {size}")
        if len(self._buffer) < size:
            return None
        frame = bytes(self._buffer[:size])
        del self._buffer[:size]
        return frame

    def _on_protocol_header(self, header: bytes) -> None:
        if header == SASL_HEADER and self.phase == "header":
            self._write(SASL_HEADER)
            mechanisms = SaslMechanisms(sasl_server_mechanisms=[Symbol("ANONYMOUS")])
            self._write(encode_frame(0, mechanisms, frame_type=1))
            self.phase = "sasl"
        elif header == AMQP_HEADER:
            self._write(AMQP_HEADER)
            self.phase = "frames"
        else:
            # Answer with the header we speak, then hang up, as the spec asks.
            self._write(AMQP_HEADER)
            raise ProtocolViolation(
                "amqp:not-implemented", f"unsupported protocol header {header!r}"
            )

    def _on_sasl(self, performative: object) -> None:
        if isinstance(performative, SaslInit):
            self._write(encode_frame(0, SaslOutcome(code=0), frame_type=1))
            self.phase = "amqp-header"
        else:
            raise ProtocolViolation("amqp:not-allowed", f"unexpected SASL frame {performative!r}")
