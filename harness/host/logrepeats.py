"""Repeated log lines, aggregated: a host process's log stays readable at 500 users.

Under load the notify app says "no email for creator X" for every finished job of a
creator without an address, and "no webhook URL" for every event: thousands of lines a
minute that bury everything else. `RepeatFilter` lets the first `burst` lines of each kind
through per `window` seconds, counts the rest, and then logs one line saying how many were
held back. A kind is the logger, level and message *template* (`record.msg`, before its
arguments), so one creator or a thousand make one kind.

The per-run line of `harness.host.invocations` is never held back: the web console and the
tests read every one of them (`harness/console.py`, `parse_invocation_line`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

EXEMPT_LOGGERS = ("harness.host.invocations",)
_SUMMARY_MARK = "_repeat_summary"

Key = tuple[str, int, str]


@dataclass
class _Kind:
    window_started: float
    passed: int = 0
    held: int = 0
    example: logging.LogRecord | None = None


class RepeatFilter(logging.Filter):
    """Pass `burst` records per kind per `window` seconds; summarize the rest afterwards.

    Summaries are emitted through `handler` (the one this filter is attached to) when any
    record arrives after a kind's window closed, or on `flush_summaries()`.
    """

    def __init__(
        self,
        handler: logging.Handler,
        *,
        burst: int = 5,
        window: float = 60.0,
        exempt: tuple[str, ...] = EXEMPT_LOGGERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.burst = burst
        self.window = window
        self.exempt = exempt
        self.clock = clock
        self._kinds: dict[Key, _Kind] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY_MARK, False):
            return True
        now = self.clock()
        due = self._close_windows(now)
        for summary in due:
            self.handler.handle(summary)
        if record.name.startswith(self.exempt):
            return True
        key = (record.name, record.levelno, str(record.msg))
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None:
                kind = self._kinds[key] = _Kind(window_started=now)
            if kind.passed < self.burst:
                kind.passed += 1
                return True
            kind.held += 1
            kind.example = record
            return False

    def flush_summaries(self) -> None:
        """Say what is held back now (at shutdown), whatever the windows."""
        for summary in self._close_windows(self.clock(), force=True):
            self.handler.handle(summary)

    def _close_windows(self, now: float, *, force: bool = False) -> list[logging.LogRecord]:
        summaries = []
        with self._lock:
            for key, kind in list(self._kinds.items()):
                if not force and now - kind.window_started < self.window:
                    continue
                if kind.held and kind.example is not None:
                    summaries.append(self._summary(kind, now))
                del self._kinds[key]
        return summaries

    def _summary(self, kind: _Kind, now: float) -> logging.LogRecord:
        example = kind.example
        assert example is not None
        span = min(now, kind.window_started + self.window) - kind.window_started
        record = logging.LogRecord(
            example.name,
            example.levelno,
            example.pathname,
            example.lineno,
            "... %d more like this in %.0f s, held back (last: %s)",
            (kind.held, span, example.getMessage()),
            None,
        )
        setattr(record, _SUMMARY_MARK, True)
        return record


def install(
    logger: logging.Logger | None = None, *, burst: int = 5, window: float = 60.0
) -> list[RepeatFilter]:
    """A `RepeatFilter` on each handler of `logger` (the root's: what basicConfig set up)."""
    target = logger or logging.getLogger()
    filters = []
    for handler in target.handlers:
        repeat = RepeatFilter(handler, burst=burst, window=window)
        handler.addFilter(repeat)
        filters.append(repeat)
    return filters
