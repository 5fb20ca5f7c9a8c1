"""The emulator's clock, seen from a host in another process.

A test or user moves the emulator's clock through its control API; a host process judging
locked-until times by wall time alone would then renew too late. This clock follows the
offset the control API reports, refreshed in the background.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from emulator.servicebus.control import ControlClient

log = logging.getLogger("harness.host")


class ControlApiClock:
    """Callable returning the broker's now; `close()` stops the refresh thread."""

    def __init__(self, control_url: str, *, refresh_seconds: float = 1.0) -> None:
        self._client = ControlClient(control_url, timeout=5.0)
        self._offset = float(self._client.clock()["offset_seconds"])  # unreachable: fail now
        self._refresh = refresh_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="broker-clock", daemon=True)
        self._thread.start()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def refresh(self) -> float:
        """Read the offset now (the background thread does this every `refresh_seconds`)."""
        self._offset = float(self._client.clock()["offset_seconds"])
        return self._offset

    def _follow(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self.refresh()
            except Exception as exc:  # keep the last offset; the emulator may be stopping
                log.debug("broker clock not refreshed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()
