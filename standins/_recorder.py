"""A thread-safe list of recorded items that tests can wait on.

Stand-ins record on their server thread while the test reads on its own; waiting uses a
Condition that each `append` notifies, so a test blocks exactly until the item arrives
(or its deadline passes, with a message listing what did arrive) instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Recorder(Generic[T]):
    """Append-only record with blocking waits."""

    def __init__(self, what: str = "items") -> None:
        self.what = what
        self._items: list[T] = []
        self._cond = threading.Condition()

    def append(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def snapshot(self) -> list[T]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())

    def wait_for(
        self,
        predicate: Callable[[T], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[T]:
        """Block until `count` items match `predicate`; return them, or raise AssertionError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matched = [i for i in self._items if predicate is None or predicate(i)]
                if len(matched) >= count:
                    return matched
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "\n".join(f"  - {item!r}" for item in self._items) or "  (none)"
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {count} matching {self.what} "
                        f"({len(matched)} matched); recorded:\n{seen}"
                    )
                self._cond.wait(remaining)
