"""Config.json → NamespaceTopology: the seed's topology, defaults, and every validation error."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator.servicebus import sqlfilter
from emulator.servicebus.config import (
    ConfigError,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from emulator.servicebus.topology import (
    DEFAULT_RULE_NAME,
    AccessRights,
    CorrelationFilterSpec,
    NamespaceTier,
    NamespaceTopology,
    QueueDescription,
    SasPolicy,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    TrueFilterSpec,
)

CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "Config.json"
NS = "UserConfig.Namespaces[0]"


def _fake_compile(kind: str) -> Callable[[str], object]:
    """Stand-in compiler: '!!' marks a syntax error at its position; actions must start SET."""

    def compile_(expression: str, **_: object) -> object:
        if "!!" in expression:
            raise sqlfilter.SqlFilterError("unexpected '!'", expression.index("!!"), expression)
        if kind == "action" and not expression.upper().startswith(("SET", "REMOVE")):
            raise sqlfilter.SqlFilterError("expected SET or REMOVE", 0, expression)
        return object()

    return compile_


@pytest.fixture(autouse=True)
def fake_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config tests check config.py, not the SQL grammar (tested in tests/sqlfilter)."""
    monkeypatch.setattr(sqlfilter, "compile_filter", _fake_compile("filter"))
    monkeypatch.setattr(sqlfilter, "compile_action", _fake_compile("action"))


def doc(**namespace: Any) -> dict[str, Any]:
    """A minimal valid document whose namespace is extended with ``namespace``."""
    ns: dict[str, Any] = {"Name": "sbemulatorns", "Queues": [], "Topics": []}
    ns.update(namespace)
    return {"UserConfig": {"Namespaces": [ns], "Logging": {"Type": "File"}}}


def topic_doc(*subscriptions: dict[str, Any], **topic: Any) -> dict[str, Any]:
    return doc(Topics=[{"Name": "t", "Subscriptions": list(subscriptions), **topic}])


def sql_rule(name: str, expression: str, **props: Any) -> dict[str, Any]:
    properties = {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}, **props}
    return {"Name": name, "Properties": properties}


def errors_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def single_error(data: Any) -> str:
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]


# --- the shipped topology ------------------------------------------------------------------


def test_shipped_config_is_the_seed_topology() -> None:
    topology = load_config(CONFIG_PATH)
    assert topology.name == "sbemulatorns"
    assert topology.queues == []
    assert [t.name for t in topology.topics] == ["huntaze-jobs", "huntaze-events"]

    jobs = topology.find_topic("huntaze-jobs")
    assert jobs is not None
    # The per-subscription values of the seed's section 4, not its deploy script's loop.
    expected_jobs = {
        "video-analysis": (3, "PT2M", "PT30M", "jobtype-video", "video.analysis"),
        "chat-suggestions": (5, "PT1M", "PT10M", "jobtype-chat", "chat.suggest"),
        "content-suggestions": (5, "PT1M", "PT10M", "jobtype-content-suggest", "content.suggest"),
        "content-analysis": (8, "PT2M", "PT20M", "jobtype-content-analyze", "content.analyze"),
    }
    assert [s.name for s in jobs.subscriptions] == [*expected_jobs, "unrouted"]
    *job_subscriptions, unrouted = jobs.subscriptions
    # Not in the seed: a catch-all so a message with a missing or unknown jobType is kept
    # where operators see it instead of matching no subscription and vanishing.
    assert [r.name for r in unrouted.rules] == ["no-known-jobtype"]
    assert "jobType IS NULL" in unrouted.rules[0].filter.expression  # type: ignore[union-attr]
    assert unrouted.default_message_time_to_live == parse_duration("P14D")
    for sub in job_subscriptions:
        count, lock, ttl, rule, job_type = expected_jobs[sub.name]
        assert sub.max_delivery_count == count
        assert sub.lock_duration == parse_duration(lock)
        assert sub.default_message_time_to_live == parse_duration(ttl)
        assert sub.dead_lettering_on_message_expiration is True
        assert sub.forward_to is None and sub.forward_dead_lettered_messages_to is None
        assert [r.name for r in sub.rules] == [rule]  # no $Default: routing by jobType only
        assert sub.rules[0].filter == SqlFilterSpec(f"jobType = '{job_type}'")
        assert sub.rules[0].action is None

    events = topology.find_topic("huntaze-events")
    assert events is not None
    expected_events = {
        "notify-signalr": (10, timedelta(days=1)),
        "notify-email": (10, timedelta(days=1)),
        "notify-webhook": (10, timedelta(days=1)),
        "metrics": (5, timedelta(days=7)),
    }
    assert [s.name for s in events.subscriptions] == list(expected_events)
    for sub in events.subscriptions:
        count, ttl = expected_events[sub.name]
        assert sub.max_delivery_count == count
        assert sub.lock_duration == timedelta(minutes=1)
        assert sub.default_message_time_to_live == ttl
        assert sub.dead_lettering_on_message_expiration is False
        assert [(r.name, r.filter) for r in sub.rules] == [(DEFAULT_RULE_NAME, TrueFilterSpec())]

    # Topic TTLs must not cut the subscriptions' P1D/P7D short.
    for topic in topology.topics:
        longest = max(s.default_message_time_to_live for s in topic.subscriptions)
        assert topic.default_message_time_to_live >= longest

    rights = {p.name: p.rights for p in topology.policies}
    assert rights == {
        "RootManageSharedAccessKey": AccessRights.MANAGE | AccessRights.SEND | AccessRights.LISTEN,
        "vercel-send": AccessRights.SEND,
        "functions-rw": AccessRights.SEND | AccessRights.LISTEN,
    }
    assert topology.find_policy("RootManageSharedAccessKey") == SasPolicy(
        "RootManageSharedAccessKey", "SAS_KEY_VALUE", AccessRights.MANAGE
    )


