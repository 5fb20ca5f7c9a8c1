"""Queues, topics and subscriptions: who owns which store, and how a topic fans out."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..sqlfilter import MessageView
from ..topology import QueueDescription, SubscriptionDescription, TopicDescription
from .dedup import DuplicateDetector
from .message import BrokerMessage, MessageState
from .rules import CompiledRule, FilterEvaluationError, strict_filters_enabled
from .store import MessageStore, StorePolicy

if TYPE_CHECKING:
    from .journal import Journal

DEAD_LETTER_SUFFIX = "$DeadLetterQueue"
TRANSFER_DEAD_LETTER_SUFFIX = "$Transfer/$DeadLetterQueue"
SCHEDULED_SUFFIX = "$Scheduled"
"""Names a topic's scheduled messages for a journal (entity names cannot contain ``$``)."""


def store_policy_for(description: QueueDescription | SubscriptionDescription) -> StorePolicy:
    """The StorePolicy a queue or subscription description implies."""
    return StorePolicy(
        lock_duration=description.lock_duration.total_seconds(),
        max_delivery_count=description.max_delivery_count,
        default_time_to_live=description.default_message_time_to_live.total_seconds(),
        dead_letter_on_expiration=description.dead_lettering_on_message_expiration,
        requires_session=description.requires_session,
    )


def dead_letter_policy(policy: StorePolicy) -> StorePolicy:
    """A dead-letter sub-queue's policy: the entity's lock, no delivery limit, no expiry."""
    return StorePolicy(
        lock_duration=policy.lock_duration, max_delivery_count=None, expires_messages=False
    )


def _stores(path: str, policy: StorePolicy) -> tuple[MessageStore, MessageStore, MessageStore]:
    """An entity's main store with its dead-letter and transfer dead-letter sub-queues."""
    dlq_policy = dead_letter_policy(policy)
    dead_letter = MessageStore(f"{path}/{DEAD_LETTER_SUFFIX}", dlq_policy)
    transfer_dead_letter = MessageStore(f"{path}/{TRANSFER_DEAD_LETTER_SUFFIX}", dlq_policy)
    main = MessageStore(path, policy, dead_letter)
    return main, dead_letter, transfer_dead_letter


Forwarder = Callable[[BrokerMessage, float], None]


def _detector(requires: bool, window: object, key: str) -> DuplicateDetector | None:
    if not requires:
        return None
    return DuplicateDetector(window.total_seconds(), key)  # type: ignore[attr-defined]


class SequenceCounter:
    """An entity's sequence numbers: each is handed out once, also across a durable restart."""

    def __init__(self, key: str = "") -> None:
        self._last = 0
        self.key = key
        """The entity's name (what a journal files the counter under)."""
        self.journal: Journal | None = None
        """Set by a durable emulator (``core.journal``); None costs nothing."""

    def next(self) -> int:
        self._last += 1
        if self.journal is not None:
            self.journal.sequence(self)
        return self._last

    @property
    def last(self) -> int:
        return self._last

    def restore(self, last: int) -> None:
        """Continue after ``last`` (read from durable state); never goes back."""
        self._last = max(self._last, last)


class Queue:
    def __init__(self, description: QueueDescription) -> None:
        self.description = description
        self.name = description.name
        self.sequence = SequenceCounter(description.name)
        self.store, self.dead_letter, self.transfer_dead_letter = _stores(
            description.name, store_policy_for(description)
        )
        self.created_at = 0.0
        self.duplicates = _detector(
            description.requires_duplicate_detection,
            description.duplicate_detection_history_time_window,
            description.name,
        )
        self.forwarder: Forwarder | None = None

    @property
    def max_message_size(self) -> int:
        return self.description.max_message_size_bytes

    def accept(self, message: BrokerMessage, now: float) -> int:
        message.sequence_number = self.sequence.next()
        if self.duplicates is not None and self.duplicates.is_duplicate(message.message_id, now):
            return message.sequence_number  # accepted and dropped, as the service does
        if self.forwarder is not None:
            self.forwarder(message, now)
            return message.sequence_number
        if message.scheduled_enqueue_time is not None and message.scheduled_enqueue_time > now:
            message.state = MessageState.SCHEDULED
        self.store.enqueue(message, now)
        return message.sequence_number

    def cancel_scheduled(self, sequence_numbers: list[int]) -> None:
        self.store.cancel_scheduled(sequence_numbers)

    def stores(self) -> list[MessageStore]:
        return [self.store, self.dead_letter, self.transfer_dead_letter]

    updated_at: float = 0.0
    """When the admin API last changed the description (0: never)."""


