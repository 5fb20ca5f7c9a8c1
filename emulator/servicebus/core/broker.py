"""The namespace: entity registry, path resolution, send/schedule, and time processing.

Single-threaded by design: the AMQP server calls it from its event loop only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..topology import (
    NamespaceTopology,
    QueueDescription,
    SubscriptionDescription,
    TopicDescription,
    forwarding_cycle,
)
from .clock import Clock
from .dedup import DuplicateDetector
from .entities import (
    DEAD_LETTER_SUFFIX,
    TRANSFER_DEAD_LETTER_SUFFIX,
    Queue,
    ResolvedPath,
    Subscription,
    Topic,
    TopicCounters,
    apply_description,
)
from .errors import (
    EntityNotFoundError,
    InvalidOperationError,
    MessageSizeExceededError,
)
from .message import (
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    BrokerMessage,
    MessageState,
)
from .rules import CompiledRule
from .store import MessageStore, StoreCounters

if TYPE_CHECKING:
    from .journal import Journal

MAX_FORWARDING_HOPS = 4
_DLQ = DEAD_LETTER_SUFFIX.casefold()
_TDLQ = TRANSFER_DEAD_LETTER_SUFFIX.casefold()


class Broker:
    def __init__(self, topology: NamespaceTopology, clock: Clock) -> None:
        self.topology = topology
        self.clock = clock
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        self.journal: Journal | None = None
        """Set by ``attach_journal`` (a durable emulator); None costs nothing."""
        cycle = forwarding_cycle(topology)
        if cycle:
            raise InvalidOperationError("ForwardTo makes a loop: " + " -> ".join(cycle))
        for queue in topology.queues:
            self.add_queue(queue)
        for topic in topology.topics:
            self.add_topic(topic)

    # -- durable state ---------------------------------------------------------------------------

    def attach_journal(self, journal: Journal | None) -> None:
        """Report every later state change to ``journal`` (see ``core.journal``); None detaches.

        Operations that change state commit the journal before they return, so whatever the
        adapter answers afterwards is already durable.
        """
        self.journal = journal
        for queue in self.queues.values():
            self._attach(queue)
        for topic in self.topics.values():
            self._attach(topic)

    def _attach(self, entity: Queue | Topic) -> None:
        journal = self.journal
        entity.sequence.journal = journal
        if entity.duplicates is not None:
            entity.duplicates.journal = journal
        if isinstance(entity, Topic):
            entity.journal = journal
        for store in entity.stores():
            store.journal = journal

    def _changed(self, path: str) -> None:
        """An admin operation changed ``path``: make it durable before answering."""
        if self.journal is not None:
            self.journal.entity(path)
            self.journal.commit()

    # -- registry ------------------------------------------------------------------------------

    def add_queue(self, description: QueueDescription) -> Queue:
        key = description.name.casefold()
        if key in self.queues or key in self.topics:
            raise InvalidOperationError(f"entity '{description.name}' already exists")
        queue = Queue(description)
        queue.created_at = self.clock.now()
        self._wire_forwarding(queue, description)
        self.queues[key] = queue
        if self.journal is not None:
            self._attach(queue)
        return queue

    def add_topic(self, description: TopicDescription) -> Topic:
        key = description.name.casefold()
        if key in self.queues or key in self.topics:
            raise InvalidOperationError(f"entity '{description.name}' already exists")
        topic = Topic(description)
        topic.created_at = self.clock.now()
        for sub in topic.subscriptions.values():
            sub.created_at = topic.created_at
            self._wire_forwarding(sub, sub.description)
        self.topics[key] = topic
        if self.journal is not None:
            self._attach(topic)
        return topic

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name.casefold())
        if queue is None:
            raise EntityNotFoundError(f"The messaging entity '{name}' could not be found.")
        return queue

    def topic(self, name: str) -> Topic:
        topic = self.topics.get(name.casefold())
        if topic is None:
            raise EntityNotFoundError(f"The messaging entity '{name}' could not be found.")
        return topic

    def subscription(self, topic: str, name: str) -> Subscription:
        subscription = self.topic(topic).subscription(name)
        if subscription is None:
            raise EntityNotFoundError(
                f"The messaging entity '{topic}/Subscriptions/{name}' could not be found."
            )
        return subscription

    # -- paths ---------------------------------------------------------------------------------

    def resolve(self, path: str) -> ResolvedPath:
        """Map a link address path (``q``, ``t/Subscriptions/s/$DeadLetterQueue``) to an entity."""
        clean = path.strip("/")
        folded = clean.casefold()
        sub_queue: str | None = None
        if folded.endswith("/" + _TDLQ):
            sub_queue = TRANSFER_DEAD_LETTER_SUFFIX
            clean = clean[: -len(_TDLQ) - 1]
        elif folded.endswith("/" + _DLQ):
            sub_queue = DEAD_LETTER_SUFFIX
            clean = clean[: -len(_DLQ) - 1]
        folded = clean.casefold()
        entity: Queue | Topic | Subscription
        if folded in self.queues:
            entity = self.queues[folded]
        elif folded in self.topics:
            entity = self.topics[folded]
            if sub_queue is not None:
                raise EntityNotFoundError(f"A topic has no sub-queue: '{path}'")
            return ResolvedPath(entity)
        else:
            topic_name, sep, sub_name = clean.partition("/")
            sub_name = sub_name.removeprefix("Subscriptions/").removeprefix("subscriptions/")
            if (
                not sep
                or "/" in sub_name
                or not clean[len(topic_name) + 1 :].casefold().startswith("subscriptions/")
            ):
                raise EntityNotFoundError(f"The messaging entity '{path}' could not be found.")
            entity = self.subscription(topic_name, sub_name)
        if sub_queue == DEAD_LETTER_SUFFIX:
            store = entity.dead_letter
        elif sub_queue == TRANSFER_DEAD_LETTER_SUFFIX:
            store = entity.transfer_dead_letter
        else:
            store = entity.store
        return ResolvedPath(entity, store, sub_queue)

    def receive_store(self, path: str) -> MessageStore:
        resolved = self.resolve(path)
        if resolved.store is None:
            raise InvalidOperationError(f"Cannot receive from topic '{path}'.")
        return resolved.store

    def _send_target(self, path: str) -> Queue | Topic:
        resolved = self.resolve(path)
        if not isinstance(resolved.entity, Queue | Topic) or resolved.sub_queue is not None:
            raise InvalidOperationError(f"Cannot send to '{path}': it is not a queue or topic.")
        return resolved.entity

    # -- data plane ----------------------------------------------------------------------------

    def check_size(self, path: str, size: int) -> None:
        target = self._send_target(path)
        if size > target.max_message_size:
            raise MessageSizeExceededError(
                f"The received message (size {size} bytes) exceeds the limit "
                f"({target.max_message_size} bytes) currently allowed on the link."
            )

    def send(self, path: str, messages: list[BrokerMessage]) -> list[int]:
        """Accept messages for a queue or topic; all-or-nothing on size errors."""
        target = self._send_target(path)
        for message in messages:
            if message.size > target.max_message_size:
                raise MessageSizeExceededError(
                    f"The received message (size {message.size} bytes) exceeds the limit "
                    f"({target.max_message_size} bytes) currently allowed on the link."
                )
        if _requires_session(target):
            for message in messages:
                if message.session_id is None:
                    raise InvalidOperationError(
                        f"The SessionId was not set on a message, and it cannot be sent to the "
                        f"entity '{target.name}'. Entities that have session support enabled can "
                        "only receive messages that have the SessionId set to a valid value."
                    )
        now = self.clock.now()
        numbers = [target.accept(message, now) for message in messages]
        if self.journal is not None:
            self.journal.commit()
        return numbers

    def schedule(self, path: str, messages: list[BrokerMessage]) -> list[int]:
        return self.send(path, messages)

    def cancel_scheduled(self, path: str, sequence_numbers: list[int]) -> None:
        self._send_target(path).cancel_scheduled(sequence_numbers)
        if self.journal is not None:
            self.journal.commit()

    # -- auto-forwarding ----------------------------------------------------------------------

    def _wire_forwarding(
        self,
        entity: Queue | Subscription,
        description: QueueDescription | SubscriptionDescription,
    ) -> None:
        """Install the ForwardTo / ForwardDeadLetteredMessagesTo hooks of one entity."""
        if description.forward_to:
            target = description.forward_to
            entity.forwarder = lambda message, now: self._forward(entity, target, message, now)
        if description.forward_dead_lettered_messages_to:
            dead_target = description.forward_dead_lettered_messages_to
            entity.store.dead_letter_forward = lambda message, now: self._forward(
                entity, dead_target, message, now
            )

    def _forward(
        self, source: Queue | Subscription, target_name: str, message: BrokerMessage, now: float
    ) -> None:
        """Move a message on; failures land in the source's transfer dead-letter queue."""
        message.hops += 1
        key = target_name.casefold()
        target: Queue | Topic | None = self.queues.get(key) or self.topics.get(key)
        reason: str | None = None
        if target is None:
            reason = f"The forwarding target '{target_name}' does not exist."
        elif message.hops > MAX_FORWARDING_HOPS:
            reason = f"The message exceeded the maximum of {MAX_FORWARDING_HOPS} forwarding hops."
        if reason is None and target is not None:
            message.state = MessageState.ACTIVE
            message.lock_token = None
            target.accept(message, now)
            return
        message.set_user_properties(
            {DEAD_LETTER_REASON: "TransferFailed", DEAD_LETTER_DESCRIPTION: reason}
        )
        message.state = MessageState.ACTIVE
        source.transfer_dead_letter.enqueue(message, now)

    # -- time ----------------------------------------------------------------------------------

    def stores(self) -> Iterator[MessageStore]:
        for queue in self.queues.values():
            yield from queue.stores()
        for topic in self.topics.values():
            yield from topic.stores()

    def process_due(self) -> None:
        now = self.clock.now()
        for topic in self.topics.values():
            topic.process_due(now)
        for store in self.stores():
            store.process_due(now)
        if self.journal is not None:
            self.journal.commit()

    def next_deadline(self) -> float | None:
        deadlines = [t.next_deadline() for t in self.topics.values()]
        deadlines.extend(s.next_deadline() for s in self.stores())
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def reset(self) -> None:
        """Back to freshly created entities: no messages, no remembered message ids, zero
        counters and no access time. Entities and their settings stay."""
        for topic in self.topics.values():
            topic.cancel_scheduled(list(topic._scheduled))
            topic.counters = TopicCounters()
            for subscription in topic.subscriptions.values():
                for rule in subscription.rules:
                    rule.evaluation_errors = 0
        for entity in [*self.queues.values(), *self.topics.values()]:
            if entity.duplicates is not None:
                old = entity.duplicates
                entity.duplicates = DuplicateDetector(old.window, old.key)
                if self.journal is not None:
                    self.journal.duplicates_cleared(old)
                    entity.duplicates.journal = self.journal
        for store in self.stores():
            store.clear()
            store.counters = StoreCounters()
            store.accessed_at = 0.0
        if self.journal is not None:
            self.journal.commit()

    # -- management plane (admin API) -------------------------------------------------------
    # Descriptions in ``self.topology`` are kept in step, so a later reset/reload and the
    # $cbs node (entity SAS rules) see what the admin API created.

    def _check_forwarding(self) -> None:
        cycle = forwarding_cycle(self.topology)
        if cycle:
            raise InvalidOperationError("ForwardTo makes a loop: " + " -> ".join(cycle))

    def create_queue(self, description: QueueDescription) -> Queue:
        """Add a queue at runtime; raises InvalidOperationError on a name clash or a loop."""
        queue = self.add_queue(description)
        self.topology.queues.append(description)
        try:
            self._check_forwarding()
        except InvalidOperationError:
            self.delete_queue(description.name)
            raise
        self._changed(queue.name)
        return queue

    def create_topic(self, description: TopicDescription) -> Topic:
        topic = self.add_topic(description)
        self.topology.topics.append(description)
        self._changed(topic.name)
        return topic

    def delete_queue(self, name: str) -> None:
        queue = self.queue(name)
        for store in queue.stores():
            store.clear()
        del self.queues[name.casefold()]
        self.topology.queues = [q for q in self.topology.queues if q is not queue.description]
        self._changed(queue.name)

    def delete_topic(self, name: str) -> None:
        """Remove a topic with its subscriptions and every message they hold."""
        topic = self.topic(name)
        topic.cancel_scheduled(list(topic._scheduled))
        for store in topic.stores():
            store.clear()
        del self.topics[name.casefold()]
        self.topology.topics = [t for t in self.topology.topics if t is not topic.description]
        self._changed(topic.name)

    def create_subscription(
        self, topic_name: str, description: SubscriptionDescription
    ) -> Subscription:
        topic = self.topic(topic_name)
        if topic.subscription(description.name) is not None:
            raise InvalidOperationError(
                f"subscription '{topic.name}/Subscriptions/{description.name}' already exists"
            )
        subscription = topic.add_subscription(description)
        subscription.created_at = self.clock.now()
        topic.description.subscriptions.append(description)
        try:
            self._check_forwarding()
        except InvalidOperationError:
            self.delete_subscription(topic_name, description.name)
            raise
        self._wire_forwarding(subscription, description)
        if self.journal is not None:
            for store in subscription.stores():
                store.journal = self.journal
        self._changed(subscription.path)
        return subscription

    def delete_subscription(self, topic_name: str, name: str) -> None:
        subscription = self.subscription(topic_name, name)
        topic = subscription.topic
        for store in subscription.stores():
            store.clear()
        del topic.subscriptions[name.casefold()]
        topic.description.subscriptions = [
            s for s in topic.description.subscriptions if s is not subscription.description
        ]
        self._changed(subscription.path)

    def update_queue(self, description: QueueDescription) -> Queue:
        """Replace a queue's settings (messages stay); forwarding is re-wired."""
        queue = self.queue(description.name)
        old = queue.description
        self.topology.queues = [description if q is old else q for q in self.topology.queues]
        try:
            self._check_forwarding()
        except InvalidOperationError:
            self.topology.queues = [old if q is description else q for q in self.topology.queues]
            raise
        description.policies = old.policies
        apply_description(queue, description)
        queue.forwarder = None
        queue.store.dead_letter_forward = None
        self._wire_forwarding(queue, description)
        queue.updated_at = self.clock.now()
        self._changed(queue.name)
        return queue

    def update_topic(self, description: TopicDescription) -> Topic:
        topic = self.topic(description.name)
        description.subscriptions = topic.description.subscriptions
        description.policies = topic.description.policies
        self.topology.topics = [
            description if t is topic.description else t for t in self.topology.topics
        ]
        topic.description = description
        if topic.duplicates is not None:
            window = description.duplicate_detection_history_time_window
            topic.duplicates.window = window.total_seconds()
        topic.updated_at = self.clock.now()
        self._changed(topic.name)
        return topic

    def update_subscription(
        self, topic_name: str, description: SubscriptionDescription
    ) -> Subscription:
        """Replace a subscription's settings; its rules and messages stay."""
        subscription = self.subscription(topic_name, description.name)
        topic = subscription.topic
        old = subscription.description
        description.rules = old.rules
        subs = topic.description.subscriptions
        topic.description.subscriptions = [description if s is old else s for s in subs]
        try:
            self._check_forwarding()
        except InvalidOperationError:
            topic.description.subscriptions = subs
            raise
        apply_description(subscription, description)
        subscription.forwarder = None
        subscription.store.dead_letter_forward = None
        self._wire_forwarding(subscription, description)
        subscription.updated_at = self.clock.now()
        self._changed(subscription.path)
        return subscription

    def put_rule(self, topic_name: str, subscription_name: str, rule: CompiledRule) -> None:
        """Add a compiled rule, or replace the one with the same name."""
        subscription = self.subscription(topic_name, subscription_name)
        folded = rule.description.name.casefold()
        rules = [r for r in subscription.rules if r.description.name.casefold() != folded]
        replaced = len(rules) != len(subscription.rules)
        if replaced:
            subscription.rules = [
                rule if r.description.name.casefold() == folded else r for r in subscription.rules
            ]
        else:
            subscription.rules.append(rule)
        subscription.description.rules = [r.description for r in subscription.rules]
        subscription.updated_at = self.clock.now()
        self._changed(subscription.path)

    def delete_rule(self, topic_name: str, subscription_name: str, rule_name: str) -> None:
        subscription = self.subscription(topic_name, subscription_name)
        folded = rule_name.casefold()
        kept = [r for r in subscription.rules if r.description.name.casefold() != folded]
        if len(kept) == len(subscription.rules):
            raise EntityNotFoundError(
                f"The messaging entity '{subscription.path}/Rules/{rule_name}' could not be found."
            )
        subscription.rules = kept
        subscription.description.rules = [r.description for r in kept]
        subscription.updated_at = self.clock.now()
        self._changed(subscription.path)


def _requires_session(target: Queue | Topic) -> bool:
    if isinstance(target, Queue):
        return target.description.requires_session
    return any(sub.description.requires_session for sub in target.subscriptions.values())