@pytest.fixture
def real_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real sqlfilter compiler instead of `fake_sql`'s stand-in (autouse runs first)."""
    monkeypatch.undo()
    assert sqlfilter.compile_filter.__module__.startswith("emulator.servicebus.sqlfilter")


@pytest.mark.usefixtures("real_sql")
def test_shipped_config_sql_compiles_with_the_real_compiler() -> None:
    topology = load_config(CONFIG_PATH)
    assert len(topology.topics) == 2
    expressions = [
        rule.filter.expression
        for topic in topology.topics
        for subscription in topic.subscriptions
        for rule in subscription.rules
        if isinstance(rule.filter, SqlFilterSpec)
    ]
    # The four job-type routes and the catch-all, each compiled by the real compiler.
    assert len(expressions) == 5
    for expression in expressions:
        sqlfilter.compile_filter(expression)


# --- defaults and happy paths --------------------------------------------------------------


def test_official_minimal_sample_gets_official_defaults() -> None:
    topology = parse_config(
        {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": [{"Name": "queue.1"}]}]}}
    )
    assert topology.queues == [QueueDescription("queue.1")]
    queue = topology.queues[0]
    assert queue.lock_duration == timedelta(minutes=1)
    assert queue.max_delivery_count == 3
    assert queue.default_message_time_to_live == timedelta(hours=1)
    assert queue.duplicate_detection_history_time_window == timedelta(seconds=20)
    assert queue.max_message_size_bytes == 262144
    assert topology.topics == []
    assert topology.policies == [
        SasPolicy("RootManageSharedAccessKey", "SAS_KEY_VALUE", AccessRights.MANAGE)
    ]


def test_official_full_sample_round_trips_every_property() -> None:
    data = doc(
        Queues=[
            {
                "Name": "queue.1",
                "Properties": {
                    "DeadLetteringOnMessageExpiration": True,
                    "DefaultMessageTimeToLive": "PT30M",
                    "DuplicateDetectionHistoryTimeWindow": "PT1M",
                    "ForwardDeadLetteredMessagesTo": "",
                    "ForwardTo": "",
                    "LockDuration": "PT45S",
                    "MaxDeliveryCount": 7,
                    "RequiresDuplicateDetection": True,
                    "RequiresSession": True,
                    "MaxMessageSizeInKilobytes": 1024,
                },
            }
        ],
        Topics=[
            {
                "Name": "topic.1",
                "Properties": {
                    "DefaultMessageTimeToLive": "PT2H",
                    "DuplicateDetectionHistoryTimeWindow": "PT5M",
                    "RequiresDuplicateDetection": True,
                    "MaxMessageSizeInKilobytes": 512,
                },
                "Subscriptions": [
                    {
                        "Name": "subscription.1",
                        "Properties": {
                            "DeadLetteringOnMessageExpiration": True,
                            "DeadLetteringOnFilterEvaluationExceptions": False,
                            "DefaultMessageTimeToLive": "PT5M",
                            "LockDuration": "PT3M",
                            "MaxDeliveryCount": 2,
                            "ForwardDeadLetteredMessagesTo": "QUEUE.1",
                            "ForwardTo": "queue.1",
                            "RequiresSession": True,
                        },
                        "Rules": [
                            sql_rule("app-prop-filter-1", "color = 'red'"),
                            {
                                "Name": "corr",
                                "Properties": {
                                    "FilterType": "Correlation",
                                    "CorrelationFilter": {
                                        "ContentType": "application/text",
                                        "CorrelationId": "id1",
                                        "Label": "subject1",
                                        "MessageId": "msgid1",
                                        "ReplyTo": "someQueue",
                                        "ReplyToSessionId": "sessionId",
                                        "SessionId": "session1",
                                        "To": "xyz",
                                        "Properties": {"prop1": "value1", "n": 2, "ok": True},
                                    },
                                    "Action": {"SqlExpression": "SET sys.Label = 'routed'"},
                                },
                            },
                        ],
                    }
                ],
            }
        ],
    )
    topology = parse_config(data)
    assert topology.queues == [
        QueueDescription(
            name="queue.1",
            lock_duration=timedelta(seconds=45),
            max_delivery_count=7,
            default_message_time_to_live=timedelta(minutes=30),
            dead_lettering_on_message_expiration=True,
            requires_session=True,
            requires_duplicate_detection=True,
            duplicate_detection_history_time_window=timedelta(minutes=1),
            max_message_size_bytes=1024 * 1024,
        )
    ]
    topic = topology.topics[0]
    assert topic.default_message_time_to_live == timedelta(hours=2)
    assert topic.requires_duplicate_detection is True
    assert topic.duplicate_detection_history_time_window == timedelta(minutes=5)
    assert topic.max_message_size_bytes == 512 * 1024
    sub = topic.subscriptions[0]
    assert sub == SubscriptionDescription(
        name="subscription.1",
        lock_duration=timedelta(minutes=3),
        max_delivery_count=2,
        default_message_time_to_live=timedelta(minutes=5),
        dead_lettering_on_message_expiration=True,
        dead_lettering_on_filter_evaluation_exceptions=False,
        requires_session=True,
        forward_to="queue.1",
        forward_dead_lettered_messages_to="queue.1",  # stored in the declared case
        rules=sub.rules,
    )
    sql, corr = sub.rules
    assert (sql.name, sql.filter, sql.action) == (
        "app-prop-filter-1",
        SqlFilterSpec("color = 'red'"),
        None,
    )
    assert corr.filter == CorrelationFilterSpec(
        correlation_id="id1",
        message_id="msgid1",
        to="xyz",
        reply_to="someQueue",
        label="subject1",
        session_id="session1",
        reply_to_session_id="sessionId",
        content_type="application/text",
        properties={"prop1": "value1", "n": 2, "ok": True},
    )
    assert corr.action == "SET sys.Label = 'routed'"


@pytest.mark.parametrize("rules", [None, []])
def test_subscription_without_rules_gets_default_rule(rules: list[Any] | None) -> None:
    sub: dict[str, Any] = {"Name": "s"}
    if rules is not None:
        sub["Rules"] = rules
    topology = parse_config(topic_doc(sub))
    (rule,) = topology.topics[0].subscriptions[0].rules
    assert (rule.name, rule.filter, rule.action) == ("$Default", TrueFilterSpec(), None)


def test_explicit_default_rule_name_is_allowed() -> None:
    topology = parse_config(topic_doc({"Name": "s", "Rules": [sql_rule("$Default", "a = 1")]}))
    assert topology.topics[0].subscriptions[0].rules[0].filter == SqlFilterSpec("a = 1")


def test_optional_sections_may_be_left_out() -> None:
    topology = parse_config({"UserConfig": {"Namespaces": [{"Name": "ns1"}]}})
    assert topology == NamespaceTopology(name="ns1")
    topology = parse_config(doc(Topics=[{"Name": "t"}]))
    assert topology.topics == [TopicDescription("t")]


def test_schema_key_and_utf8_bom_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "Config.json"
    data = {"$schema": "./Config-schema.json", **doc()}
    path.write_text(json.dumps(data), encoding="utf-8-sig")
    assert load_config(str(path)).name == "sbemulatorns"


@pytest.mark.parametrize("kind", ["File", "Console", "File,Console", "Console,File"])
def test_logging_types(kind: str) -> None:
    data = doc()
    data["UserConfig"]["Logging"] = {"Type": kind}
    parse_config(data)


# --- SAS policies (extension) --------------------------------------------------------------


def test_policies_add_to_the_root_policy() -> None:
    topology = parse_config(
        doc(
            SharedAccessPolicies=[
                {"Name": "send-only", "Key": "k1", "Rights": ["Send"]},
                {"Name": "admin", "Key": "k2", "Rights": ["manage"]},
            ]
        )
    )
    assert [p.name for p in topology.policies] == [
        "RootManageSharedAccessKey",
        "send-only",
        "admin",
    ]
    admin = topology.find_policy("ADMIN")
    assert admin is not None
    assert AccessRights.SEND in admin.rights and AccessRights.LISTEN in admin.rights


def test_policy_with_root_name_overrides_root_key() -> None:
    topology = parse_config(
        doc(
            SharedAccessPolicies=[
                {"Name": "RootManageSharedAccessKey", "Key": "secret", "Rights": ["Listen"]}
            ]
        )
    )
    assert topology.policies == [
        SasPolicy("RootManageSharedAccessKey", "secret", AccessRights.LISTEN)
    ]


@pytest.mark.parametrize(
    ("policy", "where", "fragment"),
    [
        ({"Key": "k", "Rights": ["Send"]}, "Name", "is required"),
        ({"Name": "bad name", "Key": "k", "Rights": ["Send"]}, "Name", "not a valid policy name"),
        ({"Name": "p", "Rights": ["Send"]}, "Key", "is required"),
        ({"Name": "p", "Key": "", "Rights": ["Send"]}, "Key", "must not be empty"),
        ({"Name": "p", "Key": "k" * 257, "Rights": ["Send"]}, "Key", "longer than 256"),
        ({"Name": "p", "Key": 5, "Rights": ["Send"]}, "Key", "expected a string, got a number"),
        ({"Name": "p", "Key": "k"}, "Rights", "is required"),
        ({"Name": "p", "Key": "k", "Rights": []}, "Rights", "at least one"),
        ({"Name": "p", "Key": "k", "Rights": "Send"}, "Rights", "expected an array"),
        ({"Name": "p", "Key": "k", "Rights": ["Sned"]}, "Rights[0]", "'Sned' is not one of"),
        ({"Name": "p", "Key": "k", "Rights": [1]}, "Rights[0]", "1 is not one of"),
        ({"Name": "p", "Key": "k", "Rights": ["Send"], "Scope": "x"}, "Scope", "unknown key"),
    ],
)
def test_policy_errors(policy: dict[str, Any], where: str, fragment: str) -> None:
    error = single_error(doc(SharedAccessPolicies=[policy]))
    assert error.startswith(f"{NS}.SharedAccessPolicies[0].{where}: "), error
    assert fragment in error


def test_duplicate_policy_names() -> None:
    policies = [
        {"Name": "p", "Key": "k", "Rights": ["Send"]},
        {"Name": "P", "Key": "k", "Rights": ["Send"]},
    ]
    error = single_error(doc(SharedAccessPolicies=policies))
    assert error.startswith(f"{NS}.SharedAccessPolicies[1].Name: duplicate policy name 'P'")


def test_policies_must_be_an_array() -> None:
    error = single_error(doc(SharedAccessPolicies={"Name": "p"}))
    assert error == f"{NS}.SharedAccessPolicies: expected an array, got an object"


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1M", timedelta(minutes=1)),
        ("PT30M", timedelta(minutes=30)),
        ("PT20S", timedelta(seconds=20)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT1,25S", timedelta(seconds=1.25)),
        ("P1D", timedelta(days=1)),
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(days=7)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("P1M", timedelta(days=30)),  # as .NET XmlConvert counts months
        ("P1Y", timedelta(days=365)),
        ("PT36H", timedelta(hours=36)),
        ("-PT1M", -timedelta(minutes=1)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "PT2X", "1M", "pt1m", "PT1.5M", "P1H", "PT1S2M", " PT1M"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not an ISO-8601 duration"):
        parse_duration(text)


def test_parse_duration_overflow() -> None:
    with pytest.raises(ValueError, match="too long a duration"):
        parse_duration("P9999999999D")


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(minutes=1), "PT1M"),
        (timedelta(days=7), "P7D"),
        (timedelta(days=1, hours=2, seconds=3.5), "P1DT2H3.5S"),
        (timedelta(0), "PT0S"),
        (-timedelta(seconds=20), "-PT20S"),
    ],
)
def test_format_duration_round_trips(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text
    assert parse_duration(text) == duration


# --- field errors --------------------------------------------------------------------------

SUB = f"{NS}.Topics[0].Subscriptions[0]"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("LockDuration", "PT2X", "'PT2X' is not an ISO-8601 duration"),
        ("LockDuration", "PT0S", "'PT0S' must be a positive duration"),
        ("LockDuration", "-PT1M", "'-PT1M' must be a positive duration"),
        ("LockDuration", 60, "expected an ISO-8601 duration string, got a number"),
        ("DefaultMessageTimeToLive", None, "expected an ISO-8601 duration string, got null"),
        ("MaxDeliveryCount", 0, "must be at least 1, got 0"),
        ("MaxDeliveryCount", -3, "must be at least 1, got -3"),
        ("MaxDeliveryCount", "5", "expected an integer, got a string"),
        ("MaxDeliveryCount", 2.5, "expected an integer, got a number"),
        ("MaxDeliveryCount", True, "expected an integer, got a boolean"),
        ("RequiresSession", "true", "expected true or false, got a string"),
        ("DeadLetteringOnMessageExpiration", 1, "expected true or false, got a number"),
        ("ForwardTo", 3, "expected an entity name, got a number"),
        ("ForwardTo", "nowhere", "no queue or topic named 'nowhere'"),
        ("ForwardDeadLetteredMessagesTo", "nowhere", "no queue or topic named 'nowhere'"),
        ("LockDurration", "PT1M", "unknown key (did you mean 'LockDuration'?)"),
        ("lockDuration", "PT1M", "unknown key (did you mean 'LockDuration'? keys are case-sen"),
        ("MaxMessageSizeInKilobytes", 1024, "unknown key"),  # queues and topics only
        ("Zzz", 1, "unknown key (expected one of DeadLetteringOnMessageExpiration,"),
    ],
)
def test_subscription_property_errors(key: str, value: object, message: str) -> None:
    data = topic_doc({"Name": "s", "Properties": {key: value}})
    error = single_error(data)
    assert error.startswith(f"{SUB}.Properties.{key}: {message}"), error


