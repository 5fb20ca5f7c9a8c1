"""`describe_links`: what a failed scenario prints about the emulator's receiver links.

It must tell a stalled delivery (credit granted, messages available, nothing sent) from an
idle receiver, so each figure is checked against what the SDK did.
"""

from __future__ import annotations

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus.emulator import ServiceBusEmulator


def test_no_receiver_no_line(emulator: ServiceBusEmulator, conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("waiting"))
    assert emulator.describe_links() == []


def test_an_open_receiver_shows_its_credit_deliveries_and_what_waits(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages([ServiceBusMessage("one"), ServiceBusMessage("two")])
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            [first] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
            [line] = emulator.describe_links()
            assert line.split(" ", 2)[2].startswith("q: ")
            assert "delivered=1" in line
            assert "closed=False" in line
            assert "active=2" in line  # the locked one still counts, as in the service
            receiver.complete_message(first)
    assert emulator.describe_links() == []
