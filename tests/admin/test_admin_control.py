"""The JSON control API, through the typed ControlClient the harness uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.exceptions import ServiceBusError
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.admin.control_client import ControlClient, ControlError
from emulator.servicebus.core.rules import strict_filters
from emulator.servicebus.sqlfilter import MessageView


def _send(emu: ServiceBusEmulator, entity: str, *messages: ServiceBusMessage) -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_sender(entity) as sender:
            sender.send_messages(list(messages))


def test_clock_read_and_advance_fires_due_work(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    before = control.clock()
    assert before["offset_seconds"] == 0
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("q") as sender:
            sender.schedule_messages(
                ServiceBusMessage("later"), datetime.now(UTC) + timedelta(minutes=10)
            )
    (scheduled,) = control.peek("q")
    assert scheduled["state"] == "scheduled"
    after = control.advance(601)
    assert after["offset_seconds"] == 601
    assert after["now"] >= before["now"] + 601
    (active,) = control.peek("q")
    assert active["state"] == "active"
    with pytest.raises(ControlError, match="seconds"):
        control.advance(-1)


def test_entities_lists_counts_of_everything(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    _send(emulator, "q", ServiceBusMessage("a"), ServiceBusMessage("b"))
    listing = control.entities()
    (queue,) = listing["queues"]
    assert (queue["name"], queue["counts"]["active"], queue["counts"]["total"]) == ("q", 2, 2)
    (topic,) = listing["topics"]
    subs = {s["name"]: s for s in topic["subscriptions"]}
    assert subs["red"]["rules"] == ["red"]
    assert subs["all"]["path"] == "t/Subscriptions/all"


def test_peek_shows_dead_letters_with_all_properties_and_changes_nothing(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    _send(
        emulator,
        "q",
        ServiceBusMessage(
            "payload",
            application_properties={"jobType": "x", "n": 3},
            correlation_id="corr-1",
            subject="label",
            content_type="application/json",
        ),
    )
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.dead_letter_message(msg, reason="Poison", error_description="bad input")
    for _ in range(2):
        (dead,) = control.peek("q/$DeadLetterQueue")
        assert dead["sub_queue"] == "$DeadLetterQueue"
        assert (dead["dead_letter_reason"], dead["dead_letter_error_description"]) == (
            "Poison",
            "bad input",
        )
        assert dead["body"]["kind"] == "data" and dead["body"]["text"] == "payload"
        assert dead["application_properties"]["n"] == 3
        assert dead["system_properties"]["CorrelationId"] == "corr-1"
        assert dead["system_properties"]["Label"] == "label"
        assert dead["locked"] is False and dead["delivery_count"] == 0
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_receiver("q", sub_queue="deadletter", max_wait_time=2) as dlq:
            (again,) = dlq.receive_messages(max_wait_time=2)
            assert again.delivery_count == 0  # the control peeks did not count as deliveries
            dlq.complete_message(again)
    assert control.peek("q/$DeadLetterQueue") == []


def test_peek_a_topic_shows_its_scheduled_messages(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            sender.schedule_messages(
                ServiceBusMessage("soon"), datetime.now(UTC) + timedelta(hours=1)
            )
    (message,) = control.peek("t")
    assert message["state"] == "scheduled"
    assert message["scheduled_enqueue_time"] is not None
    with pytest.raises(ControlError) as missing:
        control.peek("nope/$DeadLetterQueue")
    assert missing.value.status == 404


def test_reset_empties_entities_and_reload_restores_the_config(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    _send(emulator, "q", ServiceBusMessage("a"))
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, connection_verify=str(emulator.ca_bundle)
    ) as admin:
        admin.create_queue("temporary")
        control.reset()
        assert control.peek("q") == []
        assert [q.name for q in admin.list_queues()] == ["q", "temporary"]
        _send(emulator, "q", ServiceBusMessage("b"))
        control.reset(reload=True)
        assert [q.name for q in admin.list_queues()] == ["q"]
        assert admin.get_queue_runtime_properties("q").total_message_count == 0
    _send(emulator, "q", ServiceBusMessage("after reload"))  # clients reconnect and work
    assert [m["body"]["text"] for m in control.peek("q")] == ["after reload"]


def test_reload_takes_the_tier_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "Config.json"

    def write(tier: str) -> None:
        namespace = {"Name": "sbemulatorns", "Tier": tier, "Queues": [{"Name": "q"}]}
        config.write_text(json.dumps({"UserConfig": {"Namespaces": [namespace]}}))

    write("Standard")
    with ServiceBusEmulator.from_config(config) as emu, ControlClient(emu.control_url) as control:
        with ServiceBusAdministrationClient.from_connection_string(
            emu.connection_string, connection_verify=str(emu.ca_bundle)
        ) as admin:
            assert admin.get_namespace_properties().messaging_sku == "Standard"
            write("Premium")
            control.reset(reload=True)
            assert admin.get_namespace_properties().messaging_sku == "Premium"
            assert admin.create_queue("big").max_message_size_in_kilobytes == 1024


def test_fault_endpoints(control: ControlClient) -> None:
    rule = control.add_fault("send", "server-busy", entity="q", next_n=2)
    assert rule["id"] and rule["next_n"] == 2
    other = control.add_fault("receive", "latency", latency_ms=50)
    assert [r["id"] for r in control.faults()] == [rule["id"], other["id"]]
    control.remove_fault(rule["id"])
    assert [r["id"] for r in control.faults()] == [other["id"]]
    with pytest.raises(ControlError) as missing:
        control.remove_fault(rule["id"])
    assert missing.value.status == 404
    with pytest.raises(ControlError, match="effect"):
        control.add_fault("send", "meteor")  # type: ignore[arg-type]
    assert control.clear_faults() == 1
    assert control.faults() == []


def test_server_busy_fault_is_retried_by_the_sdk_until_it_clears(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    control.add_fault("send", "server-busy", entity="q", next_n=1)
    with ServiceBusClient.from_connection_string(
        emulator.connection_string, retry_backoff_factor=0.01
    ) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("persistent"))
    (rule,) = control.faults()
    assert rule["fired"] == 1
    assert [m["body"]["text"] for m in control.peek("q")] == ["persistent"]


def test_counters_count_operations_per_entity(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    _send(emulator, "q", ServiceBusMessage("a"), ServiceBusMessage("b"))
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            for message in receiver.receive_messages(max_message_count=2, max_wait_time=2):
                receiver.complete_message(message)
        with client.get_topic_sender("t") as sender:
            sender.send_messages(ServiceBusMessage("x", application_properties={"color": "red"}))
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, connection_verify=str(emulator.ca_bundle)
    ) as admin:
        admin.get_queue_runtime_properties("q")
    counters = control.counters()["entities"]
    assert counters["q"]["sends"] == 2
    assert counters["q"]["receives"] == 2
    assert counters["q"]["settlements"] == 2
    assert counters["q"]["management"] >= 1
    assert counters["t"]["sends"] == 1
    assert counters["t/Subscriptions/red"]["store"]["enqueued"] == 1
    control.reset()
    assert control.counters()["entities"]["q"]["sends"] == 0


class _BrokenFilter:
    """Stands in for an evaluator bug: raises for every message."""

    def matches(self, message: MessageView) -> bool:
        raise ZeroDivisionError("evaluator bug")


def _break_rule(emulator: ServiceBusEmulator) -> None:
    rule = emulator.broker.subscription("t", "red").rules[0]
    emulator.call(lambda: setattr(rule, "filter", _BrokenFilter()))


def test_filter_evaluation_errors_are_counted_per_rule_and_the_message_dead_lettered(
    emulator: ServiceBusEmulator, control: ControlClient
) -> None:
    _break_rule(emulator)
    with strict_filters(False):
        with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            with client.get_topic_sender("t") as sender:
                sender.send_messages([ServiceBusMessage("x"), ServiceBusMessage("y")])
            with client.get_subscription_receiver(
                "t", "red", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5
            ) as receiver:
                dead = receiver.receive_messages(max_message_count=2, max_wait_time=5)
    assert [m.dead_letter_reason for m in dead] == ["ZeroDivisionError"] * 2
    assert dead[0].dead_letter_error_description == "evaluator bug"
    counters = control.counters()
    assert counters["entities"]["t/Subscriptions/red"]["filter_evaluation_errors"] == {"red": 2}
    assert counters["entities"]["t/Subscriptions/all"]["filter_evaluation_errors"] == {
        "$Default": 0
    }
    assert counters["namespace"]["filter_evaluation_errors"] == 2
    control.reset()
    assert control.counters()["namespace"]["filter_evaluation_errors"] == 0


def test_in_strict_mode_a_filter_evaluation_error_fails_the_send(
    emulator: ServiceBusEmulator,
) -> None:
    _break_rule(emulator)
    with ServiceBusClient.from_connection_string(
        emulator.connection_string, retry_total=0
    ) as client:
        with client.get_topic_sender("t") as sender, pytest.raises(ServiceBusError):
            sender.send_messages(ServiceBusMessage("x"))


def test_unknown_endpoints_and_methods(emulator: ServiceBusEmulator) -> None:
    assert httpx.get(emulator.control_url + "/nope").status_code == 404
    assert httpx.delete(emulator.control_url + "/clock").status_code == 405
    bad = httpx.post(emulator.control_url + "/reset", content=b"{not json")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    assert "GET /control/clock" in httpx.get(emulator.control_url).json()["endpoints"]
