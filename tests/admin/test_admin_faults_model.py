"""The fault injector as a pure model: matching, probability, next-N, validation, counts."""

from __future__ import annotations

import itertools

import pytest

from emulator.servicebus.faults import FaultInjector, FaultRule, FaultRuleError


def test_no_rules_no_effect_but_calls_are_counted() -> None:
    faults = FaultInjector()
    assert faults.check("send", "q") is None
    assert faults.check("send", "q") is None
    assert faults.check("connect") is None
    assert faults.counts_by_entity() == {"": {"connect": 1}, "q": {"send": 2}}


def test_next_n_fires_exactly_n_times() -> None:
    faults = FaultInjector()
    rule = faults.add({"operation": "send", "effect": "server-busy", "next_n": 2})
    effects = [faults.check("send", "q") for _ in range(4)]
    assert [e.effect if e else None for e in effects] == [
        "server-busy",
        "server-busy",
        None,
        None,
    ]
    assert effects[0] is not None
    assert effects[0].condition == "com.microsoft:server-busy"
    assert effects[0].rule_id == rule.id
    assert rule.fired == 2 and rule.exhausted


def test_probability_uses_the_injected_random_source() -> None:
    values = itertools.cycle([0.1, 0.9])
    faults = FaultInjector(random=lambda: next(values))
    faults.add({"operation": "receive", "effect": "timeout", "probability": 0.5})
    fired = [faults.check("receive", "q") is not None for _ in range(4)]
    assert fired == [True, False, True, False]


def test_entity_globs_are_case_insensitive_and_operation_specific() -> None:
    faults = FaultInjector()
    faults.add({"operation": "settle", "effect": "lock-lost", "entity": "Jobs/Subscriptions/*"})
    assert faults.check("settle", "jobs/subscriptions/video") is not None
    assert faults.check("settle", "other/Subscriptions/video") is None
    assert faults.check("receive", "jobs/Subscriptions/video") is None


def test_first_firing_rule_wins_and_latency_carries_its_delay() -> None:
    faults = FaultInjector()
    faults.add({"operation": "send", "effect": "latency", "latency_ms": 250, "entity": "q"})
    faults.add({"operation": "send", "effect": "connection-drop"})
    slow = faults.check("send", "q")
    assert slow is not None and (slow.effect, slow.latency_ms) == ("latency", 250.0)
    assert slow.condition is None
    dropped = faults.check("send", "other")
    assert dropped is not None and dropped.effect == "connection-drop"


def test_remove_and_clear() -> None:
    faults = FaultInjector()
    first = faults.add({"operation": "send", "effect": "timeout"})
    faults.add({"operation": "receive", "effect": "timeout"})
    assert faults.remove(first.id) is True
    assert faults.remove(first.id) is False
    assert [r.operation for r in faults.rules] == ["receive"]
    faults.clear()
    assert faults.check("receive", "q") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"operation": "explode", "effect": "timeout"}, "operation"),
        ({"operation": "send", "effect": "meteor"}, "effect"),
        ({"operation": "send", "effect": "timeout", "probability": 2}, "probability"),
        ({"operation": "send", "effect": "timeout", "next_n": -1}, "next_n"),
        ({"operation": "send", "effect": "latency"}, "latency_ms"),
        ({"operation": "send", "effect": "lock-lost"}, "lock-lost"),
        ({"operation": "send", "effect": "timeout", "colour": "red"}, "unknown field"),
        ({"effect": "timeout"}, "operation: missing"),
        ({"operation": "send", "effect": "timeout", "entity": ""}, "entity"),
    ],
)
def test_invalid_rules_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(FaultRuleError, match=message):
        FaultInjector().add(data)


def test_rule_json_round_trip() -> None:
    rule = FaultRule(operation="renew-lock", effect="lock-lost", entity="q", next_n=1)
    data = rule.to_json()
    assert data["operation"] == "renew-lock" and data["next_n"] == 1
    again = FaultRule.from_json({k: data[k] for k in ("operation", "effect", "entity", "next_n")})
    assert again.matches("renew-lock", "Q")
