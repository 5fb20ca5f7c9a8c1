"""Issue 3 through the SDK: richer SQL filters, correlation filters and actions route a generated
message set exactly as independently written Python predicates say they should."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import (
    CorrelationFilterSpec,
    NamespaceTopology,
    RuleDescription,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
)

Props = dict[str, Any]
Predicate = Callable[[Props], bool]

# name -> (SQL, expected predicate over the sent properties; missing values never match)
SQL_ROUTES: dict[str, tuple[str, Predicate]] = {
    "video": ("jobType = 'video.analysis'", lambda p: p.get("jobType") == "video.analysis"),
    "chat": ("jobType = 'chat.suggest'", lambda p: p.get("jobType") == "chat.suggest"),
    "suggest": ("jobType = 'content.suggest'", lambda p: p.get("jobType") == "content.suggest"),
    "analyze": ("jobType = 'content.analyze'", lambda p: p.get("jobType") == "content.analyze"),
    "high": ("priority > 5", lambda p: p["priority"] > 5),
    "regions": ("region IN ('eu', 'us')", lambda p: p.get("region") in ("eu", "us")),
    "named": ("name LIKE 'job-%'", lambda p: p["name"].startswith("job-")),
    "escaped": (r"code LIKE 'A\_%' ESCAPE '\'", lambda p: p["code"].startswith("A_")),
    "urgent": ("EXISTS(urgent)", lambda p: "urgent" in p),
    "not-eu": ("NOT (region = 'eu')", lambda p: p.get("region") not in (None, "eu")),
    "label": ("sys.Label = 'special'", lambda p: p["_subject"] == "special"),
    "arith": ("priority * 2 + 1 >= 11", lambda p: p["priority"] * 2 + 1 >= 11),
    "no-region": ("region IS NULL", lambda p: p.get("region") is None),
    "json-low": (
        "sys.ContentType = 'application/json' AND priority <= 3",
        lambda p: p["_content_type"] == "application/json" and p["priority"] <= 3,
    ),
    "or": (
        "jobType <> 'video.analysis' OR priority = 10",
        # a missing jobType makes the left side unknown: only priority 10 can match then
        lambda p: p.get("jobType") not in (None, "video.analysis") or p["priority"] == 10,
    ),
}
CORRELATION = ("corr-us", lambda p: p["_correlation_id"] == "corr-7" and p.get("region") == "us")
ACTIONS = {
    "tagged": ("priority >= 8", "SET tier = 'gold'; REMOVE name", lambda p: p["priority"] >= 8),
    "relabel": ("region = 'us'", "SET sys.Label = 'from-us'", lambda p: p.get("region") == "us"),
}
JOB_TYPES = ["video.analysis", "chat.suggest", "content.suggest", "content.analyze", None]
REGIONS = ["eu", "us", None, "asia"]


def generated_messages() -> list[Props]:
    out = []
    for i in range(40):
        props: Props = {
            "priority": i % 11,
            "name": f"job-{i}" if i % 3 else f"x-{i}",
            "code": "A_1" if i % 4 == 0 else "AB1",
            "_subject": "special" if i % 9 == 0 else "plain",
            "_correlation_id": "corr-7" if i % 5 == 0 else f"c-{i}",
            "_content_type": "application/json" if i % 2 == 0 else "text/plain",
            "_id": f"m{i}",
        }
        if JOB_TYPES[i % 5] is not None:
            props["jobType"] = JOB_TYPES[i % 5]
        if REGIONS[i % 4] is not None:
            props["region"] = REGIONS[i % 4]
        if i % 7 == 0:
            props["urgent"] = True
        out.append(props)
    return out


def topology() -> NamespaceTopology:
    subscriptions = [
        SubscriptionDescription(name=name, rules=[RuleDescription(name, SqlFilterSpec(sql))])
        for name, (sql, _) in SQL_ROUTES.items()
    ]
    subscriptions.append(
        SubscriptionDescription(
            name=CORRELATION[0],
            rules=[
                RuleDescription(
                    "corr",
                    CorrelationFilterSpec(correlation_id="corr-7", properties={"region": "us"}),
                )
            ],
        )
    )
    for name, (sql, action, _) in ACTIONS.items():
        subscriptions.append(
            SubscriptionDescription(
                name=name, rules=[RuleDescription(name, SqlFilterSpec(sql), action=action)]
            )
        )
    return NamespaceTopology(topics=[TopicDescription(name="routing", subscriptions=subscriptions)])


@pytest.fixture(scope="module")
def routed() -> Iterator[dict[str, list[Any]]]:
    with ServiceBusEmulator(topology()) as emu:
        with ServiceBusClient.from_connection_string(emu.connection_string) as client:
            with client.get_topic_sender("routing") as sender:
                sender.send_messages(
                    [
                        ServiceBusMessage(
                            p["_id"],
                            message_id=p["_id"],
                            subject=p["_subject"],
                            correlation_id=p["_correlation_id"],
                            content_type=p["_content_type"],
                            application_properties={
                                k: v for k, v in p.items() if not k.startswith("_")
                            },
                        )
                        for p in generated_messages()
                    ]
                )
            names = [*SQL_ROUTES, CORRELATION[0], *ACTIONS]
            received: dict[str, list[Any]] = {}
            for name in names:
                with client.get_subscription_receiver(
                    "routing", name, max_wait_time=0.5
                ) as receiver:
                    got: list[Any] = []
                    while batch := receiver.receive_messages(
                        max_message_count=50, max_wait_time=0.5
                    ):
                        for m in batch:
                            receiver.complete_message(m)
                        got.extend(batch)
                    received[name] = got
        yield received


def _expected(predicate: Predicate) -> list[str]:
    return [p["_id"] for p in generated_messages() if predicate(p)]


@pytest.mark.parametrize("name", [*SQL_ROUTES, CORRELATION[0], *ACTIONS])
def test_subscription_receives_exactly_the_matching_messages(
    routed: dict[str, list[Any]], name: str
) -> None:
    predicate = (
        SQL_ROUTES[name][1]
        if name in SQL_ROUTES
        else CORRELATION[1]
        if name == CORRELATION[0]
        else ACTIONS[name][2]
    )
    expected = _expected(predicate)
    assert expected, f"the generated set should exercise '{name}'"
    assert [str(m) for m in routed[name]] == expected


def _props(message: Any) -> dict[str, Any]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (message.application_properties or {}).items()
    }


def test_set_and_remove_action_changes_only_that_subscriptions_copy(
    routed: dict[str, list[Any]],
) -> None:
    for message in routed["tagged"]:
        props = _props(message)
        assert props["tier"] == "gold" and "name" not in props
        assert props["RuleName"] == "tagged"
    for message in routed["high"]:
        props = _props(message)
        assert "tier" not in props and "name" in props


def test_action_can_set_a_system_property(routed: dict[str, list[Any]]) -> None:
    assert {m.subject for m in routed["relabel"]} == {"from-us"}
    assert {m.subject for m in routed["regions"]} <= {"special", "plain"}
