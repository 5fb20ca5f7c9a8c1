"""Job API through httpx's ASGI transport: validation, limits, idempotency, status, 404."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from workers_fakes import T0, FakeClock

from workers.api.app import ApiDeps, Busy, create_app, new_job_id
from workers.api.requests import MAX_MESSAGE_BODY_BYTES, MAX_REQUEST_BYTES
from workers.common.contracts import JobStatus, parse_job_message
from workers.common.db import Job
from workers.common.idempotency import MemoryStore
from workers.common.repository import JobRepository


@dataclass
class CapturingSender:
    fail: bool = False
    busy: bool = False
    sent: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)

    async def send(self, body: dict[str, Any], application_properties: dict[str, str]) -> None:
        if self.busy:
            raise Busy("all 4 senders busy for 2.0 s")
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


async def test_busy_senders_answer_503_with_retry_after_and_leave_no_job(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    sender.busy = True
    response = await client.post(
        "/api/jobs/chat-suggestions",
        json={"fanMessage": "x", "creatorId": "1"},
        headers={"Idempotency-Key": "busy-1"},
    )
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "Service busy"
    assert await repo.get("job_1") is None, "a job nobody can follow was left behind"
    sender.busy = False  # the retry under the same key is a new request, and succeeds
    again = await client.post(
        "/api/jobs/chat-suggestions",
        json={"fanMessage": "x", "creatorId": "1"},
        headers={"Idempotency-Key": "busy-1"},
    )
    assert again.status_code == 200 and len(sender.sent) == 1


async def test_an_exhausted_database_pool_answers_503_within_its_timeout() -> None:
    """Real PostgreSQL, a pool of one held by someone else: the API answers 503 after the
    pool timeout (not SQLAlchemy's 30 s, not a 500), and nothing is sent."""
    import time

    from workers.common.db import create_schema, make_engine

    engine = make_engine(
        "postgresql://postgres@127.0.0.1:5432/test", pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    try:
        try:
            await create_schema(engine)
        except Exception as exc:  # the machine's PostgreSQL is part of every session here
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432/test is not reachable: {exc}")
        sender = CapturingSender()
        deps = ApiDeps(repository=JobRepository(engine), sender=sender, retry_after_seconds=3)
        transport = httpx.ASGITransport(app=create_app(deps))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://api") as api,
            engine.connect() as held,
        ):
            await held.execute(select(1))
            started = time.monotonic()
            response = await api.post(
                "/api/jobs/chat-suggestions", json={"fanMessage": "x", "creatorId": "1"}
            )
            took = time.monotonic() - started
        assert response.status_code == 503 and response.headers["Retry-After"] == "3"
        assert took < 5, f"the request waited {took:.1f} s"
        assert sender.sent == []
    finally:
        await engine.dispose()


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


async def test_job_api_deps_follow_workers_clock_url_and_close_it() -> None:
    from workers.api.app import deps_from_settings
    from workers.common.clock import RemoteOffsetClock, SystemClock
    from workers.common.settings import Role, load_settings

    env = {
        "SERVICEBUS_CONNECTION_SEND": "Endpoint=sb://localhost/;SharedAccessKeyName=a;"
        "SharedAccessKey=b",
        "TOPIC_JOBS": "huntaze-jobs",
        "DATABASE_URL": "sqlite://",
        "REDIS_URL": "memory://",
    }
    wall = deps_from_settings(load_settings(Role.API, env))
    assert isinstance(wall.clock, SystemClock)
    await wall.aclose()
    url = "http://127.0.0.1:9/control/clock"
    deps = deps_from_settings(load_settings(Role.API, {**env, "WORKERS_CLOCK_URL": url}))
    assert isinstance(deps.clock, RemoteOffsetClock) and deps.clock.url == url
    assert isinstance(deps.cache, MemoryStore) and deps.cache.clock is deps.clock
    await deps.aclose()
    assert deps.clock.closed


# -- bad input: refused before anything is written or sent -----------------------------------

CHAT = "/api/jobs/chat-suggestions"


async def job_rows(repo: JobRepository) -> int:
    async with repo.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Job))).scalar_one())


