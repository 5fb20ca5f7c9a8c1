"""The capacity report: Locust stats → summary → checks against the targets → verdict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from locust.stats import RequestStats

from load._config import DEFAULT_TARGETS, Targets
from load._report import (
    ApiSummary,
    JobSummary,
    Latency,
    RunSummary,
    build_report,
    evaluate,
    render,
    summarize,
    write,
)

FAST = Latency(count=200, failures=0, p50_ms=20, p95_ms=80, p99_ms=150)


ON_TIME = Latency(count=40, failures=0, p50_ms=300, p95_ms=900, p99_ms=1500)


def _job(route: str, latency: Latency = ON_TIME, posted: int = 40) -> JobSummary:
    return JobSummary(route=route, posted=posted, latency=latency, completed_per_s=1.0)


def _summary(**changes: object) -> RunSummary:
    base = RunSummary(
        duration_s=360.0,
        peak_users=50,
        api=ApiSummary(FAST, requests_per_s=5.5),
        jobs={r: _job(r) for r in ("chat-suggestions", "video-analysis")},
        tier="50",
        target_users=50,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _missed(summary: RunSummary, targets: Targets = DEFAULT_TARGETS) -> list[str]:
    return [c.name for c in evaluate(summary, targets) if not c.met]


def test_a_run_within_every_target_meets_them_all() -> None:
    checks = evaluate(_summary(), DEFAULT_TARGETS)
    assert [c for c in checks if not c.met] == []
    assert {c.name for c in checks} == {
        "API requests",
        "API p95",
        "API p99",
        "API failure ratio",
        "peak users",
        "chat-suggestions completed",
        "chat-suggestions p95",
        "chat-suggestions p99",
        "chat-suggestions failure ratio",
        "video-analysis completed",
        "video-analysis p99",
        "video-analysis failure ratio",
    }


@pytest.mark.parametrize(
    ("api", "missed"),
    [
        (dataclasses.replace(FAST, p95_ms=501), ["API p95"]),
        (dataclasses.replace(FAST, p99_ms=1001), ["API p99"]),
        (dataclasses.replace(FAST, failures=3), ["API failure ratio"]),  # 1.5% > 1%
        (dataclasses.replace(FAST, failures=2), []),  # exactly 1% is within
        (Latency(), ["API requests", "API p95", "API p99", "API failure ratio"]),
    ],
    ids=["p95", "p99", "failures", "failures-at-limit", "no-requests"],
)
def test_api_targets(api: Latency, missed: list[str]) -> None:
    assert _missed(_summary(api=ApiSummary(api, 1.0))) == missed


def test_job_p99_is_judged_against_its_own_deadline() -> None:
    """The seed's SLAs: video 120 s, chat 90 s; 100 s is late only for chat."""
    slow = Latency(40, 0, 300, 900, 100_000)
    summary = _summary(jobs={r: _job(r, slow) for r in ("chat-suggestions", "video-analysis")})
    assert _missed(summary) == ["chat-suggestions p99"]


def test_jobs_that_never_complete_fail_the_run() -> None:
    failing = _job("chat-suggestions", Latency(10, 10, 500, 900, 900), posted=10)
    unobserved = _job("video-analysis", Latency(), posted=3)  # all still running at the stop
    assert _missed(_summary(jobs={"chat-suggestions": failing, "video-analysis": unobserved})) == [
        "chat-suggestions completed",
        "chat-suggestions failure ratio",
        "video-analysis completed",
        "video-analysis p99",
        "video-analysis failure ratio",
    ]
    assert unobserved.in_flight == 3 and failing.completed == 0


def test_a_tier_that_never_reached_its_users_is_not_met() -> None:
    assert _missed(_summary(peak_users=320, tier="500", target_users=500)) == ["peak users"]


def test_a_run_without_a_tier_is_not_judged_on_users() -> None:
    checks = evaluate(_summary(tier=None, target_users=None, peak_users=3), DEFAULT_TARGETS)
    assert "peak users" not in {c.name for c in checks}


def test_targets_come_from_the_targets_object() -> None:
    strict = Targets(api_p95_ms=50, job_p99_ms={"video-analysis": 1000})
    assert _missed(_summary(), strict) == ["API p95", "video-analysis p99"]


