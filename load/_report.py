"""The capacity report: Locust's stats reduced to what a tier is judged by, and the verdict.

`summarize` reads a Locust `RequestStats` (API requests are its GET/POST entries, jobs its
`JOB` entries, one per route); `evaluate` compares a summary with `Targets` and is pure, so
the verdict logic is tested without running Locust.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from locust.stats import StatsError, calculate_response_time_percentile

from ._config import JOB_KINDS, Targets

JOB_REQUEST_TYPE = "JOB"
BUSY_REQUEST_TYPE = "BUSY"
"""A 503 + Retry-After from the job API: counted apart, the request is made again after it."""
NOT_API_TYPES = (JOB_REQUEST_TYPE, BUSY_REQUEST_TYPE)
"""Stats rows that are not API calls: jobs followed to their end, and the waits sheds told
(the shed response itself is an API row of its own)."""
JOB_ROUTE_PREFIX = "/api/jobs/"


class StatsRow(Protocol):
    """What the report reads of a Locust StatsEntry (tests pass plain objects)."""

    name: str
    method: str
    num_requests: int
    num_failures: int
    response_times: dict[int, int]


class _Error(Protocol):
    method: str
    name: str
    error: Exception | str | None
    occurrences: int


class _Stats(Protocol):
    @property
    def entries(self) -> Mapping[tuple[str, str], StatsRow]: ...

    @property
    def errors(self) -> Mapping[str, _Error]: ...


@dataclass(frozen=True)
class Latency:
    """Count, failures and percentiles (ms, Locust's rounding) of one kind of event."""

    count: int = 0
    failures: int = 0
    p50_ms: int | None = None
    p95_ms: int | None = None
    p99_ms: int | None = None

    @property
    def failure_ratio(self) -> float | None:
        return self.failures / self.count if self.count else None

    @classmethod
    def of(cls, entries: Iterable[StatsRow]) -> Latency:
        times: Counter[int] = Counter()
        count = failures = 0
        for entry in entries:
            times.update(entry.response_times)
            count += entry.num_requests
            failures += entry.num_failures
        total = sum(times.values())
        if not total:
            return cls(count, failures)

        def pct(p: float) -> int:
            return calculate_response_time_percentile(dict(times), total, p)

        return cls(count, failures, pct(0.50), pct(0.95), pct(0.99))


@dataclass(frozen=True)
class ApiSummary:
    """Every HTTP call the users made to the job API (posts and status polls)."""

    latency: Latency
    requests_per_s: float
    endpoints: dict[str, Latency] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSummary:
    """One job route: jobs created, and how the ones followed to the end went.

    `observed` counts jobs seen `completed`/`failed` or given up at their deadline;
    `failed` the latter two. Jobs still running when the run stopped are `in_flight`.
    """

    route: str
    posted: int
    latency: Latency
    completed_per_s: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def observed(self) -> int:
        return self.latency.count

    @property
    def failed(self) -> int:
        return self.latency.failures

    @property
    def completed(self) -> int:
        return self.observed - self.failed

    @property
    def in_flight(self) -> int:
        return max(self.posted - self.observed, 0)


@dataclass(frozen=True)
class RunSummary:
    duration_s: float
    peak_users: int
    api: ApiSummary
    jobs: dict[str, JobSummary]
    tier: str | None = None
    target_users: int | None = None
    host: str | None = None


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    actual: str
    met: bool


def summarize(
    stats: _Stats,
    *,
    duration_s: float,
    peak_users: int,
    tier: str | None = None,
    target_users: int | None = None,
    host: str | None = None,
) -> RunSummary:
    """Reduce Locust's stats of one run to a RunSummary."""
    entries: list[StatsRow] = [e for e in stats.entries.values() if e.num_requests]
    api_entries = [e for e in entries if e.method not in NOT_API_TYPES]
    api = Latency.of(api_entries)
    endpoints = {f"{e.method} {e.name}": Latency.of([e]) for e in api_entries}
    per_s = (lambda n: n / duration_s) if duration_s > 0 else (lambda n: 0.0)

    routes = [kind.route for kind in JOB_KINDS]
    routes += sorted({e.name for e in entries if e.method == JOB_REQUEST_TYPE} - set(routes))
    jobs: dict[str, JobSummary] = {}
    for route in routes:
        posts = [
            e for e in api_entries if e.method == "POST" and e.name == JOB_ROUTE_PREFIX + route
        ]
        done = [e for e in entries if e.method == JOB_REQUEST_TYPE and e.name == route]
        if not posts and not done:
            continue
        latency = Latency.of(done)
        errors: dict[str, int] = {}
        for error in stats.errors.values():
            if error.method == JOB_REQUEST_TYPE and error.name == route:
                key = StatsError.parse_error(error.error)
                errors[key] = errors.get(key, 0) + error.occurrences
        jobs[route] = JobSummary(
            route=route,
            posted=sum(e.num_requests - e.num_failures for e in posts),
            latency=latency,
            completed_per_s=per_s(latency.count - latency.failures),
            errors=errors,
        )
    return RunSummary(
        duration_s=duration_s,
        peak_users=peak_users,
        api=ApiSummary(api, per_s(api.count), endpoints),
        jobs=jobs,
        tier=tier,
        target_users=target_users,
        host=host,
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} ms"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _at_most(name: str, actual: float | None, limit: float, fmt: Any) -> Check:
    return Check(name, f"<= {fmt(limit)}", fmt(actual), actual is not None and actual <= limit)


def evaluate(summary: RunSummary, targets: Targets) -> list[Check]:
    """Every check the run is judged by; a missing measurement fails its check."""
    api = summary.api.latency
    checks = [
        Check("API requests", ">= 1", str(api.count), api.count >= 1),
        _at_most("API p95", api.p95_ms, targets.api_p95_ms, _ms),
        _at_most("API p99", api.p99_ms, targets.api_p99_ms, _ms),
        _at_most("API failure ratio", api.failure_ratio, targets.max_api_failure_ratio, _ratio),
    ]
    if summary.target_users is not None:
        checks.append(
            Check(
                "peak users",
                f">= {summary.target_users}",
                str(summary.peak_users),
                summary.peak_users >= summary.target_users,
            )
        )
    for route, job in summary.jobs.items():
        checks.append(Check(f"{route} completed", ">= 1", str(job.completed), job.completed >= 1))
        if route in targets.job_p95_ms:
            checks.append(
                _at_most(f"{route} p95", job.latency.p95_ms, targets.job_p95_ms[route], _ms)
            )
        if route in targets.job_p99_ms:
            checks.append(
                _at_most(f"{route} p99", job.latency.p99_ms, targets.job_p99_ms[route], _ms)
            )
        checks.append(
            _at_most(
                f"{route} failure ratio",
                job.latency.failure_ratio,
                targets.max_job_failure_ratio,
                _ratio,
            )
        )
    return checks


def _latency_dict(latency: Latency) -> dict[str, Any]:
    return {**asdict(latency), "failure_ratio": latency.failure_ratio}


def build_report(
    summary: RunSummary, targets: Targets, *, workers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON-ready report: the summary, the targets, each check and the verdict.

    `workers` (a distributed run's master: each worker's tally and those that sent none)
    becomes `locust`; the figures stay the master's aggregate of all workers."""
    checks = evaluate(summary, targets)
    locust: dict[str, Any] = {"mode": "local"}
    if workers is not None:
        locust = {"mode": "distributed", **workers}
    return {
        "tier": summary.tier,
        "target_users": summary.target_users,
        "host": summary.host,
        "duration_s": round(summary.duration_s, 3),
        "peak_users": summary.peak_users,
        "api": {
            **_latency_dict(summary.api.latency),
            "requests_per_s": round(summary.api.requests_per_s, 3),
            "endpoints": {k: _latency_dict(v) for k, v in sorted(summary.api.endpoints.items())},
        },
        "jobs": {
            route: {
                "posted": job.posted,
                "observed": job.observed,
                "completed": job.completed,
                "failed": job.failed,
                "in_flight": job.in_flight,
                "failure_ratio": job.latency.failure_ratio,
                "completed_per_s": round(job.completed_per_s, 3),
                "p50_ms": job.latency.p50_ms,
                "p95_ms": job.latency.p95_ms,
                "p99_ms": job.latency.p99_ms,
                "errors": job.errors,
            }
            for route, job in summary.jobs.items()
        },
        "locust": locust,
        "targets": asdict(targets),
        "checks": [asdict(check) for check in checks],
        "met": all(check.met for check in checks),
    }


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render(report: Mapping[str, Any]) -> str:
    """The report as a few plain-text tables for the terminal."""
    tier = report["tier"]
    title = f"tier {tier} ({report['target_users']} users)" if tier else "custom run (no --tier)"
    verdict = "TARGETS MET" if report["met"] else "TARGETS MISSED"
    api = report["api"]
    lines = [
        f"Capacity report: {title}: {verdict}",
        f"  {report['duration_s']:.1f}s, peak {report['peak_users']} users, "
        f"host {report['host'] or '-'}",
        "",
        f"  {'API':<36}{'requests':>9}{'fail':>8}{'req/s':>9}{'p50':>7}{'p95':>7}{'p99':>7}",
    ]
    rows = [("all", api), *api["endpoints"].items()]
    for name, row in rows:
        rps = f"{row['requests_per_s']:.2f}" if "requests_per_s" in row else ""
        lines.append(
            f"  {name:<36}{row['count']:>9}{_ratio(row['failure_ratio']):>8}{rps:>9}"
            f"{_cell(row['p50_ms']):>7}{_cell(row['p95_ms']):>7}{_cell(row['p99_ms']):>7}"
        )
    lines += [
        "",
        f"  {'jobs (time to completion, ms)':<30}{'posted':>7}{'done':>6}{'failed':>7}"
        f"{'running':>8}{'p50':>7}{'p95':>7}{'p99':>7}",
    ]
    for route, job in report["jobs"].items():
        lines.append(
            f"  {route:<30}{job['posted']:>7}{job['completed']:>6}{job['failed']:>7}"
            f"{job['in_flight']:>8}{_cell(job['p50_ms']):>7}{_cell(job['p95_ms']):>7}"
            f"{_cell(job['p99_ms']):>7}"
        )
        for error, count in job["errors"].items():
            lines.append(f"      {count} x {error}")
    lines += _render_workers(report.get("locust") or {})
    lines += ["", "  checks"]
    for check in report["checks"]:
        mark = "ok  " if check["met"] else "MISS"
        lines.append(f"  [{mark}] {check['name']}: {check['actual']} (target {check['target']})")
    return "\n".join(lines)


def _render_workers(locust: Mapping[str, Any]) -> list[str]:
    """A distributed run: what each worker did, so a missing or idle one shows."""
    if locust.get("mode") != "distributed":
        return []
    lines = [
        "",
        f"  {'Locust workers':<30}{'users':>7}{'requests':>9}{'fail':>6}{'jobs':>6}{'busy':>6}",
    ]
    for worker in locust.get("workers", []):
        lines.append(
            f"  {'#' + str(worker['index']) + ' ' + worker['worker'][-20:]:<30}"
            f"{worker['peak_users']:>7}{worker['requests']:>9}{worker['failures']:>6}"
            f"{worker['jobs_observed']:>6}{worker['busy']:>6}"
        )
    for missing in locust.get("missing", []):
        lines.append(f"  {missing}: sent no final figures (its last samples are not counted)")
    return lines


def write(report: Mapping[str, Any], path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n")
    return target