def test_the_documented_error_example() -> None:
    subs = [{"Name": f"s{i}"} for i in range(3)]
    subs[2]["Properties"] = {"LockDuration": "PT2X"}
    data = doc(Topics=[{"Name": "t0"}, {"Name": "t1", "Subscriptions": subs}])
    assert single_error(data) == (
        "UserConfig.Namespaces[0].Topics[1].Subscriptions[2].Properties.LockDuration: "
        "'PT2X' is not an ISO-8601 duration"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("LockDuration", "P", "'P' is not an ISO-8601 duration"),
        ("DuplicateDetectionHistoryTimeWindow", "PT0S", "'PT0S' must be a positive duration"),
        ("MaxDeliveryCount", 0, "must be at least 1"),
        ("MaxMessageSizeInKilobytes", 0, "must be at least 1"),
        ("RequiresDuplicateDetection", "no", "expected true or false"),
        ("ForwardTo", "q", "a queue cannot forward to itself"),
        ("ForwardTo", "missing", "no queue or topic named 'missing'"),
        ("DeadLetteringOnFilterEvaluationExceptions", True, "unknown key"),  # subscriptions only
    ],
)
def test_queue_property_errors(key: str, value: object, message: str) -> None:
    error = single_error(doc(Queues=[{"Name": "q", "Properties": {key: value}}]))
    assert error.startswith(f"{NS}.Queues[0].Properties.{key}: {message}"), error


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("DefaultMessageTimeToLive", "PT", "'PT' is not an ISO-8601 duration"),
        ("RequiresDuplicateDetection", None, "expected true or false, got null"),
        ("MaxMessageSizeInKilobytes", "256", "expected an integer"),
        ("LockDuration", "PT1M", "unknown key"),  # topics have no locks
        ("ForwardTo", "x", "unknown key"),
    ],
)
def test_topic_property_errors(key: str, value: object, message: str) -> None:
    error = single_error(doc(Topics=[{"Name": "t", "Properties": {key: value}}]))
    assert error.startswith(f"{NS}.Topics[0].Properties.{key}: {message}"), error


