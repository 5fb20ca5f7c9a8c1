"""What the core tells a durable store about its state changes (``persistence`` implements it).

The core keeps no I/O. Objects that own durable state (message stores, topics' scheduled
messages, sequence counters, duplicate detectors, the broker's entity registry) hold an optional
``journal``; when it is None (the default, in-memory emulator) nothing is called. When set,
each transition *names* what changed and the journal reads the current state at ``commit``:

- ``message(key, messages, seq)``: the message ``seq`` of the container ``key`` changed; at
  commit it is written as found in ``messages`` then, or deleted when no longer there. Several
  transitions of one message within an operation cost one write.
- ``commit()`` ends a core operation (a send, a receive, a settlement, a clock tick, an admin
  change): everything named since the last commit becomes durable in one transaction before
  the operation returns, so the adapter that answers afterwards never acknowledges state that
  a crash could lose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .dedup import DuplicateDetector
    from .entities import SequenceCounter
    from .message import BrokerMessage
    from .sessions import MessageSession


class Journal(Protocol):
    def message(self, key: str, messages: dict[int, BrokerMessage], seq: int) -> None:
        """Message ``seq`` of container ``key`` (a store path) changed, moved or left."""

    def cleared(self, key: str) -> None:
        """Container ``key`` lost all its messages and sessions (reset, entity deleted)."""

    def session(self, key: str, session: MessageSession) -> None:
        """A session's state of store ``key`` was set or cleared."""

    def sequence(self, counter: SequenceCounter) -> None:
        """An entity handed out a sequence number."""

    def duplicate(self, detector: DuplicateDetector, message_id: object, at: float) -> None:
        """A duplicate detector remembered a message id at ``at``."""

    def duplicates_cleared(self, detector: DuplicateDetector) -> None:
        """A duplicate detector forgot everything (reset)."""

    def entity(self, path: str) -> None:
        """The entity at ``path`` (queue, topic or ``topic/Subscriptions/name``) was created,
        changed or deleted; its description is read from the broker at commit."""

    def commit(self) -> None:
        """Make everything named so far durable (one transaction)."""