def test_report_has_the_measurements_checks_and_verdict(tmp_path: Path) -> None:
    report = build_report(
        _summary(api=ApiSummary(dataclasses.replace(FAST, p95_ms=900), 5.5)), DEFAULT_TARGETS
    )
    assert report["met"] is False
    assert (report["tier"], report["target_users"], report["peak_users"]) == ("50", 50, 50)
    assert report["api"] | {"endpoints": {}} == {
        "count": 200,
        "failures": 0,
        "failure_ratio": 0.0,
        "p50_ms": 20,
        "p95_ms": 900,
        "p99_ms": 150,
        "requests_per_s": 5.5,
        "endpoints": {},
    }
    chat = report["jobs"]["chat-suggestions"]
    assert {k: chat[k] for k in ("posted", "completed", "failed", "in_flight", "p99_ms")} == {
        "posted": 40,
        "completed": 40,
        "failed": 0,
        "in_flight": 0,
        "p99_ms": 1500,
    }
    assert report["targets"]["job_p99_ms"]["video-analysis"] == 120_000
    [p95] = [c for c in report["checks"] if c["name"] == "API p95"]
    assert p95 == {"name": "API p95", "target": "<= 200 ms", "actual": "900 ms", "met": False}

    path = write(report, tmp_path / "out" / "capacity.json")
    assert json.loads(path.read_text()) == report

    text = render(report)
    assert text.splitlines()[0] == "Capacity report: tier 50 (50 users): TARGETS MISSED"
    assert "[MISS] API p95: 900 ms (target <= 200 ms)" in text
    assert "chat-suggestions" in text and "video-analysis" in text


def test_a_distributed_run_lists_each_worker_and_those_that_sent_nothing() -> None:
    assert build_report(_summary(), DEFAULT_TARGETS)["locust"] == {"mode": "local"}
    assert "Locust workers" not in render(build_report(_summary(), DEFAULT_TARGETS))
    tally = {
        "worker": "host_0123456789abcdef0123",
        "index": 0,
        "peak_users": 25,
        "requests": 120,
        "failures": 1,
        "jobs_observed": 40,
        "jobs_failed": 0,
        "busy": 2,
    }
    workers = {"workers": [tally], "missing": ["host_gone"]}
    report = build_report(_summary(), DEFAULT_TARGETS, workers=workers)
    assert report["locust"] == {"mode": "distributed", **workers}
    text = render(report)
    [row] = [line for line in text.splitlines() if line.strip().startswith("#0 ")]
    assert row.split()[-5:] == ["25", "120", "1", "40", "2"], row
    assert "host_gone: sent no final figures" in text


def _log(
    stats: RequestStats, method: str, name: str, times: list[int], error: str | None = None
) -> None:
    for ms in times:
        stats.log_request(method, name, ms, 0)
        if error is not None:
            stats.log_error(method, name, error)


def test_summarize_reads_locusts_stats() -> None:
    stats = RequestStats()
    _log(stats, "POST", "/api/jobs/chat-suggestions", [10, 12, 14])
    _log(stats, "POST", "/api/jobs/chat-suggestions", [30], error="HTTP 500: Failed to queue job")
    _log(stats, "GET", "/api/jobs/[jobId]", [5] * 16)
    _log(stats, "JOB", "chat-suggestions", [200, 400])
    _log(stats, "JOB", "chat-suggestions", [90_000], error="JobTimedOut('not done in 90s')")

    summary = summarize(stats, duration_s=4.0, peak_users=5, host="http://api")

    assert (summary.api.latency.count, summary.api.latency.failures) == (20, 1)
    assert summary.api.requests_per_s == 5.0
    assert set(summary.api.endpoints) == {
        "POST /api/jobs/chat-suggestions",
        "GET /api/jobs/[jobId]",
    }
    assert list(summary.jobs) == ["chat-suggestions"]  # no other type was posted
    chat = summary.jobs["chat-suggestions"]
    assert (chat.posted, chat.observed, chat.completed, chat.failed) == (3, 3, 2, 1)
    assert chat.completed_per_s == 0.5
    assert chat.errors == {"JobTimedOut('not done in 90s')": 1}
    assert chat.latency.p99_ms == 90_000


def test_the_waits_a_busy_api_told_are_not_api_requests() -> None:
    """A BUSY row's "response time" is the Retry-After wait: in the API's figures it would
    count each shed twice and put seconds of waiting into the API's percentiles."""
    stats = RequestStats()
    _log(stats, "POST", "/api/jobs/chat-suggestions", [10] * 19 + [12])
    _log(stats, "BUSY", "chat-suggestions", [5000] * 5)
    api = summarize(stats, duration_s=1.0, peak_users=1).api
    assert (api.latency.count, api.latency.p99_ms) == (20, 12)
    assert set(api.endpoints) == {"POST /api/jobs/chat-suggestions"}


def test_api_percentiles_match_locusts_own_over_the_same_requests() -> None:
    """Merging endpoints gives what Locust would report for all of them in one entry."""
    posts, polls = [7, 8, 9, 120, 450], [3] * 40 + [30, 60, 900]
    stats, merged = RequestStats(), RequestStats()
    _log(stats, "POST", "/api/jobs/video-analysis", posts)
    _log(stats, "GET", "/api/jobs/[jobId]", polls)
    _log(merged, "GET", "all", posts + polls)

    api = summarize(stats, duration_s=1.0, peak_users=1).api.latency
    entry = merged.get("all", "GET")
    assert (api.p50_ms, api.p95_ms, api.p99_ms) == tuple(
        entry.get_response_time_percentile(p) for p in (0.5, 0.95, 0.99)
    )