def test_forwarding_to_topic_or_queue_resolves_case_insensitively() -> None:
    data = doc(
        Queues=[
            {"Name": "Orders", "Properties": {"ForwardTo": "EVENTS"}},
            {"Name": "dlq-sink"},
        ],
        Topics=[
            {
                "Name": "events",
                "Subscriptions": [
                    {"Name": "s", "Properties": {"ForwardDeadLetteredMessagesTo": "DLQ-SINK"}}
                ],
            }
        ],
    )
    topology = parse_config(data)
    assert topology.queues[0].forward_to == "events"
    assert topology.topics[0].subscriptions[0].forward_dead_lettered_messages_to == "dlq-sink"


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["q", "queue.1", "a-b_c.d", "orders/eu/1", "A" * 260])
def test_valid_queue_names(name: str) -> None:
    assert parse_config(doc(Queues=[{"Name": name}])).queues[0].name == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "is not a valid queue name"),
        ("-q", "is not a valid queue name"),
        ("q.", "is not a valid queue name"),
        ("/q", "is not a valid queue name"),
        ("q q", "is not a valid queue name"),
        ("$q", "is not a valid queue name"),
        ("qé", "is not a valid queue name"),
        ("A" * 261, "longer than 260"),
    ],
)
def test_invalid_queue_names(name: str, fragment: str) -> None:
    error = single_error(doc(Queues=[{"Name": name}]))
    assert error.startswith(f"{NS}.Queues[0].Name: ")
    assert fragment in error


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("a/b", "not a valid subscription name"), ("s" * 51, "longer than 50")],
)
def test_invalid_subscription_names(name: str, fragment: str) -> None:
    error = single_error(topic_doc({"Name": name}))
    assert error.startswith(f"{SUB}.Name: ") and fragment in error


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("$Other", "not a valid rule name"), ("r" * 51, "longer than 50"), (7, "expected a string")],
)
def test_invalid_rule_names(name: object, fragment: str) -> None:
    error = single_error(topic_doc({"Name": "s", "Rules": [sql_rule(name, "a = 1")]}))  # type: ignore[arg-type]
    assert error.startswith(f"{SUB}.Rules[0].Name: ") and fragment in error


