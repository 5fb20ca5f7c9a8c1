"""The broker core without any protocol: locks, delivery counts, expiry, scheduling."""

from __future__ import annotations

import math
import sys

import pytest

from emulator.servicebus.core.clock import ManualClock
from emulator.servicebus.core.errors import MessageLockLostError, MessageNotFoundError
from emulator.servicebus.core.message import BrokerMessage, MessageState
from emulator.servicebus.core.store import MessageStore, ReceiveMode, StorePolicy


def make_store(**policy: object) -> MessageStore:
    settings = {"lock_duration": 30.0, "max_delivery_count": 3}
    settings.update(policy)
    dlq = MessageStore(
        "q/$DeadLetterQueue", StorePolicy(max_delivery_count=None, expires_messages=False)
    )
    return MessageStore("q", StorePolicy(**settings), dlq)  # type: ignore[arg-type]


_seq = iter(range(1, 10**9))


def msg(**kwargs: object) -> BrokerMessage:
    m = BrokerMessage(payload=None, system={}, user={}, size=10, **kwargs)  # type: ignore[arg-type]
    m.sequence_number = next(_seq)
    return m


def test_receive_locks_in_sequence_order_and_complete_removes() -> None:
    clock = ManualClock()
    store = make_store()
    first, second = msg(), msg()
    store.enqueue(first, clock.now())
    store.enqueue(second, clock.now())
    got = store.receive(5, clock.now(), ReceiveMode.PEEK_LOCK)
    assert got == [first, second]
    assert first.locked_until == clock.now() + 30
    assert not store.has_available(clock.now())
    store.complete(first.lock_token, clock.now())  # type: ignore[arg-type]
    assert store.count() == 1


def test_lock_expiry_redelivers_with_incremented_count_then_dead_letters() -> None:
    clock = ManualClock()
    store = make_store()
    m = msg()
    store.enqueue(m, clock.now())
    for expected_count in range(3):
        (got,) = store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
        assert got.delivery_count == expected_count
        token = got.lock_token
        clock.advance(31)
        store.process_due(clock.now())
        with pytest.raises(MessageLockLostError):
            store.complete(token, clock.now())  # type: ignore[arg-type]
    assert store.count() == 0
    assert store.dead_letter_store is not None
    (dead,) = store.dead_letter_store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
    assert dead.user["DeadLetterReason"] == "MaxDeliveryCountExceeded"


def test_release_does_not_count_a_delivery() -> None:
    clock = ManualClock()
    store = make_store()
    store.enqueue(msg(), clock.now())
    (got,) = store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
    store.release(got.lock_token, clock.now())  # type: ignore[arg-type]
    (again,) = store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
    assert again.delivery_count == 0


def test_ttl_dead_letters_or_drops_per_entity_setting() -> None:
    clock = ManualClock()
    keep = make_store(default_time_to_live=60.0, dead_letter_on_expiration=True)
    drop = make_store(default_time_to_live=60.0, dead_letter_on_expiration=False)
    keep.enqueue(msg(), clock.now())
    drop.enqueue(msg(time_to_live=10.0), clock.now())
    clock.advance(11)
    drop.process_due(clock.now())
    assert (
        drop.count() == 0
        and drop.dead_letter_store is not None
        and drop.dead_letter_store.count() == 0
    )
    keep.process_due(clock.now())
    assert keep.count() == 1
    clock.advance(50)
    keep.process_due(clock.now())
    assert keep.count() == 0
    assert keep.dead_letter_store is not None
    (dead,) = keep.dead_letter_store.peek(0, 10)
    assert dead.user["DeadLetterReason"] == "TTLExpiredException"
    assert dead.expires_at == math.inf


def test_locked_message_expires_only_after_its_lock_is_given_up() -> None:
    clock = ManualClock()
    store = make_store(
        default_time_to_live=10.0, dead_letter_on_expiration=True, lock_duration=60.0
    )
    store.enqueue(msg(), clock.now())
    (got,) = store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
    clock.advance(20)
    store.process_due(clock.now())
    assert store.count() == 1  # still locked
    store.abandon(got.lock_token, clock.now())  # type: ignore[arg-type]
    assert store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK) == []
    assert store.dead_letter_store is not None and store.dead_letter_store.count() == 1


def test_scheduled_message_becomes_available_when_due() -> None:
    clock = ManualClock()
    store = make_store()
    m = msg(scheduled_enqueue_time=clock.now() + 100)
    m.state = MessageState.SCHEDULED
    store.enqueue(m, clock.now())
    assert store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK) == []
    assert store.next_deadline() == clock.now() + 100
    clock.advance(100)
    store.process_due(clock.now())
    assert store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK) == [m]


