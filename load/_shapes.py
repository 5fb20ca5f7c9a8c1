"""The tier shapes: `TierShape(TIERS["50"])` ramps to 50 users, holds, then stops the run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from locust import LoadTestShape

from ._config import Tier

RAMP_STEP_S = 1.0
"""How far ahead of the ramp each tick's target is (Locust ticks shapes once a second)."""


class TimedShape(LoadTestShape):
    """What the load shapes share: a clock of their own (tests pass a fake one) and Locust's
    `-t` as `stop_after_s`, which Locust does not apply to shape runs itself."""

    abstract = True

    def __init__(self, clock: Callable[[], float], stop_after_s: float | None) -> None:
        self.stop_after_s = stop_after_s
        self._clock = clock
        super().__init__()
        self.reset_time()

    def reset_time(self) -> None:
        self.start_time = self._clock()

    def get_run_time(self) -> float:
        return self._clock() - self.start_time

    def cut_note(self) -> str:
        return "" if self.stop_after_s is None else f" (cut at {self.stop_after_s:g}s by -t)"


class TierShape(TimedShape):
    """Ramp to the tier's users at its spawn rate, hold until `ramp_s + hold_s`, stop;
    sooner at `stop_after_s` (Locust's `-t`, which it does not apply to shape runs itself).

    `abstract = True` hides it from Locust's discovery: with `-f load/` Locust silently
    runs the first concrete shape class it finds (in directory order) and ignores
    -u/-r/-t, so tiers are chosen by `--tier` instead (locustfile.py installs the instance).
    """

    abstract = True

    def __init__(
        self,
        tier: Tier,
        clock: Callable[[], float] = time.perf_counter,
        stop_after_s: float | None = None,
    ) -> None:
        self.tier = tier
        super().__init__(clock, stop_after_s)

    def tick(self) -> tuple[int, float] | None:
        end = self.tier.duration_s
        if self.stop_after_s is not None:
            end = min(end, self.stop_after_s)
        elapsed = self.get_run_time()
        if elapsed >= end:
            return None
        # The ramp, one step per tick: a distributed master blocks in each step until it has
        # spawned it, so asking for all users at once would ignore -t and stop until ramped.
        step = RAMP_STEP_S * (math.floor(elapsed / RAMP_STEP_S) + 1)
        users = min(self.tier.users, max(1, math.ceil(self.tier.spawn_rate * step)))
        return users, self.tier.spawn_rate

    def describe(self) -> str:
        tier = self.tier
        return (
            f"tier {tier.name}: ramp to {tier.users} users in {tier.ramp_s:g}s "
            f"({tier.spawn_rate:.2f}/s), hold {tier.hold_s:g}s, stop{self.cut_note()}"
        )