def test_missing_names() -> None:
    errors = errors_of(
        doc(Queues=[{}], Topics=[{"Subscriptions": [{"Rules": [{"Properties": {}}]}]}])
    )
    assert f"{NS}.Queues[0].Name: is required" in errors
    assert f"{NS}.Topics[0].Name: is required" in errors
    assert f"{NS}.Topics[0].Subscriptions[0].Name: is required" in errors
    assert f"{NS}.Topics[0].Subscriptions[0].Rules[0].Name: is required" in errors


def test_invalid_namespace_name() -> None:
    data = doc()
    data["UserConfig"]["Namespaces"][0]["Name"] = "bad name"
    assert single_error(data).startswith(f"{NS}.Name: 'bad name' is not a valid namespace name")


def test_duplicate_entity_names_are_case_insensitive_across_queues_and_topics() -> None:
    errors = errors_of(
        doc(
            Queues=[{"Name": "orders"}, {"Name": "ORDERS"}],
            Topics=[{"Name": "Orders"}, {"Name": "t"}],
        )
    )
    assert errors == [
        f"{NS}.Queues[1].Name: duplicate queue/topic name 'ORDERS' (names are case-insensitive)",
        f"{NS}.Topics[0].Name: duplicate queue/topic name 'Orders' (names are case-insensitive)",
    ]


