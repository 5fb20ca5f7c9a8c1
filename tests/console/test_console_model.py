"""The console's views and actions on a broker, without HTTP: paging, reasons, resubmit, purge."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from emulator.servicebus.console import actions, views
from emulator.servicebus.console.views import ViewError
from emulator.servicebus.console.web import parse_amount
from emulator.servicebus.core.broker import Broker
from emulator.servicebus.core.clock import EmulatorClock
from emulator.servicebus.core.message import BrokerMessage
from emulator.servicebus.core.store import ReceiveMode
from emulator.servicebus.replay_markers import REPLAY_COUNT, REPLAY_OF, REPLAYED_FROM
from emulator.servicebus.topology import (
    CorrelationFilterSpec,
    NamespaceTopology,
    QueueDescription,
    RuleDescription,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    TrueFilterSpec,
)


def topology() -> NamespaceTopology:
    return NamespaceTopology(
        queues=[
            QueueDescription(name="q", max_delivery_count=2),
            QueueDescription(
                name="dedup",
                requires_duplicate_detection=True,
                duplicate_detection_history_time_window=timedelta(minutes=10),
            ),
        ],
        topics=[
            TopicDescription(
                name="t",
                subscriptions=[
                    SubscriptionDescription(
                        name="red", rules=[RuleDescription("red", SqlFilterSpec("color = 'red'"))]
                    ),
                    SubscriptionDescription(
                        name="corr",
                        rules=[
                            RuleDescription(
                                "by-subject",
                                CorrelationFilterSpec(label="job", properties={"kind": "it's"}),
                                action="SET seen = TRUE",
                            )
                        ],
                    ),
                    SubscriptionDescription(
                        name="all", rules=[RuleDescription("$Default", TrueFilterSpec())]
                    ),
                ],
            )
        ],
    )


@pytest.fixture
def broker() -> Broker:
    return Broker(topology(), EmulatorClock())


def message(n: int, **user: object) -> BrokerMessage:
    return BrokerMessage(payload=None, system={"MessageId": f"m{n}"}, user=dict(user), size=10)


def dead_letter(broker: Broker, path: str, count: int, reason: str) -> None:
    """Receive ``count`` messages of ``path`` and dead-letter them with ``reason``."""
    store = broker.receive_store(path)
    now = broker.clock.now()
    for got in store.receive(count, now, ReceiveMode.PEEK_LOCK):
        assert got.lock_token is not None
        store.dead_letter(got.lock_token, now, reason, f"why: {reason}")


def test_rows_list_every_entity_with_counts_and_rules_as_sql(broker: Broker) -> None:
    broker.send("t", [message(1, color="red")])
    rows = {row.path: row for row in views.namespace_rows(broker)}
    assert list(rows) == [
        "dedup",
        "q",
        "t",
        "t/Subscriptions/all",
        "t/Subscriptions/corr",
        "t/Subscriptions/red",
    ]
    assert rows["t/Subscriptions/red"].counts.active == 1
    assert rows["t/Subscriptions/corr"].counts.active == 0
    assert [(r.name, r.sql) for r in rows["t/Subscriptions/red"].rules] == [
        ("red", "color = 'red'")
    ]
    corr = rows["t/Subscriptions/corr"].rules[0]
    assert corr.sql == "sys.Label = 'job' AND kind = 'it''s'"
    assert corr.action == "SET seen = TRUE"
    assert rows["t/Subscriptions/all"].rules[0].sql == "1=1"
    assert not rows["t"].receivable


def test_pages_follow_sequence_numbers_both_ways(broker: Broker) -> None:
    broker.send("q", [message(n) for n in range(120)])
    first = views.message_page(broker, "q", page_size=50)
    assert [m["sequence_number"] for m in first.messages] == list(range(1, 51))
    assert (first.total, first.previous_from, first.next_from) == (120, None, 51)
    second = views.message_page(broker, "q", from_sequence=first.next_from or 0, page_size=50)
    assert (second.first_index, second.previous_from, second.next_from) == (50, 1, 101)
    last = views.message_page(broker, "q", from_sequence=101, page_size=50)
    assert len(last.messages) == 20 and last.next_from is None and last.last_index == 120


def test_ten_thousand_messages_page_without_listing_them_all(broker: Broker) -> None:
    broker.send("q", [message(n) for n in range(10_000)])
    page = views.message_page(broker, "q", from_sequence=9_990)
    assert page.total == 10_000 and page.first_index == 9_989
    assert len(page.messages) == 11 and page.next_from is None


def test_dead_letters_are_filtered_by_reason_with_counts(broker: Broker) -> None:
    broker.send("q", [message(n) for n in range(5)])
    dead_letter(broker, "q", 3, "RATE_LIMIT")
    dead_letter(broker, "q", 2, "INVALID_PAYLOAD")
    page = views.message_page(broker, "q", "dead-letter")
    assert page.reasons == [("RATE_LIMIT", 3), ("INVALID_PAYLOAD", 2)]
    only = views.message_page(broker, "q", "dead-letter", reason="INVALID_PAYLOAD")
    assert only.total == 2
    assert {m["dead_letter_reason"] for m in only.messages} == {"INVALID_PAYLOAD"}
    assert views.message_page(broker, "q").total == 0


def test_scheduled_messages_wait_on_the_topic_and_the_queue(broker: Broker) -> None:
    later = broker.clock.now() + 300
    broker.send("t", [replace(message(1, color="red"), scheduled_enqueue_time=later)])
    broker.send("q", [replace(message(2), scheduled_enqueue_time=later)])
    assert views.message_page(broker, "t", "scheduled").total == 1
    assert views.message_page(broker, "q", "scheduled").total == 1
    assert views.message_page(broker, "q", "active").total == 0
    with pytest.raises(ViewError, match="scheduled messages wait on their topic"):
        views.message_page(broker, "t/Subscriptions/red", "scheduled")
    with pytest.raises(ViewError, match="only scheduled"):
        views.message_page(broker, "t", "active")


def test_bad_page_requests_say_what_is_wrong(broker: Broker) -> None:
    with pytest.raises(ViewError, match="no queue, topic or subscription 'nope'") as missing:
        views.message_page(broker, "nope")
    assert missing.value.status == 404
    with pytest.raises(ViewError, match="view: 'sideways'"):
        views.message_page(broker, "q", "sideways")  # type: ignore[arg-type]
    with pytest.raises(ViewError, match="size: must be between 1 and 500"):
        views.message_page(broker, "q", page_size=0)
    with pytest.raises(ViewError, match="holds no message 7"):
        views.message_detail(broker, "q", 7)


def test_resubmit_sends_a_marked_copy_then_removes_the_dead_letter(broker: Broker) -> None:
    broker.send("q", [message(1, jobType="chat.suggest")])
    dead_letter(broker, "q", 1, "RATE_LIMIT")
    dead = views.message_page(broker, "q", "dead-letter").messages[0]
    results = actions.resubmit(broker, "q/$DeadLetterQueue", [dead["sequence_number"]])
    assert [r.outcome for r in results] == ["resubmitted"]
    assert views.message_page(broker, "q", "dead-letter").total == 0
    copy = views.message_page(broker, "q").messages[0]
    props = copy["application_properties"]
    assert props["jobType"] == "chat.suggest"
    assert "DeadLetterReason" not in props and "DeadLetterErrorDescription" not in props
    assert props[REPLAY_COUNT] == 1
    assert props[REPLAYED_FROM] == "q/$DeadLetterQueue"
    assert props[REPLAY_OF] == f"q/$DeadLetterQueue:{dead['sequence_number']}"
    assert copy["delivery_count"] == 0 and copy["system_properties"]["MessageId"] == "m1"
    assert copy["sequence_number"] > dead["sequence_number"]


def test_a_subscription_dead_letter_goes_back_through_its_topic(broker: Broker) -> None:
    broker.send("t", [message(1, color="red")])
    dead_letter(broker, "t/Subscriptions/red", 1, "BROKEN")
    seq = views.message_page(broker, "t/Subscriptions/red", "dead-letter").messages[0]
    results = actions.resubmit(
        broker, "t/Subscriptions/red/$DeadLetterQueue", [seq["sequence_number"]]
    )
    assert results[0].detail == "sent to t"
    assert views.message_page(broker, "t/Subscriptions/red").total == 1
    assert views.message_page(broker, "t/Subscriptions/all").total == 2  # the filters apply


def test_resubmit_leaves_locked_missing_and_duplicate_ones(broker: Broker) -> None:
    broker.send("q", [message(n) for n in range(2)])
    dead_letter(broker, "q", 2, "X")
    dlq = broker.receive_store("q/$DeadLetterQueue")
    locked = dlq.receive(1, broker.clock.now(), ReceiveMode.PEEK_LOCK)[0]
    results = actions.resubmit(broker, "q/$DeadLetterQueue", [locked.sequence_number, 999])
    assert [(r.outcome, r.detail) for r in results] == [
        ("skipped", "locked by a receiver"),
        ("skipped", "not in the queue any more"),
    ]
    assert dlq.count() == 2

    broker.send("dedup", [message(7)])
    dead_letter(broker, "dedup", 1, "X")
    seq = views.message_page(broker, "dedup", "dead-letter").messages[0]["sequence_number"]
    skipped = actions.resubmit(broker, "dedup/$DeadLetterQueue", [seq])[0]
    assert skipped.outcome == "skipped" and "detects duplicates" in skipped.detail
    broker.clock.advance(601)
    assert actions.resubmit(broker, "dedup/$DeadLetterQueue", [seq])[0].outcome == "resubmitted"


def test_a_refused_send_keeps_the_dead_letter(broker: Broker) -> None:
    broker.send("q", [replace(message(1), size=2000)])
    dead_letter(broker, "q", 1, "X")
    queue = broker.queue("q")
    queue.description = replace(queue.description, max_message_size_bytes=1024)
    seq = views.message_page(broker, "q", "dead-letter").messages[0]["sequence_number"]
    result = actions.resubmit(broker, "q/$DeadLetterQueue", [seq])[0]
    assert result.outcome == "failed" and "exceeds the limit" in result.detail
    assert views.message_page(broker, "q", "dead-letter").total == 1


def test_only_dead_letter_queues_resubmit(broker: Broker) -> None:
    with pytest.raises(ViewError, match="not a dead-letter queue"):
        actions.resubmit(broker, "q", [1])
    with pytest.raises(ViewError, match="could not be found"):
        actions.resubmit(broker, "nope/$DeadLetterQueue", [1])


def test_purge_and_cancel(broker: Broker) -> None:
    broker.send("q", [message(n) for n in range(4)])
    dead_letter(broker, "q", 2, "X")
    assert actions.purge(broker, "q", "dead-letter") == 2
    assert actions.purge(broker, "q", "active") == 2
    later = broker.clock.now() + 60
    broker.send(
        "t", [replace(message(n, color="red"), scheduled_enqueue_time=later) for n in (1, 2)]
    )
    waiting = [m["sequence_number"] for m in views.message_page(broker, "t", "scheduled").messages]
    assert actions.cancel_scheduled(broker, "t", [waiting[0], 12345]) == 1
    assert views.message_page(broker, "t", "scheduled").total == 1
    assert actions.purge(broker, "t", "scheduled") == 1
    broker.clock.advance(120)
    assert views.message_page(broker, "t/Subscriptions/red").total == 0


def test_purge_leaves_locked_messages(broker: Broker) -> None:
    broker.send("q", [message(n) for n in range(3)])
    broker.receive_store("q").receive(1, broker.clock.now(), ReceiveMode.PEEK_LOCK)
    assert actions.purge(broker, "q", "active") == 2
    assert views.message_page(broker, "q").messages[0]["locked"] is True


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("5m", 300), ("1h 30m", 5400), ("2d", 172800), ("250ms", 0.25)],
)
def test_amounts(text: str, seconds: float) -> None:
    assert parse_amount(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "missing"), ("soon", "not a duration"), ("5 weeks", "not a duration"), ("400d", "366")],
)
def test_bad_amounts(text: str, error: str) -> None:
    with pytest.raises(ViewError, match=error):
        parse_amount(text)


def test_describe_seconds() -> None:
    assert views.describe_seconds(0) == "0s"
    assert views.describe_seconds(3725) == "1h 2m 5s"
    assert views.describe_seconds(-90) == "-1m 30s"
    assert views.describe_seconds(1.5) == "1.5s"


def test_removing_leaves_no_trace_in_a_store(broker: Broker) -> None:
    store = broker.receive_store("q")
    broker.send("q", [message(n) for n in range(3)])
    removed = store.remove([1, 3, 99], broker.clock.now())
    assert [m.sequence_number for m in removed] == [1, 3]
    got = store.receive(5, broker.clock.now(), ReceiveMode.RECEIVE_AND_DELETE)
    assert [m.sequence_number for m in got] == [2]
