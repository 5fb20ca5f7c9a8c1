"""Rules over HTTPS: SQL and correlation filters, SQL actions, and the routing they cause."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from emulator.servicebus import ServiceBusEmulator


def _drain(client: ServiceBusClient, topic: str, sub: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    with client.get_subscription_receiver(topic, sub, max_wait_time=0.5) as receiver:
        while batch := receiver.receive_messages(max_message_count=20, max_wait_time=0.5):
            for message in batch:
                props = {
                    (k.decode() if isinstance(k, bytes) else k): (
                        v.decode() if isinstance(v, bytes) else v
                    )
                    for k, v in (message.application_properties or {}).items()
                }
                out.append((str(message), props))
                receiver.complete_message(message)
    return out


def test_rule_round_trips_every_filter_and_action_kind(
    admin: ServiceBusAdministrationClient,
) -> None:
    admin.create_subscription("t", "rules")
    admin.create_rule(
        "t",
        "rules",
        "corr",
        filter=CorrelationRuleFilter(
            correlation_id="cid",
            label="invoice",
            properties={"tenant": "acme", "tier": 2, "vip": True},
        ),
        action=SqlRuleAction("SET routed = 'yes'"),
    )
    admin.create_rule(
        "t", "rules", "sql", filter=SqlRuleFilter("amount > @min", parameters={"@min": 10})
    )
    admin.create_rule("t", "rules", "never", filter=FalseRuleFilter())
    rules = {r.name: r for r in admin.list_rules("t", "rules")}
    assert set(rules) == {"$Default", "corr", "sql", "never"}
    corr = rules["corr"].filter
    assert isinstance(corr, CorrelationRuleFilter)
    assert (corr.correlation_id, corr.label) == ("cid", "invoice")
    assert corr.properties == {"tenant": "acme", "tier": 2, "vip": True}
    assert isinstance(rules["corr"].action, SqlRuleAction)
    assert rules["corr"].action.sql_expression == "SET routed = 'yes'"
    sql = admin.get_rule("t", "rules", "sql").filter
    assert isinstance(sql, SqlRuleFilter)
    assert (sql.sql_expression, sql.parameters) == ("amount > @min", {"@min": 10})
    assert isinstance(rules["$Default"].filter, TrueRuleFilter)
    assert isinstance(rules["never"].filter, FalseRuleFilter)
    assert rules["sql"].created_at_utc is not None


def test_rule_created_over_https_routes_messages_sent_with_the_sdk(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    admin.create_subscription("t", "vip")
    admin.delete_rule("t", "vip", "$Default")
    admin.create_rule(
        "t",
        "vip",
        "big",
        filter=SqlRuleFilter("amount >= 100 AND region = 'eu'"),
        action=SqlRuleAction("SET priority = 'high'"),
    )
    admin.create_rule(
        "t", "vip", "flagged", filter=CorrelationRuleFilter(properties={"flag": "on"})
    )
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage(
                        "small", application_properties={"amount": 5, "region": "eu"}
                    ),
                    ServiceBusMessage(
                        "big", application_properties={"amount": 500, "region": "eu"}
                    ),
                    ServiceBusMessage("us", application_properties={"amount": 500, "region": "us"}),
                    ServiceBusMessage("flag", application_properties={"flag": "on"}),
                ]
            )
        got = _drain(client, "t", "vip")
    assert sorted(body for body, _ in got) == ["big", "flag"]
    props = dict(got)
    assert props["big"]["priority"] == "high"
    assert props["big"]["RuleName"] == "big"


def test_update_and_delete_rule_change_routing(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    rule = admin.get_rule("t", "red", "red")
    rule.filter = SqlRuleFilter("color = 'blue'")
    admin.update_rule("t", "red", rule)
    assert admin.get_rule("t", "red", "red").filter.sql_expression == "color = 'blue'"
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage("r", application_properties={"color": "red"}),
                    ServiceBusMessage("b", application_properties={"color": "blue"}),
                ]
            )
        assert [body for body, _ in _drain(client, "t", "red")] == ["b"]
        admin.delete_rule("t", "red", "red")
        with client.get_topic_sender("t") as sender:
            sender.send_messages(ServiceBusMessage("b2", application_properties={"color": "blue"}))
        assert _drain(client, "t", "red") == []
    with pytest.raises(ResourceNotFoundError):
        admin.get_rule("t", "red", "red")


def test_invalid_sql_is_a_400_naming_the_problem_and_changes_nothing(
    admin: ServiceBusAdministrationClient,
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        admin.create_rule("t", "red", "broken", filter=SqlRuleFilter("color = = 'x'"))
    assert caught.value.status_code == 400
    assert "SQL filter of rule 'broken' is invalid" in str(caught.value)
    assert "position" in str(caught.value)
    with pytest.raises(HttpResponseError, match="SQL action"):
        admin.create_rule(
            "t", "red", "broken", filter=TrueRuleFilter(), action=SqlRuleAction("SET = 1")
        )
    with pytest.raises(HttpResponseError, match="No value was supplied for parameter"):
        admin.create_rule("t", "red", "broken", filter=SqlRuleFilter("a = @missing"))
    assert [r.name for r in admin.list_rules("t", "red")] == ["red"]


def test_rule_conflicts_and_missing_parents(admin: ServiceBusAdministrationClient) -> None:
    with pytest.raises(ResourceExistsError):
        admin.create_rule("t", "red", "red", filter=TrueRuleFilter())
    with pytest.raises(ResourceNotFoundError):
        admin.create_rule("t", "nope", "x", filter=TrueRuleFilter())
    with pytest.raises(ResourceNotFoundError):
        admin.delete_rule("t", "red", "nope")


def test_typed_correlation_properties_match_typed_application_properties(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    admin.create_subscription("t", "typed")
    admin.delete_rule("t", "typed", "$Default")
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    admin.create_rule(
        "t", "typed", "n", filter=CorrelationRuleFilter(properties={"n": 7, "at": when})
    )
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage("seven", application_properties={"n": 7, "at": when}),
                    ServiceBusMessage("eight", application_properties={"n": 8, "at": when}),
                ]
            )
        assert [body for body, _ in _drain(client, "t", "typed")] == ["seven"]
