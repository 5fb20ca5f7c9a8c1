"""Correlation filters: every system field and the property map, exact-match semantics."""

from __future__ import annotations

import uuid

import pytest

from emulator.servicebus.sqlfilter import CorrelationFilter, Filter, MessageView
from emulator.servicebus.topology import CORRELATION_FIELDS


def test_is_a_filter_and_frozen() -> None:
    f = CorrelationFilter({"CorrelationId": "x"})
    assert isinstance(f, Filter)
    with pytest.raises(AttributeError):
        f.system = {}  # type: ignore[misc]


@pytest.mark.parametrize("system_name", list(CORRELATION_FIELDS))
def test_each_system_field(system_name: str) -> None:
    f = CorrelationFilter({system_name: "Value"})
    assert f.matches(MessageView(system={system_name: "Value"}))
    assert not f.matches(MessageView(system={system_name: "value"}))  # case-sensitive
    assert not f.matches(MessageView(system={}))
    assert not f.matches(MessageView(user={system_name: "Value"}))  # not a user property


def test_all_fields_combine_with_and() -> None:
    f = CorrelationFilter(
        {"Label": "Important", "ReplyTo": "johndoe@contoso.com"}, properties={"color": "Red"}
    )
    good = MessageView(
        system={"Label": "Important", "ReplyTo": "johndoe@contoso.com"}, user={"color": "Red"}
    )
    assert f.matches(good)
    assert not f.matches(MessageView(system=good.system, user={"color": "red"}))
    assert not f.matches(MessageView(system={"Label": "Important"}, user={"color": "Red"}))


def test_properties_semantics() -> None:
    class Long(int):
        pass

    f = CorrelationFilter(properties={"n": 5, "flag": True, "s": "x"})
    assert f.matches(MessageView(user={"n": Long(5), "flag": True, "s": "x"}))
    assert f.matches(MessageView(user={"N": 5.0, "FLAG": True, "s": "x"}))
    assert not f.matches(MessageView(user={"n": 5, "flag": 1, "s": "x"}))  # bool is not int
    assert not f.matches(MessageView(user={"n": "5", "flag": True, "s": "x"}))
    assert not f.matches(MessageView(user={"flag": True, "s": "x"}))
    assert not CorrelationFilter(properties={"n": None}).matches(MessageView(user={"n": None}))


def test_uuid_ids_match_their_string_form() -> None:
    u = uuid.uuid4()
    assert CorrelationFilter({"CorrelationId": str(u)}).matches(
        MessageView(system={"CorrelationId": u})
    )
    assert CorrelationFilter({"MessageId": "7"}).matches(MessageView(system={"MessageId": 7}))


def test_empty_filter_matches_everything() -> None:
    assert CorrelationFilter().matches(MessageView())
    assert CorrelationFilter({"Label": None}).matches(MessageView())  # unset field


def test_odd_values_are_no_match_and_a_broken_view_reaches_the_caller() -> None:
    f = CorrelationFilter({"Label": "x"}, properties={"a": 1})
    assert not f.matches(MessageView(system={"Label": "x"}, user={"a": object()}))
    with pytest.raises(AttributeError):  # core.rules reports it; nothing is swallowed
        f.matches(None)  # type: ignore[arg-type]