async def assert_nothing_happened(repo: JobRepository, sender: CapturingSender) -> None:
    assert sender.sent == []
    assert await job_rows(repo) == 0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{nope", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'["fanMessage", "x"]', "must be a JSON object, got list"),
        (b'"text"', "must be a JSON object, got str"),
    ],
)
async def test_workers_malformed_json_is_400_and_writes_nothing(
    client: httpx.AsyncClient,
    sender: CapturingSender,
    repo: JobRepository,
    content: bytes,
    fragment: str,
) -> None:
    response = await client.post(
        CHAT, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "Invalid JSON" and fragment in data["details"][0], data
    await assert_nothing_happened(repo, sender)


@pytest.mark.parametrize(
    ("route", "request_body", "fragment"),
    [
        ("chat-suggestions", {"fanMessage": "x", "creatorId": 123}, "creatorId"),
        ("chat-suggestions", {"fanMessage": 5, "creatorId": "1"}, "fanMessage"),
        ("chat-suggestions", {"fanMessage": ["x"], "creatorId": "1"}, "fanMessage"),
        ("video-analysis", {"videoUrl": 7, "creatorId": "1"}, "videoUrl"),
        (
            "video-analysis",
            {"videoUrl": "https://x.test/v", "videoId": 3, "creatorId": "1"},
            "videoId",
        ),
        ("content-suggestions", {"contentType": "p", "tone": True, "creatorId": "1"}, "tone"),
        (
            "content-analysis",
            {
                "contentId": 1,
                "contentType": "p",
                "contentUrl": "https://x.test/p",
                "creatorId": "1",
            },
            "contentId",
        ),
    ],
)
async def test_workers_wrong_types_are_400_not_coerced(
    client: httpx.AsyncClient,
    sender: CapturingSender,
    repo: JobRepository,
    route: str,
    request_body: dict[str, Any],
    fragment: str,
) -> None:
    response = await client.post(f"/api/jobs/{route}", json=request_body)
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "Invalid request"
    assert any(d.startswith(fragment) for d in data["details"]), data
    await assert_nothing_happened(repo, sender)


async def test_workers_oversized_body_is_413_and_writes_nothing(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    """The issue's case: a 400 KB `context` used to reach the send and answer 500."""
    body = {"fanMessage": "x", "creatorId": "1", "context": "a" * 400_000}
    response = await client.post(CHAT, json=body)
    assert response.status_code == 413
    data = response.json()
    assert data["error"] == "Request too large" and str(MAX_REQUEST_BYTES) in data["details"][0]
    await assert_nothing_happened(repo, sender)


async def test_workers_oversized_streamed_body_is_413_without_a_content_length(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    async def chunks() -> Any:
        yield b'{"fanMessage": "x", "creatorId": "1", "context": "'
        for _ in range(40):
            yield b"a" * 10_000
        yield b'"}'

    response = await client.post(CHAT, content=chunks())
    assert response.status_code == 413
    assert "over" in response.json()["details"][0]
    await assert_nothing_happened(repo, sender)


async def test_workers_body_that_fits_but_whose_message_would_not_is_413(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    """Just under the request limit, the message (envelope + properties) would be over it."""
    filler = MAX_REQUEST_BYTES - 200
    body = json.dumps({"fanMessage": "x", "creatorId": "1", "context": "a" * filler}).encode()
    assert MAX_MESSAGE_BODY_BYTES < len(body) <= MAX_REQUEST_BYTES
    response = await client.post(CHAT, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "job message would be" in response.json()["details"][0]
    await assert_nothing_happened(repo, sender)


async def test_workers_largest_accepted_body_is_sent(
    client: httpx.AsyncClient, sender: CapturingSender
) -> None:
    body = {"fanMessage": "x", "creatorId": "1", "context": "a" * (MAX_MESSAGE_BODY_BYTES - 400)}
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200
    [(sent, _)] = sender.sent
    assert len(json.dumps(sent).encode()) <= MAX_MESSAGE_BODY_BYTES


async def test_workers_unknown_job_type_is_404_listing_the_types(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    response = await client.post("/api/jobs/chat-suggestion", json={"fanMessage": "x"})
    assert response.status_code == 404
    data = response.json()
    assert data["error"] == "Unknown job type"
    assert data["jobTypes"] == [
        "video-analysis",
        "chat-suggestions",
        "content-suggestions",
        "content-analysis",
    ]
    assert "chat-suggestion'" in data["details"][0] and "content-analysis" in data["details"][0]
    await assert_nothing_happened(repo, sender)


# -- Idempotency-Key ---------------------------------------------------------------------------


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_workers_repeated_post_with_the_same_key_returns_the_same_job(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    first = await client.post(CHAT, json={"fanMessage": "x", "creatorId": "1"}, headers=keyed("k1"))
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    # Same JSON value, other key order and spacing: the same request.
    again = await client.post(
        CHAT,
        content=b'{ "creatorId": "1",  "fanMessage": "x" }',
        headers={**keyed("k1"), "Content-Type": "application/json"},
    )
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(sender.sent) == 1 and await job_rows(repo) == 1

    await repo.complete(first.json()["jobId"], ["done"], T0)
    later = await client.post(CHAT, json={"fanMessage": "x", "creatorId": "1"}, headers=keyed("k1"))
    assert later.json()["jobId"] == first.json()["jobId"] and later.json()["status"] == "completed"
    assert len(sender.sent) == 1


async def test_workers_other_keys_and_no_key_make_new_jobs(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    body = {"fanMessage": "x", "creatorId": "1"}
    ids = {
        (await client.post(CHAT, json=body, headers=headers)).json()["jobId"]
        for headers in (keyed("a"), keyed("b"), {}, {})
    }
    assert len(ids) == 4 and len(sender.sent) == 4 and await job_rows(repo) == 4


@pytest.mark.parametrize(
    ("route", "request_body"),
    [
        ("chat-suggestions", {"fanMessage": "other", "creatorId": "1"}),
        ("content-suggestions", {"contentType": "post", "tone": "fun", "creatorId": "1"}),
    ],
)
async def test_workers_same_key_with_a_different_request_is_422(
    client: httpx.AsyncClient,
    sender: CapturingSender,
    repo: JobRepository,
    route: str,
    request_body: dict[str, Any],
) -> None:
    first = await client.post(CHAT, json={"fanMessage": "x", "creatorId": "1"}, headers=keyed("k"))
    assert first.status_code == 200
    response = await client.post(f"/api/jobs/{route}", json=request_body, headers=keyed("k"))
    assert response.status_code == 422
    data = response.json()
    assert data["error"] == "Idempotency-Key reused with a different request"
    assert "'k'" in data["details"][0]
    assert len(sender.sent) == 1 and await job_rows(repo) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "clé"])
async def test_workers_invalid_idempotency_key_is_400(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository, key: str
) -> None:
    response = await client.post(
        CHAT,
        json={"fanMessage": "x", "creatorId": "1"},
        headers={"Idempotency-Key": key.encode()},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid Idempotency-Key"
    await assert_nothing_happened(repo, sender)


async def test_workers_key_of_a_failed_enqueue_can_be_retried(
    client: httpx.AsyncClient, sender: CapturingSender, repo: JobRepository
) -> None:
    """Nothing was queued under the key, so the client's retry must not replay the 500."""
    body = {"fanMessage": "x", "creatorId": "1"}
    sender.fail = True
    failed = await client.post(CHAT, json=body, headers=keyed("k"))
    assert failed.status_code == 500
    sender.fail = False
    retried = await client.post(CHAT, json=body, headers=keyed("k"))
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert retried.json()["jobId"] == "job_2" and len(sender.sent) == 1
    replayed = await client.post(CHAT, json=body, headers=keyed("k"))
    assert replayed.json()["jobId"] == "job_2" and replayed.headers["Idempotent-Replayed"] == "true"


class _LateRepository(JobRepository):
    """Misses the key on the first look-up: the identical POST inserted just after it."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.misses = 1

    async def by_idempotency_key(self, key: str) -> Any:
        if self.misses:
            self.misses -= 1
            return None
        return await super().by_idempotency_key(key)


async def test_workers_concurrent_identical_posts_make_one_job(
    repo: JobRepository, sender: CapturingSender, clock: FakeClock
) -> None:
    late = _LateRepository(repo.engine)
    ids = iter(["job_a", "job_b", "job_c"])
    deps = ApiDeps(repository=late, sender=sender, clock=clock, new_id=lambda: next(ids))
    transport = httpx.ASGITransport(app=create_app(deps))
    body = {"fanMessage": "x", "creatorId": "1"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        late.misses = 0
        first = await c.post(CHAT, json=body, headers=keyed("k"))
        late.misses = 1
        second = await c.post(CHAT, json=body, headers=keyed("k"))
        late.misses = 1
        other = await c.post(CHAT, json={**body, "fanMessage": "y"}, headers=keyed("k"))
    assert first.json()["jobId"] == "job_a"
    assert second.status_code == 200 and second.json()["jobId"] == "job_a"
    assert second.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert len(sender.sent) == 1 and await job_rows(repo) == 1
