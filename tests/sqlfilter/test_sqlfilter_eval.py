"""Evaluation: operator type rules, three-valued logic, LIKE / IN / IS NULL / EXISTS, functions,
system properties. ``tv`` reports the three-valued result via ``matches(e)`` / ``matches(NOT (e))``.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from emulator.servicebus.sqlfilter import (
    FALSE_FILTER,
    TRUE_FILTER,
    Filter,
    MessageView,
    compile_filter,
)


class Long(int):
    """Stands in for the AMQP codec's typed-int subclass."""


class Symbol(str):
    """Stands in for the AMQP codec's symbol subclass."""


def tv(expression: str, user: dict[str, object] | None = None, **system: object) -> str:
    msg = MessageView(system=dict(system), user=dict(user or {}))
    pos = compile_filter(expression).matches(msg)
    neg = compile_filter(f"NOT ({expression})").matches(msg)
    assert not (pos and neg)
    return "T" if pos else "F" if neg else "U"


def match(expression: str, user: dict[str, object] | None = None, **system: object) -> bool:
    return compile_filter(expression).matches(MessageView(dict(system), dict(user or {})))


# ----------------------------------------------------------------- seed rules / basics
@pytest.mark.parametrize(
    "job", ["video.analysis", "chat.suggest", "content.suggest", "content.analyze"]
)
def test_seed_job_rules(job: str) -> None:
    f = compile_filter(f"jobType = '{job}'")
    assert f.matches(MessageView(user={"jobType": job}))
    assert not f.matches(MessageView(user={"jobType": job.upper()}))
    assert not f.matches(MessageView(user={"jobType": "other"}))
    assert not f.matches(MessageView())
    assert f.matches(MessageView(user={"jobType": Symbol(job)}))


def test_true_false_filters() -> None:
    assert isinstance(TRUE_FILTER, Filter) and isinstance(FALSE_FILTER, Filter)
    assert TRUE_FILTER.matches(MessageView()) and not FALSE_FILTER.matches(MessageView())
    assert compile_filter("1=1").matches(MessageView())
    assert not compile_filter("1=0").matches(MessageView())


def test_compiled_filter_keeps_expression() -> None:
    f = compile_filter("a = 1")
    assert f.expression == "a = 1" and "a = 1" in repr(f)


# ----------------------------------------------------------------- three-valued logic
def test_missing_user_property_is_unknown() -> None:
    assert tv("a = 1") == "U"
    assert tv("a <> 1") == "U"
    assert tv("a > 1") == "U"
    assert tv("a + 1 = 2") == "U"
    assert tv("-a = 2") == "U"
    assert tv("a LIKE 'x'") == "U"
    assert tv("'x' LIKE a") == "U"
    assert tv("'x' LIKE 'x' ESCAPE a") == "U"
    assert tv("a IN (1, 2)") == "U"
    assert tv("a NOT IN (1, 2)") == "U"


def test_null_value_is_unknown_in_comparisons() -> None:
    assert tv("a = 1", {"a": None}) == "U"
    assert tv("a = NULL", {"a": None}) == "U"
    assert tv("NULL = NULL") == "U"
    assert tv("1 = NULL") == "U"


# Documented AND / OR truth tables (T, F, U), driven with a = 1 (T), a = 2 (F), missing (U).
_PRED = {"T": "x = 1", "F": "x = 2", "U": "missing = 1"}
_AND = {
    ("T", "T"): "T", ("T", "F"): "F", ("T", "U"): "U",
    ("F", "T"): "F", ("F", "F"): "F", ("F", "U"): "F",
    ("U", "T"): "U", ("U", "F"): "F", ("U", "U"): "U",
}  # fmt: skip
_OR = {
    ("T", "T"): "T", ("T", "F"): "T", ("T", "U"): "T",
    ("F", "T"): "T", ("F", "F"): "F", ("F", "U"): "U",
    ("U", "T"): "T", ("U", "F"): "U", ("U", "U"): "U",
}  # fmt: skip


@pytest.mark.parametrize(("pair", "expected"), list(_AND.items()))
def test_and_truth_table(pair: tuple[str, str], expected: str) -> None:
    assert tv(f"({_PRED[pair[0]]}) AND ({_PRED[pair[1]]})", {"x": 1}) == expected


