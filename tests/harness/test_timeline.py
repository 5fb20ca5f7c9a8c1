"""The session's simulated-time summary: what it counts and how it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.servicebus.core.clock import EmulatorClock
from harness.pytest_plugin import timeline


def test_advanced_counts_every_skip_and_survives_a_reset() -> None:
    clock = EmulatorClock(wall=lambda: 1000.0)
    clock.advance(90)
    clock.reset()
    clock.advance(30.5)
    assert (clock.advanced, clock.offset) == (120.5, 30.5)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.advanced == 120.5


@pytest.mark.parametrize(
    ("seconds", "text"), [(59.6, "1m00s"), (1834, "30m34s"), (3600 * 2 + 61, "2h01m01s")]
)
def test_durations_read_as_minutes_or_hours(seconds: float, text: str) -> None:
    assert timeline._duration(seconds) == text


def test_the_summary_line_names_simulated_and_wall_time(tmp_path: Path) -> None:
    (tmp_path / "test_half_an_hour.py").write_text(
        "from emulator.servicebus.core.clock import EmulatorClock\n"
        "from harness.pytest_plugin import timeline\n"
        "def test_skip_half_an_hour():\n"
        "    clock = EmulatorClock()\n"
        "    timeline.watch(clock)\n"
        "    clock.advance(1800)\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin.timeline", "-q",
         "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout
    assert re.search(r"timeline: 30m00s simulated in [\d.]+s of wall time \(\d+x\)", run.stdout)
