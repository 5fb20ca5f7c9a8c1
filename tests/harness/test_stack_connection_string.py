"""The connection-string provider: the topology applied through the administration client.

The target here is the in-process emulator started *empty*, reached only by its connection
string and its HTTPS management API, as the official emulator or a namespace would be.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient, SqlRuleFilter

from emulator.servicebus import PROJECT_CONFIG, ServiceBusEmulator
from emulator.servicebus.topology import NamespaceTopology
from harness.stack import StackBuilder, apply_topology
from harness.stack import services as stack_services
from harness.stack.servicebus import load_topology

LOCAL_PROBLEMS = stack_services.probe_local(*stack_services.local_urls())


@pytest.fixture
def empty_emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(NamespaceTopology()) as emulator:
        yield emulator


def _admin(emulator: ServiceBusEmulator) -> ServiceBusAdministrationClient:
    return ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, connection_verify=str(emulator.ca_bundle)
    )


def test_apply_creates_the_project_topology_then_is_idempotent(
    empty_emulator: ServiceBusEmulator,
) -> None:
    topology = load_topology(PROJECT_CONFIG)
    verify = {"connection_verify": str(empty_emulator.ca_bundle)}
    report = apply_topology(empty_emulator.connection_string, topology, **verify)
    assert "topic huntaze-jobs" in report.created
    assert "subscription huntaze-jobs/video-analysis" in report.created
    assert "rule huntaze-jobs/video-analysis/jobtype-video" in report.created
    assert "rule huntaze-jobs/video-analysis/$Default" in report.removed
    # Only the $Default rules the service gives new subscriptions were already there.
    assert all(line.endswith("/$Default") for line in report.existing)

    with _admin(empty_emulator) as admin:
        sub = admin.get_subscription("huntaze-jobs", "video-analysis")
        assert sub.max_delivery_count == 3
        assert sub.lock_duration.total_seconds() == 120
        rules = list(admin.list_rules("huntaze-jobs", "video-analysis"))
        assert [r.name for r in rules] == ["jobtype-video"]
        assert isinstance(rules[0].filter, SqlRuleFilter)
        # Subscriptions without rules in the file keep the service's $Default.
        assert [r.name for r in admin.list_rules("huntaze-events", "metrics")] == ["$Default"]

    again = apply_topology(empty_emulator.connection_string, topology, **verify)
    assert not again.changed, again
    assert set(again.existing) == set(report.created) | set(report.existing)


def test_apply_adds_only_what_is_missing(empty_emulator: ServiceBusEmulator) -> None:
    with _admin(empty_emulator) as admin:
        admin.create_topic("huntaze-jobs")
        admin.create_subscription("huntaze-jobs", "video-analysis")
    topology = load_topology(PROJECT_CONFIG)
    report = apply_topology(
        empty_emulator.connection_string,
        topology,
        connection_verify=str(empty_emulator.ca_bundle),
    )
    assert "topic huntaze-jobs" in report.existing
    assert "subscription huntaze-jobs/video-analysis" in report.existing
    assert "subscription huntaze-jobs/chat-suggestions" in report.created
    assert "rule huntaze-jobs/video-analysis/jobtype-video" in report.created


def test_admin_errors_are_stack_errors(empty_emulator: ServiceBusEmulator) -> None:
    from harness.stack import StackError

    wrong_key = empty_emulator.connection_string.replace("SAS_KEY_VALUE", "wrong")
    with pytest.raises(StackError, match="administration client"):
        apply_topology(
            wrong_key,
            load_topology(PROJECT_CONFIG),
            connection_verify=str(empty_emulator.ca_bundle),
        )


@pytest.mark.skipif(bool(LOCAL_PROBLEMS), reason="; ".join(LOCAL_PROBLEMS))
def test_connection_string_provider_routes_by_the_applied_rules(
    empty_emulator: ServiceBusEmulator,
) -> None:
    builder = StackBuilder().provider("connection-string").with_services("local")
    builder.with_servicebus(
        empty_emulator.connection_string, connection_verify=str(empty_emulator.ca_bundle)
    )
    with builder.start() as stack:
        assert stack.name == "connection-string" and stack.services == "local"
        assert stack.emulator is None
        assert stack.topology_report is not None and stack.topology_report.changed
        assert stack.settings()["SERVICEBUS_CONNECTION"] == empty_emulator.connection_string

        marker = uuid.uuid4().hex
        with ServiceBusClient.from_connection_string(stack.servicebus_send_connection) as client:
            with client.get_topic_sender(stack.topic_jobs) as sender:
                sender.send_messages(
                    ServiceBusMessage(marker, application_properties={"jobType": "video.analysis"})
                )
            with client.get_subscription_receiver(
                stack.topic_jobs, "video-analysis", max_wait_time=5
            ) as receiver:
                (message,) = receiver.receive_messages(max_wait_time=5)
                assert str(message) == marker
                receiver.complete_message(message)
            with client.get_subscription_receiver(
                stack.topic_jobs, "chat-suggestions", max_wait_time=1
            ) as receiver:
                assert receiver.receive_messages(max_wait_time=1) == []


@pytest.mark.skipif(bool(LOCAL_PROBLEMS), reason="; ".join(LOCAL_PROBLEMS))
def test_connection_string_provider_with_auto_services_says_why(
    empty_emulator: ServiceBusEmulator,
) -> None:
    builder = StackBuilder().provider("connection-string")
    builder.with_servicebus(empty_emulator.connection_string, apply_topology=False)
    with builder.start() as stack:
        assert stack.topology_report is None
        assert stack.services == "local"
        assert stack.reason.startswith("Service Bus by connection string; local:")