@pytest.mark.parametrize(("pair", "expected"), list(_OR.items()))
def test_or_truth_table(pair: tuple[str, str], expected: str) -> None:
    assert tv(f"({_PRED[pair[0]]}) OR ({_PRED[pair[1]]})", {"x": 1}) == expected


def test_not_truth_table() -> None:
    assert tv("NOT x = 1", {"x": 1}) == "F"
    assert tv("NOT x = 2", {"x": 1}) == "T"
    assert tv("NOT missing = 1", {"x": 1}) == "U"
    assert tv("NOT NOT x = 1", {"x": 1}) == "T"


def test_constant_logic_folds() -> None:
    assert tv("1 = 1 AND NULL = 1") == "U"
    assert tv("1 = 0 AND NULL = 1") == "F"
    assert tv("1 = 1 OR NULL = 1") == "T"


# ----------------------------------------------------------------- comparison type rules
@pytest.mark.parametrize(
    ("expression", "user", "expected"),
    [
        ("a = 1", {"a": 1}, "T"),
        ("a = 1", {"a": Long(1)}, "T"),
        ("a = 1", {"a": 1.0}, "T"),  # long -> double promotion
        ("a = 1.5", {"a": 1}, "F"),
        ("a < 1.5", {"a": 1}, "T"),
        ("a > 2.08", {"a": 3}, "T"),
        ("a = 1", {"a": Decimal("1.0")}, "T"),  # long -> decimal
        ("a = 1.0", {"a": Decimal("1.0")}, "U"),  # no implicit decimal <-> double in C#
        ("a = 'x'", {"a": "x"}, "T"),
        ("a = 'x'", {"a": "X"}, "F"),  # ordinal, case-sensitive
        ("a < 'b'", {"a": "a"}, "T"),
        ("a >= 'b'", {"a": "a"}, "F"),
        ("a = '1'", {"a": 1}, "U"),  # no implicit string <-> number
        ("a = 1", {"a": "1"}, "U"),
        ("a = TRUE", {"a": True}, "T"),
        ("a <> FALSE", {"a": True}, "T"),
        ("a = 1", {"a": True}, "U"),  # bool is not a number
        ("a = TRUE", {"a": 1}, "U"),
        ("a > FALSE", {"a": True}, "U"),  # no ordering on bool
        ("a = b", {"a": True, "b": True}, "T"),
        ("a = b", {"a": b"\x01", "b": b"\x01"}, "T"),
        ("a < b", {"a": b"\x01", "b": b"\x02"}, "U"),
        ("a = 'x'", {"a": object()}, "U"),
        ("a = a", {"a": float("nan")}, "F"),
        ("a <> a", {"a": float("nan")}, "T"),
        ("a != 2", {"a": 1}, "T"),
        ("a <> 1", {"a": 1}, "F"),
        ("a <= 1", {"a": 1}, "T"),
        ("a >= 2", {"a": 1}, "F"),
    ],
)
def test_comparison_type_rules(expression: str, user: dict[str, object], expected: str) -> None:
    assert tv(expression, user) == expected


def test_constant_on_the_left_is_mirrored() -> None:
    assert tv("1 < a", {"a": 2}) == "T"
    assert tv("1 >= a", {"a": 2}) == "F"
    assert tv("'x' = a", {"a": "x"}) == "T"


def test_datetime_uuid_timedelta_comparisons() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(hours=1)
    u = uuid.uuid4()
    assert tv("a < b", {"a": t0, "b": t1}) == "T"
    assert tv("a = b", {"a": t0, "b": t0.replace(tzinfo=None)}) == "T"  # naive taken as UTC
    assert tv("a = 'x'", {"a": t0}) == "U"
    assert tv("a = b", {"a": u, "b": uuid.UUID(str(u))}) == "T"
    assert tv("a < b", {"a": u, "b": u}) == "U"
    assert tv("b - a = c", {"a": t0, "b": t1, "c": timedelta(hours=1)}) == "T"
    assert tv("a + c = b", {"a": t0, "b": t1, "c": timedelta(hours=1)}) == "T"
    assert tv("c + a = b", {"a": t0, "b": t1, "c": timedelta(hours=1)}) == "T"
    assert tv("b - c = a", {"a": t0, "b": t1, "c": timedelta(hours=1)}) == "T"
    assert tv("c + c > c", {"c": timedelta(hours=1)}) == "T"
    assert tv("a + 1 = a", {"a": t0}) == "U"


