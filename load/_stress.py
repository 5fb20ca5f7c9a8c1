"""The stress model: today's busy creators, more of them each step, until the system breaks.

A tier run asks "does the system hold the seed's volume?"; a stress run asks "how far past
it does it go, and what gives first?". `StressShape` adds `step_users` every `step_s` at the
busy pace. At the end of each step the step's own window of Locust's stats (a difference of
two snapshots, so it works the same on a local runner and on a distributed master) is
judged by `Limits`; the first step that breaks one ends the run. The highest jobs/s of a
step that broke nothing is the sustained throughput.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from locust.stats import calculate_response_time_percentile

from ._report import BUSY_REQUEST_TYPE, JOB_REQUEST_TYPE, StatsRow
from ._shapes import TimedShape


@dataclass(frozen=True)
class StressPlan:
    """Where the ramp starts, how it climbs, and where it stops at the latest."""

    start_users: int = 50
    step_users: int = 50
    step_s: float = 60.0
    max_users: int = 1000
    spawn_rate: float = 10.0

    def __post_init__(self) -> None:
        if min(self.start_users, self.step_users, self.max_users) < 1 or self.step_s <= 0:
            raise ValueError("stress plan: users and step must be >= 1, step time > 0")
        if self.spawn_rate <= 0:
            raise ValueError("stress plan: spawn rate must be > 0")

    def users_at(self, elapsed_s: float) -> int:
        step = math.floor(elapsed_s / self.step_s)
        return min(self.max_users, self.start_users + step * self.step_users)

    def describe(self) -> str:
        return (
            f"stress: {self.start_users} users, +{self.step_users} every {self.step_s:g}s "
            f"up to {self.max_users}, until a step breaks a limit"
        )


@dataclass(frozen=True)
class Limits:
    """What a step must stay within to count as sustained."""

    max_failure_ratio: float = 0.01
    """Failed API requests (not sheds) and failed or late jobs, each."""
    max_shed_ratio: float = 0.05
    """Requests answered 503 + Retry-After: the API saying it is full."""
    api_p95_ms: float = 2000.0
    job_p95_ms: float = 30_000.0
    """A third of the chat deadline: past it, jobs are queueing, not being served."""

    def broken(self, window: Window) -> list[str]:
        reasons = []
        if window.api_failure_ratio > self.max_failure_ratio:
            reasons.append(f"API failures {window.api_failure_ratio:.1%}")
        if window.job_failure_ratio > self.max_failure_ratio:
            reasons.append(f"job failures {window.job_failure_ratio:.1%}")
        if window.shed_ratio > self.max_shed_ratio:
            reasons.append(f"API shed {window.shed_ratio:.1%} of requests (503)")
        if window.api_p95_ms is not None and window.api_p95_ms > self.api_p95_ms:
            reasons.append(f"API p95 {window.api_p95_ms:.0f} ms")
        if window.job_p95_ms is not None and window.job_p95_ms > self.job_p95_ms:
            reasons.append(f"job p95 {window.job_p95_ms / 1000:.1f} s")
        if window.jobs_completed == 0:
            reasons.append("no job completed")
        return reasons


@dataclass(frozen=True)
class _Counts:
    """Cumulative counts of some stats entries: two of them subtract to a step's window."""

    requests: int
    failures: int
    times: dict[int, int]

    @classmethod
    def of(cls, entries: Iterable[StatsRow]) -> _Counts:
        listed = list(entries)
        times: Counter[int] = Counter()
        for entry in listed:
            times.update(entry.response_times)
        requests = sum(e.num_requests for e in listed)
        return cls(requests, sum(e.num_failures for e in listed), dict(times))

    def minus(self, earlier: _Counts) -> _Counts:
        times = {ms: n - earlier.times.get(ms, 0) for ms, n in self.times.items()}
        return _Counts(
            self.requests - earlier.requests,
            self.failures - earlier.failures,
            {ms: n for ms, n in times.items() if n > 0},
        )

    def p95(self) -> float | None:
        """With Locust's rounding, as the rest of the report."""
        total = sum(self.times.values())
        return calculate_response_time_percentile(self.times, total, 0.95) if total else None


@dataclass(frozen=True)
class Snapshot:
    """Locust's cumulative stats at one moment, split the way a step is judged."""

    at: float
    api: _Counts
    posts: int
    sheds: int
    jobs: _Counts

    @classmethod
    def of(cls, entries: Iterable[StatsRow], at: float) -> Snapshot:
        listed = list(entries)
        return cls(
            at=at,
            api=_Counts.of(
                e for e in listed if e.method not in (JOB_REQUEST_TYPE, BUSY_REQUEST_TYPE)
            ),
            posts=sum(e.num_requests for e in listed if e.method == "POST"),
            sheds=sum(e.num_requests for e in listed if e.method == BUSY_REQUEST_TYPE),
            jobs=_Counts.of(e for e in listed if e.method == JOB_REQUEST_TYPE),
        )


