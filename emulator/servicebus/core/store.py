"""One receivable message log: a queue, a subscription, or one of their dead-letter sub-queues.

All state changes happen here, driven by the caller's ``now``; nothing in this module reads a
clock or does I/O. Heaps are cleaned lazily: an entry whose message moved on is skipped when
it reaches the top, which keeps every operation O(log n).

One class (about 600 lines) on purpose: enqueue, receive, settlement, expiry and session
locks are the transitions of one state machine over the same heaps, indexes and counters,
and each keeps invariants the others rely on; its sections follow a message's life.
"""

from __future__ import annotations

import enum
import heapq
import math
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import (
    InvalidOperationError,
    MessageLockLostError,
    MessageNotFoundError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from .message import (
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    MAX_DELIVERY_COUNT_EXCEEDED,
    TTL_EXPIRED,
    BrokerMessage,
    MessageState,
)
from .sessions import MessageSession

if TYPE_CHECKING:
    from .journal import Journal


class ReceiveMode(enum.Enum):
    PEEK_LOCK = "peek-lock"
    RECEIVE_AND_DELETE = "receive-and-delete"


@dataclass(frozen=True, slots=True)
class StorePolicy:
    """The entity settings a store obeys (taken from its queue/subscription description)."""

    lock_duration: float = 60.0
    max_delivery_count: int | None = 10
    """None for dead-letter sub-queues, which never dead-letter again."""
    default_time_to_live: float = math.inf
    dead_letter_on_expiration: bool = False
    expires_messages: bool = True
    requires_session: bool = False


@dataclass(slots=True)
class StoreCounters:
    """Operation counts; the control API and the load tests read them."""

    enqueued: int = 0
    delivered: int = 0
    completed: int = 0
    abandoned: int = 0
    dead_lettered: int = 0
    expired: int = 0
    lock_expirations: int = 0


class MessageStore:
    def __init__(
        self,
        path: str,
        policy: StorePolicy,
        dead_letter: MessageStore | None = None,
    ) -> None:
        self.path = path
        self.policy = policy
        self.dead_letter_store = dead_letter
        self.dead_letter_forward: Callable[[BrokerMessage, float], None] | None = None
        """Set when the entity has ForwardDeadLetteredMessagesTo: dead letters leave at once."""
        self.messages: dict[int, BrokerMessage] = {}
        self.counters = StoreCounters()
        self._available: list[int] = []
        self._locks: dict[uuid.UUID, BrokerMessage] = {}
        self._lock_heap: list[tuple[float, uuid.UUID]] = []
        self._scheduled: list[tuple[float, int]] = []
        self._expiry: list[tuple[float, int]] = []
        self._listeners: list[Callable[[MessageStore], None]] = []
        self.sessions: dict[str, MessageSession] = {}
        self._session_tokens_lost: OrderedDict[uuid.UUID, str] = OrderedDict()
        """Lock tokens whose session lock lapsed: settling them is a *session* lock loss."""
        self._session_locks: list[tuple[float, str]] = []
        self.accessed_at = 0.0
        self.updated_at = 0.0
        self.journal: Journal | None = None
        """Set by a durable emulator (``core.journal``); None costs nothing."""

    # -- observers ---------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[MessageStore], None]) -> None:
        """Called whenever a message becomes available, so waiting receivers get it."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[MessageStore], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self) -> None:
        listeners = self._listeners
        if listeners:  # once per message enqueued: no copy when nobody listens
            for listener in tuple(listeners):
                listener(self)
            if len(listeners) > 1:
                # Competing receivers take turns being first: a trickle of messages reaches
                # every instance of a scaled-out app, not only the receiver that attached first
                # (a burst still fills the first one's credit, as prefetch does on the service).
                listeners.append(listeners.pop(0))

    # -- counts --------------------------------------------------------------------------------

    def count(self, state: MessageState | None = None) -> int:
        if state is None:
            return len(self.messages)
        return sum(1 for m in self.messages.values() if m.state is state)

    @property
    def active_count(self) -> int:
        return self.count(MessageState.ACTIVE)

    @property
    def size_in_bytes(self) -> int:
        return sum(m.size for m in self.messages.values())

    # -- enqueue -------------------------------------------------------------------------------

    def enqueue(self, message: BrokerMessage, now: float) -> None:
        """Add a message that already carries its sequence number."""
        message.enqueued_time = now
        message.lock_token = None
        message.expires_at = math.inf
        self.messages[message.sequence_number] = message
        self.counters.enqueued += 1
        self.updated_at = now
        if self.journal is not None:
            self.journal.message(self.path, self.messages, message.sequence_number)
        if message.state is MessageState.SCHEDULED:
            assert message.scheduled_enqueue_time is not None
            heapq.heappush(
                self._scheduled, (message.scheduled_enqueue_time, message.sequence_number)
            )
            return
        if message.state is MessageState.ACTIVE:
            self._start_time_to_live(message, now)
            # _make_available inlined: enqueue runs once per message and subscription.
            policy = self.policy
            heap = (
                self._session(str(message.session_id)).available
                if policy.requires_session
                else self._available
            )
            heapq.heappush(heap, message.sequence_number)
            if self._listeners:
                self._notify()

    def _heap_for(self, message: BrokerMessage) -> list[int]:
        if not self.policy.requires_session:
            return self._available
        return self._session(str(message.session_id)).available

    def _session(self, session_id: str) -> MessageSession:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = MessageSession(session_id)
        return session

    def _make_available(self, message: BrokerMessage) -> None:
        heapq.heappush(self._heap_for(message), message.sequence_number)
        self._notify()

    def _start_time_to_live(self, message: BrokerMessage, now: float) -> None:
        """A message's TTL runs from when it becomes active, capped by the entity default."""
        policy = self.policy
        if not policy.expires_messages:
            return
        ttl = policy.default_time_to_live
        own = message.time_to_live
        if own is not None and 0 < own < ttl:
            ttl = own
        message.expires_at = expires = now + ttl
        if ttl != math.inf:
            heapq.heappush(self._expiry, (expires, message.sequence_number))

    # -- receive -------------------------------------------------------------------------------

    def has_any_available(self, session: MessageSession | None = None) -> bool:
        """Cheap hint (may include stale entries) that a receive could deliver something."""
        return bool(session.available if session is not None else self._available)

    def has_available(self, now: float) -> bool:
        return self._peek_available(now, self._available) is not None

    def _peek_available(self, now: float, heap: list[int]) -> BrokerMessage | None:
        while heap:
            seq = heap[0]
            message = self.messages.get(seq)
            if (
                message is None
                or message.state is not MessageState.ACTIVE
                or message.lock_token is not None
            ):
                heapq.heappop(heap)
                continue
            if message.expires_at <= now:
                heapq.heappop(heap)
                self._expire(message, now)
                continue
            return message
        return None

    def receive(
        self,
        max_count: int,
        now: float,
        mode: ReceiveMode,
        session: MessageSession | None = None,
    ) -> list[BrokerMessage]:
        """Hand out up to ``max_count`` messages in sequence order, locking or removing them.

        On a session store only the given session's messages, and only while its lock holds.
        """
        if self.policy.requires_session:
            if session is None:
                raise InvalidOperationError(
                    f"'{self.path}' requires sessions: receive with a session receiver."
                )
            if session.locked_until <= now:
                raise SessionLockLostError(_SESSION_LOCK_LOST.format(session.id))
            heap = session.available
        else:
            heap = self._available
        out: list[BrokerMessage] = []
        while len(out) < max_count:
            message = self._peek_available(now, heap)
            if message is None:
                break
            heapq.heappop(heap)
            out.append(self._hand_out(message, now, mode, session))
        if out:
            self.accessed_at = now
            self._tidy()
        if self.journal is not None:
            self.journal.commit()
        return out

    def _hand_out(
        self,
        message: BrokerMessage,
        now: float,
        mode: ReceiveMode,
        session: MessageSession | None = None,
    ) -> BrokerMessage:
        self.counters.delivered += 1
        if self.journal is not None:
            self.journal.message(self.path, self.messages, message.sequence_number)
        if mode is ReceiveMode.RECEIVE_AND_DELETE:
            del self.messages[message.sequence_number]
            message.lock_token = None
            return message
        token = uuid.uuid4()
        message.lock_token = token
        message.locked_until = (
            session.locked_until if session is not None else now + self.policy.lock_duration
        )
        self._locks[token] = message
        heapq.heappush(self._lock_heap, (message.locked_until, token))
        return message

    def receive_deferred(
        self, sequence_numbers: Iterable[int], now: float, mode: ReceiveMode
    ) -> list[BrokerMessage]:
        wanted = list(sequence_numbers)
        found: list[BrokerMessage] = []
        for seq in wanted:
            message = self.messages.get(seq)
            if message is None or message.state is not MessageState.DEFERRED:
                raise MessageNotFoundError(
                    f"Failed to lock one or more specified messages. "
                    f"The message with sequence number {seq} is not deferred in '{self.path}'."
                )
            if message.lock_token is not None:
                raise MessageNotFoundError(
                    f"The deferred message with sequence number {seq} is already locked."
                )
            found.append(message)
        out = [self._hand_out(m, now, mode) for m in found]
        if self.journal is not None:
            self.journal.commit()
        return out

    # -- settlement ----------------------------------------------------------------------------

    def locked(self, token: uuid.UUID, now: float) -> BrokerMessage:
        """The message held by ``token``; raises if the lock is unknown or has lapsed."""
        message = self._locks.get(token)
        if message is None and token in self._session_tokens_lost:
            raise SessionLockLostError(_SESSION_LOCK_LOST.format(self._session_tokens_lost[token]))
        if message is None or message.lock_token != token:
            raise MessageLockLostError(
                "The lock supplied is invalid. Either the lock expired, or the message has "
                "already been removed from the queue."
            )
        if self.policy.requires_session and message.session_id is not None:
            session = self.sessions.get(str(message.session_id))
            if session is None or session.locked_until <= now:
                raise SessionLockLostError(_SESSION_LOCK_LOST.format(message.session_id))
        if message.locked_until <= now:
            self._lock_expired(message, now)
            raise MessageLockLostError(
                "The lock supplied is invalid. Either the lock expired, or the message has "
                "already been removed from the queue."
            )
        return message

    def owns_lock(self, token: uuid.UUID) -> bool:
        return token in self._locks

    def _unlock(self, message: BrokerMessage) -> None:
        if message.lock_token is not None:
            self._locks.pop(message.lock_token, None)
            message.lock_token = None

    def _remember_session_loss(self, message: BrokerMessage) -> None:
        if message.lock_token is None or message.session_id is None:
            return
        self._session_tokens_lost[message.lock_token] = str(message.session_id)
        while len(self._session_tokens_lost) > 10_000:
            self._session_tokens_lost.popitem(last=False)

    def complete(self, token: uuid.UUID, now: float) -> None:
        message = self.locked(token, now)
        self._unlock(message)
        del self.messages[message.sequence_number]
        self.counters.completed += 1
        self.updated_at = now
        if self.journal is not None:
            self.journal.message(self.path, self.messages, message.sequence_number)
            self.journal.commit()
        self._tidy()

    def abandon(
        self, token: uuid.UUID, now: float, properties: dict[str, object] | None = None
    ) -> None:
        message = self.locked(token, now)
        message.set_user_properties(properties or {})
        self._return(message, now, count_delivery=True)
        self.counters.abandoned += 1
        if self.journal is not None:
            self.journal.commit()

    def release(self, token: uuid.UUID, now: float) -> None:
        """Unlock without counting a delivery (an idle receiver handing back prefetched work)."""
        message = self.locked(token, now)
        self._return(message, now, count_delivery=False)
        if self.journal is not None:
            self.journal.commit()

    def defer(
        self, token: uuid.UUID, now: float, properties: dict[str, object] | None = None
    ) -> None:
        message = self.locked(token, now)
        message.set_user_properties(properties or {})
        self._unlock(message)
        message.state = MessageState.DEFERRED
        self.updated_at = now
        if self.journal is not None:
            self.journal.message(self.path, self.messages, message.sequence_number)
            self.journal.commit()

    def dead_letter(
        self,
        token: uuid.UUID,
        now: float,
        reason: str | None = None,
        description: str | None = None,
        properties: dict[str, object] | None = None,
    ) -> None:
        message = self.locked(token, now)
        message.set_user_properties(properties or {})
        self._unlock(message)
        self._move_to_dead_letter(message, now, reason, description)
        if self.journal is not None:
            self.journal.commit()
        self._tidy()

    def renew_lock(self, token: uuid.UUID, now: float) -> float:
        message = self.locked(token, now)
        message.locked_until = now + self.policy.lock_duration
        heapq.heappush(self._lock_heap, (message.locked_until, token))
        return message.locked_until

    def _return(self, message: BrokerMessage, now: float, *, count_delivery: bool) -> None:
        """Put a locked message back, dead-lettering it once it ran out of deliveries."""
        self._unlock(message)
        if self.journal is not None:
            self.journal.message(self.path, self.messages, message.sequence_number)
        if count_delivery and self.policy.max_delivery_count is not None:
            message.delivery_count += 1
            if message.delivery_count >= self.policy.max_delivery_count:
                self._move_to_dead_letter(
                    message,
                    now,
                    MAX_DELIVERY_COUNT_EXCEEDED,
                    f"Message could not be consumed after {self.policy.max_delivery_count} "
                    "delivery attempts.",
                )
                return
        elif count_delivery:
            message.delivery_count += 1
        self.updated_at = now
        if message.state is MessageState.ACTIVE:
            self._make_available(message)

    def dead_letter_arrival(
        self, message: BrokerMessage, now: float, reason: str, description: str
    ) -> None:
        """Dead-letter a message that never became available here (its rule failed)."""
        self._move_to_dead_letter(message, now, reason, description)

    def _move_to_dead_letter(
        self, message: BrokerMessage, now: float, reason: str | None, description: str | None
    ) -> None:
        self.messages.pop(message.sequence_number, None)
        self.updated_at = now
        if self.journal is not None:
            self.journal.message(self.path, self.messages, message.sequence_number)
        if self.dead_letter_store is None:
            return
        extra: dict[str, object] = {}
        if reason is not None:
            extra[DEAD_LETTER_REASON] = reason
        if description is not None:
            extra[DEAD_LETTER_DESCRIPTION] = description
        message.set_user_properties(extra)
        message.state = MessageState.ACTIVE
        self.counters.dead_lettered += 1
        if self.dead_letter_forward is not None:
            message.dead_letter_source = self.path
            self.dead_letter_forward(message, now)
            return
        enqueued = message.enqueued_time
        self.dead_letter_store.enqueue(message, now)
        message.enqueued_time = enqueued

    # -- peek / scheduled ------------------------------------------------------------------------

    def peek(
        self, from_sequence_number: int, count: int, session_id: str | None = None
    ) -> list[BrokerMessage]:
        """Messages in sequence order from ``from_sequence_number``, without changing state."""
        seqs = sorted(
            seq
            for seq, message in self.messages.items()
            if seq >= from_sequence_number
            and (session_id is None or str(message.session_id) == session_id)
        )[:count]
        return [self.messages[s] for s in seqs]

    def cancel_scheduled(self, sequence_numbers: Iterable[int]) -> None:
        for seq in sequence_numbers:
            message = self.messages.get(seq)
            if message is not None and message.state is MessageState.SCHEDULED:
                del self.messages[seq]
                if self.journal is not None:
                    self.journal.message(self.path, self.messages, seq)
        self._tidy()

    def remove(self, sequence_numbers: Iterable[int], now: float) -> list[BrokerMessage]:
        """Take messages out by number, as a receive-and-delete of just those would.

        For operators (the console's resubmit and purge), not for the AMQP adapter: a locked
        message is left alone, since its holder may still settle it.
        """
        removed: list[BrokerMessage] = []
        for seq in sequence_numbers:
            message = self.messages.get(seq)
            if message is None or message.lock_token is not None:
                continue
            del self.messages[seq]
            removed.append(message)
            if self.journal is not None:
                self.journal.message(self.path, self.messages, seq)
        if removed:
            self.updated_at = now
            if self.journal is not None:
                self.journal.commit()
            self._tidy()
        return removed

    # -- memory --------------------------------------------------------------------------------

    def _tidy(self) -> None:
        """Keep memory in proportion to what the store holds; called as operations end.

        The heaps are cleaned lazily (at their top), so entries of messages that left from
        elsewhere in a heap stay: a message that expires while available keeps its entry in
        ``_available`` until a receiver reaches it, which on a subscription nobody reads is
        never; one completed long before its TTL keeps its ``_expiry`` entry that long. Once
        stale entries outnumber the messages held, a heap is rebuilt from its live entries
        (amortised O(1) per entry). An empty store also drops the tables its dicts grew to
        for the largest backlog it held. The checks cost a few comparisons when nothing is due.
        (A session store's per-session heaps are cleaned at their top only.)
        """
        messages = self.messages
        if not messages:
            # Every heap entry is stale now. (clear() on a dict already at its empty table
            # returns at once, so this costs nothing when there is nothing to free.)
            messages.clear()
            self._available.clear()
            self._expiry.clear()
            self._scheduled.clear()
            if not self._locks:
                self._locks.clear()
                self._lock_heap.clear()
            return
        limit = 2 * len(messages) + 64
        if len(self._available) > limit:
            self._available = _rebuilt(
                self._available,
                lambda seq: (
                    (m := messages.get(seq)) is not None
                    and m.state is MessageState.ACTIVE
                    and m.lock_token is None
                ),
            )
        if len(self._expiry) > limit:
            self._expiry = _rebuilt(self._expiry, lambda entry: entry[1] in messages)
        if len(self._lock_heap) > 2 * len(self._locks) + 64:
            locks = self._locks
            self._lock_heap = _rebuilt(
                self._lock_heap,
                lambda entry: (m := locks.get(entry[1])) is not None and m.locked_until == entry[0],
            )
        if len(self._scheduled) > limit:
            self._scheduled = _rebuilt(
                self._scheduled,
                lambda entry: (
                    (m := messages.get(entry[1])) is not None and m.state is MessageState.SCHEDULED
                ),
            )

    # -- time ----------------------------------------------------------------------------------

    def _lock_expired(self, message: BrokerMessage, now: float) -> None:
        self.counters.lock_expirations += 1
        self._remember_session_loss(message)
        if message.state is MessageState.DEFERRED:
            self._unlock(message)
            message.delivery_count += 1
            if self.journal is not None:
                self.journal.message(self.path, self.messages, message.sequence_number)
            return
        self._return(message, now, count_delivery=True)

    def _expire(self, message: BrokerMessage, now: float) -> None:
        self.counters.expired += 1
        if self.policy.dead_letter_on_expiration:
            self._move_to_dead_letter(
                message, now, TTL_EXPIRED, "The message expired and was dead lettered."
            )
        else:
            self.messages.pop(message.sequence_number, None)
            if self.journal is not None:
                self.journal.message(self.path, self.messages, message.sequence_number)

    def process_due(self, now: float) -> None:
        """Apply everything whose time has come: schedules, lapsed locks, expired TTLs."""
        while self._scheduled and self._scheduled[0][0] <= now:
            _, seq = heapq.heappop(self._scheduled)
            message = self.messages.get(seq)
            if message is not None and message.state is MessageState.SCHEDULED:
                message.state = MessageState.ACTIVE
                message.enqueued_time = now
                self._start_time_to_live(message, now)
                self._make_available(message)
                if self.journal is not None:
                    self.journal.message(self.path, self.messages, seq)
        while self._session_locks and self._session_locks[0][0] <= now:
            _, session_id = heapq.heappop(self._session_locks)
            session = self.sessions.get(session_id)
            if session is not None and session.owner is not None and session.locked_until <= now:
                session.owner = None
        while self._lock_heap and self._lock_heap[0][0] <= now:
            _, token = heapq.heappop(self._lock_heap)
            message = self._locks.get(token)
            if message is not None and message.locked_until <= now:
                self._lock_expired(message, now)
        while self._expiry and self._expiry[0][0] <= now:
            _, seq = heapq.heappop(self._expiry)
            message = self.messages.get(seq)
            if message is None or message.expires_at > now:
                continue
            if message.lock_token is not None:
                # A locked message expires once its lock is given up; look again then.
                heapq.heappush(self._expiry, (message.locked_until, seq))
                continue
            self._expire(message, now)
        self._tidy()

    def next_deadline(self) -> float | None:
        candidates: list[float] = []
        if self._scheduled:
            candidates.append(self._scheduled[0][0])
        while self._session_locks:
            until, session_id = self._session_locks[0]
            session = self.sessions.get(session_id)
            if session is None or session.owner is None or session.locked_until != until:
                heapq.heappop(self._session_locks)
                continue
            candidates.append(until)
            break
        while self._lock_heap:
            until, token = self._lock_heap[0]
            message = self._locks.get(token)
            if message is None or message.locked_until != until:
                heapq.heappop(self._lock_heap)
                continue
            candidates.append(until)
            break
        while self._expiry:
            at, seq = self._expiry[0]
            if seq not in self.messages:
                heapq.heappop(self._expiry)
                continue
            candidates.append(at)
            break
        return min(candidates) if candidates else None

    def clear(self) -> None:
        if self.journal is not None:
            self.journal.cleared(self.path)
        self.sessions.clear()
        self._session_locks.clear()
        self.messages.clear()
        self._available.clear()
        self._locks.clear()
        self._lock_heap.clear()
        self._scheduled.clear()
        self._expiry.clear()

    # -- restoring durable state ---------------------------------------------------------------

    def restore(self, message: BrokerMessage, *, locked: bool) -> None:
        """Put back a message read from durable state, with its times and counts as they were.

        A message that was locked when the state was written comes back with a lock that has
        already lapsed: the next ``process_due`` returns it with its delivery counted (or
        dead-letters it at MaxDeliveryCount), as the service does with a lock lost in a crash.
        """
        seq = message.sequence_number
        self.messages[seq] = message
        message.lock_token = None
        if message.session_id is not None and self.policy.requires_session:
            self._session(str(message.session_id))
        if message.state is MessageState.SCHEDULED:
            assert message.scheduled_enqueue_time is not None
            heapq.heappush(self._scheduled, (message.scheduled_enqueue_time, seq))
            return
        if message.expires_at != math.inf:
            heapq.heappush(self._expiry, (message.expires_at, seq))
        if locked:
            token = uuid.uuid4()
            message.lock_token = token
            message.locked_until = -math.inf
            self._locks[token] = message
            heapq.heappush(self._lock_heap, (message.locked_until, token))
        elif message.state is MessageState.ACTIVE:
            heapq.heappush(self._heap_for(message), seq)

    def restore_session(self, session_id: str, state: bytes | None, updated_at: float) -> None:
        """Put back a session's state (its lock is not durable: the session starts free)."""
        session = self._session(session_id)
        session.state = state
        session.updated_at = updated_at

    # -- sessions ------------------------------------------------------------------------------

    def accept_session(
        self, session_id: str | None, owner: object, now: float
    ) -> MessageSession | None:
        """Lock a session for ``owner``: the named one, or the next with messages (None if none)."""
        if not self.policy.requires_session:
            raise InvalidOperationError(
                f"'{self.path}' does not require sessions: a session receiver cannot be opened."
            )
        if session_id is None:
            candidates = [
                s
                for s in self.sessions.values()
                if not s.is_locked(now) and self._peek_available(now, s.available) is not None
            ]
            if not candidates:
                return None
            session = min(candidates, key=lambda s: s.available[0])
        else:
            session = self._session(session_id)
            if session.is_locked(now) and session.owner is not owner:
                raise SessionCannotBeLockedError(
                    f"The requested session '{session_id}' cannot be accepted. "
                    "It may be locked by another receiver."
                )
        session.owner = owner
        self._set_session_lock(session, now + self.policy.lock_duration)
        return session

    def _set_session_lock(self, session: MessageSession, until: float) -> None:
        session.locked_until = until
        heapq.heappush(self._session_locks, (until, session.id))
        for message in self._locks.values():
            if message.session_id is not None and str(message.session_id) == session.id:
                message.locked_until = until
                heapq.heappush(self._lock_heap, (until, message.lock_token))  # type: ignore[misc]

    def renew_session_lock(self, session_id: str, now: float) -> float:
        session = self.sessions.get(session_id)
        if session is None or not session.is_locked(now):
            raise SessionLockLostError(_SESSION_LOCK_LOST.format(session_id))
        self._set_session_lock(session, now + self.policy.lock_duration)
        return session.locked_until

    def release_session(self, session: MessageSession, owner: object, now: float) -> None:
        """A session receiver went away: free the session and return its locked messages."""
        if session.owner is not owner:
            return
        session.owner = None
        session.locked_until = now
        for message in [m for m in self._locks.values() if m.session_id is not None]:
            if str(message.session_id) == session.id:
                self._remember_session_loss(message)
                self._return(message, now, count_delivery=True)
        if self.journal is not None:
            self.journal.commit()

    def session_state(self, session_id: str, now: float) -> bytes | None:
        session = self.sessions.get(session_id)
        if session is None or not session.is_locked(now):
            raise SessionLockLostError(_SESSION_LOCK_LOST.format(session_id))
        return session.state

    def set_session_state(self, session_id: str, state: bytes | None, now: float) -> None:
        session = self.sessions.get(session_id)
        if session is None or not session.is_locked(now):
            raise SessionLockLostError(_SESSION_LOCK_LOST.format(session_id))
        session.state = state
        session.updated_at = now
        if self.journal is not None:
            self.journal.session(self.path, session)
            self.journal.commit()

    def session_ids(self, updated_since: float | None = None) -> list[str]:
        """The sessions ``get-message-sessions`` lists.

        Without ``updated_since``: those with messages or stored state. With it: only those
        whose state was set (or cleared) after that time, as the service answers.
        """
        if updated_since is not None:
            return [s.id for s in self.sessions.values() if s.updated_at > updated_since]
        with_messages = {
            str(m.session_id) for m in self.messages.values() if m.session_id is not None
        }
        return [
            s.id for s in self.sessions.values() if s.id in with_messages or s.state is not None
        ]


_Entry = TypeVar("_Entry")


def _rebuilt(heap: list[_Entry], live: Callable[[_Entry], bool]) -> list[_Entry]:
    """The heap's live entries, as a heap."""
    kept = [entry for entry in heap if live(entry)]
    heapq.heapify(kept)
    return kept


_SESSION_LOCK_LOST = (
    "The session lock has expired on the MessageSession '{}'. Accept a new MessageSession."
)
