"""The memory soak, short: 20,000 messages through the seed topology, memory back after.

``soak_workload`` (see its docstring) drives ``sbemu`` with the SDK in waves, moving the clock
so locks lapse, schedules fall due and TTLs expire into dead-letter queues, then drains every
entity. Here two waves of 10,000: the emulator's live objects must come back to the
baseline's count once drained, and RSS may not grow past the first wave's peak. ``make soak``
runs a million.
"""

from __future__ import annotations

import sys

import pytest
from soak_workload import run_soak


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the emulator's RSS from /proc"
)
def test_memory_comes_back_after_20000_messages() -> None:
    result = run_soak(20_000, wave=10_000, senders=1, peek=200)
    print("\n".join([*result.table(), result.summary()]))
    counters = result.counters
    assert counters["accepted by topics"] >= 20_000
    assert counters["expired"] > 0 and counters["dead_lettered"] > 0
    assert counters["lock_expirations"] > 0 and counters["abandoned"] > 0
    assert counters["completed"] > 0 and counters["sent scheduled"] > 0
    assert result.blocks_growth <= result.blocks_limit, result.summary()
    assert result.final["rss"] <= result.rss_limit, result.summary()
    assert result.returned
