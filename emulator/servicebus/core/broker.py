"""The namespace: entity registry, path resolution, send/schedule, and time processing.

Single-threaded by design: the AMQP server calls it from its event loop only.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..topology import (
    NamespaceTopology,
    QueueDescription,
    SubscriptionDescription,
    TopicDescription,
    forwarding_cycle,
)
from .clock import Clock
from .entities import (
    DEAD_LETTER_SUFFIX,
    TRANSFER_DEAD_LETTER_SUFFIX,
    Queue,
    ResolvedPath,
    Subscription,
    Topic,
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
from .store import MessageStore

MAX_FORWARDING_HOPS = 4
_DLQ = DEAD_LETTER_SUFFIX.casefold()
_TDLQ = TRANSFER_DEAD_LETTER_SUFFIX.casefold()


class Broker:
    def __init__(self, topology: NamespaceTopology, clock: Clock) -> None:
        self.topology = topology
        self.clock = clock
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        cycle = forwarding_cycle(topology)
        if cycle:
            raise InvalidOperationError("ForwardTo makes a loop: " + " -> ".join(cycle))
        for queue in topology.queues:
            self.add_queue(queue)
        for topic in topology.topics:
            self.add_topic(topic)

    # -- registry ------------------------------------------------------------------------------

    def add_queue(self, description: QueueDescription) -> Queue:
        key = description.name.casefold()
        if key in self.queues or key in self.topics:
            raise InvalidOperationError(f"entity '{description.name}' already exists")
        queue = Queue(description)
        queue.created_at = self.clock.now()
        self._wire_forwarding(queue, description)
        self.queues[key] = queue
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
        return [target.accept(message, now) for message in messages]

    def schedule(self, path: str, messages: list[BrokerMessage]) -> list[int]:
        return self.send(path, messages)

    def cancel_scheduled(self, path: str, sequence_numbers: list[int]) -> None:
        self._send_target(path).cancel_scheduled(sequence_numbers)

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

    def next_deadline(self) -> float | None:
        deadlines = [t.next_deadline() for t in self.topics.values()]
        deadlines.extend(s.next_deadline() for s in self.stores())
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def reset(self) -> None:
        for topic in self.topics.values():
            topic.cancel_scheduled(list(topic._scheduled))
        for store in self.stores():
            store.clear()


def _requires_session(target: Queue | Topic) -> bool:
    if isinstance(target, Queue):
        return target.description.requires_session
    return any(sub.description.requires_session for sub in target.subscriptions.values())
