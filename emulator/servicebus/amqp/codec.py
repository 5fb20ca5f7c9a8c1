"""AMQP 1.0 type system encoder/decoder (OASIS AMQP 1.0 part 1).

Hot path: every frame the emulator sends or receives goes through here, so encoding
dispatches on ``type(value)`` and decoding on the constructor byte through flat tables,
using precompiled ``struct.Struct`` packers and no per-byte Python loops.

Decoding never lets ``IndexError``/``struct.error`` escape: malformed input raises
``DecodeError`` carrying the offset of the offending value.

One module (about 1,100 lines) on purpose: it is one table-driven type system, where each
constructor code's encoder and decoder are written against the same packers and width
rules (fixed, variable, compound, array) and are checked against each other side by side;
split by direction, every code would have its two halves in two files.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .types import (
    Array,
    Byte,
    Char,
    Decimal32,
    Decimal64,
    Decimal128,
    Described,
    Float,
    Int,
    Long,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
)

Buffer = bytes | bytearray | memoryview
Encoder = Callable[[Any, bytearray], None]
_Decoder = Callable[[Any, int], tuple[Any, int]]


class DecodeError(ValueError):
    """Malformed AMQP encoding; ``offset`` is where the bad value starts."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at offset {offset})")
        self.offset = offset


# Zero-width array elements consume no bytes, so their count is not bounded by the
# frame size; cap it so a 12-byte array cannot demand a gigantic list.
MAX_ZERO_WIDTH_ARRAY = 65536

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

_B = struct.Struct(">B")
_BB = struct.Struct(">BB")
_Bb = struct.Struct(">Bb")
_BH = struct.Struct(">BH")
_Bh = struct.Struct(">Bh")
_BI = struct.Struct(">BI")
_Bi = struct.Struct(">Bi")
_BQ = struct.Struct(">BQ")
_Bq = struct.Struct(">Bq")
_Bf = struct.Struct(">Bf")
_Bd = struct.Struct(">Bd")
_BII = struct.Struct(">BII")
_BBB = struct.Struct(">BBB")
_II = struct.Struct(">II")

_pack_BB = _BB.pack
_pack_Bb = _Bb.pack
_pack_BH = _BH.pack
_pack_Bh = _Bh.pack
_pack_BI = _BI.pack
_pack_Bi = _Bi.pack
_pack_BQ = _BQ.pack
_pack_Bq = _Bq.pack
_pack_Bf = _Bf.pack
_pack_Bd = _Bd.pack
_pack_BII = _BII.pack
_pack_into_BII = _BII.pack_into
_pack_B = _B.pack
_pack_b = struct.Struct(">b").pack
_pack_H = struct.Struct(">H").pack
_pack_h = struct.Struct(">h").pack
_pack_I = struct.Struct(">I").pack
_pack_i = struct.Struct(">i").pack
_pack_Q = struct.Struct(">Q").pack
_pack_q = struct.Struct(">q").pack
_pack_f = struct.Struct(">f").pack
_pack_d = struct.Struct(">d").pack
_pack_II = _II.pack

_unpack_b = struct.Struct(">b").unpack_from
_unpack_H = struct.Struct(">H").unpack_from
_unpack_h = struct.Struct(">h").unpack_from
_unpack_I = struct.Struct(">I").unpack_from
_unpack_i = struct.Struct(">i").unpack_from
_unpack_Q = struct.Struct(">Q").unpack_from
_unpack_q = struct.Struct(">q").unpack_from
_unpack_f = struct.Struct(">f").unpack_from
_unpack_d = struct.Struct(">d").unpack_from
_unpack_BB = _BB.unpack_from
_unpack_II = _II.unpack_from

_tuple_new = tuple.__new__
_COMPOUND_PLACEHOLDER = b"\x00" * 9
COMPOUND_PLACEHOLDER = _COMPOUND_PLACEHOLDER


def _range_error(kind: str, value: object) -> ValueError:
    return ValueError(f"{value!r} is out of range for AMQP {kind}")


# --------------------------------------------------------------------------- encoding
# Each encoder appends constructor + value to ``out``. Typed encoders coerce plain ints,
# so callers that know a field's wire type (performatives) can pass plain Python values.


def encode_null(value: object, out: bytearray) -> None:
    """Append ``null`` (the value is ignored)."""
    out.append(0x40)


def encode_bool(value: object, out: bytearray) -> None:
    """Append ``true``/``false`` using the zero-width constructors."""
    out.append(0x41 if value else 0x42)


def encode_ubyte(value: int, out: bytearray) -> None:
    try:
        out += _pack_BB(0x50, value)
    except struct.error:
        raise _range_error("ubyte", value) from None