class Subscription:
    def __init__(self, topic: Topic, description: SubscriptionDescription) -> None:
        self.topic = topic
        self.description = description
        self.name = description.name
        self.path = f"{topic.name}/Subscriptions/{description.name}"
        self.rules: list[CompiledRule] = [CompiledRule.compile(r) for r in description.rules]
        self.store, self.dead_letter, self.transfer_dead_letter = _stores(
            self.path, store_policy_for(description)
        )
        self.created_at = 0.0
        self.forwarder: Forwarder | None = None

    def deliver(self, message: BrokerMessage, now: float) -> None:
        if self.forwarder is not None:
            self.forwarder(message, now)
        else:
            self.store.enqueue(message, now)

    def route(self, message: BrokerMessage, view: MessageView, now: float) -> bool:
        """Deliver the copies this subscription takes; False when it takes none.

        A rule that raises (see ``rules``) stops this subscription's evaluation: strict mode
        re-raises, otherwise the message is dead-lettered here as Azure does with a filter
        evaluation exception (or dropped here when that option is off).
        """
        rules = self.rules
        if len(rules) == 1 and rules[0].action is None:
            # The usual subscription, one filter and no action, without the general path's
            # layers (once per subscription of every message sent to the topic). Should the
            # filter raise, the general path below evaluates it again and reports it.
            try:
                matched = rules[0].filter.matches(view)
            except Exception:
                pass
            else:
                if matched:
                    self.deliver(message.copy(), now)
                return bool(matched)
        try:
            copies = self._select(message, view)
        except FilterEvaluationError as error:
            if strict_filters_enabled():
                raise
            if not self.description.dead_lettering_on_filter_evaluation_exceptions:
                return False
            failed = message.copy()
            failed.enqueued_time = now
            self.store.dead_letter_arrival(
                failed, now, type(error.cause).__name__, str(error.cause)
            )
            return True
        for extra in copies[1:]:
            # A store holds one message per sequence number: further copies of the same
            # message (one per matching action rule) take fresh numbers from the topic.
            extra.sequence_number = self.topic.sequence.next()
        for copy in copies:
            self.deliver(copy, now)
        return bool(copies)

    def _select(self, message: BrokerMessage, view: MessageView) -> list[BrokerMessage]:
        """The copies this subscription takes: one for all matching plain rules, one per action."""
        copies: list[BrokerMessage] = []
        plain_matched = False
        for rule in self.rules:
            if rule.action is None:
                if not plain_matched and rule.matches(view, self.path):
                    plain_matched = True
                    copies.append(message.copy())
                continue
            if rule.matches(view, self.path):
                copy = message.copy()
                copy.user = dict(copy.user)  # the action changes it: the copy's own
                copy_view = MessageView(system=dict(view.system), user=copy.user)
                rule.apply(copy_view, self.path)
                copy.system = {k: v for k, v in copy_view.system.items() if k in _ON_THE_WIRE}
                copy.user["RuleName"] = rule.description.name
                copy.modified = True
                copies.append(copy)
        return copies

    def stores(self) -> list[MessageStore]:
        return [self.store, self.dead_letter, self.transfer_dead_letter]

    updated_at: float = 0.0
    """When the admin API last changed the description or rules (0: never)."""


# System properties carried by the message itself (the rest are broker state).
_ON_THE_WIRE = frozenset(
    {
        "MessageId",
        "CorrelationId",
        "To",
        "ReplyTo",
        "Label",
        "SessionId",
        "ReplyToSessionId",
        "ContentType",
        "TimeToLive",
        "ScheduledEnqueueTimeUtc",
        "PartitionKey",
    }
)


@dataclass(slots=True)
class TopicCounters:
    accepted: int = 0
    unrouted: int = 0