def test_parameters_bind_typed_values() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    f = compile_filter("DateTimeMp < @dtParam", parameters={"@dtParam": t0})
    assert f.matches(MessageView(user={"DateTimeMp": t0 - timedelta(days=1)}))
    f = compile_filter(
        "(DateTimeMp2-DateTimeMp1) <= @timespan", parameters={"@timespan": timedelta(hours=2)}
    )
    assert f.matches(MessageView(user={"DateTimeMp1": t0, "DateTimeMp2": t0 + timedelta(hours=1)}))
    f = compile_filter("source = @stringParam", parameters={"@stringParam": "orders"})
    assert f.matches(MessageView(user={"source": "orders"}))


# ----------------------------------------------------------------- arithmetic type rules
@pytest.mark.parametrize(
    ("expression", "user"),
    [
        ("a + 2 = 5", {"a": 3}),
        ("a - 5 = -2", {"a": 3}),
        ("a * 2 = 6", {"a": 3}),
        ("7 / 2 = 3", {}),  # long / long is integer division
        ("-7 / 2 = -3", {}),  # truncates toward zero
        ("7 / -2 = -3", {}),
        ("-7 % 2 = -1", {}),  # remainder takes the dividend's sign
        ("7 % -2 = 1", {}),
        ("7.0 / 2 = 3.5", {}),  # double promotion
        ("a / 2 = 3.5", {"a": 7.0}),
        ("-7.5 % 2 = -1.5", {}),
        ("a / 0.0 > 1000000", {"a": 1}),  # +infinity
        ("a / 0.0 < -1000000", {"a": -1}),
        ("9223372036854775807 + 1 = -9223372036854775808", {}),  # unchecked wrap
        ("-(-9223372036854775808) = -9223372036854775808", {}),
        ("a * 2 = b", {"a": Decimal("1.25"), "b": Decimal("2.5")}),  # decimal * long
        ("'a' + 'b' = 'ab'", {}),
        ("'n' + 1 = 'n1'", {}),  # C# string concatenation
        ("1 + 'n' = '1n'", {}),
        ("'b' + TRUE = 'bTrue'", {}),
        ("'f' + 1.5 = 'f1.5'", {}),
        ("'f' + 2.0 = 'f2'", {}),
        ("- -a = 3", {"a": 3}),
        ("+a = 3", {"a": 3}),
        ("2 + 3 * 4 = 14", {}),
        ("(2 + 3) * 4 = 20", {}),
        ("10 - 2 - 3 = 5", {}),
    ],
)
def test_arithmetic_true(expression: str, user: dict[str, object]) -> None:
    assert tv(expression, user) == "T"


@pytest.mark.parametrize(
    ("expression", "user"),
    [
        ("a / 0 = 1", {"a": 1}),  # DivideByZeroException -> unknown
        ("a % 0 = 1", {"a": 1}),
        ("-9223372036854775808 / -1 = 1", {}),  # overflow -> unknown
        ("a + 1 = 2", {"a": True}),  # no arithmetic on bool
        ("-a = 1", {"a": "x"}),
        ("-a = 1", {"a": True}),
        ("a - 'x' = 1", {"a": "y"}),
        ("a * 1.0 = 1", {"a": Decimal(1)}),  # decimal with double
        ("a + 1 = 1", {"a": b"x"}),
        ("a + 'x' = 'x'", {"a": b"x"}),
        ("a + 'x' = 'x'", {"a": None}),
        ("a / b = 1", {"a": Decimal(1), "b": Decimal(0)}),
    ],
)
def test_arithmetic_unknown(expression: str, user: dict[str, object]) -> None:
    assert tv(expression, user) == "U"


def test_float_nan_results() -> None:
    assert tv("a / 0.0 = a / 0.0", {"a": 0}) == "F"  # NaN
    assert tv("a % 0.0 = 1", {"a": 1.0}) == "F"  # NaN
    assert math.isnan(float("nan"))


