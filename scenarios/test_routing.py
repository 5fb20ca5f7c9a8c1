"""Routing family: the topology's SQL filters send each message where the workers expect it.

- each `jobType` reaches exactly its job subscription, and no other;
- a message with a missing or unknown `jobType` reaches none of the workers' subscriptions
  and is kept, visibly, in the catch-all `unrouted` subscription (an operator sees the
  backlog; nothing vanishes silently, as it would with no subscription matching);
- every event on the events topic fans out to all four subscribers;
- the job subscriptions carry only their `jobType` rule: no `$Default` that would let
  every message into every worker.

Only the SDK is used (send, peek, administration client), so the family needs no clock
control and runs against any namespace given with `--sb-connection-string`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient

from harness.pytest_plugin import ServiceBusHelper
from harness.stack import Stack

JOB_SUBSCRIPTIONS = {
    "video.analysis": "video-analysis",
    "chat.suggest": "chat-suggestions",
    "content.suggest": "content-suggestions",
    "content.analyze": "content-analysis",
}
UNROUTED = "unrouted"
EVENT_SUBSCRIPTIONS = ("notify-signalr", "notify-email", "notify-webhook", "metrics")


@pytest.fixture
def admin(stack: Stack) -> Iterator[ServiceBusAdministrationClient]:
    kwargs: dict[str, Any] = {}
    conn = stack.servicebus_connection
    if stack.emulator is not None:
        conn, kwargs = (
            stack.emulator.connection_string,
            {"connection_verify": str(stack.emulator.ca_bundle)},
        )
    with ServiceBusAdministrationClient.from_connection_string(conn, **kwargs) as client:
        yield client


def _peeked_ids(servicebus: ServiceBusHelper, topic: str, subscription: str) -> set[str]:
    """Message ids waiting in a subscription, peeked (nothing locked, nothing consumed)."""
    return {str(m.message_id) for m in servicebus.peek(subscription, topic=topic)}


def _where(servicebus: ServiceBusHelper, topic: str, subscriptions: Any, ids: set[str]) -> dict:
    """For each subscription, which of `ids` it holds."""
    return {s: _peeked_ids(servicebus, topic, s) & ids for s in subscriptions}


def test_each_job_type_reaches_exactly_its_subscription(servicebus: ServiceBusHelper) -> None:
    tag = uuid.uuid4().hex[:8]
    sent = {}
    for job_type in JOB_SUBSCRIPTIONS:
        sent[job_type] = servicebus.send_raw(
            "{}", {"jobType": job_type}, message_id=f"route-{tag}-{job_type}"
        )
    held = _where(
        servicebus,
        servicebus.topic_jobs,
        [*JOB_SUBSCRIPTIONS.values(), UNROUTED],
        set(sent.values()),
    )
    expected = {sub: {sent[jt]} for jt, sub in JOB_SUBSCRIPTIONS.items()} | {UNROUTED: set()}
    assert held == expected


@pytest.mark.parametrize(
    "properties",
    [{}, {"jobType": "video.analyse"}, {"jobType": ""}],
    ids=["missing", "misspelt", "empty"],
)
def test_a_message_no_worker_takes_is_kept_where_operators_see_it(
    servicebus: ServiceBusHelper, properties: dict[str, Any]
) -> None:
    message_id = servicebus.send_raw("{}", properties, message_id=f"unrouted-{uuid.uuid4().hex}")
    held = _where(
        servicebus, servicebus.topic_jobs, [*JOB_SUBSCRIPTIONS.values(), UNROUTED], {message_id}
    )
    assert held == {**{s: set() for s in JOB_SUBSCRIPTIONS.values()}, UNROUTED: {message_id}}


def test_events_fan_out_to_all_four_subscribers(servicebus: ServiceBusHelper) -> None:
    message_id = f"event-{uuid.uuid4().hex}"
    servicebus.sender(servicebus.topic_events).send_messages(
        ServiceBusMessage(
            '{"type": "job.update"}',
            message_id=message_id,
            application_properties={"eventType": "job.update"},
        )
    )
    held = _where(servicebus, servicebus.topic_events, EVENT_SUBSCRIPTIONS, {message_id})
    assert held == {s: {message_id} for s in EVENT_SUBSCRIPTIONS}


def test_job_subscriptions_have_only_their_job_type_rule(
    admin: ServiceBusAdministrationClient, servicebus: ServiceBusHelper
) -> None:
    for job_type, subscription in JOB_SUBSCRIPTIONS.items():
        rules = list(admin.list_rules(servicebus.topic_jobs, subscription))
        assert [r.name for r in rules] != ["$Default"] and len(rules) == 1, subscription
        assert rules[0].filter.sql_expression == f"jobType = '{job_type}'"
    [catch_all] = admin.list_rules(servicebus.topic_jobs, UNROUTED)
    assert "jobType IS NULL" in catch_all.filter.sql_expression
