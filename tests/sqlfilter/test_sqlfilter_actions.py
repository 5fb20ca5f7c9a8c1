"""Rule actions: SET / REMOVE on user and system properties, conversions; no value stops one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from emulator.servicebus.sqlfilter import (
    SETTABLE_SYSTEM_PROPERTIES,
    SYSTEM_PROPERTIES,
    MessageView,
    RuleAction,
    compile_action,
)


class Long(int):
    """Stands in for the AMQP codec's typed-int subclass."""


def run(action: str, user: dict[str, object] | None = None, **system: object) -> MessageView:
    msg = MessageView(system=dict(system), user=dict(user or {}))
    compile_action(action).apply(msg)
    return msg


def test_is_a_rule_action() -> None:
    a = compile_action("SET a = 1")
    assert isinstance(a, RuleAction)
    assert a.expression == "SET a = 1" and "SET a = 1" in repr(a)


def test_documented_example() -> None:
    msg = run(
        "SET quantity = quantity / 2; REMOVE priority;SET sys.CorrelationId = 'low';",
        {"color": "red", "quantity": 10, "priority": "high"},
        CorrelationId="high",
    )
    assert msg.user == {"color": "red", "quantity": 5}
    assert msg.system == {"CorrelationId": "low"}


def test_set_creates_and_updates() -> None:
    msg = run("SET a = 1; SET b = 'x'; SET c = TRUE; SET d = 2.5", {"a": 0})
    assert msg.user == {"a": 1, "b": "x", "c": True, "d": 2.5}
    assert type(msg.user["c"]) is bool


def test_statements_see_earlier_statements() -> None:
    msg = run("SET a = 1; SET b = a + 1; SET a = b * 10")
    assert msg.user == {"a": 20, "b": 2}


def test_set_writes_plain_python_values() -> None:
    msg = run("SET a = b; SET c = newid(); SET d = s", {"b": Long(5), "s": _Sym("x")})
    assert type(msg.user["a"]) is int and msg.user["a"] == 5
    assert type(msg.user["c"]) is str and uuid.UUID(str(msg.user["c"]))
    assert type(msg.user["d"]) is str


class _Sym(str):
    pass


def test_set_implicit_conversion_to_existing_double() -> None:
    msg = run("SET a = 3", {"a": 1.5})
    assert msg.user["a"] == 3.0 and type(msg.user["a"]) is float
    msg = run("SET a = 'text'", {"a": 1.5})  # no implicit conversion: type changes
    assert msg.user["a"] == "text"


def test_set_uses_existing_key_case_insensitively() -> None:
    msg = run("SET QUANTITY = 3", {"quantity": 1})
    assert msg.user == {"quantity": 3}


def test_set_unknown_value_stores_null() -> None:
    msg = run("SET a = missing + 1")
    assert msg.user == {"a": None}


def test_remove_user_property() -> None:
    msg = run("REMOVE a; REMOVE [b c]; REMOVE missing", {"A": 1, "b c": 2, "d": 3})
    assert msg.user == {"d": 3}


def test_set_system_string_properties() -> None:
    for name in (
        "MessageId",
        "CorrelationId",
        "To",
        "ReplyTo",
        "Label",
        "SessionId",
        "ReplyToSessionId",
        "ContentType",
        "PartitionKey",
        "ViaPartitionKey",
    ):
        msg = run(f"SET sys.{name} = 'v' + 'x'")
        assert msg.system == {name: "vx"}, name


def test_set_sys_subject_alias_sets_label() -> None:
    msg = run("SET sys.Subject = 'SalesEvent'", Label="old")
    assert msg.system == {"Label": "SalesEvent"}


def test_set_system_property_from_user_property() -> None:
    msg = run("SET sys.Label = property('x') + '.MyPostFix'", {"x": "base"})
    assert msg.system["Label"] == "base.MyPostFix"
    msg = run("SET sys.Label = sys.Label + '.sfx'", Label="L")
    assert msg.system["Label"] == "L.sfx"


def test_set_system_property_type_mismatch_is_skipped() -> None:
    msg = run("SET sys.Label = 5; SET sys.To = 'ok'", Label="keep")
    assert msg.system == {"Label": "keep", "To": "ok"}
    msg = run("SET sys.ForcePersistence = 1")
    assert msg.system == {}
    msg = run("SET sys.ScheduledEnqueueTimeUtc = 'tomorrow'")
    assert msg.system == {}


def test_set_system_property_null_removes_it() -> None:
    msg = run("SET sys.Label = NULL", Label="x")
    assert msg.system == {}
    msg = run("SET sys.Label = missing", Label="x")
    assert msg.system == {}


def test_set_message_id_from_newid() -> None:
    msg = run("SET sys.MessageId = newid()")
    assert uuid.UUID(str(msg.system["MessageId"]))


def test_set_typed_system_properties() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    msg = run(
        "SET sys.ScheduledEnqueueTimeUtc = sys.EnqueuedTimeUtc + d",
        {"d": timedelta(minutes=5)},
        EnqueuedTimeUtc=t0,
    )
    assert msg.system["ScheduledEnqueueTimeUtc"] == t0 + timedelta(minutes=5)
    msg = run("SET sys.TimeToLive = sys.TimeToLive * 2", TimeToLive=30.0)
    assert msg.system["TimeToLive"] == 60.0
    msg = run("SET sys.TimeToLive = d", {"d": timedelta(seconds=7)})
    assert msg.system["TimeToLive"] == 7.0
    msg = run("SET sys.ForcePersistence = TRUE")
    assert msg.system["ForcePersistence"] is True


def test_remove_system_property() -> None:
    msg = run("REMOVE sys.Label; REMOVE sys.To", Label="x", SequenceNumber=1)
    assert msg.system == {"SequenceNumber": 1}


def test_settable_catalogue() -> None:
    assert "Label" in SETTABLE_SYSTEM_PROPERTIES
    assert "SequenceNumber" not in SETTABLE_SYSTEM_PROPERTIES
    assert set(SYSTEM_PROPERTIES) >= SETTABLE_SYSTEM_PROPERTIES


def test_unknown_or_unassignable_values_do_not_stop_the_action() -> None:
    a = compile_action("SET a = b / 0; SET c = 1; SET d = p(1 + 1)")
    msg = MessageView(user={"b": 1})
    a.apply(msg)
    assert msg.user == {"b": 1, "a": None, "c": 1, "d": None}
    msg = MessageView(user={"b": object()})
    compile_action("SET a = b; SET c = 2").apply(msg)
    assert "a" not in msg.user and msg.user["c"] == 2


def test_a_broken_view_reaches_the_caller() -> None:
    """Nothing is swallowed: the broker's rule runner (core.rules) reports such errors."""
    with pytest.raises(TypeError):
        compile_action("SET c = 1").apply(MessageView(system=None, user=None))  # type: ignore[arg-type]


def test_action_changes_only_the_given_copy() -> None:
    original = {"quantity": 10}
    a = compile_action("SET quantity = quantity / 2")
    copy_one = MessageView(user=dict(original))
    copy_two = MessageView(user=dict(original))
    a.apply(copy_one)
    assert copy_one.user == {"quantity": 5} and copy_two.user == {"quantity": 10}
    assert original == {"quantity": 10}