# ----------------------------------------------------------------- LIKE
@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("'%bus%'", "servicebus topic", "T"),
        ("'%bus%'", "queue", "F"),
        ("'abc-%'", "abc-123", "T"),
        ("'abc-%'", "abc", "F"),
        ("'a_c'", "abc", "T"),
        ("'a_c'", "abbc", "F"),
        ("'a%'", "a", "T"),
        ("'%'", "", "T"),
        ("'_'", "", "F"),
        ("'A%'", "abc", "F"),  # case-sensitive
        ("'a.c'", "abc", "F"),  # regex metacharacters are literal
        ("'a[b]c'", "a[b]c", "T"),
        ("'a*'", "aaa", "F"),
        ("'line%'", "line1\nline2", "T"),
        ("'SuperMan%'", "SuperMan Returns", "T"),
    ],
)
def test_like(pattern: str, value: str, expected: str) -> None:
    assert tv(f"a LIKE {pattern}", {"a": value}) == expected


def test_like_escape() -> None:
    assert tv("a LIKE 'ABC\\%' ESCAPE '\\'", {"a": "ABC%"}) == "T"
    assert tv("a LIKE 'ABC\\%' ESCAPE '\\'", {"a": "ABCD"}) == "F"
    assert tv("a LIKE 'a!_b' ESCAPE '!'", {"a": "a_b"}) == "T"
    assert tv("a LIKE 'a!_b' ESCAPE '!'", {"a": "axb"}) == "F"
    assert tv("a LIKE 'a!!b' ESCAPE '!'", {"a": "a!b"}) == "T"
    assert tv("a LIKE 'a%%b' ESCAPE '%'", {"a": "a%b"}) == "T"
    assert tv("a LIKE 'a\\%'", {"a": "a\\xyz"}) == "T"  # no ESCAPE: backslash is literal


def test_not_like() -> None:
    assert tv("a NOT LIKE 'x%'", {"a": "xyz"}) == "F"
    assert tv("a NOT LIKE 'x%'", {"a": "abc"}) == "T"
    assert tv("a NOT LIKE 'x%'", {}) == "U"


def test_like_dynamic_pattern_and_escape() -> None:
    assert tv("a LIKE p", {"a": "x1", "p": "x_"}) == "T"
    assert tv("a LIKE p + '%'", {"a": "x123", "p": "x"}) == "T"
    assert tv("a LIKE p ESCAPE e", {"a": "x%", "p": "x!%", "e": "!"}) == "T"
    assert tv("a LIKE p ESCAPE e", {"a": "x%", "p": "x!%", "e": "!!"}) == "U"
    assert tv("a LIKE p ESCAPE e", {"a": "x%", "p": "x!", "e": "!"}) == "U"
    assert tv("a LIKE p", {"a": "x", "p": 5}) == "U"


def test_like_non_string_operand_is_unknown() -> None:
    assert tv("a LIKE '1%'", {"a": 12}) == "U"
    assert tv("a LIKE 'T%'", {"a": True}) == "U"
    assert tv("'abc' LIKE 'a%'") == "T"


# ----------------------------------------------------------------- IN
def test_in_list() -> None:
    assert tv("a IN ('x', 'y')", {"a": "y"}) == "T"
    assert tv("a IN ('x', 'y')", {"a": "z"}) == "F"
    assert tv("a IN ('x', 'y')", {"a": Symbol("x")}) == "T"
    assert tv("a NOT IN ('x', 'y')", {"a": "z"}) == "T"
    assert tv("a NOT IN ('x', 'y')", {"a": "x"}) == "F"
    assert tv("a IN (1, 2.5, 'x')", {"a": 2.5}) == "T"
    assert tv("a IN (1, 2)", {"a": Long(2)}) == "T"
    assert tv("a IN (1, 2)", {"a": True}) == "F"  # type mismatch never equals
    assert tv("a IN ('1')", {"a": 1}) == "F"
    assert tv("a IN (NULL, 1)", {"a": 1}) == "T"
    assert tv("a IN (NULL)", {"a": 1}) == "F"  # only an unknown left side is unknown
    assert tv("a IN (b, c)", {"a": 1, "c": 1}) == "T"
    assert tv("a IN (b, c)", {"a": 1}) == "F"
    assert tv("a IN (b + 1)", {"a": 3, "b": 2}) == "T"
    assert tv("1 IN (1, 2)") == "T"
    assert tv("NULL IN (1, 2)") == "U"


