"""AMQP type codec: exact encodings, round trips, SDK interop and malformed input."""

from __future__ import annotations

import contextlib
import math
import struct
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus._pyamqp import _decode as sdk_decode
from azure.servicebus._pyamqp import _encode as sdk_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.servicebus.amqp.codec import (
    MAX_ZERO_WIDTH_ARRAY,
    DecodeError,
    decode,
    encode,
    encode_value,
    skip,
)
from emulator.servicebus.amqp.types import (
    ARRAY_LONG,
    ARRAY_SYMBOL8,
    ARRAY_SYMBOL32,
    ARRAY_UUID,
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
    long_array,
    symbol_array,
    uuid_array,
)

U = uuid.UUID("12345678-1234-5678-1234-567812345678")
T = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
T_MS = 1714979289123


def sdk_decode_value(data: bytes) -> object:
    rest, value = sdk_decode._DECODE_BY_CONSTRUCTOR[data[0]](memoryview(data)[1:])
    assert len(rest) == 0
    return value


def sdk_encode_value(value: object) -> bytes:
    out = bytearray()
    sdk_encode.encode_value(out, value)
    return bytes(out)


# ------------------------------------------------------------------ exact encodings

EXACT = [
    (None, "40"),
    (True, "41"),
    (False, "42"),
    (0, "5500"),
    (-1, "55ff"),
    (127, "557f"),
    (128, "810000000000000080"),
    (-(2**63), "818000000000000000"),
    (UInt(0), "43"),
    (UInt(255), "52ff"),
    (UInt(256), "7000000100"),
    (ULong(0), "44"),
    (ULong(7), "5307"),
    (ULong(2**64 - 1), "80ffffffffffffffff"),
    (UByte(200), "50c8"),
    (UShort(0x1234), "601234"),
    (Byte(-2), "51fe"),
    (Short(-2), "61fffe"),
    (Int(-128), "5480"),
    (Int(1000), "71000003e8"),
    (Long(5), "5505"),
    (Float(1.5), "723fc00000"),
    (1.5, "823ff8000000000000"),
    (Char("A"), "7300000041"),
    (T, "83" + f"{T_MS:016x}"),
    (U, "98" + U.hex),
    (b"", "a000"),
    (b"ab", "a0026162"),
    ("", "a100"),
    ("hé", "a10368c3a9"),
    (Symbol("x-opt"), "a305782d6f7074"),
    ([], "45"),
    ([1, "a"], "c006025501a10161"),
    ({}, "c10100"),
    ({Symbol("k"): UInt(1)}, "c10602a3016b5201"),
    (Described(ULong(0x24), []), "00532445"),
    (Described(0x24, []), "00532445"),  # plain int descriptor is a ulong
    (Array([Symbol("a")], ARRAY_SYMBOL8), "e00401a30161"),
    (Array([Symbol("a")], ARRAY_SYMBOL32), "e00701b300000001" + "61"),
    (Array([], ARRAY_UUID), "e0020098"),
    (Decimal32(b"\x01\x02\x03\x04"), "7401020304"),
]


@pytest.mark.parametrize(("value", "hexstr"), EXACT, ids=[repr(v)[:40] for v, _ in EXACT])
def test_exact_encoding(value: object, hexstr: str) -> None:
    assert encode_value(value).hex() == hexstr
    decoded, end = decode(bytes.fromhex(hexstr))
    assert end == len(hexstr) // 2
    assert decoded == value
    assert skip(bytes.fromhex(hexstr)) == end


def test_encode_appends() -> None:
    out = bytearray(b"xy")
    encode(UInt(1), out)
    assert out == b"xy\x52\x01"


def test_large_variants() -> None:
    s = "x" * 300
    assert encode_value(s)[:5] == b"\xb1\x00\x00\x01\x2c"
    assert encode_value(Symbol(s))[:1] == b"\xb3"
    assert encode_value(s.encode())[:1] == b"\xa0"[:0] + b"\xb0"
    big = list(range(300))
    enc = encode_value(big)
    assert enc[0] == 0xD0
    assert struct.unpack(">II", enc[1:9])[1] == 300
    m = {str(i): i for i in range(200)}
    assert encode_value(m)[0] == 0xD1
    assert decode(encode_value(m))[0] == m
    # list8 boundary: body of 254 bytes fits, 255 does not
    assert encode_value([b"x" * 252])[0] == 0xC0  # a0 fc + 252 = 254 body
    assert encode_value([b"x" * 253])[0] == 0xD0


