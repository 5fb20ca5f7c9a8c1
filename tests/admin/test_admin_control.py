"""The JSON control API, through the typed ControlClient the harness uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.control import ControlClient, ControlError


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


def test_unknown_endpoints_and_methods(emulator: ServiceBusEmulator) -> None:
    assert httpx.get(emulator.control_url + "/nope").status_code == 404
    assert httpx.delete(emulator.control_url + "/clock").status_code == 405
    bad = httpx.post(emulator.control_url + "/reset", content=b"{not json")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    assert "GET /control/clock" in httpx.get(emulator.control_url).json()["endpoints"]
