"""Python value types that keep the exact AMQP 1.0 type of a value.

AMQP distinguishes many integer widths, symbols from strings, and so on. Peers (the
Service Bus SDK in particular) decode positionally and compare types, so a value that
was received as ``uint`` must go back out as ``uint``. Plain Python types map to a
default AMQP type (see ``codec``); the subclasses here pin a specific one.
"""

from __future__ import annotations

from typing import NamedTuple


class UByte(int):
    """AMQP ``ubyte`` (0x50)."""

    __slots__ = ()


class UShort(int):
    """AMQP ``ushort`` (0x60)."""

    __slots__ = ()


class UInt(int):
    """AMQP ``uint`` (0x43 / 0x52 / 0x70)."""

    __slots__ = ()


class ULong(int):
    """AMQP ``ulong`` (0x44 / 0x53 / 0x80)."""

    __slots__ = ()


class Byte(int):
    """AMQP ``byte`` (0x51)."""

    __slots__ = ()


class Short(int):
    """AMQP ``short`` (0x61)."""

    __slots__ = ()


class Int(int):
    """AMQP ``int`` (0x54 / 0x71)."""

    __slots__ = ()


class Long(int):
    """AMQP ``long`` (0x55 / 0x81); plain ``int`` encodes the same way."""

    __slots__ = ()


class Timestamp(int):
    """AMQP ``timestamp`` in ms since the Unix epoch.

    Only produced by the decoder when the value is outside what ``datetime`` can represent
    (e.g. ``Long.MaxValue`` "never expires" markers), so such values survive a round trip.
    """

    __slots__ = ()


class Float(float):
    """AMQP ``float`` (32-bit, 0x72); plain ``float`` encodes as ``double``."""

    __slots__ = ()


class Symbol(str):
    """AMQP ``symbol`` (0xa3 / 0xb3): used for keys, capabilities and conditions."""

    __slots__ = ()


class Char(str):
    """AMQP ``char`` (0x73): a single UTF-32 code point."""

    __slots__ = ()


class _FixedBytes(bytes):
    """Raw IEEE 754 decimal bytes; the emulator never does decimal arithmetic."""

    __slots__ = ()
    WIDTH = 0

    def __new__(cls, raw: bytes = b"") -> _FixedBytes:
        if len(raw) != cls.WIDTH:
            raise ValueError(f"{cls.__name__} needs exactly {cls.WIDTH} bytes, got {len(raw)}")
        return super().__new__(cls, raw)


class Decimal32(_FixedBytes):
    """AMQP ``decimal32`` (0x74), kept as its 4 raw bytes."""

    __slots__ = ()
    WIDTH = 4


class Decimal64(_FixedBytes):
    """AMQP ``decimal64`` (0x84), kept as its 8 raw bytes."""

    __slots__ = ()
    WIDTH = 8


class Decimal128(_FixedBytes):
    """AMQP ``decimal128`` (0x94), kept as its 16 raw bytes."""

    __slots__ = ()
    WIDTH = 16


class Described(NamedTuple):
    """A described value: ``descriptor`` is usually a ULong code or a Symbol name.

    A plain ``int`` descriptor is encoded as ``ulong`` (descriptor codes are ulongs).
    """

    descriptor: object
    value: object


# Element constructor codes for arrays.
ARRAY_NULL = 0x40
ARRAY_BOOLEAN = 0x56
ARRAY_UBYTE = 0x50
ARRAY_USHORT = 0x60
ARRAY_UINT = 0x70
ARRAY_ULONG = 0x80
ARRAY_BYTE = 0x51
ARRAY_SHORT = 0x61
ARRAY_INT = 0x71
ARRAY_LONG = 0x81
ARRAY_FLOAT = 0x72
ARRAY_DOUBLE = 0x82
ARRAY_CHAR = 0x73
ARRAY_TIMESTAMP = 0x83
ARRAY_UUID = 0x98
ARRAY_BINARY8 = 0xA0
ARRAY_BINARY32 = 0xB0
ARRAY_STRING8 = 0xA1
ARRAY_STRING32 = 0xB1
ARRAY_SYMBOL8 = 0xA3
ARRAY_SYMBOL32 = 0xB3
ARRAY_LIST = 0xD0
ARRAY_MAP = 0xD1


# Maps every constructor to the canonical (widest) constructor of the same AMQP type.
_ARRAY_FAMILY = {
    0xA0: 0xB0,
    0xA1: 0xB1,
    0xA3: 0xB3,
    0x41: 0x56,
    0x42: 0x56,
    0x43: 0x70,
    0x52: 0x70,
    0x44: 0x80,
    0x53: 0x80,
    0x54: 0x71,
    0x55: 0x81,
    0x45: 0xD0,
    0xC0: 0xD0,
    0xC1: 0xD1,
    0xE0: 0xF0,
}


