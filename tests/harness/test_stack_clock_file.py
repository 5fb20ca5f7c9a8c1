"""The in-process emulator's clock offset published in a file (WORKERS_CLOCK_FILE)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any

from emulator.servicebus.core.clock import EmulatorClock
from functions_shared.offset_clock import OffsetFile
from harness.stack.stack import publish_clock


def test_publish_clock_writes_the_offset_before_an_advance_returns() -> None:
    clock = EmulatorClock()
    clock.advance(30)
    emulator: Any = SimpleNamespace(clock=clock)
    seen_by_later_listeners: list[float] = []
    with contextlib.ExitStack() as stack:
        path = publish_clock(stack, emulator)
        reader = OffsetFile(path)
        assert reader.read() == 30

        # The emulator's own listener (it delivers what became due) is added when it starts,
        # after publish_clock: whatever it hands out is read against the new offset.
        def later() -> None:
            seen_by_later_listeners.append(reader.read())

        clock.on_advance(later)
        clock.advance(3600)
        assert seen_by_later_listeners == [3630]
        assert reader.read() == 3630
        clock.reset()
        assert reader.read() == 0
        clock.remove_listener(later)
        reader.close()
    assert not path.exists()
    clock.advance(5)  # publish_clock's listener went with the stack: no write, no error
    assert clock.offset == 5
