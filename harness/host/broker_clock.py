"""The emulator's clock, seen from a host in another process.

A test or user moves the emulator's clock through its control API; a host process judging
locked-until times by wall time alone would then renew too late. This clock follows the
offset the control API reports, read afresh on every call by the same mechanism the worker
apps use (`functions_shared.offset_clock.RemoteOffsetClock`), so host and apps agree on now.
Where the harness publishes the offset in a file (`WORKERS_CLOCK_FILE`, the apps' setting,
which a host process inherits), the host reads that file too: the host reads the clock for
every message and every lock renewal, and a loopback HTTP call each time was a third of a
busy notify host's CPU (`make profile`).
"""

from __future__ import annotations

from datetime import datetime

from functions_shared.offset_clock import RemoteOffsetClock


class ControlApiClock:
    """Callable returning the broker's now; `close()` releases the HTTP client."""

    def __init__(
        self,
        control_url: str,
        *,
        timeout_seconds: float = 5.0,
        offset_file: str | None = None,
    ) -> None:
        self._clock = RemoteOffsetClock(
            f"{control_url.rstrip('/')}/clock",
            timeout_seconds=timeout_seconds,
            offset_file=offset_file,
        )
        self._clock.read_offset()  # unreachable: fail at startup, not at the first renewal

    def __call__(self) -> datetime:
        return self._clock.now()

    def close(self) -> None:
        self._clock.close()
