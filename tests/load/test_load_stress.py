"""The stress model: steps, each step's own window of Locust's stats, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from locust.util.load_locustfile import is_shape_class

from load._config import SEED_VOLUME, SeedVolume
from load._stress import Limits, Snapshot, StressPlan, StressRun, StressShape, Window, render


@dataclass
class Entry:
    """What the stress model reads of a Locust StatsEntry."""

    method: str
    name: str
    num_requests: int = 0
    num_failures: int = 0
    response_times: dict[int, int] = field(default_factory=dict)

    def log(self, ms: int, n: int = 1, failed: int = 0) -> None:
        self.num_requests += n
        self.num_failures += failed
        self.response_times[ms] = self.response_times.get(ms, 0) + n


class FakeRun:
    """A clock and Locust's stats as a stress shape sees them."""

    def __init__(self) -> None:
        self.now = 100.0
        self.post = Entry("POST", "/api/jobs/chat-suggestions")
        self.poll = Entry("GET", "/api/jobs/[jobId]")
        self.busy = Entry("BUSY", "chat-suggestions")
        self.job = Entry("JOB", "chat-suggestions")

    def clock(self) -> float:
        return self.now

    def entries(self) -> list[Entry]:
        return [self.post, self.poll, self.busy, self.job]

    def step(self, *, jobs: int, api_ms: int = 20, job_ms: int = 1500, sheds: int = 0) -> None:
        """One step's worth of traffic: `jobs` posted, polled twice each, completed."""
        self.post.log(api_ms, jobs + sheds)
        if sheds:
            self.busy.log(1000, sheds)
        self.poll.log(api_ms, 2 * jobs)
        self.job.log(job_ms, jobs)


def test_the_plan_climbs_by_steps_and_stops_at_its_ceiling() -> None:
    plan = StressPlan(start_users=50, step_users=50, step_s=60, max_users=180)
    assert [plan.users_at(t) for t in (0, 59.9, 60, 125, 1000)] == [50, 50, 100, 150, 180]
    with pytest.raises(ValueError, match="step time > 0"):
        StressPlan(step_s=0)


def test_a_step_is_judged_on_its_own_window_not_the_whole_run() -> None:
    run = FakeRun()
    start = Snapshot.of(run.entries(), run.now)
    run.step(jobs=600, job_ms=40_000)  # a slow first minute ...
    middle = Snapshot.of(run.entries(), run.now + 60)
    run.step(jobs=1200)  # ... does not count against the second one
    window = Window.between(middle, Snapshot.of(run.entries(), run.now + 120), users=100)
    assert (window.jobs_completed, window.jobs_per_s) == (1200, 20.0)
    assert window.job_p95_ms == 1500 and window.api_p95_ms == 20
    assert Limits().broken(window) == []
    first = Window.between(start, middle, users=50)
    assert Limits().broken(first) == ["job p95 40.0 s"]


@pytest.mark.parametrize(
    ("traffic", "reason"),
    [
        ({"jobs": 100, "sheds": 20}, "API shed 6.2% of requests (503)"),
        ({"jobs": 100, "api_ms": 2500}, "API p95 2500 ms"),
        ({"jobs": 0}, "no job completed"),
    ],
)
def test_each_limit_breaks_a_step(traffic: dict[str, int], reason: str) -> None:
    run = FakeRun()
    start = Snapshot.of(run.entries(), run.now)
    run.step(**traffic)
    window = Window.between(start, Snapshot.of(run.entries(), run.now + 60), users=50)
    assert reason in Limits().broken(window)


def test_failed_requests_and_failed_jobs_break_a_step() -> None:
    run = FakeRun()
    start = Snapshot.of(run.entries(), run.now)
    run.step(jobs=100)
    run.poll.log(20, 10, failed=10)
    run.job.log(90_000, 5, failed=5)
    window = Window.between(start, Snapshot.of(run.entries(), run.now + 60), users=50)
    broken = Limits().broken(window)
    assert "API failures 3.2%" in broken and "job failures 4.8%" in broken


def test_the_shape_steps_up_until_a_step_breaks_then_reports_what_held() -> None:
    run = FakeRun()
    plan = StressPlan(start_users=50, step_users=50, step_s=60, max_users=1000)
    shape = StressShape(plan, run.entries, clock=run.clock)
    assert is_shape_class(StressShape) is False  # hidden from Locust's discovery
    asked = []
    for second, jobs, sheds in ((0, 300, 0), (60, 600, 0), (120, 700, 150)):
        for tick in range(60):
            run.now = 100.0 + second + tick
            asked.append(shape.tick())
        run.step(jobs=jobs, sheds=sheds)
    run.now = 100.0 + 180
    assert shape.tick() is None  # the third step shed 6.7 % of its requests
    assert {a[0] for a in asked if a} == {50, 100, 150}
    report = shape.run.to_dict()
    assert (report["sustained_jobs_per_s"], report["sustained_users"]) == (10.0, 100)
    assert [step["from_s"] for step in report["steps"]] == [0.0, 60.0, 120.0]
    assert report["broke_at_users"] == 150 and report["broke_by"] == [
        "API shed 6.7% of requests (503)"
    ]
    printed = render(report)
    assert "sustained: 10.00 jobs/s at 100 users" in printed
    assert "broke first at 150 users: API shed 6.7% of requests (503)" in printed


def test_the_shape_stops_at_its_ceiling_and_at_minus_t() -> None:
    run = FakeRun()
    shape = StressShape(
        StressPlan(start_users=10, step_users=10, max_users=20, step_s=10),
        run.entries,
        clock=run.clock,
    )
    for second in range(20):
        run.now = 100.0 + second
        run.step(jobs=5)
        assert shape.tick() is not None
    run.now = 120.0
    assert shape.tick() is None  # the step at the ceiling held: nothing left to raise
    assert render(shape.run.to_dict()).endswith("(raise --stress-max-users or run longer)")

    cut = StressShape(StressPlan(), run.entries, clock=run.clock, stop_after_s=30)
    run.now += 30
    assert cut.tick() is None


def test_no_step_held_is_said_plainly() -> None:
    result = StressRun()
    result.add(Window(50, 60, 0, 0, None, 0, 0, 0, 0, None))
    assert "sustained: no step held" in render(result.to_dict())


def test_the_seed_pace_is_the_seeds_volume_at_the_peak_hour() -> None:
    """5M operations a month for 50 users, 31.4 operations a job, three times the mean."""
    assert SEED_VOLUME.job_interval_s == pytest.approx(271.3, abs=0.1)
    assert SEED_VOLUME.jobs_per_s(500) == pytest.approx(1.84, abs=0.01)
    flat = SeedVolume(peak_hour_factor=1.0)
    assert flat.jobs_per_s(50) * flat.operations_per_job * flat.month_s == pytest.approx(5e6)


def test_the_shape_says_what_it_will_do() -> None:
    run = FakeRun()
    shape = StressShape(StressPlan(), run.entries, clock=run.clock, stop_after_s=90)
    assert shape.describe() == (
        "stress: 50 users, +50 every 60s up to 1000, until a step breaks a limit (cut at 90s by -t)"
    )