def test_duplicate_subscription_and_rule_names() -> None:
    data = topic_doc(
        {"Name": "s", "Rules": [sql_rule("r", "a = 1"), sql_rule("R", "b = 1")]},
        {"Name": "S"},
    )
    errors = errors_of(data)
    assert errors == [
        f"{SUB}.Rules[1].Name: duplicate rule name 'R' (names are case-insensitive)",
        f"{NS}.Topics[0].Subscriptions[1].Name: duplicate subscription name 'S' "
        "(names are case-insensitive)",
    ]


# --- rules ---------------------------------------------------------------------------------

RULE = f"{SUB}.Rules[0].Properties"


def rule_error(properties: Any) -> str:
    return single_error(
        topic_doc({"Name": "s", "Rules": [{"Name": "r", "Properties": properties}]})
    )


SQL_OK = {"FilterType": "Sql", "SqlFilter": {"SqlExpression": "a = 1"}}


def corr(correlation_filter: object) -> dict[str, object]:
    return {"FilterType": "Correlation", "CorrelationFilter": correlation_filter}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({}, "FilterType: is required"),
        ({**SQL_OK, "FilterType": "sql"}, "FilterType: 'sql' is not one of Sql, Correlation"),
        ({"FilterType": "Sql"}, "SqlFilter: is required"),
        ({**SQL_OK, "SqlFilter": "a = 1"}, "SqlFilter: expected an object, got a string"),
        ({**SQL_OK, "SqlFilter": {}}, "SqlFilter.SqlExpression: is required"),
        ({**SQL_OK, "SqlFilter": {"SqlExpression": " "}}, "SqlFilter.SqlExpression: must not be"),
        (
            {**SQL_OK, "SqlFilter": {"SqlExpression": 1}},
            "SqlFilter.SqlExpression: expected a string, got a number",
        ),
        (
            {**SQL_OK, "SqlFilter": {"SqlExpression": "a = 1", "Parameters": {}}},
            "SqlFilter.Parameters: unknown key (expected one of SqlExpression)",
        ),
        (
            {**SQL_OK, "CorrelationFilter": {"To": "x"}},
            "CorrelationFilter: not allowed when FilterType is Sql",
        ),
        (
            {"FilterType": "Correlation"},
            "CorrelationFilter: is required when FilterType is Correlation",
        ),
        (corr({}), "CorrelationFilter: must set at least one property to match on"),
        (corr({"Properties": {}}), "CorrelationFilter: must set at least one property"),
        (corr({"To": 5}), "CorrelationFilter.To: expected a string, got a number"),
        (corr({"Subjct": "x"}), "CorrelationFilter.Subjct: unknown key"),
        (
            corr({"Properties": []}),
            "CorrelationFilter.Properties: expected an object, got an array",
        ),
        (
            corr({"Properties": {"p": None}}),
            "CorrelationFilter.Properties.p: expected a string, number or boolean, got null",
        ),
        (
            corr({"Properties": {"p": [1]}}),
            "CorrelationFilter.Properties.p: expected a string, number or boolean, got an array",
        ),
        (
            {**corr({"To": "x"}), "SqlFilter": {"SqlExpression": "a = 1"}},
            "SqlFilter: not allowed when FilterType is Correlation",
        ),
        ({**SQL_OK, "Action": "SET a = 1"}, "Action: expected an object, got a string"),
        ({**SQL_OK, "Action": {}}, "Action.SqlExpression: is required"),
        ({**SQL_OK, "Filter": {}}, "Filter: unknown key"),
    ],
)
def test_rule_errors(properties: Any, expected: str) -> None:
    error = rule_error(properties)
    assert error.startswith(f"{RULE}.{expected}"), error