# ----------------------------------------------------------------- IS NULL / EXISTS
def test_is_null() -> None:
    assert tv("a IS NULL") == "T"  # missing
    assert tv("a IS NULL", {"a": None}) == "T"  # present with null
    assert tv("a IS NULL", {"a": 0}) == "F"
    assert tv("a IS NOT NULL", {"a": ""}) == "T"
    assert tv("a IS NOT NULL") == "F"
    assert tv("sys.SessionId IS NULL") == "T"
    assert tv("sys.SessionId IS NOT NULL", SessionId="s") == "T"
    assert tv("user.[a b] IS NULL", {"a b": 1}) == "F"


def test_exists() -> None:
    assert tv("EXISTS(a)", {"a": 1}) == "T"
    assert tv("EXISTS(a)", {"a": None}) == "T"  # exists even when null
    assert tv("EXISTS(a)") == "F"
    assert tv("EXISTS(A)", {"a": 1}) == "T"  # names are case-insensitive
    assert tv("NOT EXISTS(a)") == "T"
    assert tv("EXISTS(sys.Label)", Label="x") == "T"
    assert tv("EXISTS(sys.Label)") == "F"


# ----------------------------------------------------------------- names
def test_user_property_names_are_case_insensitive() -> None:
    assert tv("JOBTYPE = 'x'", {"jobType": "x"}) == "T"
    assert tv("user.jobtype = 'x'", {"JobType": "x"}) == "T"
    assert tv("jobType = 'x'", {"jobType": "x", "JOBTYPE": "y"}) == "T"  # exact name wins


def test_delimited_and_quoted_names() -> None:
    assert tv("[Property With Space] = 1", {"Property With Space": 1}) == "T"
    assert tv("[HR-EmployeeID] = 'e1'", {"HR-EmployeeID": "e1"}) == "T"
    assert tv('"Contoso & Northwind" = 1', {"Contoso & Northwind": 1}) == "T"
    assert tv("[a]]b] = 1", {"a]b": 1}) == "T"
    assert tv("[AND] = 1", {"AND": 1}) == "T"
    assert tv("[sys.Label] = 1", {"sys.Label": 1}) == "T"  # a user property with a dot


def test_user_scope_is_default() -> None:
    assert tv("user.color = 'red'", {"color": "red"}) == "T"
    assert tv("color = 'red'", {"color": "red"}) == "T"
    # A user property named like a system property is not the system property.
    assert tv("Label = 'x'", {"Label": "x"}, Label="y") == "T"
    assert tv("sys.Label = 'x'", {"Label": "x"}, Label="y") == "F"


# ----------------------------------------------------------------- system properties
def test_system_properties() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    sysvals: dict[str, object] = {
        "MessageId": "m1",
        "CorrelationId": "c1",
        "To": "store5",
        "ReplyTo": "r",
        "Label": "bus stop",
        "SessionId": "s1",
        "ReplyToSessionId": "rs",
        "ContentType": "application/json",
        "SequenceNumber": Long(42),
        "EnqueuedTimeUtc": t0,
        "DeliveryCount": 2,
        "Size": 100,
        "TimeToLive": 60.0,
        "PartitionKey": "pk",
    }
    assert tv("sys.Label LIKE '%bus%'", **sysvals) == "T"
    assert tv("sys.subject = 'bus stop'", **sysvals) == "T"
    assert tv("sys.To IN ('Store5', 'store5')", **sysvals) == "T"
    assert tv("sys.SequenceNumber > 41 AND sys.DeliveryCount = 2", **sysvals) == "T"
    assert compile_filter("sys.EnqueuedTimeUtc = @t", parameters={"t": t0}).matches(
        MessageView(system=sysvals)
    )
    assert tv("sys.TimeToLive >= 60", **sysvals) == "T"
    assert tv("sys.contenttype = 'application/json'", **sysvals) == "T"
    assert tv("sys.Size < 1000 AND sys.PartitionKey = 'pk'", **sysvals) == "T"
    assert tv("sys.ReplyTo = 'r' AND sys.ReplyToSessionId = 'rs'", **sysvals) == "T"
    assert tv("sys.MessageId = 'm1' AND sys.CorrelationId = 'c1'", **sysvals) == "T"
    assert tv("sys.SessionId = 's1'", **sysvals) == "T"
    # A valid but absent system property is NULL: unknown in comparisons.
    assert tv("sys.ViaPartitionKey = 'x'", **sysvals) == "U"
    assert tv("sys.Label = 'x'") == "U"


