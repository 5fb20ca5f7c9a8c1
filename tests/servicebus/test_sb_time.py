"""Time-driven behaviour with the emulator clock: scheduling and expiry, no sleeping."""

from __future__ import annotations

from datetime import timedelta

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from emulator.servicebus import ServiceBusEmulator


def test_scheduled_message_is_invisible_until_due(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    when = emulator.clock.now_datetime() + timedelta(minutes=10)
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            (seq,) = sender.schedule_messages(ServiceBusMessage("future"), when)
            sender.send_messages(ServiceBusMessage("now", scheduled_enqueue_time_utc=when))
        with client.get_queue_receiver("q", max_wait_time=1) as receiver:
            peeked = receiver.peek_messages(max_message_count=10)
            assert peeked[0].sequence_number == seq
            assert all(p.state.value == 2 for p in peeked)  # scheduled
            assert receiver.receive_messages(max_wait_time=0.3) == []
            emulator.clock.advance(600)
            got = receiver.receive_messages(max_message_count=2, max_wait_time=2)
            while len(got) < 2:
                more = receiver.receive_messages(max_message_count=2, max_wait_time=2)
                assert more
                got.extend(more)
            assert sorted(str(m) for m in got) == ["future", "now"]
            for m in got:
                receiver.complete_message(m)


def test_cancel_scheduled_message(emulator: ServiceBusEmulator, conn_str: str) -> None:
    when = emulator.clock.now_datetime() + timedelta(minutes=5)
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            seqs = sender.schedule_messages([ServiceBusMessage("x"), ServiceBusMessage("y")], when)
            sender.cancel_scheduled_messages(seqs[0])
        emulator.clock.advance(301)
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_message_count=5, max_wait_time=2)
            assert str(msg) == "y"
            receiver.complete_message(msg)


def test_scheduled_message_on_topic_routes_when_due(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    when = emulator.clock.now_datetime() + timedelta(minutes=1)
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_topic_sender("t") as sender:
            sender.schedule_messages(
                ServiceBusMessage("r", application_properties={"color": "red"}), when
            )
        with client.get_subscription_receiver("t", "red", max_wait_time=1) as receiver:
            assert receiver.peek_messages(max_message_count=5) == []
            emulator.clock.advance(61)
            (msg,) = receiver.receive_messages(max_wait_time=2)
            assert str(msg) == "r"
            receiver.complete_message(msg)


def test_ttl_expiry_dead_letters_or_drops(emulator: ServiceBusEmulator, conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("expiring") as sender:
            sender.send_messages(ServiceBusMessage("entity-default"))
            sender.send_messages(ServiceBusMessage("short", time_to_live=timedelta(seconds=10)))
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("dropped", time_to_live=timedelta(seconds=10)))
        emulator.clock.advance(11)
        with client.get_queue_receiver("expiring", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = dlq.peek_messages(max_message_count=5)
            assert str(dead) == "short"
            assert dead.dead_letter_reason == "TTLExpiredException"
        with client.get_queue_receiver("q", max_wait_time=0.5) as receiver:
            assert receiver.receive_messages(max_wait_time=0.5) == []
        with client.get_queue_receiver("q", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            assert dlq.peek_messages(max_message_count=5) == []
        emulator.clock.advance(300)
        with client.get_queue_receiver("expiring", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            assert len(dlq.peek_messages(max_message_count=5)) == 2


def test_clock_reset_returns_to_wall_time_and_keeps_future_schedules(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    """`reset` (between tests) puts the clock back on wall time; a message scheduled in
    the advanced time stays scheduled, and becomes due when the clock reaches it again."""
    emulator.clock.advance(3600)
    when = emulator.clock.now_datetime() + timedelta(minutes=1)
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.schedule_messages(ServiceBusMessage("later"), when)
        emulator.clock.reset()
        assert emulator.clock.offset == 0
        with client.get_queue_receiver("q", max_wait_time=1) as receiver:
            assert receiver.receive_messages(max_wait_time=0.3) == []
            emulator.clock.advance(3660)
            [got] = receiver.receive_messages(max_wait_time=5)
            assert str(got) == "later"
            receiver.complete_message(got)