def test_rule_properties_must_be_an_object() -> None:
    assert rule_error("Sql") == f"{RULE}: expected an object, got a string"


def test_rule_without_properties() -> None:
    error = single_error(topic_doc({"Name": "s", "Rules": [{"Name": "r"}]}))
    assert error.startswith(f"{RULE}: is required")


def test_sql_errors_carry_path_and_position() -> None:
    data = topic_doc(
        {
            "Name": "s",
            "Rules": [
                sql_rule("r", "a = !! 1"),
                sql_rule("r2", "a = 1", Action={"SqlExpression": "DELETE a"}),
            ],
        }
    )
    assert errors_of(data) == [
        f"{RULE}.SqlFilter.SqlExpression: invalid SQL filter of rule 'r' at position 4: "
        "unexpected '!' in 'a = !! 1'",
        f"{SUB}.Rules[1].Properties.Action.SqlExpression: invalid SQL action of rule 'r2' at "
        "position 0: expected SET or REMOVE in 'DELETE a'",
    ]


@pytest.mark.usefixtures("real_sql")
def test_sql_errors_from_the_real_compiler() -> None:
    error = single_error(topic_doc({"Name": "s", "Rules": [sql_rule("r", "jobType = = 'x'")]}))
    assert error == (
        f"{RULE}.SqlFilter.SqlExpression: invalid SQL filter of rule 'r' at position 10: "
        "Unexpected '='; expected a value or a property in \"jobType = = 'x'\""
    )


# --- document structure --------------------------------------------------------------------


def user(**user_config: Any) -> dict[str, Any]:
    return {"UserConfig": user_config}


def one_ns(**namespace: Any) -> dict[str, Any]:
    return user(Namespaces=[{"Name": "n", **namespace}])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "$: expected an object, got an array"),
        ({}, "UserConfig: is required"),
        ({"UserConfig": []}, "UserConfig: expected an object, got an array"),
        (user(), "UserConfig.Namespaces: is required"),
        (user(Namespaces={}), "UserConfig.Namespaces: expected an array, got an object"),
        (user(Namespaces=[]), "UserConfig.Namespaces: exactly one namespace is supported, got 0"),
        (user(Namespaces=["ns"]), f"{NS}: expected an object, got a string"),
        (user(Namespaces=[{}]), f"{NS}.Name: is required"),
        ({**one_ns(), "Extra": 1}, "Extra: unknown key"),
        (one_ns(Queues={}), f"{NS}.Queues: expected an array, got an object"),
        (one_ns(Topics=[[]]), f"{NS}.Topics[0]: expected an object, got an array"),
        (
            one_ns(Queues=[{"Name": "q", "Properties": []}]),
            f"{NS}.Queues[0].Properties: expected an object, got an array",
        ),
        (
            one_ns(Topics=[{"Name": "t", "Subscriptions": {}}]),
            f"{NS}.Topics[0].Subscriptions: expected an array, got an object",
        ),
        (
            one_ns(Topics=[{"Name": "t", "Subscriptions": [{"Name": "s", "Rules": {}}]}]),
            f"{SUB}.Rules: expected an array, got an object",
        ),
        (
            user(Namespaces=[{"Name": "n"}], Logging={"Type": "Syslog"}),
            "UserConfig.Logging.Type: 'Syslog' is not one of File, Console",
        ),
        (
            user(Namespaces=[{"Name": "n"}], Logging={"Level": "x"}),
            "UserConfig.Logging.Level: unknown key",
        ),
        (
            user(Namespaces=[{"Name": "n"}], Logging="File"),
            "UserConfig.Logging: expected an object, got a string",
        ),
    ],
)
def test_structure_errors(data: Any, expected: str) -> None:
    error = single_error(data)
    assert error.startswith(expected), error


def test_misspelt_section_reports_the_typo_and_the_missing_key() -> None:
    assert errors_of({"UserConfig": {"Namespace": []}}) == [
        "UserConfig.Namespace: unknown key (did you mean 'Namespaces'?)",
        "UserConfig.Namespaces: is required",
    ]


def test_more_than_one_namespace() -> None:
    data = doc()
    data["UserConfig"]["Namespaces"].append({"Name": "second"})
    assert single_error(data) == (
        "UserConfig.Namespaces: exactly one namespace is supported, got 2"
    )


