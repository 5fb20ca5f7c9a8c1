"""A clock that follows a clock service's offset: wall time plus what the service reports.

Under the harness the service is the emulator's control API, which both the local host
(judging locked-until times) and the apps (stamping, scheduling, timing out) read through
this one class, so they agree on now.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

log = logging.getLogger(__name__)


class ClockReadError(RuntimeError):
    """The clock service did not answer with an offset."""


# Two copies of the offset: a reader that sees them differ caught a write half done.
_OFFSET_FORMAT = struct.Struct("<dd")


class OffsetFile:
    """The clock service's offset published in a small file, for readers on the same machine.

    Reading it is one `pread` (microseconds), where `GET /control/clock` is an HTTP round
    trip that costs both sides CPU: under load the hosts and apps read the clock several
    times per message. The owner of the clock writes the file before the change that moved
    the clock returns (the emulator's advance listeners are synchronous), so a reader never
    sees a stale offset after the move: it is still read afresh on every call.
    """

    def __init__(self, path: str | os.PathLike[str], *, writable: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        self._fd = os.open(self.path, flags, 0o644)

    def write(self, offset: float) -> None:
        os.pwrite(self._fd, _OFFSET_FORMAT.pack(offset, offset), 0)

    def read(self) -> float:
        """The offset; `OSError` if the file is unreadable or keeps changing under us."""
        for _ in range(3):
            data = os.pread(self._fd, _OFFSET_FORMAT.size, 0)
            if len(data) == _OFFSET_FORMAT.size:
                first, second = _OFFSET_FORMAT.unpack(data)
                if first == second:
                    return first
        raise OSError(f"clock file {self.path} holds no offset")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class RemoteOffsetClock:
    """Wall time plus an offset that a clock service reports (`{"offset_seconds": N}`).

    Under the harness the service is the emulator's control API (`GET /control/clock`), so
    the apps stamp, schedule and time out on the broker's timeline: a retry "in 15 s" is
    due 15 s after broker-now even when a test has moved the broker hours ahead.

    The offset is read on every call: a test moves the clock and at once expects the next
    retry to be scheduled from the new now, which a cached offset would miss. One
    keep-alive client keeps a read at a loopback round trip. If the service does not answer
    the last offset read stands (warned once per outage): a handler never fails over the
    clock.

    `monotonic()` moves with the offset too. Elapsed-time checks (run budgets, in-memory
    lease and cache TTLs) then see a jump of the broker's clock as time that passed, as the
    broker does when it lapses the run's lock; a budget measured on the host's clock alone
    would let a run continue after its lock was gone. It never goes backwards, even if
    the offset does.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 2.0,
        client: httpx.Client | None = None,
        offset_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.url = url
        self._client = client or httpx.Client(timeout=timeout_seconds)
        self._file: OffsetFile | None = None
        if offset_file:
            try:
                self._file = OffsetFile(offset_file)
            except OSError as exc:
                log.warning("clock file %s unreadable (%s); reading %s", offset_file, exc, url)
        self._offset = 0.0
        self._failing = False
        self._last_monotonic = float("-inf")
        self._lock = threading.Lock()

    def read_offset(self) -> float:
        """Ask the service for the offset now; raise `ClockReadError` if it cannot say."""
        try:
            response = self._client.get(self.url)
            response.raise_for_status()
            offset = float(response.json()["offset_seconds"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ClockReadError(f"clock at {self.url} unreadable: {exc!r}") from exc
        self._offset = offset
        return offset

    def offset(self) -> float:
        """The service's offset, or the last one read if it does not answer."""
        if self._file is not None:
            try:
                self._offset = self._file.read()
                return self._offset
            except OSError:
                pass  # the service's own answer, below
        try:
            offset = self.read_offset()
        except ClockReadError as exc:
            if not self._failing:
                log.warning("%s; keeping offset %.3f s", exc, self._offset)
                self._failing = True
            return self._offset
        if self._failing:
            log.info("clock at %s answers again (offset %.3f s)", self.url, offset)
            self._failing = False
        return offset

    def now(self) -> datetime:
        offset = self.offset()
        return datetime.now(UTC) + timedelta(seconds=offset)

    def monotonic(self) -> float:
        offset = self.offset()
        with self._lock:
            self._last_monotonic = max(self._last_monotonic, time.monotonic() + offset)
            return self._last_monotonic

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    def close(self) -> None:
        self._client.close()
        if self._file is not None:
            self._file.close()
