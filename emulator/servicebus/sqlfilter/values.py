"""Value semantics: type classification, comparison, arithmetic and LIKE.

The docs say operators "follow C# implicit conversion semantics whenever possible". We model
that with a small kind lattice instead of Python's own rules, because Python disagrees with C#
in ways that change routing: ``True == 1`` is true in Python but does not even compile in C#,
``-7 // 2`` floors where C# truncates, ``-7 % 2`` takes the divisor's sign where C# takes the
dividend's. Every operation returns ``None`` for *unknown*: a missing property, a NULL, or an
operand combination C# would reject (evaluation never raises).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_TWO64 = 1 << 64

# Value kinds.
NULL = 0
BOOL = 1
INT = 2
FLOAT = 3
DEC = 4
STR = 5
DT = 6
TD = 7
UUID = 8
BYTES = 9
OTHER = 10

_NUMERIC = frozenset((INT, FLOAT, DEC))

_KIND_BY_TYPE: dict[type, int] = {
    type(None): NULL,
    bool: BOOL,
    int: INT,
    float: FLOAT,
    Decimal: DEC,
    str: STR,
    datetime: DT,
    timedelta: TD,
    uuid.UUID: UUID,
    bytes: BYTES,
}


def kind_of(value: object) -> int:
    """Classify a value; subclasses (AMQP ``Long(int)``, ``Symbol(str)``) map to their base."""
    t = type(value)
    k = _KIND_BY_TYPE.get(t)
    if k is not None:
        return k
    # bool before int: bool is an int subclass in Python but a distinct type in C#.
    if isinstance(value, bool):
        k = BOOL
    elif isinstance(value, int):
        k = INT
    elif isinstance(value, float):
        k = FLOAT
    elif isinstance(value, Decimal):
        k = DEC
    elif isinstance(value, str):
        k = STR
    elif isinstance(value, datetime):
        k = DT
    elif isinstance(value, timedelta):
        k = TD
    elif isinstance(value, uuid.UUID):
        k = UUID
    elif isinstance(value, bytes | bytearray | memoryview):
        k = BYTES
    else:
        k = OTHER
    _KIND_BY_TYPE[t] = k
    return k


def as_aware(d: datetime) -> datetime:
    # Naive datetimes are taken as UTC so that they never raise on comparison.
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d


def compare(op: str, a: object, b: object) -> bool | None:
    """Evaluate ``a op b`` for ``op`` in ``= <> < <= > >=``; None means unknown."""
    ka = kind_of(a)
    kb = kind_of(b)
    if ka == NULL or kb == NULL:
        return None
    if ka in _NUMERIC and kb in _NUMERIC:
        # C# has no implicit conversion between decimal and double.
        if (ka == DEC and kb == FLOAT) or (ka == FLOAT and kb == DEC):
            return None
        try:
            return _ORDERED[op](a, b)
        except ArithmeticError:  # Decimal signalling NaN
            return None
    if ka != kb:
        return None
    if ka == STR:
        return _ORDERED[op](str(a), str(b))  # ordinal, case-sensitive
    if ka == DT:
        return _ORDERED[op](as_aware(a), as_aware(b))  # type: ignore[arg-type]
    if ka == TD:
        return _ORDERED[op](a, b)
    if ka in (BOOL, UUID, BYTES):
        # Equality only: C# defines no ordering operators on bool or Guid.
        if op == "=":
            return bytes(a) == bytes(b) if ka == BYTES else a == b  # type: ignore[call-overload]
        if op == "<>":
            return bytes(a) != bytes(b) if ka == BYTES else a != b  # type: ignore[call-overload]
        return None
    return None


def _lt(a: object, b: object) -> bool:
    return a < b  # type: ignore[operator,no-any-return]


def _le(a: object, b: object) -> bool:
    return a <= b  # type: ignore[operator,no-any-return]


def _gt(a: object, b: object) -> bool:
    return a > b  # type: ignore[operator,no-any-return]


def _ge(a: object, b: object) -> bool:
    return a >= b  # type: ignore[operator,no-any-return]


def _eq(a: object, b: object) -> bool:
    return a == b


def _ne(a: object, b: object) -> bool:
    return a != b


_ORDERED = {"=": _eq, "<>": _ne, "<": _lt, "<=": _le, ">": _gt, ">=": _ge}


def wrap_int64(v: int) -> int:
    """Two's-complement wrap, as C# unchecked ``long`` arithmetic does."""
    if INT64_MIN <= v <= INT64_MAX:
        return v
    v &= _TWO64 - 1
    return v - _TWO64 if v > INT64_MAX else v


def _int_arith(op: str, a: int, b: int) -> int | None:
    if op == "+":
        return wrap_int64(a + b)
    if op == "-":
        return wrap_int64(a - b)
    if op == "*":
        return wrap_int64(a * b)
    if b == 0:
        return None  # DivideByZeroException in C#
    q = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        q = -q  # truncate toward zero
    if op == "/":
        return q if INT64_MIN <= q <= INT64_MAX else None  # MinValue / -1 overflows
    r = a - b * q  # remainder takes the dividend's sign
    return r


