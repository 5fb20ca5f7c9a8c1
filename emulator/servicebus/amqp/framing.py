"""AMQP 1.0 frame layer (spec part 2.3): frame encoding and an incremental frame reader.

A frame is ``size(4) doff(1) type(1) channel(2)``, extended header up to ``doff * 4``, then
the body: one encoded performative followed, for transfers, by the message payload.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from .performatives import Composite, decode_performative, encode_performative

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"

FRAME_TYPE_AMQP = 0
FRAME_TYPE_SASL = 1
MIN_MAX_FRAME_SIZE = 512
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024

_HEADER = struct.Struct(">IBBH")
_HEARTBEAT_PREFIX = b"\x00\x00\x00\x08\x02"


class FramingError(ValueError):
    """The byte stream does not contain valid frames; the connection must be closed."""

    condition = "amqp:connection:framing-error"


class Frame(NamedTuple):
    """One received frame; ``performative`` is None for an empty (heartbeat) frame."""

    channel: int
    frame_type: int
    performative: Any
    payload: bytes


def encode_frame(
    channel: int,
    performative: Composite | None,
    payload: bytes | bytearray | memoryview = b"",
    frame_type: int = FRAME_TYPE_AMQP,
) -> bytes:
    """Encode one frame; ``None`` gives the 8-byte empty frame used as a heartbeat."""
    if performative is None:
        if payload:
            raise ValueError("an empty frame cannot carry a payload")
        return _HEARTBEAT_PREFIX + bytes((frame_type,)) + channel.to_bytes(2, "big")
    out = bytearray(8)
    encode_performative(performative, out)
    if payload:
        out += payload
    try:
        _HEADER.pack_into(out, 0, len(out), 2, frame_type, channel)
    except struct.error:
        raise ValueError(f"bad frame channel {channel} or frame type {frame_type}") from None
    return bytes(out)


class FrameReader:
    """Turn arbitrarily chunked bytes into frames.

    ``max_frame_size`` is what this side advertised in its Open (or the 512-byte minimum
    a peer may rely on before that); it may be changed between ``feed`` calls.
    """

    __slots__ = ("_buf", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add bytes; return every frame they complete, in order.

        Raises ``FramingError`` for bad frame headers and ``codec.DecodeError`` for an
        undecodable performative; either way the stream is unusable afterwards.
        """
        if self._buf:
            self._buf += data
            buf: Any = self._buf
        else:
            buf = data if isinstance(data, bytes) else bytes(data)
        frames: list[Frame] = []
        n = len(buf)
        pos = 0
        unpack = _HEADER.unpack_from
        limit = self.max_frame_size
        while n - pos >= 8:
            size, doff, frame_type, channel = unpack(buf, pos)
            if size < 8:
                raise FramingError(f"frame size {size} is below the 8-byte minimum")
            if size > limit:
                raise FramingError(f"frame size {size} exceeds max-frame-size {limit}")
            if doff < 2 or doff * 4 > size:
                raise FramingError(f"bad data offset {doff} for a {size}-byte frame")
            if n - pos < size:
                break
            end = pos + size
            body = pos + doff * 4
            if body == end:
                frames.append(Frame(channel, frame_type, None, b""))
            else:
                if buf is self._buf:  # the bytearray is compacted later: copy this frame
                    frame, shift = bytes(buf[pos:end]), -pos
                else:
                    frame, shift = buf, 0
                frame_end = end + shift
                performative, after = decode_performative(frame, body + shift)
                if after > frame_end:
                    raise FramingError("performative overruns its frame")
                frames.append(Frame(channel, frame_type, performative, frame[after:frame_end]))
            pos = end
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < n:
            self._buf += buf[pos:]
        return frames


__all__ = [
    "AMQP_HEADER",
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_TYPE_AMQP",
    "FRAME_TYPE_SASL",
    "MIN_MAX_FRAME_SIZE",
    "SASL_HEADER",
    "Frame",
    "FrameReader",
    "FramingError",
    "encode_frame",
]
