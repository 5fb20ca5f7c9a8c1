"""Job API through httpx's ASGI transport: validation, body, properties, status, 404."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from workers_fakes import T0, FakeClock

from workers.api.app import ApiDeps, create_app, new_job_id
from workers.common.contracts import JobStatus, parse_job_message
from workers.common.idempotency import MemoryStore
from workers.common.repository import JobRepository


@dataclass
class CapturingSender:
    fail: bool = False
    sent: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)

    async def send(self, body: dict[str, Any], application_properties: dict[str, str]) -> None:
        if self.fail:
            raise ConnectionError("namespace unreachable")
        self.sent.append((body, application_properties))


@pytest.fixture
def sender() -> CapturingSender:
    return CapturingSender()


@pytest.fixture
def cache(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
async def client(
    repo: JobRepository, sender: CapturingSender, cache: MemoryStore, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    ids = iter(f"job_{n}" for n in range(1, 100))
    deps = ApiDeps(
        repository=repo, sender=sender, cache=cache, clock=clock, new_id=lambda: next(ids)
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


ROUTES = [
    (
        "video-analysis",
        {"videoUrl": "https://cdn.example/v.mp4", "creatorId": "123"},
        "video.analysis",
        {"videoUrl": "https://cdn.example/v.mp4"},
        120_000,
    ),
    (
        "chat-suggestions",
        {"fanMessage": "hey", "context": {"last": "hi"}, "creatorId": "123"},
        "chat.suggest",
        {"fanMessage": "hey", "context": {"last": "hi"}},
        90_000,
    ),
    (
        "content-suggestions",
        {"contentType": "post", "tone": "fun", "creatorId": "123"},
        "content.suggest",
        {"contentType": "post", "tone": "fun"},
        90_000,
    ),
    (
        "content-analysis",
        {
            "contentId": "c9",
            "contentType": "photo",
            "contentUrl": "https://cdn.example/p.jpg",
            "creatorId": "123",
        },
        "content.analyze",
        {"contentId": "c9", "contentType": "photo", "contentUrl": "https://cdn.example/p.jpg"},
        90_000,
    ),
]


@pytest.mark.parametrize(("route", "request_body", "job_type", "payload", "deadline"), ROUTES)
async def test_workers_post_sends_the_seed_message(
    client: httpx.AsyncClient,
    sender: CapturingSender,
    repo: JobRepository,
    route: str,
    request_body: dict[str, Any],
    job_type: str,
    payload: dict[str, Any],
    deadline: int,
) -> None:
    response = await client.post(f"/api/jobs/{route}", json=request_body)
    assert response.status_code == 200
    data = response.json()
    assert data["success"] is True and data["status"] == "pending" and data["jobId"] == "job_1"

    [(body, props)] = sender.sent
    assert body == {
        "jobId": "job_1",
        "jobType": job_type,
        "creatorId": "123",
        "payload": payload,
        "attempt": 0,
        "createdAt": "2025-01-01T12:00:00Z",
        "deadlineMs": deadline,
    }
    assert props == {"jobType": job_type, "jobId": "job_1", "creatorId": "123"}
    assert parse_job_message(json.dumps(body)).job_type.value == job_type
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.PENDING


async def test_workers_job_row_exists_before_the_send(
    repo: JobRepository, clock: FakeClock, cache: MemoryStore
) -> None:
    seen: list[Any] = []

    class ProbingSender:
        async def send(self, body: dict[str, Any], props: dict[str, str]) -> None:
            seen.append(await repo.get(body["jobId"]))

    deps = ApiDeps(repository=repo, sender=ProbingSender(), clock=clock, new_id=lambda: "job_x")
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        response = await c.post(
            "/api/jobs/chat-suggestions", json={"fanMessage": "a", "creatorId": "1"}
        )
    assert response.status_code == 200
    assert seen[0] is not None and seen[0].status is JobStatus.PENDING


@pytest.mark.parametrize(
    ("route", "request_body", "fragment"),
    [
        ("video-analysis", {"creatorId": "1"}, "videoUrl"),
        ("video-analysis", {"videoUrl": "ftp://x", "creatorId": "1"}, "videoUrl"),
        ("video-analysis", {"videoUrl": "https://x.test/v"}, "creatorId"),
        ("chat-suggestions", {"fanMessage": "", "creatorId": "1"}, "fanMessage"),
        ("content-suggestions", {"contentType": "post", "creatorId": "1"}, "tone"),
        (
            "content-analysis",
            {"contentId": "c", "contentType": "p", "creatorId": "1"},
            "contentUrl",
        ),
        ("chat-suggestions", {"fanMessage": "x", "creatorId": "1", "admin": True}, "admin"),
    ],
)
async def test_workers_invalid_requests_are_400_with_details(
    client: httpx.AsyncClient,
    sender: CapturingSender,
    route: str,
    request_body: dict[str, Any],
    fragment: str,
) -> None:
    response = await client.post(f"/api/jobs/{route}", json=request_body)
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "Invalid request"
    assert any(fragment in d for d in data["details"]), data
    assert sender.sent == []


async def test_workers_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/jobs/chat-suggestions",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


async def test_workers_send_failure_is_500_and_the_job_is_not_left_pending(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    sender.fail = True
    response = await client.post(
        "/api/jobs/chat-suggestions", json={"fanMessage": "x", "creatorId": "1"}
    )
    assert response.status_code == 500
    assert response.json()["error"] == "Failed to queue job"
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error["code"] == "ENQUEUE_FAILED"


async def test_workers_get_status_uses_db_then_cache_for_final_states(
    client: httpx.AsyncClient, repo: JobRepository
) -> None:
    await client.post("/api/jobs/chat-suggestions", json={"fanMessage": "x", "creatorId": "1"})
    pending = await client.get("/api/jobs/job_1")
    assert pending.status_code == 200
    assert pending.json()["status"] == "pending" and pending.headers["X-Cache"] == "miss"

    await repo.complete("job_1", ["a"], T0)
    done = await client.get("/api/jobs/job_1")
    assert done.json()["status"] == "completed" and done.json()["result"] == ["a"]
    again = await client.get("/api/jobs/status/job_1")
    assert again.headers["X-Cache"] == "hit" and again.json() == done.json()


async def test_workers_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs/job_missing")
    assert response.status_code == 404
    assert response.json() == {"error": "Job not found"}


async def test_workers_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_workers_job_ids_follow_the_seed_format() -> None:
    a, b = new_job_id(), new_job_id()
    assert a != b
    prefix, ms, suffix = a.split("_")
    assert prefix == "job" and ms.isdigit() and len(suffix) == 9