def encode_ushort(value: int, out: bytearray) -> None:
    try:
        out += _pack_BH(0x60, value)
    except struct.error:
        raise _range_error("ushort", value) from None


def encode_uint(value: int, out: bytearray) -> None:
    """Append a uint as uint0 / smalluint / uint, whichever is smallest."""
    if value == 0:
        out.append(0x43)
    elif 0 < value < 256:
        out += _pack_BB(0x52, value)
    else:
        try:
            out += _pack_BI(0x70, value)
        except struct.error:
            raise _range_error("uint", value) from None


def encode_ulong(value: int, out: bytearray) -> None:
    """Append a ulong as ulong0 / smallulong / ulong, whichever is smallest."""
    if value == 0:
        out.append(0x44)
    elif 0 < value < 256:
        out += _pack_BB(0x53, value)
    else:
        try:
            out += _pack_BQ(0x80, value)
        except struct.error:
            raise _range_error("ulong", value) from None


def encode_byte(value: int, out: bytearray) -> None:
    try:
        out += _pack_Bb(0x51, value)
    except struct.error:
        raise _range_error("byte", value) from None


def encode_short(value: int, out: bytearray) -> None:
    try:
        out += _pack_Bh(0x61, value)
    except struct.error:
        raise _range_error("short", value) from None


def encode_int(value: int, out: bytearray) -> None:
    if -128 <= value <= 127:
        out += _pack_Bb(0x54, value)
    else:
        try:
            out += _pack_Bi(0x71, value)
        except struct.error:
            raise _range_error("int", value) from None


def encode_long(value: int, out: bytearray) -> None:
    """Append a long (smalllong when it fits); plain Python ints use this."""
    if -128 <= value <= 127:
        out += _pack_Bb(0x55, value)
    else:
        try:
            out += _pack_Bq(0x81, value)
        except struct.error:
            raise ValueError(
                f"int {value} does not fit in an AMQP long (signed 64-bit); "
                "wrap it in ULong if an unsigned 64-bit value is meant"
            ) from None


def encode_float(value: float, out: bytearray) -> None:
    try:
        out += _pack_Bf(0x72, value)
    except (struct.error, OverflowError):
        raise _range_error("float", value) from None


def encode_double(value: float, out: bytearray) -> None:
    out += _pack_Bd(0x82, value)


def encode_char(value: str, out: bytearray) -> None:
    if len(value) != 1:
        raise ValueError(f"AMQP char must be a single code point, got {value!r}")
    out += _pack_BI(0x73, ord(value))


