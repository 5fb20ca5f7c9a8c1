"""Sending and receiving through the real SDK: single, batch, modes, round-trips."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType


def test_send_and_receive_one_message(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("hello"))
        with client.get_queue_receiver("q", max_wait_time=5) as receiver:
            (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert str(msg) == "hello"
            assert msg.sequence_number == 1
            assert msg.delivery_count == 0
            assert msg.locked_until_utc is not None
            assert msg.enqueued_time_utc is not None
            receiver.complete_message(msg)
            assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []


def test_batch_send_delivers_every_message_in_order(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            batch = sender.create_message_batch()
            for i in range(25):
                batch.add_message(ServiceBusMessage(f"m{i}", application_properties={"i": i}))
            sender.send_messages(batch)
            sender.send_messages([ServiceBusMessage("list-1"), ServiceBusMessage("list-2")])
        received: list[str] = []
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            while len(received) < 27:
                msgs = receiver.receive_messages(max_message_count=30, max_wait_time=2)
                assert msgs, f"stalled after {len(received)} messages"
                for m in msgs:
                    received.append(str(m))
                    receiver.complete_message(m)
    assert received == [f"m{i}" for i in range(25)] + ["list-1", "list-2"]


def test_every_message_property_round_trips(conn_str: str) -> None:
    sent_at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    uid = uuid.uuid4()
    outgoing = ServiceBusMessage(
        b"\x00\x01binary body",
        message_id="mid-1",
        correlation_id="corr-1",
        subject="the-subject",
        content_type="application/octet-stream",
        reply_to="reply-q",
        to="someone",
        time_to_live=timedelta(minutes=3),
        application_properties={
            "str": "text",
            "int": 42,
            "neg": -7,
            "float": 1.5,
            "bool": True,
            "when": sent_at,
            "uuid": uid,
        },
    )
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(outgoing)
        with client.get_queue_receiver("q", max_wait_time=5) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=5)
            receiver.complete_message(msg)
    assert b"".join(msg.body) == b"\x00\x01binary body"
    assert msg.message_id == "mid-1"
    assert msg.correlation_id == "corr-1"
    assert msg.subject == "the-subject"
    assert msg.content_type == "application/octet-stream"
    assert msg.reply_to == "reply-q"
    assert msg.to == "someone"
    assert msg.time_to_live == timedelta(minutes=3)
    props = {
        k.decode() if isinstance(k, bytes) else k: v for k, v in msg.application_properties.items()
    }
    assert props["int"] == 42 and props["neg"] == -7
    assert props["float"] == 1.5 and props["bool"] is True
    assert props["str"] in ("text", b"text")
    assert props["uuid"] == uid
    when = props["when"]
    when_ms = when if isinstance(when, int) else int(when.timestamp() * 1000)
    assert when_ms == int(sent_at.timestamp() * 1000)


def test_value_and_sequence_bodies_round_trip(conn_str: str) -> None:
    value = AmqpAnnotatedMessage(value_body={"k": [1, 2, 3]})
    sequence = AmqpAnnotatedMessage(sequence_body=[[1, "two"], [3.0]])
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages([value, sequence])
        with client.get_queue_receiver("q", max_wait_time=5) as receiver:
            got = []
            while len(got) < 2:
                batch = receiver.receive_messages(max_message_count=2, max_wait_time=5)
                assert batch
                got.extend(batch)
            for m in got:
                receiver.complete_message(m)
    assert got[0].body_type is AmqpMessageBodyType.VALUE
    body = got[0].body
    assert {(k.decode() if isinstance(k, bytes) else k): v for k, v in body.items()} == {
        "k": [1, 2, 3]
    }
    assert got[1].body_type is AmqpMessageBodyType.SEQUENCE
    sections = list(got[1].body)
    assert len(sections) == 2 and sections[0][0] == 1 and sections[1] == [3.0]


def test_receive_and_delete_removes_on_delivery(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
        with client.get_queue_receiver(
            "q", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=2
        ) as receiver:
            got = []
            while len(got) < 2:
                batch = receiver.receive_messages(max_message_count=2, max_wait_time=2)
                assert batch
                got.extend(str(m) for m in batch)
        assert got == ["a", "b"]
        with client.get_queue_receiver("q") as receiver:
            assert receiver.peek_messages(max_message_count=10) == []


def test_iterating_receiver_with_prefetch(conn_str: str) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages([ServiceBusMessage(str(i)) for i in range(10)])
        seen = []
        with client.get_queue_receiver("q", prefetch_count=5, max_wait_time=2) as receiver:
            for m in receiver:
                seen.append(str(m))
                receiver.complete_message(m)
                if len(seen) == 10:
                    break
        assert seen == [str(i) for i in range(10)]
        with client.get_queue_receiver("q") as receiver:
            assert receiver.peek_messages(max_message_count=10) == []


def test_competing_receivers_take_turns_on_a_trickle(conn_str: str) -> None:
    """Two receivers waiting on one queue (two instances of a scaled-out app): messages sent
    one at a time go to both, not all to the one that attached first."""
    import threading

    got: dict[str, list[str]] = {"a": [], "b": []}
    arrived = threading.Semaphore(0)
    stop = threading.Event()
    waiting = threading.Barrier(3)

    def consume(name: str, client: ServiceBusClient) -> None:
        with client.get_queue_receiver("q", prefetch_count=5) as receiver:
            waiting.wait(timeout=30)
            while not stop.is_set():
                for message in receiver.receive_messages(5, max_wait_time=1):
                    receiver.complete_message(message)
                    got[name].append(str(message))
                    arrived.release()

    with (
        ServiceBusClient.from_connection_string(conn_str) as first,
        ServiceBusClient.from_connection_string(conn_str) as second,
    ):
        threads = [
            threading.Thread(target=consume, args=("a", first)),
            threading.Thread(target=consume, args=("b", second)),
        ]
        for thread in threads:
            thread.start()
        waiting.wait(timeout=30)
        try:
            with first.get_queue_sender("q") as sender:
                for n in range(10):
                    sender.send_messages(ServiceBusMessage(f"m{n}"))
                    assert arrived.acquire(timeout=30), f"m{n} was not received"
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    assert sorted(got["a"] + got["b"]) == sorted(f"m{n}" for n in range(10))
    assert len(got["a"]) >= 3 and len(got["b"]) >= 3, got