class Array(list):  # type: ignore[type-arg]
    """AMQP array: homogeneous elements sharing one constructor ``code``.

    ``code`` is the element constructor byte (see the ``ARRAY_*`` constants); ``None`` lets
    the encoder infer it from the first element (null for an empty array). The encoder
    widens a small variant (e.g. sym8 -> sym32, smalluint -> uint) when an element does not
    fit, so the code is a type choice, not a promise about widths. ``descriptor`` is set for
    arrays of described values; the elements are then ``Described`` with that descriptor.
    """

    __slots__ = ("code", "descriptor")

    def __init__(self, items: object = (), code: int | None = None, descriptor: object = None):
        super().__init__(items)  # type: ignore[call-overload]
        self.code = code
        self.descriptor = descriptor

    def __repr__(self) -> str:
        extra = f", descriptor={self.descriptor!r}" if self.descriptor is not None else ""
        code = "None" if self.code is None else f"0x{self.code:02x}"
        return f"Array({list.__repr__(self)}, code={code}{extra})"

    def __eq__(self, other: object) -> bool:
        # Width variants (sym8/sym32, smalluint/uint, ...) are the same AMQP type.
        # An unset code (None) matches any code: it means "infer when encoding".
        if isinstance(other, Array):
            a, b = self.code, other.code
            return (
                (a is None or b is None or _ARRAY_FAMILY.get(a, a) == _ARRAY_FAMILY.get(b, b))
                and self.descriptor == other.descriptor
                and list.__eq__(self, other)
            )
        return list.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def _fits8(items: list[bytes]) -> bool:
    return all(len(b) <= 255 for b in items)


def symbol_array(items: object) -> Array:
    """Array of symbols, sym8 when every symbol fits (what Proton and .NET send)."""
    syms = [s if type(s) is Symbol else Symbol(s) for s in items]  # type: ignore[attr-defined]
    small = _fits8([s.encode() for s in syms])
    return Array(syms, ARRAY_SYMBOL8 if small else ARRAY_SYMBOL32)


def string_array(items: object) -> Array:
    """Array of strings (str8 when every string fits)."""
    strs = [str(s) for s in items]  # type: ignore[attr-defined]
    small = _fits8([s.encode() for s in strs])
    return Array(strs, ARRAY_STRING8 if small else ARRAY_STRING32)


def binary_array(items: object) -> Array:
    """Array of binaries (vbin8 when every value fits)."""
    bins = [bytes(b) for b in items]  # type: ignore[attr-defined]
    return Array(bins, ARRAY_BINARY8 if _fits8(bins) else ARRAY_BINARY32)


def long_array(items: object) -> Array:
    """Array of longs, e.g. Service Bus sequence numbers in management requests."""
    return Array([Long(v) for v in items], ARRAY_LONG)  # type: ignore[attr-defined]


def uuid_array(items: object) -> Array:
    """Array of UUIDs, e.g. Service Bus lock tokens in management requests."""
    return Array(list(items), ARRAY_UUID)  # type: ignore[call-overload]


def timestamp_array(items: object) -> Array:
    """Array of timestamps (datetime or ms ints)."""
    return Array(list(items), ARRAY_TIMESTAMP)  # type: ignore[call-overload]


__all__ = [
    "ARRAY_BINARY8",
    "ARRAY_BINARY32",
    "ARRAY_BOOLEAN",
    "ARRAY_BYTE",
    "ARRAY_CHAR",
    "ARRAY_DOUBLE",
    "ARRAY_FLOAT",
    "ARRAY_INT",
    "ARRAY_LIST",
    "ARRAY_LONG",
    "ARRAY_MAP",
    "ARRAY_NULL",
    "ARRAY_SHORT",
    "ARRAY_STRING8",
    "ARRAY_STRING32",
    "ARRAY_SYMBOL8",
    "ARRAY_SYMBOL32",
    "ARRAY_TIMESTAMP",
    "ARRAY_UBYTE",
    "ARRAY_UINT",
    "ARRAY_ULONG",
    "ARRAY_USHORT",
    "ARRAY_UUID",
    "Array",
    "Byte",
    "Char",
    "Decimal32",
    "Decimal64",
    "Decimal128",
    "Described",
    "Float",
    "Int",
    "Long",
    "Short",
    "Symbol",
    "Timestamp",
    "UByte",
    "UInt",
    "ULong",
    "UShort",
    "binary_array",
    "long_array",
    "string_array",
    "symbol_array",
    "timestamp_array",
    "uuid_array",
]