class Topic:
    def __init__(self, description: TopicDescription) -> None:
        self.description = description
        self.name = description.name
        self.sequence = SequenceCounter(description.name)
        self.subscriptions: dict[str, Subscription] = {}
        self.counters = TopicCounters()
        self._scheduled: dict[int, BrokerMessage] = {}
        self._scheduled_heap: list[tuple[float, int]] = []
        self.scheduled_key = f"{description.name}/{SCHEDULED_SUFFIX}"
        """What a journal files the topic's scheduled messages under (not a link address)."""
        self.journal: Journal | None = None
        """Set by a durable emulator (``core.journal``); None costs nothing."""
        self.created_at = 0.0
        self.updated_at = 0.0
        self.duplicates = _detector(
            description.requires_duplicate_detection,
            description.duplicate_detection_history_time_window,
            description.name,
        )
        for sub in description.subscriptions:
            self.add_subscription(sub)

    @property
    def max_message_size(self) -> int:
        return self.description.max_message_size_bytes

    def add_subscription(self, description: SubscriptionDescription) -> Subscription:
        subscription = Subscription(self, description)
        self.subscriptions[description.name.casefold()] = subscription
        return subscription

    def subscription(self, name: str) -> Subscription | None:
        return self.subscriptions.get(name.casefold())

    def scheduled_messages(self) -> list[BrokerMessage]:
        """The messages waiting for their scheduled time, in sequence order."""
        return sorted(self._scheduled.values(), key=lambda m: m.sequence_number)

    @property
    def scheduled_count(self) -> int:
        return len(self._scheduled)

    @property
    def size_in_bytes(self) -> int:
        return sum(m.size for m in self._scheduled.values())

    def accept(self, message: BrokerMessage, now: float) -> int:
        message.sequence_number = self.sequence.next()
        self.updated_at = now
        if self.duplicates is not None and self.duplicates.is_duplicate(message.message_id, now):
            return message.sequence_number
        self.counters.accepted += 1
        if message.scheduled_enqueue_time is not None and message.scheduled_enqueue_time > now:
            message.state = MessageState.SCHEDULED
            self._scheduled[message.sequence_number] = message
            heapq.heappush(
                self._scheduled_heap, (message.scheduled_enqueue_time, message.sequence_number)
            )
            if self.journal is not None:
                self.journal.message(self.scheduled_key, self._scheduled, message.sequence_number)
        else:
            self._route(message, now)
        return message.sequence_number

    def restore_scheduled(self, message: BrokerMessage) -> None:
        """Put back a scheduled message read from durable state."""
        assert message.scheduled_enqueue_time is not None
        self._scheduled[message.sequence_number] = message
        heapq.heappush(
            self._scheduled_heap, (message.scheduled_enqueue_time, message.sequence_number)
        )

    def _route(self, message: BrokerMessage, now: float) -> None:
        message.state = MessageState.ACTIVE
        system = dict(message.system)
        system["SequenceNumber"] = message.sequence_number
        system["EnqueuedTimeUtc"] = _utc(now)
        system["Size"] = message.size
        view = MessageView(system=system, user=message.user)
        routed = False
        for subscription in self.subscriptions.values():
            routed = subscription.route(message, view, now) or routed
        if not routed:
            self.counters.unrouted += 1

    def cancel_scheduled(self, sequence_numbers: list[int]) -> None:
        for seq in sequence_numbers:
            if self._scheduled.pop(seq, None) is not None and self.journal is not None:
                self.journal.message(self.scheduled_key, self._scheduled, seq)

    def process_due(self, now: float) -> None:
        while self._scheduled_heap and self._scheduled_heap[0][0] <= now:
            _, seq = heapq.heappop(self._scheduled_heap)
            message = self._scheduled.pop(seq, None)
            if message is not None:
                if self.journal is not None:
                    self.journal.message(self.scheduled_key, self._scheduled, seq)
                self._route(message, now)

    def next_deadline(self) -> float | None:
        while self._scheduled_heap and self._scheduled_heap[0][1] not in self._scheduled:
            heapq.heappop(self._scheduled_heap)
        return self._scheduled_heap[0][0] if self._scheduled_heap else None

    def stores(self) -> list[MessageStore]:
        return [s for sub in self.subscriptions.values() for s in sub.stores()]


_last_utc: tuple[float, datetime] = (math.nan, datetime.fromtimestamp(0, UTC))


def _utc(now: float) -> datetime:
    """``now`` as a UTC datetime; the messages of a batch share one ``now``, so one datetime."""
    global _last_utc
    last = _last_utc  # one read: emulators on other threads may replace it meanwhile
    if last[0] != now:
        last = _last_utc = (now, datetime.fromtimestamp(now, UTC))
    return last[1]


@dataclass
class ResolvedPath:
    """What a link address names: an entity, and for receivers the store to read from."""

    entity: Queue | Topic | Subscription
    store: MessageStore | None = None
    sub_queue: str | None = None
    extra: list[str] = field(default_factory=list)


# --- management plane (admin API): updates of live entities ------------------------------------


def apply_description(
    entity: Queue | Subscription, description: QueueDescription | SubscriptionDescription
) -> None:
    """Replace a live entity's settings; its messages stay, new policies apply from now on."""
    policy = store_policy_for(description)
    entity.description = description  # type: ignore[assignment]
    entity.store.policy = policy
    dlq_policy = dead_letter_policy(policy)
    entity.dead_letter.policy = dlq_policy
    entity.transfer_dead_letter.policy = dlq_policy
    if isinstance(entity, Queue) and entity.duplicates is not None:
        window = description.duplicate_detection_history_time_window  # type: ignore[union-attr]
        entity.duplicates.window = window.total_seconds()