def _float_arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0.0:
            if a == 0.0 or math.isnan(a):
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1.0, b)
        return a / b
    # '%': IEEE remainder with the dividend's sign, like C#.
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan


def _dec_arith(op: str, a: Decimal, b: Decimal) -> Decimal | None:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            return None
        return a / b if op == "/" else a % b  # Decimal % keeps the dividend's sign
    except (InvalidOperation, ArithmeticError):
        return None


def arith(op: str, a: object, b: object) -> object:
    """Evaluate ``a op b`` for ``op`` in ``+ - * / %``; None means unknown."""
    ka = kind_of(a)
    kb = kind_of(b)
    if ka == NULL or kb == NULL:
        return None
    if op == "+" and (ka == STR or kb == STR):
        sa = to_cs_string(a)
        sb = to_cs_string(b)
        if sa is None or sb is None:
            return None
        return sa + sb  # C#: string + anything concatenates
    if ka in _NUMERIC and kb in _NUMERIC:
        if ka == INT and kb == INT:
            return _int_arith(op, int(a), int(b))  # type: ignore[call-overload]
        if ka == DEC or kb == DEC:
            if ka == FLOAT or kb == FLOAT:
                return None
            return _dec_arith(op, Decimal(a), Decimal(b))  # type: ignore[arg-type]
        return _float_arith(op, float(a), float(b))  # type: ignore[arg-type]
    try:
        if ka == DT and kb == DT and op == "-":
            return as_aware(a) - as_aware(b)  # type: ignore[arg-type]
        if ka == DT and kb == TD and op in ("+", "-"):
            return as_aware(a) + b if op == "+" else as_aware(a) - b  # type: ignore[arg-type,operator]
        if ka == TD and kb == DT and op == "+":
            return as_aware(b) + a  # type: ignore[arg-type,operator]
        if ka == TD and kb == TD and op in ("+", "-"):
            return a + b if op == "+" else a - b  # type: ignore[operator]
    except (OverflowError, ValueError):
        return None
    return None


def negate(op: str, a: object) -> object:
    """Unary ``+`` / ``-``; None means unknown."""
    k = kind_of(a)
    if k == INT:
        return wrap_int64(-int(a)) if op == "-" else int(a)  # type: ignore[call-overload]
    if k in (FLOAT, DEC, TD):
        try:
            return -a if op == "-" else a  # type: ignore[operator]
        except ArithmeticError:  # overflow, Decimal signalling NaN
            return None
    return None


def to_cs_string(value: object) -> str | None:
    """String form used by ``+`` concatenation, approximating C#'s ``ToString()``."""
    k = kind_of(value)
    if k == STR:
        return str(value)
    if k == BOOL:
        return "True" if value else "False"
    if k == INT:
        return str(int(value))  # type: ignore[call-overload]
    if k == FLOAT:
        f = float(value)  # type: ignore[arg-type]
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "-∞" if f < 0 else "∞"
        if f.is_integer() and abs(f) < 1e15:
            return str(int(f))
        return repr(f).replace("e", "E")
    if k in (DEC, UUID):
        return str(value)
    if k == DT:
        return as_aware(value).isoformat()  # type: ignore[arg-type]
    if k == TD:
        return str(value)
    return None


@lru_cache(maxsize=512)
def like_to_regex(pattern: str, escape: str | None) -> re.Pattern[str] | None:
    """Translate a LIKE pattern (``%`` any run, ``_`` one char); None when it is malformed."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if escape is not None and ch == escape:
            if i + 1 >= n:
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


NO_ESCAPE = object()


def like(value: object, pattern: object, escape: object = NO_ESCAPE) -> bool | None:
    """Evaluate ``value LIKE pattern [ESCAPE escape]``; case-sensitive, None means unknown.

    ``escape`` is ``NO_ESCAPE`` when the clause is absent; a NULL escape is unknown.
    """
    if kind_of(value) != STR or kind_of(pattern) != STR:
        return None
    if escape is not NO_ESCAPE and (kind_of(escape) != STR or len(str(escape)) != 1):
        return None
    rx = like_to_regex(str(pattern), None if escape is NO_ESCAPE else str(escape))
    if rx is None:
        return None
    return rx.fullmatch(str(value)) is not None


def id_to_str(value: object) -> object:
    """Canonical string form of an AMQP message id (string, uuid, ulong or binary).

    The service exposes MessageId / CorrelationId as strings, so a filter such as
    ``sys.MessageId = '6f1c...'`` must match a uuid-typed id. UUIDs use the lower-case
    hyphenated form, integers their decimal form, binary ids lower-case hex.
    """
    k = kind_of(value)
    if k in (STR, NULL):
        return value
    if k in (UUID, INT):
        return str(value)
    if k == BYTES:
        return bytes(value).hex()  # type: ignore[call-overload]
    return value