def test_types_preserved_on_decode() -> None:
    value = [UInt(1), ULong(2), Long(3), Int(4), Short(5), UShort(6), UByte(7), Byte(8)]
    decoded, _ = decode(encode_value(value))
    assert [type(v) for v in decoded] == [type(v) for v in value]
    assert type(decode(encode_value(5))[0]) is Long
    assert type(decode(encode_value(Symbol("s")))[0]) is Symbol
    assert type(decode(encode_value("s"))[0]) is str
    assert type(decode(encode_value(Float(0.5)))[0]) is Float
    assert type(decode(encode_value(0.5))[0]) is float


def test_plain_int_out_of_range() -> None:
    with pytest.raises(ValueError, match="signed 64-bit"):
        encode_value(2**63)
    with pytest.raises(ValueError, match="signed 64-bit"):
        encode_value(-(2**63) - 1)
    assert encode_value(ULong(2**63))[0] == 0x80


@pytest.mark.parametrize(
    "value",
    [UInt(-1), UInt(2**32), ULong(-1), ULong(2**64), UByte(256), UShort(-1), Byte(200)],
)
def test_typed_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_value(value)


def test_unencodable_type() -> None:
    with pytest.raises(TypeError):
        encode_value(object())
    with pytest.raises(ValueError):
        encode_value(Char("ab"))


def test_timestamps() -> None:
    naive = datetime(2024, 5, 6, 7, 8, 9, 123999)
    assert encode_value(naive) == encode_value(T)  # naive = UTC, sub-ms truncated
    before_epoch = datetime(1960, 1, 1, tzinfo=UTC)
    assert decode(encode_value(before_epoch))[0] == before_epoch
    decoded = decode(encode_value(T))[0]
    assert decoded.tzinfo is not None and decoded.utcoffset() == timedelta(0)
    # out of datetime's range: kept as a Timestamp so it round-trips
    huge = bytes.fromhex("837fffffffffffffff")
    value = decode(huge)[0]
    assert type(value) is Timestamp and value == 2**63 - 1
    assert encode_value(value) == huge
    # .NET DateTime.MaxValue (used as "never expires") is representable
    dotnet_max = 253402300799999
    assert decode(b"\x83" + dotnet_max.to_bytes(8, "big"))[0].year == 9999


def test_subclasses_use_parent_encoding() -> None:
    from collections import OrderedDict
    from enum import IntEnum

    class Color(IntEnum):
        RED = 1

    assert encode_value(Color.RED) == encode_value(1)
    assert encode_value(OrderedDict(a=1)) == encode_value({"a": 1})
    assert encode_value((1, 2)) == encode_value([1, 2])
    assert encode_value(bytearray(b"ab")) == encode_value(b"ab")
    assert encode_value(memoryview(b"ab")) == encode_value(b"ab")


# ------------------------------------------------------------------ arrays


def test_array_helpers_and_widening() -> None:
    syms = symbol_array(["a", "b"])
    assert syms.code == ARRAY_SYMBOL8
    assert encode_value(syms) == bytes.fromhex("e00602a301610162")
    long_sym = Array([Symbol("x" * 300)], ARRAY_SYMBOL8)
    enc = encode_value(long_sym)
    assert enc[0] == 0xF0 and enc[9] == 0xB3  # widened to sym32 (and array32)
    assert decode(enc)[0] == long_sym
    assert symbol_array(["x" * 300]).code == ARRAY_SYMBOL32
    longs = long_array([1, 2**40])
    enc = encode_value(longs)
    assert enc[3] == ARRAY_LONG
    assert decode(enc)[0] == [1, 2**40]
    uuids = uuid_array([U, U])
    assert decode(encode_value(uuids))[0] == [U, U]
    small = Array([1, 300], 0x52)  # smalluint widened to uint
    enc = encode_value(small)
    assert enc[3] == 0x70
    assert decode(enc)[0] == [1, 300]