def test_defer_then_receive_deferred_by_sequence_number() -> None:
    clock = ManualClock()
    store = make_store()
    m = msg()
    store.enqueue(m, clock.now())
    (got,) = store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
    store.defer(got.lock_token, clock.now())  # type: ignore[arg-type]
    assert store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK) == []
    (deferred,) = store.receive_deferred([m.sequence_number], clock.now(), ReceiveMode.PEEK_LOCK)
    assert deferred.state is MessageState.DEFERRED
    store.complete(deferred.lock_token, clock.now())  # type: ignore[arg-type]
    with pytest.raises(MessageNotFoundError):
        store.receive_deferred([m.sequence_number], clock.now(), ReceiveMode.PEEK_LOCK)


def test_renew_lock_extends_and_receive_and_delete_removes() -> None:
    clock = ManualClock()
    store = make_store()
    store.enqueue(msg(), clock.now())
    store.enqueue(msg(), clock.now())
    (got,) = store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
    clock.advance(20)
    assert store.renew_lock(got.lock_token, clock.now()) == clock.now() + 30  # type: ignore[arg-type]
    clock.advance(20)
    store.process_due(clock.now())
    store.complete(got.lock_token, clock.now())  # type: ignore[arg-type]
    (deleted,) = store.receive(1, clock.now(), ReceiveMode.RECEIVE_AND_DELETE)
    assert deleted.lock_token is None and store.count() == 0


def test_peek_does_not_change_state() -> None:
    clock = ManualClock()
    store = make_store()
    messages = [msg() for _ in range(3)]
    for m in messages:
        store.enqueue(m, clock.now())
    assert store.peek(messages[1].sequence_number, 10) == messages[1:]
    assert store.receive(5, clock.now(), ReceiveMode.PEEK_LOCK) == messages


def test_duplicate_detector_window_follows_the_clock() -> None:
    from emulator.servicebus.core.dedup import DuplicateDetector

    clock = ManualClock()
    detector = DuplicateDetector(window=20)
    assert not detector.is_duplicate("a", clock.now())
    clock.advance(10)
    assert detector.is_duplicate("a", clock.now())
    assert not detector.is_duplicate(None, clock.now())
    clock.advance(10.5)
    assert not detector.is_duplicate("a", clock.now())
    assert detector.dropped == 1


def _heap_entries(store: MessageStore) -> int:
    return len(store._available) + len(store._expiry) + len(store._lock_heap)


def test_expired_messages_nobody_received_leave_no_heap_entries() -> None:
    """A subscription nobody reads: its messages expire while available (the soak's leak)."""
    clock = ManualClock()
    store = make_store(default_time_to_live=60.0, lock_duration=10**6)
    keeper = msg()
    store.enqueue(keeper, clock.now())
    store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)  # held: the store never empties
    for _ in range(10):
        for _ in range(500):
            store.enqueue(msg(), clock.now())
        clock.advance(61)
        store.process_due(clock.now())
    assert store.count() == 1
    assert _heap_entries(store) <= 3 * store.count() + 3 * 64  # not 5,000 stale entries


def test_completed_messages_do_not_keep_expiry_entries_until_their_ttl() -> None:
    clock = ManualClock()
    store = make_store(default_time_to_live=14 * 86400.0)
    store.enqueue(msg(), clock.now())  # an old message nobody takes: the heap top stays live
    for _ in range(5_000):
        store.enqueue(msg(), clock.now())
        (got,) = store.receive(1, clock.now(), ReceiveMode.PEEK_LOCK)
        store.complete(got.lock_token, clock.now())  # type: ignore[arg-type]
    assert store.count() == 1
    assert len(store._expiry) <= 2 * store.count() + 64


def test_a_drained_store_gives_back_its_tables_and_works_on() -> None:
    clock = ManualClock()
    store = make_store(default_time_to_live=600.0)
    for _ in range(5_000):
        store.enqueue(msg(), clock.now())
    full = sys.getsizeof(store.messages)
    for got in store.receive(5_000, clock.now(), ReceiveMode.RECEIVE_AND_DELETE):
        assert got.lock_token is None
    assert store.count() == 0 and _heap_entries(store) == 0
    assert sys.getsizeof(store.messages) < full / 10
    again = msg()
    store.enqueue(again, clock.now())
    assert store.receive(5, clock.now(), ReceiveMode.PEEK_LOCK) == [again]
    clock.advance(31)
    store.process_due(clock.now())  # its lock lapses as before the tidy-up
    assert again.delivery_count == 1 and store.has_available(clock.now())
