"""Duplicate detection: message ids remembered for a time window that follows the broker clock."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .journal import Journal


class DuplicateDetector:
    def __init__(self, window: float, key: str = "") -> None:
        self.window = window
        self.key = key
        """The entity's path (what a journal files the remembered ids under)."""
        self._seen: dict[object, float] = {}
        self._order: deque[tuple[float, object]] = deque()
        self.dropped = 0
        self.journal: Journal | None = None
        """Set by a durable emulator (``core.journal``); None costs nothing."""

    def is_duplicate(self, message_id: object, now: float) -> bool:
        """True when ``message_id`` was accepted within the window; otherwise remember it."""
        self._forget_before(now - self.window)
        if message_id is None:
            return False
        key = _key(message_id)
        if key in self._seen:
            self.dropped += 1
            return True
        self._seen[key] = now
        self._order.append((now, key))
        if self.journal is not None:
            self.journal.duplicate(self, key, now)
        return False

    def restore(self, message_id: object, at: float) -> None:
        """Remember an id read from durable state (in the order they were first seen)."""
        key = _key(message_id)
        self._seen[key] = at
        self._order.append((at, key))

    def remembered(self) -> list[tuple[object, float]]:
        """The ids within the window and when each was seen (oldest first)."""
        return [(key, at) for at, key in self._order if self._seen.get(key) == at]

    def _forget_before(self, cutoff: float) -> None:
        while self._order and self._order[0][0] <= cutoff:
            at, key = self._order.popleft()
            if self._seen.get(key) == at:
                del self._seen[key]


def _key(message_id: object) -> object:
    # The service compares ids as strings; a uuid id and its text are the same message.
    return str(message_id) if not isinstance(message_id, bytes | bytearray) else bytes(message_id)
