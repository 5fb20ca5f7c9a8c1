"""Manual settlement: the official `ServiceBusMessageActions` talks gRPC to the host's
Settlement service, and the host settles through its receiver — for real."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import NamespaceTopology, QueueDescription
from harness.host import FunctionsHost
from harness.host.testing import write_app

LOCK = 20

MANUAL_APP = """
import asyncio
OUTCOMES = []

@app.service_bus_queue_trigger(
    arg_name="msg", queue_name="manual", connection="SB", auto_complete_messages=False
)
async def handle(
    msg: servicebus.ServiceBusReceivedMessage,
    actions: servicebus.ServiceBusMessageActions,
) -> None:
    body = str(msg)
    try:
        if body == "complete":
            actions.complete(msg)
        elif body == "deadletter":
            # as the workers do: the blocking gRPC call off the event loop
            await asyncio.to_thread(
                actions.deadletter, msg,
                deadletter_reason="INVALID_PAYLOAD",
                deadletter_error_description="jobType: Field required",
            )
        elif body == "abandon-once":
            if msg.delivery_count == 0:
                actions.abandon(msg)
            else:
                actions.complete(msg)
        elif body == "defer":
            actions.defer(msg)
        elif body == "twice":
            actions.complete(msg)
            actions.complete(msg)
        elif body == "renew":
            actions.renew_message_lock(msg)
            actions.complete(msg)
        elif body == "forget":
            if msg.delivery_count > 0:
                actions.complete(msg)
        OUTCOMES.append((body, "ok"))
    except Exception as exc:
        OUTCOMES.append((body, type(exc).__name__ + ": " + str(exc)))
"""


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    queues = [
        QueueDescription(name, lock_duration=timedelta(seconds=LOCK), max_delivery_count=5)
        for name in ("manual", "other")
    ]
    with ServiceBusEmulator(NamespaceTopology(queues=queues)) as emulator:
        yield emulator


@pytest.fixture
def host(tmp_path: Path, emu: ServiceBusEmulator) -> Iterator[FunctionsHost]:
    app = write_app(
        tmp_path / "manual",
        MANUAL_APP,
        service_bus={"autoCompleteMessages": False, "maxConcurrentCalls": 4},
    )
    with FunctionsHost.load(app, settings={"SB": emu.connection_string}) as running:
        yield running


def send(emu: ServiceBusEmulator, body: str, queue: str = "manual") -> None:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage(body, message_id=body))


def peek(emu: ServiceBusEmulator, sub_queue: str | None = None) -> list[Any]:
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_receiver("manual", sub_queue=sub_queue) as receiver:
            return list(receiver.peek_messages(max_message_count=20))


def test_host_manual_complete(host: FunctionsHost, emu: ServiceBusEmulator) -> None:
    send(emu, "complete")
    [run] = host.wait_for_invocations(1, timeout=10)
    assert (run.outcome, run.settlement, run.settled_by) == ("succeeded", "completed", "function")
    assert host.module.OUTCOMES == [("complete", "ok")]
    assert peek(emu) == []


def test_host_manual_dead_letter_lands_in_the_dead_letter_queue(
    host: FunctionsHost, emu: ServiceBusEmulator
) -> None:
    send(emu, "deadletter")
    [run] = host.wait_for_invocations(1, timeout=10)
    assert (run.settlement, run.dead_letter_reason) == ("dead-lettered", "INVALID_PAYLOAD")
    assert peek(emu) == []
    [dead] = peek(emu, "deadletter")
    assert str(dead) == "deadletter"
    assert dead.dead_letter_reason == "INVALID_PAYLOAD"
    assert dead.dead_letter_error_description == "jobType: Field required"


def test_host_manual_abandon_redelivers(host: FunctionsHost, emu: ServiceBusEmulator) -> None:
    send(emu, "abandon-once")
    first, second = host.wait_for_invocations(2, timeout=10)
    assert (first.settlement, second.settlement) == ("abandoned", "completed")
    assert second.delivery_count == first.delivery_count + 1


def test_host_manual_defer_keeps_the_message_for_deferred_receive(
    host: FunctionsHost, emu: ServiceBusEmulator
) -> None:
    send(emu, "defer")
    [run] = host.wait_for_invocations(1, timeout=10)
    assert run.settlement == "deferred"
    with ServiceBusClient.from_connection_string(emu.connection_string) as client:
        with client.get_queue_receiver("manual") as receiver:
            [deferred] = receiver.receive_deferred_messages([run.sequence_number])
            assert str(deferred) == "defer"
            receiver.complete_message(deferred)


def test_host_manual_second_settlement_is_refused(
    host: FunctionsHost, emu: ServiceBusEmulator
) -> None:
    send(emu, "twice")
    [run] = host.wait_for_invocations(1, timeout=10)
    assert run.settlement == "completed"
    [(body, error)] = host.module.OUTCOMES
    assert body == "twice" and error.startswith("SettlementError")
    assert "[complete]" in error


def test_host_manual_lock_renewal_through_actions(
    host: FunctionsHost, emu: ServiceBusEmulator
) -> None:
    send(emu, "renew")
    [run] = host.wait_for_invocations(1, timeout=10)
    assert (run.lock_renewals, run.settlement) == (1, "completed")


def test_host_unsettled_message_reappears_when_its_lock_expires(
    host: FunctionsHost, emu: ServiceBusEmulator
) -> None:
    """autoCompleteMessages false and no settlement: nothing happens until the lock lapses."""
    send(emu, "forget")
    [first] = host.wait_for_invocations(1, timeout=10)
    assert (first.outcome, first.settlement) == ("succeeded", None)
    emu.clock.advance(LOCK + 1)  # the broker's clock; no real wait
    [_, second] = host.wait_for_invocations(2, timeout=10)
    assert second.delivery_count == first.delivery_count + 1
    assert second.settlement == "completed"


def test_host_points_the_actions_singleton_at_its_settlement_service(
    host: FunctionsHost,
) -> None:
    from azurefunctions.extensions.bindings.servicebus import ServiceBusMessageActions

    assert host.settlement_address is not None
    assert ServiceBusMessageActions.get_instance()._uri == host.settlement_address


def test_host_two_hosts_in_one_process_share_the_settlement_service(
    host: FunctionsHost, emu: ServiceBusEmulator, tmp_path: Path
) -> None:
    """The actions singleton is process-wide; lock tokens route each request to its host."""
    other_app = write_app(
        tmp_path / "other", MANUAL_APP.replace('queue_name="manual"', 'queue_name="other"')
    )
    with FunctionsHost.load(other_app, settings={"SB": emu.connection_string}) as other:
        assert other.settlement_address == host.settlement_address
        send(emu, "complete", "other")
        send(emu, "deadletter")
        [mine] = host.wait_for_invocations(1, timeout=10)
        [theirs] = other.wait_for_invocations(1, timeout=10)
    assert (mine.settlement, theirs.settlement) == ("dead-lettered", "completed")
    send(emu, "complete")  # the first host still settles after the second one stopped
    assert host.wait_for_invocations(2, timeout=10)[1].settlement == "completed"
