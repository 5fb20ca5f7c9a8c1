"""Capacity profiles for the job API: `locust -f load/ --host http://127.0.0.1:8000`.

One user class, `CreatorUser`: a creator's app asking for jobs (mostly chat suggestions,
rarely video analysis), polling each until it ends, then thinking. Each job's time to
completion is a `JOB` event named after its route, so it sits in Locust's stats beside
the HTTP calls.

`--tier 50|100|500` (or LOAD_TIER) runs that tier's shape (ramp, hold, stop); without it
Locust's -u/-r/-t apply as usual. At every test stop the capacity report is printed, and
written as JSON with `--capacity-report PATH`. See docs/load.md.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

# Locust imports this file as a top-level module: make the `load` package importable
# whatever the working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from load import _distributed, _stress  # noqa: E402
from load._config import (  # noqa: E402
    DEFAULT_HOST,
    DEFAULT_TARGETS,
    JOBS,
    SEED_VOLUME,
    TIERS,
    JobKind,
)
from load._report import (  # noqa: E402
    BUSY_REQUEST_TYPE,
    JOB_REQUEST_TYPE,
    JOB_ROUTE_PREFIX,
    build_report,
    render,
    summarize,
    write,
)
from load._shapes import TierShape  # noqa: E402

log = logging.getLogger("load")

TERMINAL = ("completed", "failed")
POLL_NAME = JOB_ROUTE_PREFIX + "[jobId]"
DEFAULT_POLL_INTERVAL_S = 1.0
BUSY_RETRIES = 5
DEFAULT_THINK_TIME_S = 6.0
PACES = ("seed", "busy")
"""`seed`: a job every SEED_VOLUME.job_interval_s on average (Poisson), polled with backoff;
`busy`: the next job a think time after the last one ended, polled every --poll-interval."""
SEED_POLL_FIRST_S, SEED_POLL_MAX_S = 0.5, 8.0


class JobFailed(Exception):
    """The job ended `failed`; the message is its error code (few distinct values)."""


class JobTimedOut(Exception):
    """The job was not done by its deadline (the seed's deadlineMs)."""


# -- command line ----------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--tier",
        choices=list(TIERS),
        default=None,
        env_var="LOAD_TIER",
        include_in_web_ui=False,
        help="run this capacity tier's shape: ramp, hold, stop (-u/-r are then ignored). "
        "Without it, -u/-r/-t apply as usual.",
    )
    parser.add_argument(
        "--pace",
        choices=PACES,
        default=None,
        env_var="LOAD_PACE",
        help="seed: creators post at the seed's planned volume (a job every "
        f"{SEED_VOLUME.job_interval_s:.0f}s each at the peak hour) and poll with backoff; "
        "busy: a job a think time after the last ended. Default: seed with --tier, else busy",
    )
    parser.add_argument(
        "--stress",
        action="store_true",
        default=False,
        env_var="LOAD_STRESS",
        include_in_web_ui=False,
        help="raise busy creators step by step until a step breaks a limit, then report the "
        "highest sustained jobs/s and what broke first (-u/-r are then ignored)",
    )
    for flag, default, what in (
        ("--stress-start-users", 50, "users of the first stress step"),
        ("--stress-step-users", 50, "users added each stress step"),
        ("--stress-step-s", 60, "seconds each stress step lasts"),
        ("--stress-max-users", 1000, "the stress run stops at this many users"),
    ):
        parser.add_argument(
            flag, type=int, default=default, include_in_web_ui=False, help=f"{what} ({default})"
        )
    parser.add_argument(
        "--capacity-report",
        metavar="PATH",
        default=None,
        env_var="LOAD_CAPACITY_REPORT",
        include_in_web_ui=False,
        help="also write the capacity report (printed at every test stop) to PATH as JSON",
    )
    parser.add_argument(
        "--video-url",
        default=None,
        env_var="LOAD_VIDEO_URL",
        help="URL the video jobs analyse; the video worker checks it exists (HEAD, then GET). "
        "Default: the job API's /healthz",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL_S,
        env_var="LOAD_POLL_INTERVAL",
        help=f"seconds between status polls of a job (default {DEFAULT_POLL_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--think-time",
        type=float,
        default=DEFAULT_THINK_TIME_S,
        env_var="LOAD_THINK_TIME",
        help="mean seconds a creator waits after a job ends, drawn uniformly from 0.5x-1.5x "
        f"(default {DEFAULT_THINK_TIME_S:g})",
    )


