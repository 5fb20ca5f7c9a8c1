"""`emulator_clock` and `emulator_control`: move the in-process emulator's time instead of
sleeping, and drive it through its control API (faults, counters) as a user would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from emulator.servicebus.admin.control_client import ControlClient
    from emulator.servicebus.core.clock import EmulatorClock
    from harness.stack import Stack


@pytest.fixture
def emulator_clock(stack: Stack) -> Iterator[EmulatorClock]:
    """The in-process emulator's clock (`advance(seconds)`); skips on a real namespace.

    Never put back: the apps and the job API read this clock too (`WORKERS_CLOCK_URL`), so
    a clock left ahead by an earlier test is simply the system's now for the next one."""
    if stack.emulator is None:
        pytest.skip("emulator_clock needs the in-process emulator (not --sb-connection-string)")
    yield stack.emulator.clock


@pytest.fixture
def emulator_control(stack: Stack) -> Iterator[ControlClient]:
    """A client of the in-process emulator's control API; skips on a real namespace.

    Fault rules a test adds are cleared at teardown, so they never reach the next test."""
    from emulator.servicebus.admin.control_client import ControlClient

    if stack.emulator is None:
        pytest.skip("emulator_control needs the in-process emulator (not --sb-connection-string)")
    with ControlClient(stack.emulator.control_url) as client:
        yield client
        client.clear_faults()
