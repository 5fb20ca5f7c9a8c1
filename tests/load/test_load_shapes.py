"""Tier shapes: what `tick()` asks Locust for at each point of a run, on a fake clock."""

from __future__ import annotations

import itertools

import pytest
from locust import LoadTestShape
from locust.util.load_locustfile import is_shape_class

from load._config import TIERS, Tier
from load._shapes import TierShape


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_tiers_are_the_seeds_50_100_500_users() -> None:
    assert {name: tier.users for name, tier in TIERS.items()} == {"50": 50, "100": 100, "500": 500}


def test_tier_50_ramps_for_a_minute_holds_five_then_stops(clock: FakeClock) -> None:
    shape = TierShape(TIERS["50"], clock=clock)
    rate = pytest.approx(50 / 60)
    for at, expected in [
        (0, (1, rate)),
        (30, (26, rate)),  # where the ramp is a second later
        (59.9, (50, rate)),
        (60, (50, rate)),
        (359.9, (50, rate)),
        (360, None),
    ]:
        clock.now = 1000.0 + at
        assert shape.tick() == expected, f"at {at}s"


def test_each_tick_asks_for_the_ramp_one_second_ahead(clock: FakeClock) -> None:
    """A distributed master blocks in each step until it has spawned it: asking for every
    user at once would keep it there for the whole ramp, past -t (issue 14, point 7)."""
    shape = TierShape(TIERS["500"], clock=clock)
    seen = []
    for second in range(0, 301):
        clock.now = 1000.0 + second + 0.5
        tick = shape.tick()
        assert tick is not None
        seen.append(tick[0])
    assert seen == sorted(seen) and seen[-1] == 500
    assert max(b - a for a, b in itertools.pairwise(seen)) <= 2  # 1.67 users a second


@pytest.mark.parametrize("tier", TIERS.values(), ids=list(TIERS))
def test_every_tier_reaches_its_users_at_the_end_of_its_ramp(tier: Tier, clock: FakeClock) -> None:
    shape = TierShape(tier, clock=clock)
    clock.now += tier.ramp_s
    users, spawn_rate = shape.tick() or (0, 0.0)
    assert users == tier.users
    assert users / spawn_rate == pytest.approx(tier.ramp_s)
    clock.now += tier.hold_s - 0.001
    assert shape.tick() == (users, spawn_rate)
    clock.now += 0.001
    assert shape.tick() is None


def test_reset_time_restarts_the_shape(clock: FakeClock) -> None:
    """Locust calls reset_time() when a shape run starts (again, from the web UI)."""
    shape = TierShape(TIERS["100"], clock=clock)
    clock.now += TIERS["100"].duration_s
    assert shape.tick() is None
    shape.reset_time()
    assert shape.tick() == (1, pytest.approx(100 / 120))  # the ramp from its start


def test_run_time_limit_cuts_the_tier_short_but_never_extends_it(clock: FakeClock) -> None:
    cut = TierShape(TIERS["500"], clock=clock, stop_after_s=30)
    clock.now += 29.9
    assert cut.tick() is not None
    clock.now += 0.1
    assert cut.tick() is None

    longer = TierShape(TIERS["50"], clock=clock, stop_after_s=10_000)
    clock.now += TIERS["50"].duration_s
    assert longer.tick() is None


def test_locust_does_not_discover_the_tier_shape() -> None:
    """`locust -f load/` runs the first concrete shape it finds; the tier shape must not
    be one, or every run would be a tier run whatever --tier says."""

    class Concrete(LoadTestShape):
        def tick(self) -> tuple[int, float] | None:
            return None

    assert is_shape_class(Concrete)  # the check does find ordinary shapes
    assert not is_shape_class(TierShape)


def test_describe_names_the_tier_and_its_phases(clock: FakeClock) -> None:
    text = TierShape(TIERS["500"], clock=clock, stop_after_s=60).describe()
    assert text == (
        "tier 500: ramp to 500 users in 300s (1.67/s), hold 300s, stop (cut at 60s by -t)"
    )


@pytest.mark.parametrize(("users", "ramp_s", "hold_s"), [(0, 60, 300), (10, 0, 300), (10, 60, -1)])
def test_a_tier_needs_users_a_ramp_and_a_hold(users: int, ramp_s: float, hold_s: float) -> None:
    with pytest.raises(ValueError, match="tier x"):
        Tier("x", users=users, ramp_s=ramp_s, hold_s=hold_s)
