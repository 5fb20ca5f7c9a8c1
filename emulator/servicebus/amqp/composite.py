"""How an AMQP 1.0 composite type (a described list) goes on and off the wire.

`register_composite` turns a dataclass whose fields are declared in spec order into a
composite: a descriptor and one wire type per field, so callers can pass plain Python values
(``handle=0``) and still get ``uint`` on the wire. The declarations themselves are in
`performatives`.

Encoding writes EVERY field (``null`` for ``None``): the SDK's pyamqp client decodes
composites positionally (e.g. ``Source(*frame[5])``) and breaks on elided trailing fields.
Decoding pads elided trailing fields with their defaults, as Proton and .NET elide them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar

from .codec import (
    COMPOUND_PLACEHOLDER,
    DecodeError,
    decode,
    encode,
    encode_annotations,
    encode_binary,
    encode_bool,
    encode_fields,
    encode_string,
    encode_symbol,
    encode_timestamp,
    encode_ubyte,
    encode_uint,
    encode_ulong,
    encode_ushort,
    finish_compound,
)
from .types import Array, Described, Symbol, ULong, symbol_array

Encoder = Callable[[Any, bytearray], None]


class Composite:
    """Base of every described-list type; subclasses are registered with ``register_composite``."""

    __slots__ = ()
    DESCRIPTOR: ClassVar[int]
    NAME: ClassVar[str]
    _spec: ClassVar[_Spec]

    def amqp_encode(self, out: bytearray) -> None:
        """Hook used by ``codec.encode`` so composites can be nested in any value."""
        encode_performative(self, out)


# ---------------------------------------------------------------- field wire types


def _encode_symbols(value: Any, out: bytearray) -> None:
    """``symbol multiple="true"``: a single symbol or an array of symbols."""
    if isinstance(value, str):
        encode_symbol(value, out)
    elif isinstance(value, Array):
        encode(value, out)
    else:
        encode(symbol_array(value), out)


def _to_symbol_array(value: Any) -> Any:
    """Normalize a decoded multiple-symbol field so ``x in field`` is a membership test."""
    if isinstance(value, Array):
        return value
    if isinstance(value, str):
        return Array([Symbol(value)], 0xA3)
    if isinstance(value, list):
        return symbol_array(value)
    return value


def _encode_composite(value: Any, out: bytearray) -> None:
    if isinstance(value, Composite):
        encode_performative(value, out)
    else:
        encode(value, out)  # a raw Described, e.g. an unknown outcome type


def _to_composite(value: Any) -> Any:
    """Turn a nested described list into its dataclass; unknown descriptors stay Described."""
    if type(value) is Described:
        cls = _REGISTRY.get(value[0])
        if cls is not None:
            return _from_list(cls, value[1])
    return value


def _encode_message_id(value: Any, out: bytearray) -> None:
    """message-id / correlation-id: plain ints are message-id-ulong, not long."""
    if type(value) is int:
        encode_ulong(value, out)
    else:
        encode(value, out)


# wire-type name -> (encoder, decode converter or None)
_KINDS: dict[str, tuple[Encoder, Callable[[Any], Any] | None]] = {
    "string": (encode_string, None),
    "symbol": (encode_symbol, None),
    "symbols": (_encode_symbols, _to_symbol_array),
    "bool": (encode_bool, None),
    "ubyte": (encode_ubyte, None),
    "ushort": (encode_ushort, None),
    "uint": (encode_uint, None),
    "ulong": (encode_ulong, None),
    "binary": (encode_binary, None),
    "timestamp": (encode_timestamp, None),
    "fields": (encode_fields, None),
    "annotations": (encode_annotations, None),
    "message_id": (_encode_message_id, None),
    "composite": (_encode_composite, _to_composite),
    "any": (encode, None),
}


@dataclass(frozen=True, slots=True)
class _Spec:
    names: tuple[str, ...]
    encoders: tuple[Encoder, ...]
    required: tuple[int, ...]  # indexes of mandatory fields
    defaults: tuple[Any, ...]
    fill: tuple[tuple[int, Any], ...]  # (index, default) for fields whose default is not null
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    prefix: bytes  # encoded "0x00 descriptor"
    getter: Callable[[Any], tuple[Any, ...]]


_REGISTRY: dict[object, type[Composite]] = {}


def register_composite(code: int, name: str, kinds: dict[str, str]) -> Callable[[type], type]:
    """Attach descriptor and per-field wire types; ``!`` marks a mandatory field."""

    def wrap(cls: type) -> type:
        fields = dataclasses.fields(cls)
        names = tuple(f.name for f in fields)
        if tuple(kinds) != names:
            raise TypeError(f"{cls.__name__}: kinds {tuple(kinds)} do not match {names}")
        defaults = tuple(f.default for f in fields)
        encoders, mandatory, converters = [], [], []
        for i, kind in enumerate(kinds.values()):
            enc, conv = _KINDS[kind.rstrip("!")]
            encoders.append(enc)
            mandatory.append(kind.endswith("!"))
            if conv is not None:
                converters.append((i, conv))
        prefix = bytearray(b"\x00")
        encode_ulong(code, prefix)
        cls.DESCRIPTOR = code  # type: ignore[attr-defined]
        cls.NAME = name  # type: ignore[attr-defined]
        cls._spec = _Spec(  # type: ignore[attr-defined]
            names=names,
            encoders=tuple(encoders),
            required=tuple(i for i, m in enumerate(mandatory) if m),
            defaults=defaults,
            fill=tuple((i, d) for i, d in enumerate(defaults) if d is not None),
            converters=tuple(converters),
            prefix=bytes(prefix),
            getter=_getter(names),
        )
        _REGISTRY[ULong(code)] = cls
        _REGISTRY[Symbol(name)] = cls
        return cls

    return wrap


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


# ---------------------------------------------------------------- encode / decode


def encode_performative(obj: Composite, out: bytearray) -> None:
    """Append ``obj`` as a described list with every field present (null for None)."""
    spec = obj._spec
    out += spec.prefix
    values = spec.getter(obj)
    if not values:
        out.append(0x45)
        return
    for i in spec.required:
        if values[i] is None:
            del out[len(out) - len(spec.prefix) :]
            raise ValueError(f"{type(obj).__name__}.{spec.names[i]} is mandatory")
    start = len(out)
    out += COMPOUND_PLACEHOLDER
    for value, enc in zip(values, spec.encoders, strict=True):
        if value is None:
            out.append(0x40)
        else:
            enc(value, out)
    finish_compound(out, start, len(values), 0xC0, 0xD0)


def encode_performative_bytes(obj: Composite) -> bytes:
    """Convenience wrapper returning the encoding of ``obj``."""
    out = bytearray()
    encode_performative(obj, out)
    return bytes(out)


def _from_list(cls: type[Composite], items: Any) -> Any:
    if type(items) is not list:
        raise DecodeError(f"{cls.__name__} body must be a list, got {type(items).__name__}")
    spec = cls._spec
    count = len(spec.names)
    n = len(items)
    if n < count:
        values = items + list(spec.defaults[n:])
    elif n > count:
        values = items[:count]  # fields from a later spec revision: ignore
    else:
        values = list(items)
    for i, default in spec.fill:
        if values[i] is None:  # explicit null means "the default"
            values[i] = default
    for i, conv in spec.converters:
        v = values[i]
        if v is not None:
            values[i] = conv(v)
    for i in spec.required:
        if values[i] is None:
            raise DecodeError(f"{cls.__name__}.{spec.names[i]} is mandatory but null")
    return cls(*values)


def decode_described(value: Described) -> Any:
    """Build the dataclass for a decoded described list (positional; elided fields padded)."""
    if type(value) is not Described:
        raise DecodeError(f"expected a described value, got {type(value).__name__}")
    cls = _REGISTRY.get(value[0])  # type: ignore[call-overload]
    if cls is None:
        raise DecodeError(f"unknown composite descriptor {value[0]!r}")
    return _from_list(cls, value[1])


def decode_performative(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """Decode the composite at ``offset``; return it and the offset after it."""
    value, end = decode(buf, offset)
    try:
        return decode_described(value), end
    except DecodeError as exc:
        raise DecodeError(str(exc), offset) from None


def composite_class(descriptor: object) -> type[Composite] | None:
    """The registered class for a ulong code or symbolic descriptor, if any."""
    return _REGISTRY.get(descriptor)