def test_array_inferred_and_nested() -> None:
    value = Array([[1], [2, "x"]])
    decoded = decode(encode_value(value))[0]
    assert decoded == value and decoded.code == 0xD0
    maps = Array([{Symbol("a"): 1}, {}])
    assert decode(encode_value(maps))[0] == maps
    nested = Array([Array([1, 2]), Array([3])])
    assert decode(encode_value(nested))[0] == nested
    assert decode(encode_value(Array()))[0] == Array([], 0x40)
    described = Array([Described(Symbol("d"), 1), Described(Symbol("d"), 2)], 0x81, Symbol("d"))
    decoded = decode(encode_value(described))[0]
    assert decoded == described and decoded.descriptor == "d"
    with pytest.raises(ValueError):
        encode_value(Array([1, "x"], 0x81))


def test_array_equality_is_by_type_family() -> None:
    assert Array([Symbol("a")], 0xA3) == Array([Symbol("a")], 0xB3)
    assert Array([1], 0x70) != Array([1], 0x80)
    assert Array([1], 0x81) == [1]


# ------------------------------------------------------------------ round trips


def _leaf() -> st.SearchStrategy[object]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(0, 255).map(UByte),
        st.integers(0, 2**16 - 1).map(UShort),
        st.integers(0, 2**32 - 1).map(UInt),
        st.integers(0, 2**64 - 1).map(ULong),
        st.integers(-128, 127).map(Byte),
        st.integers(-(2**15), 2**15 - 1).map(Short),
        st.integers(-(2**31), 2**31 - 1).map(Int),
        st.integers(-(2**63), 2**63 - 1).map(Long),
        st.floats(allow_nan=False, width=32).map(Float),
        st.floats(allow_nan=False),
        st.characters(exclude_categories=["Cs"]).map(Char),
        st.text(),
        st.text(alphabet=st.characters(max_codepoint=127), max_size=300).map(Symbol),
        st.binary(max_size=300),
        st.uuids(),
        st.datetimes(
            min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
        ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
        st.binary(min_size=4, max_size=4).map(Decimal32),
        st.binary(min_size=8, max_size=8).map(Decimal64),
        st.binary(min_size=16, max_size=16).map(Decimal128),
    )


_hashable = st.one_of(
    st.text(max_size=20).map(Symbol),
    st.text(max_size=20),
    st.integers(0, 2**64 - 1).map(ULong),
    st.integers(-(2**63), 2**63 - 1),
)

_arrays = st.one_of(
    st.lists(st.text(max_size=300).map(Symbol), max_size=5).map(symbol_array),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5).map(long_array),
    st.lists(st.uuids(), max_size=5).map(uuid_array),
    st.lists(st.integers(0, 2**32 - 1), max_size=5).map(lambda xs: Array(xs, 0x52)),
)

_descriptors = st.one_of(
    st.integers(0, 2**64 - 1).map(ULong),
    st.text(max_size=20).map(Symbol),
    st.integers(0, 2**63 - 1),  # plain int descriptors are ulongs
)

