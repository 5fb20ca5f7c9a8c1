"""Message sessions: an ordered sub-stream of a store, locked by one receiver at a time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class MessageSession:
    id: str
    available: list[int] = field(default_factory=list)
    """Heap of sequence numbers ready for delivery, so the session is delivered in order."""
    owner: object | None = None
    locked_until: float = 0.0
    state: bytes | None = None
    updated_at: float = 0.0

    def is_locked(self, now: float) -> bool:
        return self.owner is not None and self.locked_until > now

    def held_by(self, owner: object, now: float) -> bool:
        return self.owner is owner and self.locked_until > now
