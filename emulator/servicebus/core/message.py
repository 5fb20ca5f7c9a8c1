"""The broker's view of one message: routing fields plus an opaque wire payload.

The core never encodes or decodes AMQP. The adapter hands it a payload object (the raw sections it
will re-emit unchanged) together with the decoded fields the broker needs to route, expire and
filter; the core only adds broker state (sequence number, lock, delivery count ...).
"""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass, field


class MessageState(enum.IntEnum):
    """Values of the ``x-opt-message-state`` annotation."""

    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"


@dataclass(slots=True, eq=False)
class BrokerMessage:
    payload: object
    """Adapter-owned encoding of the bare message; shared (read-only) between fan-out copies."""
    system: dict[str, object]
    """System properties by their SQL-filter names (MessageId, Label, SessionId, ...).

    Shared with the message's fan-out copies until one changes: replace it, never mutate it
    in place (``set_user_properties`` shows how)."""
    user: dict[str, object]
    """Application properties; shared like ``system``, so replaced, never mutated in place."""
    size: int
    time_to_live: float | None = None
    scheduled_enqueue_time: float | None = None
    annotations: dict[object, object] = field(default_factory=dict)
    """Message annotations the sender set (other than the broker's own x-opt-* ones)."""

    sequence_number: int = 0
    enqueued_time: float = 0.0
    expires_at: float = math.inf
    delivery_count: int = 0
    state: MessageState = MessageState.ACTIVE
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    dead_letter_source: str | None = None
    hops: int = 0
    """How many times auto-forwarding moved this message (the service stops at 4)."""
    modified: bool = False
    """True once ``system``/``user`` differ from the payload (rule action, dead-letter reason)."""

    def copy(self) -> BrokerMessage:
        """A fan-out copy: own broker state; payload and property dicts shared.

        Sharing the dicts (copy on write, see ``system``) spares two dict copies per
        subscription a topic message enters, which dominated topic sends with fan-out.
        """
        return BrokerMessage(
            self.payload,
            self.system,
            self.user,
            self.size,
            self.time_to_live,
            self.scheduled_enqueue_time,
            self.annotations,
            self.sequence_number,
            self.enqueued_time,
            self.expires_at,
            dead_letter_source=self.dead_letter_source,
            hops=self.hops,
            modified=self.modified,
        )

    @property
    def message_id(self) -> object:
        return self.system.get("MessageId")

    @property
    def session_id(self) -> object:
        return self.system.get("SessionId")

    def set_user_properties(self, values: dict[str, object]) -> None:
        if values:
            self.user = {**self.user, **values}  # a new dict: copies may share the old one
            self.modified = True