def datetime_to_ms(value: datetime) -> int:
    """Milliseconds since the epoch; naive datetimes are taken as UTC (like the SDK)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MS


def encode_timestamp(value: datetime | int, out: bytearray) -> None:
    """Append a timestamp from a datetime or from ms since the epoch."""
    ms = datetime_to_ms(value) if isinstance(value, datetime) else value
    try:
        out += _pack_Bq(0x83, ms)
    except struct.error:
        raise _range_error("timestamp", value) from None


def encode_uuid(value: uuid.UUID, out: bytearray) -> None:
    out.append(0x98)
    out += value.bytes


def encode_binary(value: bytes | bytearray | memoryview, out: bytearray) -> None:
    """Append vbin8 / vbin32."""
    n = len(value) if not isinstance(value, memoryview) else value.nbytes
    if n < 256:
        out += _pack_BB(0xA0, n)
    else:
        out += _pack_BI(0xB0, n)
    out += value


def encode_string(value: str, out: bytearray) -> None:
    """Append str8 / str32 (UTF-8)."""
    data = value.encode("utf-8")
    n = len(data)
    if n < 256:
        out += _pack_BB(0xA1, n)
    else:
        out += _pack_BI(0xB1, n)
    out += data


def encode_symbol(value: str, out: bytearray) -> None:
    """Append sym8 / sym32; any ``str`` is accepted (written as a symbol)."""
    data = value.encode("utf-8")
    n = len(data)
    if n < 256:
        out += _pack_BB(0xA3, n)
    else:
        out += _pack_BI(0xB3, n)
    out += data


def _encode_decimal(code: int) -> Encoder:
    def enc(value: bytes, out: bytearray) -> None:
        out.append(code)
        out += value

    return enc


def finish_compound(out: bytearray, start: int, count: int, small: int, large: int) -> None:
    """Patch the 9-byte header reserved at ``start`` into the 8- or 32-bit form."""
    body = len(out) - start - 9
    if count < 256 and body < 255:
        out[start : start + 9] = _BBB.pack(small, body + 1, count)
    else:
        _pack_into_BII(out, start, large, body + 4, count)


def encode_list(value: list[Any] | tuple[Any, ...], out: bytearray) -> None:
    """Append list0 / list8 / list32 with every element self-described."""
    if not value:
        out.append(0x45)
        return
    start = len(out)
    out += _COMPOUND_PLACEHOLDER
    encs = _ENCODERS
    for item in value:
        try:
            encs[type(item)](item, out)
        except KeyError:
            _encode_other(item, out)
    finish_compound(out, start, len(value), 0xC0, 0xD0)


def _encode_map_with(value: dict[Any, Any], out: bytearray, key_encoder: Encoder | None) -> None:
    start = len(out)
    out += _COMPOUND_PLACEHOLDER
    encs = _ENCODERS
    for k, v in value.items():
        if key_encoder is not None:
            key_encoder(k, out)
        else:
            try:
                encs[type(k)](k, out)
            except KeyError:
                _encode_other(k, out)
        try:
            encs[type(v)](v, out)
        except KeyError:
            _encode_other(v, out)
    finish_compound(out, start, 2 * len(value), 0xC1, 0xD1)


def encode_map(value: dict[Any, Any], out: bytearray) -> None:
    """Append map8 / map32; keys and values keep their own types."""
    _encode_map_with(value, out, None)


def _symbol_key(key: Any, out: bytearray) -> None:
    if isinstance(key, str):
        encode_symbol(key, out)
    else:
        encode(key, out)


def _annotation_key(key: Any, out: bytearray) -> None:
    if isinstance(key, str):
        encode_symbol(key, out)
    elif type(key) is int:
        encode_ulong(key, out)
    else:
        encode(key, out)


def encode_fields(value: dict[Any, Any], out: bytearray) -> None:
    """Append an AMQP ``fields`` map: ``str`` keys are written as symbols."""
    _encode_map_with(value, out, _symbol_key)


def encode_annotations(value: dict[Any, Any], out: bytearray) -> None:
    """Append an ``annotations`` map: ``str`` keys as symbols, plain int keys as ulong."""
    _encode_map_with(value, out, _annotation_key)


def _encode_descriptor(descriptor: Any, out: bytearray) -> None:
    if type(descriptor) is int:
        encode_ulong(descriptor, out)
    else:
        encode(descriptor, out)


def encode_described(value: Described, out: bytearray) -> None:
    """Append 0x00, the descriptor (plain int -> ulong) and the value."""
    out.append(0x00)
    _encode_descriptor(value[0], out)
    encode(value[1], out)


# ---- arrays: element bodies without constructors


class _Widen(Exception):
    """An element does not fit the small array constructor; retry with the wide one."""


def _e_null(v: Any, out: bytearray) -> None:
    if v is not None:
        raise ValueError(f"null array cannot hold {v!r}")


def _e_bool(v: Any, out: bytearray) -> None:
    out.append(1 if v else 0)


def _small_unsigned(v: Any, out: bytearray) -> None:
    if not 0 <= v < 256:
        raise _Widen
    out.append(v)


def _small_signed(v: Any, out: bytearray) -> None:
    if not -128 <= v <= 127:
        raise _Widen
    out += _pack_b(v)


def _var8(v: Any, out: bytearray) -> None:
    data = v.encode("utf-8") if isinstance(v, str) else v
    if len(data) > 255:
        raise _Widen
    out.append(len(data))
    out += data


def _var32(v: Any, out: bytearray) -> None:
    data = v.encode("utf-8") if isinstance(v, str) else v
    out += _pack_I(len(data))
    out += data


def _e_ubyte(v: Any, out: bytearray) -> None:
    out += _pack_B(v)


def _e_ushort(v: Any, out: bytearray) -> None:
    out += _pack_H(v)


def _e_uint(v: Any, out: bytearray) -> None:
    out += _pack_I(v)


def _e_ulong(v: Any, out: bytearray) -> None:
    out += _pack_Q(v)


def _e_byte(v: Any, out: bytearray) -> None:
    out += _pack_b(v)


def _e_short(v: Any, out: bytearray) -> None:
    out += _pack_h(v)


def _e_int(v: Any, out: bytearray) -> None:
    out += _pack_i(v)


def _e_long(v: Any, out: bytearray) -> None:
    out += _pack_q(v)


def _e_float(v: Any, out: bytearray) -> None:
    out += _pack_f(v)


def _e_double(v: Any, out: bytearray) -> None:
    out += _pack_d(v)


def _e_char(v: Any, out: bytearray) -> None:
    out += _pack_I(ord(v))


def _e_timestamp(v: Any, out: bytearray) -> None:
    out += _pack_q(datetime_to_ms(v) if isinstance(v, datetime) else v)


def _e_uuid(v: Any, out: bytearray) -> None:
    out += v.bytes


def _fixed_bytes(width: int) -> Encoder:
    def enc(v: Any, out: bytearray) -> None:
        if len(v) != width:
            raise ValueError(f"expected {width} raw bytes, got {len(v)}")
        out += v

    return enc


def _e_list32(v: Any, out: bytearray) -> None:
    start = len(out)
    out += _COMPOUND_PLACEHOLDER[:8]
    for item in v:
        encode(item, out)
    _II.pack_into(out, start, len(out) - start - 4, len(v))


def _e_map32(v: Any, out: bytearray) -> None:
    start = len(out)
    out += _COMPOUND_PLACEHOLDER[:8]
    for key, item in v.items():
        encode(key, out)
        encode(item, out)
    _II.pack_into(out, start, len(out) - start - 4, 2 * len(v))


def _e_array32(v: Any, out: bytearray) -> None:
    start = len(out)
    _encode_array(v if isinstance(v, Array) else Array(v), out, wide=True)
    del out[start]  # elements share the array32 constructor already written


_ARRAY_ELEMENT: dict[int, Encoder] = {
    0x40: _e_null,
    0x56: _e_bool,
    0x50: _e_ubyte,
    0x60: _e_ushort,
    0x52: _small_unsigned,
    0x70: _e_uint,
    0x53: _small_unsigned,
    0x80: _e_ulong,
    0x51: _e_byte,
    0x61: _e_short,
    0x54: _small_signed,
    0x71: _e_int,
    0x55: _small_signed,
    0x81: _e_long,
    0x72: _e_float,
    0x82: _e_double,
    0x73: _e_char,
    0x83: _e_timestamp,
    0x98: _e_uuid,
    0x74: _fixed_bytes(4),
    0x84: _fixed_bytes(8),
    0x94: _fixed_bytes(16),
    0xA0: _var8,
    0xA1: _var8,
    0xA3: _var8,
    0xB0: _var32,
    0xB1: _var32,
    0xB3: _var32,
    0xD0: _e_list32,
    0xD1: _e_map32,
    0xF0: _e_array32,
}
# Zero-width and 8-bit compound constructors are only written in their wide form.
_ARRAY_NORMALIZE = {0x41: 0x56, 0x42: 0x56, 0x43: 0x70, 0x44: 0x80, 0x45: 0xD0}
_ARRAY_NORMALIZE.update({0xC0: 0xD0, 0xC1: 0xD1, 0xE0: 0xF0})
_ARRAY_WIDEN = {0x52: 0x70, 0x53: 0x80, 0x54: 0x71, 0x55: 0x81, 0xA0: 0xB0, 0xA1: 0xB1}
_ARRAY_WIDEN[0xA3] = 0xB3


def _infer_array_code(first: Any) -> int:
    probe = bytearray()
    if type(first) is Described:
        raise ValueError("arrays of described values need Array(..., descriptor=...)")
    encode(first, probe)
    code = probe[0]
    return _ARRAY_NORMALIZE.get(code, code)


def encode_array(value: Array | list[Any], out: bytearray) -> None:
    """Append array8 / array32; see ``types.Array`` for how the element code is chosen."""
    _encode_array(value, out, wide=False)


def _encode_array(value: Array | list[Any], out: bytearray, wide: bool) -> None:
    code = getattr(value, "code", None)
    descriptor = getattr(value, "descriptor", None)
    items: list[Any] = list(value)
    if descriptor is not None:
        items = [x[1] if type(x) is Described else x for x in items]
    if code is None:
        code = _infer_array_code(items[0]) if items else 0x40
    code = _ARRAY_NORMALIZE.get(code, code)
    try:
        element = _ARRAY_ELEMENT[code]
    except KeyError:
        raise ValueError(f"unsupported array element constructor 0x{code:02x}") from None
    start = len(out)
    while True:
        out += _COMPOUND_PLACEHOLDER
        if descriptor is not None:
            out.append(0x00)
            _encode_descriptor(descriptor, out)
        out.append(code)
        try:
            for item in items:
                element(item, out)
        except _Widen:
            del out[start:]
            code = _ARRAY_WIDEN[code]
            element = _ARRAY_ELEMENT[code]
            continue
        except struct.error as exc:
            del out[start:]
            raise ValueError(f"array element out of range for 0x{code:02x}: {exc}") from None
        break
    if wide:
        _pack_into_BII(out, start, 0xF0, len(out) - start - 5, len(items))
    else:
        finish_compound(out, start, len(items), 0xE0, 0xF0)


def _encode_other(value: Any, out: bytearray) -> None:
    """Slow path for subclasses and composites: resolve once, then cache the encoder."""
    for cls in type(value).__mro__:
        enc = _ENCODERS.get(cls)
        if enc is not None:
            _ENCODERS[type(value)] = enc
            enc(value, out)
            return
    hook = getattr(type(value), "amqp_encode", None)
    if hook is not None:  # composites (performatives, outcomes, ...) encode themselves
        _ENCODERS[type(value)] = hook
        hook(value, out)
        return
    raise TypeError(f"cannot encode {type(value).__name__} value {value!r} as AMQP")


_ENCODERS: dict[type, Encoder] = {
    type(None): encode_null,
    bool: encode_bool,
    int: encode_long,
    float: encode_double,
    str: encode_string,
    bytes: encode_binary,
    bytearray: encode_binary,
    memoryview: encode_binary,
    uuid.UUID: encode_uuid,
    datetime: encode_timestamp,
    list: encode_list,
    tuple: encode_list,
    dict: encode_map,
    UByte: encode_ubyte,
    UShort: encode_ushort,
    UInt: encode_uint,
    ULong: encode_ulong,
    Byte: encode_byte,
    Short: encode_short,
    Int: encode_int,
    Long: encode_long,
    Timestamp: encode_timestamp,
    Float: encode_float,
    Symbol: encode_symbol,
    Char: encode_char,
    Decimal32: _encode_decimal(0x74),
    Decimal64: _encode_decimal(0x84),
    Decimal128: _encode_decimal(0x94),
    Described: encode_described,
    Array: encode_array,
}


def encode(value: Any, out: bytearray) -> None:
    """Append the AMQP encoding of ``value`` to ``out`` (smallest valid constructor)."""
    try:
        enc = _ENCODERS[type(value)]
    except KeyError:
        _encode_other(value, out)
        return
    enc(value, out)


def encode_value(value: Any) -> bytes:
    """Return the AMQP encoding of ``value``."""
    out = bytearray()
    encode(value, out)
    return bytes(out)


# --------------------------------------------------------------------------- decoding
# Each decoder takes (buf, pos just after the constructor) and returns (value, end).


def _bad_constructor(code: int) -> _Decoder:
    def dec(buf: Any, pos: int) -> tuple[Any, int]:
        raise DecodeError(f"unknown AMQP constructor 0x{code:02x}", pos - 1)

    return dec


def _const(value: Any) -> _Decoder:
    def dec(buf: Any, pos: int) -> tuple[Any, int]:
        return value, pos

    return dec


def _d_list0(buf: Any, pos: int) -> tuple[Any, int]:
    return [], pos


def _d_bool(buf: Any, pos: int) -> tuple[Any, int]:
    b = buf[pos]
    if b > 1:
        raise DecodeError(f"invalid boolean octet 0x{b:02x}", pos - 1)
    return b == 1, pos + 1


def _d_ubyte(buf: Any, pos: int) -> tuple[Any, int]:
    return UByte(buf[pos]), pos + 1


def _d_byte(buf: Any, pos: int) -> tuple[Any, int]:
    return Byte(_unpack_b(buf, pos)[0]), pos + 1


def _d_ushort(buf: Any, pos: int) -> tuple[Any, int]:
    return UShort(_unpack_H(buf, pos)[0]), pos + 2


def _d_short(buf: Any, pos: int) -> tuple[Any, int]:
    return Short(_unpack_h(buf, pos)[0]), pos + 2


def _d_smalluint(buf: Any, pos: int) -> tuple[Any, int]:
    return UInt(buf[pos]), pos + 1


def _d_uint(buf: Any, pos: int) -> tuple[Any, int]:
    return UInt(_unpack_I(buf, pos)[0]), pos + 4


def _d_smallulong(buf: Any, pos: int) -> tuple[Any, int]:
    return ULong(buf[pos]), pos + 1


def _d_ulong(buf: Any, pos: int) -> tuple[Any, int]:
    return ULong(_unpack_Q(buf, pos)[0]), pos + 8


def _d_smallint(buf: Any, pos: int) -> tuple[Any, int]:
    return Int(_unpack_b(buf, pos)[0]), pos + 1


def _d_int(buf: Any, pos: int) -> tuple[Any, int]:
    return Int(_unpack_i(buf, pos)[0]), pos + 4


def _d_smalllong(buf: Any, pos: int) -> tuple[Any, int]:
    return Long(_unpack_b(buf, pos)[0]), pos + 1


def _d_long(buf: Any, pos: int) -> tuple[Any, int]:
    return Long(_unpack_q(buf, pos)[0]), pos + 8


def _d_float(buf: Any, pos: int) -> tuple[Any, int]:
    return Float(_unpack_f(buf, pos)[0]), pos + 4


def _d_double(buf: Any, pos: int) -> tuple[Any, int]:
    return _unpack_d(buf, pos)[0], pos + 8


def _d_char(buf: Any, pos: int) -> tuple[Any, int]:
    cp = _unpack_I(buf, pos)[0]
    try:
        return Char(chr(cp)), pos + 4
    except (ValueError, OverflowError):
        raise DecodeError(f"invalid char code point {cp}", pos - 1) from None


def ms_to_datetime(ms: int) -> datetime | Timestamp:
    """UTC datetime for ``ms`` since the epoch, or ``Timestamp(ms)`` if out of range."""
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return Timestamp(ms)


def _d_timestamp(buf: Any, pos: int) -> tuple[Any, int]:
    ms = _unpack_q(buf, pos)[0]
    try:
        return _EPOCH + timedelta(milliseconds=ms), pos + 8
    except OverflowError:
        return Timestamp(ms), pos + 8


def _d_uuid(buf: Any, pos: int) -> tuple[Any, int]:
    end = pos + 16
    if end > len(buf):
        raise DecodeError("truncated uuid", pos - 1)
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def _d_decimal(cls: type, width: int) -> _Decoder:
    def dec(buf: Any, pos: int) -> tuple[Any, int]:
        end = pos + width
        if end > len(buf):
            raise DecodeError(f"truncated {cls.__name__}", pos - 1)
        return cls(bytes(buf[pos:end])), end

    return dec


def _d_vbin8(buf: Any, pos: int) -> tuple[Any, int]:
    end = pos + 1 + buf[pos]
    if end > len(buf):
        raise DecodeError("truncated binary", pos - 1)
    return bytes(buf[pos + 1 : end]), end


def _d_vbin32(buf: Any, pos: int) -> tuple[Any, int]:
    end = pos + 4 + _unpack_I(buf, pos)[0]
    if end > len(buf):
        raise DecodeError("truncated binary", pos - 1)
    return bytes(buf[pos + 4 : end]), end


def _d_str8(buf: Any, pos: int) -> tuple[Any, int]:
    end = pos + 1 + buf[pos]
    if end > len(buf):
        raise DecodeError("truncated string", pos - 1)
    try:
        return str(buf[pos + 1 : end], "utf-8"), end
    except UnicodeDecodeError:
        raise DecodeError("invalid UTF-8 in string", pos - 1) from None


def _d_str32(buf: Any, pos: int) -> tuple[Any, int]:
    end = pos + 4 + _unpack_I(buf, pos)[0]
    if end > len(buf):
        raise DecodeError("truncated string", pos - 1)
    try:
        return str(buf[pos + 4 : end], "utf-8"), end
    except UnicodeDecodeError:
        raise DecodeError("invalid UTF-8 in string", pos - 1) from None


def _d_sym8(buf: Any, pos: int) -> tuple[Any, int]:
    end = pos + 1 + buf[pos]
    if end > len(buf):
        raise DecodeError("truncated symbol", pos - 1)
    try:
        return Symbol(str(buf[pos + 1 : end], "utf-8")), end
    except UnicodeDecodeError:
        raise DecodeError("invalid symbol bytes", pos - 1) from None


def _d_sym32(buf: Any, pos: int) -> tuple[Any, int]:
    end = pos + 4 + _unpack_I(buf, pos)[0]
    if end > len(buf):
        raise DecodeError("truncated symbol", pos - 1)
    try:
        return Symbol(str(buf[pos + 4 : end], "utf-8")), end
    except UnicodeDecodeError:
        raise DecodeError("invalid symbol bytes", pos - 1) from None


def _compound_header(buf: Any, pos: int, wide: bool, kind: str) -> tuple[int, int, int]:
    """Return (count, first element offset, end) after validating the size field."""
    if wide:
        size, count = _unpack_II(buf, pos)
        first = pos + 8
        end = pos + 4 + size
        if size < 4:
            raise DecodeError(f"{kind}32 size {size} too small", pos - 1)
    else:
        size, count = _unpack_BB(buf, pos)
        first = pos + 2
        end = pos + 1 + size
        if size < 1:
            raise DecodeError(f"{kind}8 size {size} too small", pos - 1)
    if end > len(buf):
        raise DecodeError(f"truncated {kind}: size {size} exceeds buffer", pos - 1)
    return count, first, end


def _decode_items(buf: Any, p: int, count: int, end: int, start: int, kind: str) -> list[Any]:
    if count > end - p:
        raise DecodeError(f"{kind} count {count} exceeds its size", start)
    dec = _DECODERS
    items: list[Any] = []
    append = items.append
    left = count
    try:
        while left:
            code = buf[p]
            if code == 0x40:  # null: most fields of most composites, often all trailing ones
                if end - p == left and type(buf) is bytes and buf.count(0x40, p, end) == left:
                    items += [None] * left
                    p = end
                    break
                append(None)
                p += 1
            else:
                v, p = dec[code](buf, p + 1)
                append(v)
            left -= 1
    except (IndexError, struct.error):
        raise DecodeError(f"truncated {kind} element", p) from None
    if p != end:
        raise DecodeError(f"{kind} elements do not match the declared size", start)
    return items


def _d_list8(buf: Any, pos: int) -> tuple[Any, int]:
    count, first, end = _compound_header(buf, pos, False, "list")
    return _decode_items(buf, first, count, end, pos - 1, "list"), end


def _d_list32(buf: Any, pos: int) -> tuple[Any, int]:
    count, first, end = _compound_header(buf, pos, True, "list")
    return _decode_items(buf, first, count, end, pos - 1, "list"), end


def _map_from_items(items: list[Any], start: int) -> dict[Any, Any]:
    it = iter(items)
    try:
        return dict(zip(it, it, strict=True))
    except TypeError:
        raise DecodeError("unhashable map key", start) from None


def _d_map8(buf: Any, pos: int) -> tuple[Any, int]:
    count, first, end = _compound_header(buf, pos, False, "map")
    if count & 1:
        raise DecodeError(f"map has odd element count {count}", pos - 1)
    items = _decode_items(buf, first, count, end, pos - 1, "map")
    return _map_from_items(items, pos - 1), end


def _d_map32(buf: Any, pos: int) -> tuple[Any, int]:
    count, first, end = _compound_header(buf, pos, True, "map")
    if count & 1:
        raise DecodeError(f"map has odd element count {count}", pos - 1)
    items = _decode_items(buf, first, count, end, pos - 1, "map")
    return _map_from_items(items, pos - 1), end


_ZERO_WIDTH = frozenset((0x40, 0x41, 0x42, 0x43, 0x44, 0x45))


def _decode_array_body(buf: Any, pos: int, wide: bool) -> tuple[Any, int]:
    start = pos - 1
    count, p, end = _compound_header(buf, pos, wide, "array")
    try:
        code = buf[p]
        descriptor = None
        if code == 0x00:
            descriptor, p = _DECODERS[buf[p + 1]](buf, p + 2)
            code = buf[p]
        p += 1
    except (IndexError, struct.error):
        raise DecodeError("truncated array element constructor", p) from None
    if p > end:
        raise DecodeError("array element constructor exceeds its size", start)
    if code == 0x00:
        raise DecodeError("nested described array constructor", start)
    element = _DECODERS[code]
    if code in _ZERO_WIDTH:
        if count > MAX_ZERO_WIDTH_ARRAY:
            raise DecodeError(f"zero-width array count {count} too large", start)
    elif count > end - p:
        raise DecodeError(f"array count {count} exceeds its size", start)
    items: list[Any] = []
    append = items.append
    try:
        for _ in range(count):
            v, p = element(buf, p)
            append(v)
    except (IndexError, struct.error):
        raise DecodeError("truncated array element", p) from None
    if p != end:
        raise DecodeError("array elements do not match the declared size", start)
    if descriptor is not None:
        items = [_tuple_new(Described, (descriptor, v)) for v in items]
    return Array(items, code, descriptor), end


def _d_array8(buf: Any, pos: int) -> tuple[Any, int]:
    return _decode_array_body(buf, pos, False)


def _d_array32(buf: Any, pos: int) -> tuple[Any, int]:
    return _decode_array_body(buf, pos, True)


def _d_described(buf: Any, pos: int) -> tuple[Any, int]:
    dec = _DECODERS
    try:
        descriptor, p = dec[buf[pos]](buf, pos + 1)
        value, p = dec[buf[p]](buf, p + 1)
    except (IndexError, struct.error):
        raise DecodeError("truncated described value", pos - 1) from None
    return _tuple_new(Described, (descriptor, value)), p


_DECODERS: list[_Decoder] = [_bad_constructor(c) for c in range(256)]
_DECODERS[0x00] = _d_described
_DECODERS[0x40] = _const(None)
_DECODERS[0x41] = _const(True)
_DECODERS[0x42] = _const(False)
_DECODERS[0x43] = _const(UInt(0))
_DECODERS[0x44] = _const(ULong(0))
_DECODERS[0x45] = _d_list0
_DECODERS[0x50] = _d_ubyte
_DECODERS[0x51] = _d_byte
_DECODERS[0x52] = _d_smalluint
_DECODERS[0x53] = _d_smallulong
_DECODERS[0x54] = _d_smallint
_DECODERS[0x55] = _d_smalllong
_DECODERS[0x56] = _d_bool
_DECODERS[0x60] = _d_ushort
_DECODERS[0x61] = _d_short
_DECODERS[0x70] = _d_uint
_DECODERS[0x71] = _d_int
_DECODERS[0x72] = _d_float
_DECODERS[0x73] = _d_char
_DECODERS[0x74] = _d_decimal(Decimal32, 4)
_DECODERS[0x80] = _d_ulong
_DECODERS[0x81] = _d_long
_DECODERS[0x82] = _d_double
_DECODERS[0x83] = _d_timestamp
_DECODERS[0x84] = _d_decimal(Decimal64, 8)
_DECODERS[0x94] = _d_decimal(Decimal128, 16)
_DECODERS[0x98] = _d_uuid
_DECODERS[0xA0] = _d_vbin8
_DECODERS[0xA1] = _d_str8
_DECODERS[0xA3] = _d_sym8
_DECODERS[0xB0] = _d_vbin32
_DECODERS[0xB1] = _d_str32
_DECODERS[0xB3] = _d_sym32
_DECODERS[0xC0] = _d_list8
_DECODERS[0xC1] = _d_map8
_DECODERS[0xD0] = _d_list32
_DECODERS[0xD1] = _d_map32
_DECODERS[0xE0] = _d_array8
_DECODERS[0xF0] = _d_array32


def decode(buf: Buffer, offset: int = 0) -> tuple[Any, int]:
    """Decode the value at ``offset``; return it and the offset just after it."""
    try:
        return _DECODERS[buf[offset]](buf, offset + 1)
    except (IndexError, struct.error):
        raise DecodeError("truncated value", offset) from None
    except RecursionError:
        raise DecodeError("value nested too deeply", offset) from None


# Width after the constructor: >= 0 fixed, -1 one-byte length/size, -4 four-byte
# length/size, -2 described, -3 unknown constructor.
_WIDTH = [-3] * 256
for _code, _w in {
    0x40: 0,
    0x41: 0,
    0x42: 0,
    0x43: 0,
    0x44: 0,
    0x45: 0,
    0x50: 1,
    0x51: 1,
    0x52: 1,
    0x53: 1,
    0x54: 1,
    0x55: 1,
    0x56: 1,
    0x60: 2,
    0x61: 2,
    0x70: 4,
    0x71: 4,
    0x72: 4,
    0x73: 4,
    0x74: 4,
    0x80: 8,
    0x81: 8,
    0x82: 8,
    0x83: 8,
    0x84: 8,
    0x94: 16,
    0x98: 16,
}.items():
    _WIDTH[_code] = _w
for _code in (0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0):
    _WIDTH[_code] = -1
for _code in (0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0):
    _WIDTH[_code] = -4
_WIDTH[0x00] = -2


def skip(buf: Buffer, offset: int = 0) -> int:
    """Return the end offset of the value at ``offset`` without building it.

    Only sizes are checked (not the contents of compounds), which is what makes it fast
    enough to slice message sections.
    """
    pos = offset
    try:
        while True:
            code = buf[pos]
            w = _WIDTH[code]
            if w >= 0:
                end = pos + 1 + w
            elif w == -1:
                end = pos + 2 + buf[pos + 1]
            elif w == -4:
                end = pos + 5 + _unpack_I(buf, pos + 1)[0]
            elif w == -2:
                pos = skip(buf, pos + 1)  # the descriptor; then loop for the value
                continue
            else:
                raise DecodeError(f"unknown AMQP constructor 0x{code:02x}", pos)
            break
    except (IndexError, struct.error):
        raise DecodeError("truncated value", pos) from None
    except RecursionError:
        raise DecodeError("value nested too deeply", offset) from None
    if end > len(buf):
        raise DecodeError("truncated value", pos)
    return end


__all__ = [
    "MAX_ZERO_WIDTH_ARRAY",
    "DecodeError",
    "datetime_to_ms",
    "decode",
    "encode",
    "encode_annotations",
    "encode_array",
    "encode_binary",
    "encode_bool",
    "encode_byte",
    "encode_char",
    "encode_described",
    "encode_double",
    "encode_fields",
    "encode_float",
    "encode_int",
    "encode_list",
    "encode_long",
    "encode_map",
    "encode_null",
    "encode_short",
    "encode_string",
    "encode_symbol",
    "encode_timestamp",
    "encode_ubyte",
    "encode_uint",
    "encode_ulong",
    "encode_ushort",
    "encode_uuid",
    "encode_value",
    "ms_to_datetime",
    "skip",
]
