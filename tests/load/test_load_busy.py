"""CreatorUser honours the job API's 503 + Retry-After: it waits as told, posts again, and the
shed requests are counted apart from failures."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from load import locustfile
from load.locustfile import JOBS, CreatorUser


class FakeResponse:
    def __init__(self, status: int, headers: dict[str, str] | None = None, body: Any = None):
        self.status_code = status
        self.headers = headers or {}
        self._body = body
        self.outcome: str | None = None

    def json(self) -> Any:
        return self._body

    def success(self) -> None:
        self.outcome = "success"

    def failure(self, message: str) -> None:
        self.outcome = f"failure: {message}"


class FakeClient:
    def __init__(self, *responses: FakeResponse) -> None:
        self.responses = list(responses)
        self.posts = 0

    @contextlib.contextmanager
    def post(self, path: str, **kwargs: Any) -> Iterator[FakeResponse]:
        self.posts += 1
        yield self.responses.pop(0)

    @contextlib.contextmanager
    def get(self, path: str, **kwargs: Any) -> Iterator[FakeResponse]:
        yield self.responses.pop(0)


def _user(client: FakeClient) -> tuple[Any, list[float], list[str]]:
    busy: list[float] = []
    followed: list[str] = []
    user = SimpleNamespace(
        client=client,
        creator_id="creator-test",
        rng=random.Random(1),
        host="http://api",
        environment=SimpleNamespace(parsed_options=SimpleNamespace(video_url=None)),
        _busy=lambda kind, wait: busy.append(wait),
        follow=lambda kind, job_id, started: followed.append(job_id),
    )
    return user, busy, followed


def test_a_shed_post_waits_its_retry_after_then_goes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(locustfile.gevent, "sleep", slept.append)
    shed = FakeResponse(503, {"Retry-After": "2"})
    ok = FakeResponse(200, body={"jobId": "job_1"})
    user, busy, followed = _user(FakeClient(shed, ok))
    CreatorUser.run_job(user, JOBS["chat-suggestions"])
    assert shed.outcome == "success" and slept == [2.0] and busy == [2.0]
    assert followed == ["job_1"]


def test_a_503_without_retry_after_and_other_errors_are_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(locustfile.gevent, "sleep", lambda seconds: None)
    bare = FakeResponse(503, body={"error": "down"})
    user, busy, followed = _user(FakeClient(bare))
    CreatorUser.run_job(user, JOBS["chat-suggestions"])
    assert bare.outcome == "failure: HTTP 503: down" and busy == [] and followed == []


def test_it_gives_up_after_a_few_sheds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locustfile.gevent, "sleep", lambda seconds: None)
    client = FakeClient(*[FakeResponse(503, {"Retry-After": "1"}) for _ in range(10)])
    user, busy, followed = _user(client)
    CreatorUser.run_job(user, JOBS["chat-suggestions"])
    assert client.posts == locustfile.BUSY_RETRIES + 1 and followed == []
    assert len(busy) == client.posts


@pytest.mark.parametrize("pace", ["busy", "seed"])
def test_a_shed_poll_waits_its_retry_after_and_is_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, pace: str
) -> None:
    """Past capacity the API sheds status reads too: the app asks again when told."""
    slept: list[float] = []
    monkeypatch.setattr(locustfile.gevent, "sleep", slept.append)
    shed = FakeResponse(503, {"Retry-After": "2"})
    done = FakeResponse(
        200,
        body={
            "status": "completed",
            "createdAt": "2026-12-07T10:00:00+00:00",
            "updatedAt": "2026-12-07T10:00:01.5+00:00",
        },
    )
    user, busy, _ = _user(FakeClient(shed, done))
    recorded: list[tuple[float, Exception | None]] = []
    user.pace = pace
    user.environment.parsed_options.poll_interval = 1.0
    user._record = lambda kind, job_id, ms, error: recorded.append((ms, error))
    CreatorUser.follow(user, JOBS["chat-suggestions"], "job_1", locustfile.time.perf_counter())
    assert shed.outcome == "success" and busy == [2.0]
    assert 2.0 in slept and recorded == [(1500.0, None)]
