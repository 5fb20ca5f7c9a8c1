"""Session summary: how much simulated time the suites covered, against the wall time.

Each stack's emulator clock counts the seconds tests skipped with `advance`; under xdist
every worker reports its stacks' total to the controller, which prints one line, e.g.
`timeline: 41m12s simulated in 97.3s of wall time (25x)`.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

_clocks: list[Any] = []
_KEY = "sbharness_simulated_seconds"


def watch(clock: Any) -> None:
    """Count this emulator clock in the session's simulated time (the stack fixture calls it)."""
    _clocks.append(clock)


def _simulated() -> float:
    return sum(float(getattr(c, "advanced", 0.0)) for c in _clocks)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_start_key] = time.monotonic()
    config.stash[_total_key] = 0.0


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the total to the controller
        workeroutput[_KEY] = _simulated()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    config = node.config
    config.stash[_total_key] += float(getattr(node, "workeroutput", {}).get(_KEY, 0.0))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    simulated = config.stash[_total_key] + _simulated()
    if simulated <= 0:
        return
    wall = time.monotonic() - config.stash[_start_key]
    terminalreporter.write_line(
        f"timeline: {_duration(simulated)} simulated in {wall:.1f}s of wall time "
        f"({simulated / max(wall, 1e-9):.0f}x)"
    )


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"


_start_key = pytest.StashKey[float]()
_total_key = pytest.StashKey[float]()
