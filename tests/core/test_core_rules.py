"""A rule that raises while it is evaluated: logged once, counted, strict or dead-lettered."""

from __future__ import annotations

import logging

import pytest

from emulator.servicebus.core.broker import Broker
from emulator.servicebus.core.clock import ManualClock
from emulator.servicebus.core.message import (
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    BrokerMessage,
)
from emulator.servicebus.core.rules import (
    STRICT_FILTERS_ENV,
    FilterEvaluationError,
    strict_filters,
    strict_filters_enabled,
)
from emulator.servicebus.sqlfilter import MessageView
from emulator.servicebus.topology import (
    NamespaceTopology,
    RuleDescription,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    default_rules,
)


class _Broken:
    """An evaluator bug stand-in: a filter / action that raises for every message."""

    def matches(self, message: MessageView) -> bool:
        raise ZeroDivisionError("the evaluator divided by zero")

    def apply(self, message: MessageView) -> None:
        raise KeyError("missing")


def _broker(*, dead_letter: bool = True, action: bool = False) -> Broker:
    broken = SubscriptionDescription(
        name="broken",
        dead_lettering_on_filter_evaluation_exceptions=dead_letter,
        rules=[RuleDescription("Faulty", SqlFilterSpec("1=1"), "SET a = 1" if action else None)],
    )
    topology = NamespaceTopology(
        topics=[
            TopicDescription(
                name="t",
                subscriptions=[SubscriptionDescription(name="all", rules=default_rules()), broken],
            )
        ]
    )
    broker = Broker(topology, ManualClock())
    (rule,) = broker.subscription("t", "broken").rules
    if action:
        rule.action = _Broken()
    else:
        rule.filter = _Broken()
    return broker


def _send(broker: Broker, count: int = 1) -> None:
    for i in range(count):
        message = BrokerMessage(payload=b"", system={"MessageId": str(i)}, user={}, size=1)
        broker.send("t", [message])


def test_outside_strict_mode_the_message_is_dead_lettered_as_azure_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = _broker()
    with strict_filters(False), caplog.at_level(logging.ERROR, "emulator.servicebus.rules"):
        _send(broker, 2)
    broken = broker.subscription("t", "broken")
    assert broken.store.count() == 0
    dead = list(broken.dead_letter.messages.values())
    assert len(dead) == 2
    assert dead[0].user[DEAD_LETTER_REASON] == "ZeroDivisionError"
    assert dead[0].user[DEAD_LETTER_DESCRIPTION] == "the evaluator divided by zero"
    assert broken.store.counters.dead_lettered == 2
    assert broker.subscription("t", "all").store.count() == 2  # other subscriptions unaffected
    assert broken.rules[0].evaluation_errors == 2
    (record,) = caplog.records  # once per rule, not once per message
    assert "t/Subscriptions/broken" in record.getMessage()
    assert "'Faulty'" in record.getMessage()
    assert "filter raised ZeroDivisionError" in record.getMessage()


def test_with_dead_lettering_off_the_subscription_drops_it() -> None:
    broker = _broker(dead_letter=False)
    with strict_filters(False):
        _send(broker)
    broken = broker.subscription("t", "broken")
    assert broken.store.count() == 0 and broken.dead_letter.count() == 0
    assert broken.rules[0].evaluation_errors == 1
    assert broker.topics["t"].counters.unrouted == 0  # "all" still took it


def test_a_failing_action_is_handled_like_a_failing_filter() -> None:
    broker = _broker(action=True)
    with strict_filters(False):
        _send(broker)
    broken = broker.subscription("t", "broken")
    (dead,) = broken.dead_letter.messages.values()
    assert dead.user[DEAD_LETTER_REASON] == "KeyError"
    assert broken.rules[0].evaluation_errors == 1


def test_strict_mode_raises_naming_subscription_and_rule() -> None:
    broker = _broker()
    with strict_filters(), pytest.raises(FilterEvaluationError) as caught:
        _send(broker)
    error = caught.value
    assert error.where == "t/Subscriptions/broken"
    assert (error.rule_name, error.stage) == ("Faulty", "filter")
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert broker.subscription("t", "broken").rules[0].evaluation_errors == 1


def test_strict_mode_from_the_environment_and_the_code_switch_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(STRICT_FILTERS_ENV, "1")
    assert strict_filters_enabled()
    with pytest.raises(FilterEvaluationError):
        _send(_broker())
    with strict_filters(False):
        assert not strict_filters_enabled()
        _send(_broker())
    monkeypatch.setenv(STRICT_FILTERS_ENV, "0")
    assert not strict_filters_enabled()
    with strict_filters():
        assert strict_filters_enabled()
        with strict_filters(False):
            assert not strict_filters_enabled()
        assert strict_filters_enabled()  # nesting restores the outer setting
    assert not strict_filters_enabled()


def test_reset_zeroes_the_rule_error_counts() -> None:
    broker = _broker()
    with strict_filters(False):
        _send(broker)
    broker.reset()
    assert broker.subscription("t", "broken").rules[0].evaluation_errors == 0


def test_every_copy_a_subscription_takes_is_kept() -> None:
    """A plain match plus two action rules: three copies, each with its own sequence number."""
    rules = [
        RuleDescription("plain", SqlFilterSpec("1=1")),
        RuleDescription("one", SqlFilterSpec("1=1"), "SET x = 1"),
        RuleDescription("two", SqlFilterSpec("1=1"), "SET x = 2"),
    ]
    subscription = SubscriptionDescription("s", rules=rules)
    topology = NamespaceTopology(topics=[TopicDescription(name="t", subscriptions=[subscription])])
    broker = Broker(topology, ManualClock())
    _send(broker)
    _send(broker)
    kept = broker.subscription("t", "s").store.messages.values()
    assert sorted((m.sequence_number, m.user.get("RuleName")) for m in kept) == [
        (1, None),
        (2, "one"),
        (3, "two"),
        (4, None),
        (5, "one"),
        (6, "two"),
    ]
