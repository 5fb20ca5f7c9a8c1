"""The load's job mix speaks the job API's contract: routes, bodies and deadlines."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from load._config import DEFAULT_TARGETS, JOB_KINDS, JobKind
from workers.api import app as api
from workers.common.contracts import DEFAULT_DEADLINE_MS, JobType

REQUESTS: dict[str, type[BaseModel]] = {
    "video-analysis": api.VideoAnalysisRequest,
    "chat-suggestions": api.ChatSuggestionsRequest,
    "content-suggestions": api.ContentSuggestionsRequest,
    "content-analysis": api.ContentAnalysisRequest,
}


def test_the_mix_covers_every_job_type_with_chat_heaviest_and_video_lightest() -> None:
    assert {kind.job_type for kind in JOB_KINDS} == {t.value for t in JobType}
    weights = {kind.route: kind.weight for kind in JOB_KINDS}
    assert max(weights, key=weights.__getitem__) == "chat-suggestions"
    assert min(weights, key=weights.__getitem__) == "video-analysis"


@pytest.mark.parametrize("kind", JOB_KINDS, ids=[k.route for k in JOB_KINDS])
def test_bodies_are_valid_api_requests(kind: JobKind) -> None:
    rng = random.Random(7)
    for _ in range(20):
        body = {"creatorId": "creator-load-1", **kind.body(rng, "http://127.0.0.1:1/media/a.mp4")}
        REQUESTS[kind.route].model_validate(body)


@pytest.mark.parametrize("kind", JOB_KINDS, ids=[k.route for k in JOB_KINDS])
def test_deadlines_and_job_targets_are_the_workers_deadlines(kind: JobKind) -> None:
    deadline_ms = DEFAULT_DEADLINE_MS[JobType(kind.job_type)]
    assert kind.deadline_s * 1000 == deadline_ms
    assert DEFAULT_TARGETS.job_p99_ms[kind.route] == deadline_ms


class _Unused:
    """Stands in for the repository and sender: building the app touches neither."""

    engine = None


def test_routes_exist_on_the_job_api() -> None:
    app = api.create_app(api.ApiDeps(repository=_Unused(), sender=_Unused()))  # type: ignore[arg-type]
    routes = [(method, r.path) for r in app.routes for method in getattr(r, "methods", ())]
    assert {("POST", f"/api/jobs/{kind.route}") for kind in JOB_KINDS} <= set(routes)
    assert {("GET", "/api/jobs/{job_id}"), ("GET", "/healthz")} <= set(routes)


def test_importing_locust_here_leaves_the_standard_library_unpatched() -> None:
    """The conftest's guard: the other suites in this process need real threads/sockets."""
    import locust  # noqa: F401
    from gevent import monkey

    assert not any(monkey.is_module_patched(m) for m in ("socket", "threading", "time"))