values = st.recursive(
    st.one_of(_leaf(), _arrays),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(_hashable, children, max_size=6),
        st.builds(Described, _descriptors, children),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip(value: object) -> None:
    data = encode_value(value)
    decoded, end = decode(data)
    assert end == len(data)
    assert skip(data) == len(data)
    assert decoded == value
    assert encode_value(decoded) == data  # types preserved: byte-identical re-encoding
    # decoding at an offset inside a bigger buffer, from a memoryview
    padded = b"\xff\xff" + data + b"\x40"
    assert decode(memoryview(padded), 2) == (decoded, len(data) + 2)
    assert skip(padded, 2) == len(data) + 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_escapes_decode_error(data: bytes) -> None:
    for fn in (decode, skip):
        with contextlib.suppress(DecodeError):
            fn(data)


@settings(max_examples=200, deadline=None)
@given(values)
def test_truncation_raises_decode_error(value: object) -> None:
    data = encode_value(value)
    for cut in {0, 1, len(data) // 2, len(data) - 1}:
        if cut >= len(data):
            continue
        with pytest.raises(DecodeError):
            decode(data[:cut])
        with pytest.raises(DecodeError):
            skip(data[:cut])


# ------------------------------------------------------------------ SDK interop


def _sdk_plain(value: object) -> object:
    """What the SDK decoder gives for our value (strings/symbols come back as bytes)."""
    if isinstance(value, str) and not isinstance(value, Char):
        return value.encode()
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if isinstance(value, list):
        return [_sdk_plain(v) for v in value]
    if isinstance(value, dict):
        return {_sdk_plain(k): _sdk_plain(v) for k, v in value.items()}
    return value


SDK_VALUES = [
    None,
    True,
    False,
    0,
    -5,
    2**40,
    UInt(0),
    UInt(70000),
    ULong(3),
    UByte(9),
    UShort(600),
    Short(-3),
    Int(-100000),
    Byte(-1),
    1.25,
    Float(2.5),
    "héllo",
    "x" * 400,
    Symbol("com.microsoft:session-filter"),
    b"\x00\x01",
    b"y" * 300,
    U,
    T,
    [1, "a", [UInt(2)]],
    {Symbol("x-opt-sequence-number"): Long(5), "k": [None, True]},
    {str(i): i for i in range(100)},
    long_array([1, 2, 3]),
    symbol_array(["a", "bb"]),
    uuid_array([U]),
]


@pytest.mark.parametrize("value", SDK_VALUES, ids=[repr(v)[:30] for v in SDK_VALUES])
def test_sdk_decodes_our_encoding(value: object) -> None:
    assert sdk_decode_value(encode_value(value)) == _sdk_plain(value)


SDK_TYPED = [
    ({"TYPE": "UINT", "VALUE": 5}, UInt(5)),
    ({"TYPE": "UINT", "VALUE": 0}, UInt(0)),
    ({"TYPE": "ULONG", "VALUE": 2**60}, ULong(2**60)),
    ({"TYPE": "LONG", "VALUE": -7}, Long(-7)),
    ({"TYPE": "INT", "VALUE": 70000}, Int(70000)),
    ({"TYPE": "USHORT", "VALUE": 65535}, UShort(65535)),
    ({"TYPE": "UBYTE", "VALUE": 1}, UByte(1)),
    ({"TYPE": "BYTE", "VALUE": -1}, Byte(-1)),
    ({"TYPE": "SHORT", "VALUE": -2}, Short(-2)),
    ({"TYPE": "FLOAT", "VALUE": 0.5}, Float(0.5)),
    ({"TYPE": "DOUBLE", "VALUE": 0.25}, 0.25),
    ({"TYPE": "BOOL", "VALUE": True}, True),
    ({"TYPE": "TIMESTAMP", "VALUE": T_MS}, T),
    ({"TYPE": "UUID", "VALUE": U}, U),
    ({"TYPE": "BINARY", "VALUE": b"b" * 300}, b"b" * 300),
    ({"TYPE": "STRING", "VALUE": "s"}, "s"),
    ({"TYPE": "SYMBOL", "VALUE": b"sym"}, Symbol("sym")),
    ({"TYPE": "LIST", "VALUE": []}, []),
    (
        {"TYPE": "ARRAY", "VALUE": [{"TYPE": "SYMBOL", "VALUE": b"a"}]},
        Array([Symbol("a")], ARRAY_SYMBOL32),
    ),
    (
        {"TYPE": "ARRAY", "VALUE": [{"TYPE": "LONG", "VALUE": 1}, {"TYPE": "LONG", "VALUE": 2}]},
        long_array([1, 2]),
    ),
    ({"TYPE": "ARRAY", "VALUE": [U]}, uuid_array([U])),
    ({"TYPE": "MAP", "VALUE": [({"TYPE": "SYMBOL", "VALUE": b"k"}, 1)]}, {Symbol("k"): 1}),
    (
        {
            "TYPE": "DESCRIBED",
            "VALUE": ({"TYPE": "ULONG", "VALUE": 0x24}, {"TYPE": "LIST", "VALUE": []}),
        },
        Described(ULong(0x24), []),
    ),
]


@pytest.mark.parametrize(
    ("sdk_value", "expected"), SDK_TYPED, ids=[e[0]["TYPE"] for e in SDK_TYPED]
)
def test_we_decode_sdk_encoding(sdk_value: object, expected: object) -> None:
    data = sdk_encode_value(sdk_value)
    decoded, end = decode(data)
    assert end == len(data)
    assert decoded == expected
    assert type(decoded) is type(expected)


def test_sdk_plain_values_decode() -> None:
    value = {"a": [1, 2.5, None, "x"], "b": {"c": b"d"}}
    decoded, _ = decode(sdk_encode_value(value))
    # The SDK encodes plain ints as int (not long); we keep that type.
    assert decoded == value
    assert type(decoded["a"][0]) is Int


def test_sdk_decimal128_bytes_preserved() -> None:
    from decimal import Decimal

    data = sdk_encode_value(Decimal("1.5"))
    decoded, _ = decode(data)
    assert type(decoded) is Decimal128
    assert encode_value(decoded) == data


# ------------------------------------------------------------------ malformed input

MALFORMED = [
    ("", "truncated"),
    ("ff", "unknown AMQP constructor 0xff"),
    ("52", "truncated"),
    ("70000000", "truncated"),
    ("a005616263", "truncated binary"),
    ("b1000000ff61", "truncated string"),
    ("a102c328", "invalid UTF-8"),
    ("a3", "truncated"),
    ("98" + "00" * 15, "truncated uuid"),
    ("5602", "invalid boolean"),
    ("c0", "truncated"),
    ("c00502", "truncated"),  # size beyond buffer
    ("c00003", "too small"),
    ("c0020340", "exceeds its size"),  # count 3 in 1 byte
    ("c0020240", "count 2 exceeds its size"),
    ("c004015501" + "40", "do not match the declared size"),
    ("c00502550140" + "40", "do not match"),
    ("c0030240ff", "unknown AMQP constructor"),
    ("d0000000020000000140", "too small"),
    ("c103014040", "odd element count"),
    ("c105024040" + "5501", "do not match"),
    ("c103024540", "unhashable"),
    ("e0", "truncated"),
    ("e00301", "truncated"),
    ("e00401700000", "truncated array element"),
    ("e0050255010203", "do not match"),
    ("f0000000050fffffff40", f"zero-width array count {0x0FFFFFFF} too large"),
    ("e00305a000", "array count 5 exceeds its size"),
    ("e00201005301" + "40", "array element constructor exceeds"),
    ("e005010053010000", "nested described"),
    ("00", "truncated"),
    ("0053", "truncated"),
    ("005301", "truncated"),
    ("73ffffffff", "invalid char"),
]


@pytest.mark.parametrize(("hexstr", "message"), MALFORMED)
def test_malformed_raises_decode_error(hexstr: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        decode(bytes.fromhex(hexstr))
    assert isinstance(info.value, ValueError)
    assert info.value.offset is not None


def test_decode_error_offset_points_at_bad_value() -> None:
    data = bytes.fromhex("c0050355015501ff")  # list of 3: 1, 1, unknown constructor
    with pytest.raises(DecodeError) as info:
        decode(b"\x40\x40" + data, 2)
    assert info.value.offset == 2 + 7


def test_deep_nesting_is_a_decode_error() -> None:
    depth = 5000
    data = b"\xd0\x00\x00\x00\x05\x00\x00\x00\x01" * depth + b"\x40"
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode(data)
    described = b"\x00" * depth + b"\x40\x40"
    with pytest.raises(DecodeError):
        decode(described)
    with pytest.raises(DecodeError):
        skip(described)


def test_zero_width_array_within_limit() -> None:
    data = bytes.fromhex("f0000000050000000a43")  # ten uint0 elements
    value, end = decode(data)
    assert value == [0] * 10 and value.code == 0x43 and end == len(data)
    too_many = b"\xf0" + struct.pack(">II", 5, MAX_ZERO_WIDTH_ARRAY + 1) + b"\x40"
    with pytest.raises(DecodeError):
        decode(too_many)


SKIP_MALFORMED = [
    ("", "truncated"),
    ("ee", "unknown AMQP constructor 0xee"),
    ("a005", "truncated"),
    ("c0ff", "truncated"),
    ("d0ffffffff", "truncated"),
    ("81000000", "truncated"),
    ("0053", "truncated"),
]


@pytest.mark.parametrize(("hexstr", "message"), SKIP_MALFORMED)
def test_skip_malformed(hexstr: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        skip(bytes.fromhex(hexstr))


def test_skip_does_not_validate_compound_contents() -> None:
    data = bytes.fromhex("c003ffffff")  # list whose elements are garbage
    assert skip(data) == len(data)
    with pytest.raises(DecodeError):
        decode(data)


def test_float_special_values() -> None:
    inf = decode(encode_value(float("inf")))[0]
    assert inf == math.inf
    assert math.isnan(decode(encode_value(float("nan")))[0])
    with pytest.raises(ValueError):
        encode_value(Float(1e300))