def _option(environment: Environment, name: str, default: float) -> float:
    """A numeric custom option (the web UI may hand it over as a string)."""
    value = getattr(environment.parsed_options, name, None)
    return default if value in (None, "") else float(value)


# -- tier selection and the report -----------------------------------------------------------


@dataclass
class _Run:
    """What the report needs beyond Locust's stats: how long the run took, how many users."""

    started: float | None = None
    peak_users: int = 0
    sampler: gevent.Greenlet | None = None


_run = _Run()


@events.init.add_listener
def distribute(environment: Environment, **_kwargs: Any) -> None:
    """Master and workers: one report with every worker's figures (see load/_distributed.py)."""
    _distributed.install(environment, job_type=JOB_REQUEST_TYPE, busy_type=BUSY_REQUEST_TYPE)


def pace(environment: Environment) -> str:
    """The creators' pace: --pace, else seed for a tier run and busy otherwise."""
    options = environment.parsed_options
    chosen = getattr(options, "pace", None)
    if getattr(options, "stress", False):
        return "busy"
    if chosen:
        return str(chosen)
    return "seed" if getattr(options, "tier", None) else "busy"


@events.init.add_listener
def select_shape(environment: Environment, **_kwargs: Any) -> None:
    """Install the `--tier` or `--stress` shape (the master or the local runner drives it)."""
    options = environment.parsed_options
    name = getattr(options, "tier", None)
    stress = bool(getattr(options, "stress", False))
    if not (name or stress) or isinstance(environment.runner, WorkerRunner):
        return
    flag = "--stress" if stress else f"--tier {name}"
    if stress and name:
        log.warning("--stress replaces --tier %s", name)
    if stress and getattr(options, "pace", None) == "seed":
        log.warning("--stress runs busy creators: --pace seed ignored")
    ignored = [
        given
        for given, dest in (("-u", "num_users"), ("-r", "spawn_rate"))
        if getattr(options, dest, None)
    ]
    if ignored:
        log.warning("%s sets users and spawn rate: %s ignored", flag, " and ".join(ignored))
    if environment.shape_class is not None:
        log.warning("%s replaces shape %s", flag, type(environment.shape_class).__name__)
    stop_after = getattr(options, "run_time", None) or None
    shape: TierShape | _stress.StressShape
    if stress:
        plan = _stress.StressPlan(
            start_users=options.stress_start_users,
            step_users=options.stress_step_users,
            step_s=float(options.stress_step_s),
            max_users=options.stress_max_users,
        )
        shape = _stress.StressShape(
            plan, lambda: environment.stats.entries.values(), stop_after_s=stop_after
        )
    else:
        shape = TierShape(TIERS[name], stop_after_s=stop_after)
    shape.runner = environment.runner
    environment.shape_class = shape
    log.info("load %s; creators' pace: %s", shape.describe(), pace(environment))


def _sample_users(environment: Environment) -> None:
    while environment.runner is not None:
        _run.peak_users = max(_run.peak_users, environment.runner.user_count)
        gevent.sleep(1.0)


