"""Broker.reset: entities stay, everything they accumulated goes (the control API's reset)."""

from __future__ import annotations

from datetime import timedelta

from emulator.servicebus.core.broker import Broker
from emulator.servicebus.core.clock import ManualClock
from emulator.servicebus.core.entities import TopicCounters
from emulator.servicebus.core.message import BrokerMessage
from emulator.servicebus.core.store import ReceiveMode
from emulator.servicebus.topology import (
    NamespaceTopology,
    QueueDescription,
    SubscriptionDescription,
    TopicDescription,
    default_rules,
)


def _message(message_id: str | None = None) -> BrokerMessage:
    return BrokerMessage(payload=b"", system={"MessageId": message_id}, user={}, size=1)


def test_reset_forgets_messages_ids_counters_and_access_but_keeps_entities() -> None:
    clock = ManualClock()
    topology = NamespaceTopology(
        queues=[
            QueueDescription(
                name="q",
                requires_duplicate_detection=True,
                duplicate_detection_history_time_window=timedelta(minutes=10),
            )
        ],
        topics=[
            TopicDescription(
                name="t", subscriptions=[SubscriptionDescription(name="s", rules=default_rules())]
            )
        ],
    )
    broker = Broker(topology, clock)
    broker.send("q", [_message("m1")])
    broker.send("t", [_message()])
    queue_store = broker.receive_store("q")
    assert queue_store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
    assert queue_store.counters.enqueued == 1 and queue_store.accessed_at > 0

    broker.reset()

    assert set(broker.queues) == {"q"} and set(broker.topics) == {"t"}
    assert all(store.count() == 0 for store in broker.stores())
    assert queue_store.counters.enqueued == 0 and queue_store.accessed_at == 0.0
    assert broker.topics["t"].counters == TopicCounters()
    broker.send("q", [_message("m1")])
    assert queue_store.count() == 1, "the message id is no longer remembered as a duplicate"
