"""The emulator's clock, seen from a host in another process.

A test or user moves the emulator's clock through its control API; a host process judging
locked-until times by wall time alone would then renew too late. This clock follows the
offset the control API reports, read afresh on every call by the same mechanism the worker
apps use (`functions_shared.offset_clock.RemoteOffsetClock`), so host and apps agree on now.
"""

from __future__ import annotations

from datetime import datetime

from functions_shared.offset_clock import RemoteOffsetClock


class ControlApiClock:
    """Callable returning the broker's now; `close()` releases the HTTP client."""

    def __init__(self, control_url: str, *, timeout_seconds: float = 5.0) -> None:
        self._clock = RemoteOffsetClock(
            f"{control_url.rstrip('/')}/clock", timeout_seconds=timeout_seconds
        )
        self._clock.read_offset()  # unreachable: fail at startup, not at the first renewal

    def __call__(self) -> datetime:
        return self._clock.now()

    def close(self) -> None:
        self._clock.close()