@events.test_start.add_listener
def start_run(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    _run.started = time.perf_counter()
    _run.peak_users = 0
    _run.sampler = gevent.spawn(_sample_users, environment)


@events.spawning_complete.add_listener
def spawned(user_count: int, **_kwargs: Any) -> None:
    _run.peak_users = max(_run.peak_users, user_count)


@events.test_stop.add_listener
def report(environment: Environment, **_kwargs: Any) -> None:
    """Print the capacity report (and write it with --capacity-report)."""
    if isinstance(environment.runner, WorkerRunner) or _run.started is None:
        return
    # A master first gets every worker's last samples (their users stop, drain, flush).
    workers = _distributed.collect(environment)
    if _run.sampler is not None:
        _run.sampler.kill(block=False)
    duration = time.perf_counter() - _run.started
    shape = environment.shape_class
    tier = shape.tier if isinstance(shape, TierShape) else None
    summary = summarize(
        environment.stats,
        duration_s=duration,
        peak_users=_run.peak_users,
        tier=tier.name if tier else None,
        target_users=tier.users if tier else None,
        host=environment.host or CreatorUser.host,
    )
    result = build_report(summary, tier.targets if tier else DEFAULT_TARGETS, workers=workers)
    result["pace"] = pace(environment)
    printed = render(result)
    if isinstance(shape, _stress.StressShape):
        result["stress"] = shape.run.to_dict()
        printed += "\n\n" + _stress.render(result["stress"])
    print("\n" + printed + "\n", flush=True)
    path = getattr(environment.parsed_options, "capacity_report", None)
    if path:
        log.info("capacity report written to %s", write(result, path))


# -- the user --------------------------------------------------------------------------------


class CreatorUser(HttpUser):
    """A creator's app: asks for a job, polls it until it ends, thinks, asks again."""

    host = DEFAULT_HOST

    def on_start(self) -> None:
        self.creator_id = f"creator-load-{uuid.uuid4().hex[:12]}"
        self.rng = random.Random()
        self.pace = pace(self.environment)
        self.next_job_at = 0.0

    def wait_time(self) -> float:
        if self.pace == "seed":  # the next job was drawn when this one was posted
            return max(0.0, self.next_job_at - time.perf_counter())
        mean = _option(self.environment, "think_time", DEFAULT_THINK_TIME_S)
        return self.rng.uniform(0.5 * mean, 1.5 * mean)

    @task(JOBS["chat-suggestions"].weight)
    def chat_suggestions(self) -> None:
        self.run_job(JOBS["chat-suggestions"])

    @task(JOBS["content-suggestions"].weight)
    def content_suggestions(self) -> None:
        self.run_job(JOBS["content-suggestions"])

    @task(JOBS["content-analysis"].weight)
    def content_analysis(self) -> None:
        self.run_job(JOBS["content-analysis"])

    @task(JOBS["video-analysis"].weight)
    def video_analysis(self) -> None:
        self.run_job(JOBS["video-analysis"])

    def run_job(self, kind: JobKind) -> None:
        """POST the job, then follow it to its end and record a JOB event."""
        video_url = getattr(self.environment.parsed_options, "video_url", None)
        body = {
            "creatorId": self.creator_id,
            **kind.body(self.rng, video_url or f"{self.host.rstrip('/')}/healthz"),
        }
        started = time.perf_counter()
        # Poisson arrivals at the seed's peak pace; a creator's first job comes on arrival.
        self.next_job_at = started + self.rng.expovariate(SEED_VOLUME.jobs_per_user_per_s)
        for _ in range(BUSY_RETRIES + 1):
            with self.client.post(
                JOB_ROUTE_PREFIX + kind.route, json=body, catch_response=True
            ) as response:
                wait = _retry_after(response)
                if wait is not None:  # shed, not failed: the API said when to come back
                    response.success()
                    self._busy(kind, wait)
                    gevent.sleep(wait)
                    continue
                created = _json(response)
                job_id = created.get("jobId") if created else None
                if created is not None and not isinstance(job_id, str):
                    response.failure("answer has no jobId")
            if isinstance(job_id, str):
                self.follow(kind, job_id, started)
            return

    def _busy(self, kind: JobKind, wait: float) -> None:
        """One 503 + Retry-After (to a post or a poll), counted apart (request type BUSY)
        from failures."""
        self.environment.events.request.fire(
            request_type=BUSY_REQUEST_TYPE,
            name=kind.route,
            response_time=wait * 1000,
            response_length=0,
            response=None,
            context={"creatorId": self.creator_id},
            exception=None,
        )

    def follow(self, kind: JobKind, job_id: str, started: float) -> None:
        """Poll as a creator app does until the job ends or its deadline passes (the
        deadline bounds how long one user stays on one job). At the seed pace the app backs
        off (0.5 s, doubling, at most 8 s); the time to completion comes from the job's own
        timestamps either way, so the poll interval does not blur it."""
        fixed = _option(self.environment, "poll_interval", DEFAULT_POLL_INTERVAL_S)
        poll = SEED_POLL_FIRST_S if self.pace == "seed" else fixed
        deadline = started + kind.deadline_s
        status = "pending"
        wait = poll
        while True:
            gevent.sleep(max(0.0, min(wait, deadline - time.perf_counter())))
            if self.pace == "seed":
                poll = min(SEED_POLL_MAX_S, poll * 2)
            wait = poll
            with self.client.get(
                f"{JOB_ROUTE_PREFIX}{job_id}", name=POLL_NAME, catch_response=True
            ) as response:
                shed = _retry_after(response)
                if shed is None:
                    job = _json(response)
                else:  # a busy API: not a failure; the next poll comes when it said
                    response.success()
                    job, wait = None, shed
            if shed is not None:
                self._busy(kind, shed)
            if job is not None:
                status = str(job.get("status"))
                if status in TERMINAL:
                    error = None
                    if status == "failed":
                        code = (job.get("error") or {}).get("code") or "UNKNOWN"
                        error = JobFailed(str(code))
                    self._record(kind, job_id, _completion_ms(job, started), error)
                    return
            if time.perf_counter() >= deadline:
                timed_out = JobTimedOut(f"not done in {kind.deadline_s:g}s")
                self._record(kind, job_id, (time.perf_counter() - started) * 1000, timed_out)
                log.debug("job %s still %s at its deadline", job_id, status)
                return

    def _record(
        self, kind: JobKind, job_id: str, elapsed_ms: float, error: Exception | None
    ) -> None:
        self.environment.events.request.fire(
            request_type=JOB_REQUEST_TYPE,
            name=kind.route,
            response_time=elapsed_ms,
            response_length=0,
            response=None,
            context={"jobId": job_id, "creatorId": self.creator_id},
            exception=error,
        )


def _retry_after(response: Any) -> float | None:
    """Seconds to wait when the API shed the request (503 with a numeric Retry-After)."""
    if response.status_code != 503:
        return None
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _json(response: Any) -> dict[str, Any] | None:
    """The JSON object of a 200 answer; anything else marks the request failed."""
    if response.status_code == 0:  # no HTTP answer at all
        response.failure(f"no answer: {type(response.error).__name__}")
        return None
    if response.status_code != 200:
        detail = ""
        with contextlib.suppress(Exception):  # not a JSON object: the status says enough
            detail = f": {response.json()['error']}"
        response.failure(f"HTTP {response.status_code}{detail}")
        return None
    try:
        data = response.json()
    except ValueError:
        response.failure("answer is not JSON")
        return None
    if not isinstance(data, dict):
        response.failure("answer is not a JSON object")
        return None
    return data


def _completion_ms(job: dict[str, Any], started: float) -> float:
    """Time to completion as the system recorded it (job row created → terminal status
    written), so the poll interval does not blur it; what the client saw if unreadable."""
    try:
        created = datetime.fromisoformat(job["createdAt"])
        updated = datetime.fromisoformat(job["updatedAt"])
        elapsed = (updated - created).total_seconds() * 1000
    except (KeyError, TypeError, ValueError):
        elapsed = -1.0
    return elapsed if elapsed >= 0 else (time.perf_counter() - started) * 1000