def test_timedelta_ttl_is_read_as_seconds() -> None:
    assert tv("sys.TimeToLive = 90", TimeToLive=timedelta(seconds=90)) == "T"


def test_ids_of_other_amqp_types_compare_as_strings() -> None:
    u = uuid.UUID("6f1c0c1e-2b7a-4f5e-9d3a-0123456789ab")
    assert tv(f"sys.MessageId = '{u}'", MessageId=u) == "T"
    assert tv(f"sys.CorrelationId = '{str(u).upper()}'", CorrelationId=u) == "F"
    assert tv("sys.MessageId = '12345'", MessageId=Long(12345)) == "T"
    assert tv("sys.MessageId = 'c0ffee'", MessageId=b"\xc0\xff\xee") == "T"
    assert tv("sys.MessageId LIKE '6f1c%'", MessageId=u) == "T"
    assert tv("sys.Label = 'x'", Label=Symbol("x")) == "T"


# ----------------------------------------------------------------- functions
def test_property_function() -> None:
    assert tv("property('a') = 1", {"a": 1}) == "T"
    assert tv("p('A') = 1", {"a": 1}) == "T"
    assert tv("p('my prop') = 1", {"my prop": 1}) == "T"
    assert tv("p(name) = 1", {"name": "a", "a": 1}) == "T"
    assert tv("p(name) = 1", {"name": "A", "a": 1}) == "T"
    assert tv("p(name) = 1", {"name": 5, "a": 1}) == "U"
    assert tv("p('pre' + suffix) = 1", {"suffix": "x", "prex": 1}) == "T"
    assert tv("p('missing') = 1") == "U"
    assert tv("p('sys.Label') = 'x'", Label="x") == "U"  # user properties only


def test_newid() -> None:
    assert tv("newid() = newid()") == "F"
    assert tv("newid() <> newid()") == "T"
    assert tv("newid() = 'x'") == "U"  # a Guid is not a string


# ----------------------------------------------------------------- robustness
class _Exploding(dict[str, object]):
    def get(self, *_a: object, **_k: object) -> object:
        raise RuntimeError("boom")


def test_a_broken_view_reaches_the_caller() -> None:
    """Nothing is swallowed: the broker's rule runner (core.rules) reports such errors."""
    f = compile_filter("a = 1 OR sys.Label = 'x' OR a LIKE 'x' OR EXISTS(b)")
    with pytest.raises(RuntimeError, match="boom"):
        f.matches(MessageView(system=_Exploding(), user=_Exploding()))
    with pytest.raises(AttributeError):
        f.matches(None)  # type: ignore[arg-type]


def test_weird_values_never_raise() -> None:
    weird: list[object] = [
        object(),
        [1],
        {"a": 1},
        float("inf"),
        float("-inf"),
        float("nan"),
        Decimal("NaN"),
        Decimal("sNaN"),
        datetime.max.replace(tzinfo=UTC),
        datetime.min,
        timedelta.max,
        b"",
        bytearray(b"x"),
        memoryview(b"x"),
        2**80,
        -(2**80),
        "",
    ]
    exprs = [
        "a = b",
        "a < b",
        "a + b = a",
        "a - b > a",
        "a * b = 1",
        "a / b = 1",
        "a % b = 1",
        "-a = b",
        "a LIKE b",
        "a IN (b, 1, 'x')",
        "p(a) = b",
        "a + 'x' = b",
    ]
    filters = [compile_filter(e) for e in exprs]
    for x in weird:
        for y in weird:
            msg = MessageView(user={"a": x, "b": y})
            for f in filters:
                assert f.matches(msg) in (True, False)