@dataclass(frozen=True)
class Window:
    """What one step did, from its own start to its own end."""

    users: int
    seconds: float
    api_requests: int
    api_failures: int
    api_p95_ms: float | None
    posts: int
    sheds: int
    jobs_completed: int
    jobs_failed: int
    job_p95_ms: float | None
    from_s: float = 0.0
    """When the step began, in seconds from the start of the run."""

    @classmethod
    def between(cls, start: Snapshot, end: Snapshot, users: int, origin: float = 0.0) -> Window:
        """The step from `start` to `end`; `origin` is the run's start on the same clock."""
        api, jobs = end.api.minus(start.api), end.jobs.minus(start.jobs)
        return cls(
            users=users,
            seconds=max(end.at - start.at, 1e-9),
            api_requests=api.requests,
            api_failures=api.failures,
            api_p95_ms=api.p95(),
            posts=end.posts - start.posts,
            sheds=end.sheds - start.sheds,
            jobs_completed=jobs.requests - jobs.failures,
            jobs_failed=jobs.failures,
            job_p95_ms=jobs.p95(),
            from_s=start.at - origin,
        )

    @property
    def jobs_per_s(self) -> float:
        return self.jobs_completed / self.seconds

    @property
    def api_failure_ratio(self) -> float:
        return self.api_failures / self.api_requests if self.api_requests else 0.0

    @property
    def job_failure_ratio(self) -> float:
        observed = self.jobs_completed + self.jobs_failed
        return self.jobs_failed / observed if observed else 0.0

    @property
    def shed_ratio(self) -> float:
        return self.sheds / self.api_requests if self.api_requests else 0.0


@dataclass
class StressRun:
    """The steps judged so far; the first broken one ends the run."""

    limits: Limits = field(default_factory=Limits)
    steps: list[tuple[Window, list[str]]] = field(default_factory=list)

    def add(self, window: Window) -> bool:
        """Record a finished step; True when it broke a limit."""
        reasons = self.limits.broken(window)
        self.steps.append((window, reasons))
        return bool(reasons)

    @property
    def sustained(self) -> Window | None:
        held = [w for w, reasons in self.steps if not reasons]
        return max(held, key=lambda w: w.jobs_per_s, default=None)

    @property
    def broke(self) -> tuple[Window, list[str]] | None:
        return next(((w, r) for w, r in self.steps if r), None)

    def to_dict(self) -> dict[str, Any]:
        best, broke = self.sustained, self.broke
        return {
            "limits": vars(self.limits),
            "sustained_jobs_per_s": None if best is None else round(best.jobs_per_s, 2),
            "sustained_users": None if best is None else best.users,
            "broke_at_users": None if broke is None else broke[0].users,
            "broke_by": [] if broke is None else broke[1],
            "steps": [
                {
                    "users": w.users,
                    "from_s": round(w.from_s, 1),
                    "seconds": round(w.seconds, 1),
                    "jobs_per_s": round(w.jobs_per_s, 2),
                    "api_requests": w.api_requests,
                    "api_failures": w.api_failures,
                    "api_p95_ms": w.api_p95_ms,
                    "posts": w.posts,
                    "sheds": w.sheds,
                    "jobs_completed": w.jobs_completed,
                    "jobs_failed": w.jobs_failed,
                    "job_p95_ms": w.job_p95_ms,
                    "broke": reasons,
                }
                for w, reasons in self.steps
            ],
        }


def render(stress: Mapping[str, Any]) -> str:
    """The stress section of the printed report."""
    lines = ["Stress steps:"]
    lines.append(
        f"  {'users':>6} {'jobs/s':>7} {'API p95':>9} {'job p95':>9} {'sheds':>6} "
        f"{'fails':>6}  verdict"
    )
    for step in stress["steps"]:
        api = "-" if step["api_p95_ms"] is None else f"{step['api_p95_ms']:.0f} ms"
        job = "-" if step["job_p95_ms"] is None else f"{step['job_p95_ms'] / 1000:.1f} s"
        fails = step["api_failures"] + step["jobs_failed"]
        verdict = "broke: " + ", ".join(step["broke"]) if step["broke"] else "held"
        lines.append(
            f"  {step['users']:>6} {step['jobs_per_s']:>7.2f} {api:>9} {job:>9} "
            f"{step['sheds']:>6} {fails:>6}  {verdict}"
        )
    if stress["sustained_jobs_per_s"] is None:
        lines.append("  sustained: no step held")
    else:
        lines.append(
            f"  sustained: {stress['sustained_jobs_per_s']:.2f} jobs/s "
            f"at {stress['sustained_users']} users"
        )
    if stress["broke_by"]:
        lines.append(
            f"  broke first at {stress['broke_at_users']} users: " + ", ".join(stress["broke_by"])
        )
    else:
        lines.append("  no step broke a limit (raise --stress-max-users or run longer)")
    return "\n".join(lines)


class StressShape(TimedShape):
    """Step the users up by the plan; judge each step when it ends; stop at the first break
    (or at `-t`, which Locust does not apply to shape runs itself).

    `abstract = True` keeps it out of Locust's shape discovery, as `TierShape` is; the
    `--stress` option installs an instance.
    """

    abstract = True

    def __init__(
        self,
        plan: StressPlan,
        entries: Callable[[], Iterable[StatsRow]],
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.perf_counter,
        stop_after_s: float | None = None,
    ) -> None:
        self.plan = plan
        self.run = StressRun(limits or Limits())
        self._entries = entries
        self._step = 0
        self._step_start: Snapshot | None = None
        super().__init__(clock, stop_after_s)

    def reset_time(self) -> None:
        super().reset_time()
        self._step, self._step_start = 0, None
        self.run.steps.clear()

    def describe(self) -> str:
        return self.plan.describe() + self.cut_note()

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        now = self._clock()
        if self._step_start is None:
            self._step_start = Snapshot.of(self._entries(), now)
        step = math.floor(elapsed / self.plan.step_s)
        if step > self._step:
            users = self.plan.users_at(self._step * self.plan.step_s)
            end = Snapshot.of(self._entries(), now)
            window = Window.between(self._step_start, end, users, origin=self.start_time)
            broke = self.run.add(window)
            if broke or users >= self.plan.max_users:
                return None
            self._step, self._step_start = step, end
        if self.stop_after_s is not None and elapsed >= self.stop_after_s:
            return None
        return self.plan.users_at(elapsed), self.plan.spawn_rate
