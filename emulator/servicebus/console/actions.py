"""What the console changes: resubmit dead letters, purge a view, cancel scheduled messages.

Each runs on the emulator's loop thread, between two AMQP operations, so it sees and changes
the broker as one step. Resubmit keeps the order `harness dlq replay` keeps: the copy is sent
first and the dead letter removed only once that send was accepted, so a failed send loses
nothing. A locked message is never touched (its holder may still settle it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from ..core.broker import Broker
from ..core.entities import Queue, ResolvedPath, Subscription, Topic
from ..core.errors import BrokerError
from ..core.message import BrokerMessage, MessageState
from ..replay_markers import replay_id, replay_properties
from .views import View, ViewError, find_entity, view_messages

Outcome = Literal["resubmitted", "skipped", "failed"]


@dataclass(frozen=True)
class ActionResult:
    sequence_number: int
    outcome: Outcome
    detail: str = ""


def _origin(entity: Queue | Subscription | Topic) -> Queue | Topic:
    """Where a dead letter goes back to: its queue, or its subscription's topic (a sender
    cannot address a subscription), as `harness dlq replay` sends it."""
    if isinstance(entity, Subscription):
        return entity.topic
    assert not isinstance(entity, Topic)
    return entity


def _copy(message: BrokerMessage, dead_letter_path: str, now: datetime) -> BrokerMessage:
    copy = message.copy()
    copy.state = MessageState.ACTIVE
    copy.delivery_count = 0
    copy.scheduled_enqueue_time = None
    copy.dead_letter_source = None
    copy.hops = 0
    copy.user = replay_properties(
        message.user,
        dead_letter_path=dead_letter_path,
        replay_of=replay_id(dead_letter_path, message.sequence_number, message.message_id),
        replayed_at=now,
    )
    copy.modified = True
    return copy


def resubmit(broker: Broker, address: str, sequence_numbers: Iterable[int]) -> list[ActionResult]:
    """Send a marked copy of each chosen dead letter to its origin, then remove it."""
    resolved = _resolve(broker, address)
    if resolved.sub_queue is None or resolved.store is None:
        raise ViewError(400, f"{address} is not a dead-letter queue: only dead letters resubmit")
    target = _origin(resolved.entity)
    store = resolved.store
    now = broker.clock.now()
    results: list[ActionResult] = []
    for seq in sequence_numbers:
        message = store.messages.get(seq)
        if message is None:
            results.append(ActionResult(seq, "skipped", "not in the queue any more"))
            continue
        if message.lock_token is not None:
            results.append(ActionResult(seq, "skipped", "locked by a receiver"))
            continue
        window = target.duplicates.window if target.duplicates is not None else 0.0
        if message.message_id is not None and now - message.enqueued_time < window:
            results.append(
                ActionResult(
                    seq,
                    "skipped",
                    f"{target.name} detects duplicates and this message id was sent less than "
                    f"{window:g} s ago: the copy would be dropped",
                )
            )
            continue
        try:
            broker.send(target.name, [_copy(message, address, datetime.fromtimestamp(now, UTC))])
        except BrokerError as exc:
            results.append(ActionResult(seq, "failed", str(exc)))
            continue
        store.remove([seq], now)
        results.append(ActionResult(seq, "resubmitted", f"sent to {target.name}"))
    return results


def purge(broker: Broker, path: str, view: View) -> int:
    """Remove every unlocked message of one view; returns how many went."""
    row = find_entity(broker, path)
    address, held = view_messages(broker, row, view)
    numbers = [m.sequence_number for m in held]
    if view == "scheduled":
        broker.cancel_scheduled(address, numbers)
        return len(numbers)
    store = _resolve(broker, address).store
    assert store is not None
    return len(store.remove(numbers, broker.clock.now()))


def cancel_scheduled(broker: Broker, path: str, sequence_numbers: list[int]) -> int:
    """Cancel scheduled messages of a queue or topic, as the SDK's ``cancel_scheduled_messages``
    does; returns how many were still waiting."""
    row = find_entity(broker, path)
    _, held = view_messages(broker, row, "scheduled")
    waiting = {m.sequence_number for m in held}
    chosen = [n for n in sequence_numbers if n in waiting]
    broker.cancel_scheduled(row.path, chosen)
    return len(chosen)


def _resolve(broker: Broker, address: str) -> ResolvedPath:
    try:
        return broker.resolve(address)
    except BrokerError as exc:
        raise ViewError(404, str(exc)) from None