def test_all_errors_are_collected_and_nothing_is_returned() -> None:
    data = doc(
        Queues=[{"Name": "q", "Properties": {"LockDuration": "soon", "MaxDeliveryCount": 0}}],
        Topics=[{"Name": "t", "Subscriptions": [{"Name": "s", "Properties": {"Typo": 1}}]}],
    )
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.errors == [
        f"{NS}.Queues[0].Properties.LockDuration: 'soon' is not an ISO-8601 duration",
        f"{NS}.Queues[0].Properties.MaxDeliveryCount: must be at least 1, got 0",
        f"{SUB}.Properties.Typo: unknown key (expected one of DeadLetteringOnMessageExpiration, "
        "DeadLetteringOnFilterEvaluationExceptions, DefaultMessageTimeToLive, LockDuration, "
        "MaxDeliveryCount, ForwardDeadLetteredMessagesTo, ForwardTo, RequiresSession)",
    ]
    text = str(info.value)
    assert text.startswith("invalid configuration (3 errors):\n  - ")
    assert all(error in text for error in info.value.errors)
    assert isinstance(info.value, ValueError)


def test_input_document_is_not_mutated() -> None:
    data = topic_doc({"Name": "s", "Properties": {"ForwardDeadLetteredMessagesTo": "T"}})
    before = copy.deepcopy(data)
    parse_config(data)
    assert data == before


# --- files ---------------------------------------------------------------------------------


def test_load_config_reports_duplicate_json_keys(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text(
        '{"UserConfig": {"Namespaces": [{"Name": "n", "Queues": [{"Name": "q", "Properties":'
        ' {"LockDuration": "PT1M", "LockDuration": "PT2M"}}]}]}}'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        f"{NS}.Queues[0].Properties.LockDuration: duplicate key (JSON keeps only the last value)"
    ]
    assert str(info.value).startswith(f"{path}: invalid configuration (1 error):")


def test_load_config_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"UserConfig": {\n  "Namespaces": [,]\n}}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (error,) = info.value.errors
    assert error.startswith("not valid JSON: Expecting value (line 2, column 18)")


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.json")
    assert info.value.errors[0].startswith("cannot read file")
    assert info.value.source == str(tmp_path / "nope.json")


def test_forwarding_loops_are_rejected_naming_the_cycle() -> None:
    data = {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "n",
                    "Queues": [
                        {"Name": "a", "Properties": {"ForwardTo": "b"}},
                        {"Name": "b", "Properties": {"ForwardTo": "t"}},
                    ],
                    "Topics": [
                        {
                            "Name": "t",
                            "Subscriptions": [{"Name": "s", "Properties": {"ForwardTo": "a"}}],
                        }
                    ],
                }
            ]
        }
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    (error,) = info.value.errors
    assert "ForwardTo makes a loop" in error
    assert "a -> b -> t -> t/Subscriptions/s -> a" in error


def test_subscription_forwarding_to_its_own_topic_is_a_loop() -> None:
    with pytest.raises(ConfigError, match="loop"):
        parse_config(topic_doc({"Name": "s", "Properties": {"ForwardTo": "T"}}))


def test_entity_level_policies_are_parsed_and_validated() -> None:
    doc = {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "n",
                    "Queues": [
                        {
                            "Name": "q",
                            "SharedAccessPolicies": [
                                {"Name": "reader", "Key": "k", "Rights": ["Listen"]}
                            ],
                        }
                    ],
                }
            ]
        }
    }
    (queue,) = parse_config(doc).queues
    assert [(p.name, p.rights) for p in queue.policies] == [("reader", AccessRights.LISTEN)]
    doc["UserConfig"]["Namespaces"][0]["Queues"][0]["SharedAccessPolicies"][0]["Rights"] = ["Read"]
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.errors == [
        "UserConfig.Namespaces[0].Queues[0].SharedAccessPolicies[0].Rights[0]: "
        "'Read' is not one of Send, Listen, Manage"
    ]


# --- tier --------------------------------------------------------------------------------------


def test_tier_defaults_to_standard_and_premium_raises_the_default_message_size() -> None:
    queue = {"Name": "q"}
    standard = parse_config(doc(Queues=[queue]))
    assert standard.tier is NamespaceTier.STANDARD
    assert standard.queues[0].max_message_size_bytes == 256 * 1024
    premium = parse_config(doc(Tier="Premium", Queues=[queue], Topics=[{"Name": "t"}]))
    assert premium.tier is NamespaceTier.PREMIUM
    assert premium.queues[0].max_message_size_bytes == 1024 * 1024
    assert premium.topics[0].max_message_size_bytes == 1024 * 1024


def test_unknown_tier_is_an_error() -> None:
    assert errors_of(doc(Tier="Basic")) == [
        "UserConfig.Namespaces[0].Tier: 'Basic' is not one of Standard, Premium"
    ]
