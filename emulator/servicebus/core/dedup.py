"""Duplicate detection: message ids remembered for a time window that follows the broker clock."""

from __future__ import annotations

from collections import deque


class DuplicateDetector:
    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[object, float] = {}
        self._order: deque[tuple[float, object]] = deque()
        self.dropped = 0

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
        return False

    def _forget_before(self, cutoff: float) -> None:
        while self._order and self._order[0][0] <= cutoff:
            at, key = self._order.popleft()
            if self._seen.get(key) == at:
                del self._seen[key]


def _key(message_id: object) -> object:
    # The service compares ids as strings; a uuid id and its text are the same message.
    return str(message_id) if not isinstance(message_id, bytes | bytearray) else bytes(message_id)
