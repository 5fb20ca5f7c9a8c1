"""Webhook sink: records requests, answers errors or hangs (bounded) for the next N."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standin_workers import add_creator

from standins.webhook import WebhookSink, hmac_sha256_signature
from workers.common.contracts import EventMessage, JobStatus, event_application_properties
from workers.common.notifications import SIGNATURE_HEADER, FailureCounter, WebhookNotifier
from workers.common.repository import JobRepository


@pytest.fixture
def hooks() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _event(status: JobStatus = JobStatus.COMPLETED) -> tuple[bytes, dict[str, str]]:
    event = EventMessage(
        job_id="job-3",
        creator_id="creator-1",
        status=status,
        progress=100,
        result=["idea"],
        updated_at=datetime.now(UTC),
    )
    return event.model_dump_json(by_alias=True).encode(), event_application_properties(event)


def test_standin_webhook_records_method_path_headers_and_body(hooks: WebhookSink) -> None:
    response = httpx.put(
        hooks.url_for("/a/b") + "?x=1", content=b"raw-bytes", headers={"X-Thing": "yes"}
    )
    assert response.status_code == 200
    (request,) = hooks.wait_for("/a/b")
    assert (request.method, request.path, request.query) == ("PUT", "/a/b", {"x": "1"})
    assert request.header("X-Thing") == "yes" and request.body == b"raw-bytes"
    assert request.outcome == "ok" and request.status == 200


async def test_standin_webhook_receives_the_notify_workers_signed_post(
    hooks: WebhookSink, repo: JobRepository, http: httpx.AsyncClient
) -> None:
    await add_creator(repo, webhook_url=hooks.url_for("/creators/1"), secret="whsec_test")
    notifier = WebhookNotifier(repo, http, FailureCounter(), timeout_seconds=5)
    assert await notifier.handle(*_event())
    (request,) = hooks.wait_for("/creators/1")
    assert request.method == "POST"
    assert request.header("X-Huntaze-Event") == "job.update"
    assert request.header("X-Huntaze-Job-Id") == "job-3"
    assert request.signature_valid("whsec_test", SIGNATURE_HEADER)
    assert not request.signature_valid("other-secret", SIGNATURE_HEADER)
    assert request.header(SIGNATURE_HEADER) == hmac_sha256_signature("whsec_test", request.body)
    assert request.json()["status"] == "completed" and request.json()["result"] == ["idea"]


async def test_standin_webhook_errors_for_the_next_n_are_counted_by_the_worker(
    hooks: WebhookSink, repo: JobRepository, http: httpx.AsyncClient
) -> None:
    await add_creator(repo, webhook_url=hooks.url_for("/h"))
    counter = FailureCounter()
    notifier = WebhookNotifier(repo, http, counter, timeout_seconds=5)
    hooks.fail_next(2, status=503, body="down")
    assert not await notifier.handle(*_event())
    assert not await notifier.handle(*_event())
    assert await notifier.handle(*_event())
    assert counter.counts["webhook"] == 2
    assert [r.status for r in hooks.requests] == [503, 503, 200]
    assert [r.outcome for r in hooks.requests] == ["error", "error", "ok"]


async def test_standin_webhook_hang_times_the_worker_out(
    hooks: WebhookSink, repo: JobRepository, http: httpx.AsyncClient
) -> None:
    await add_creator(repo, webhook_url=hooks.url_for("/slow"))
    counter = FailureCounter()
    notifier = WebhookNotifier(repo, http, counter, timeout_seconds=0.2)
    hooks.hang_next(1, seconds=30)
    assert not await notifier.handle(*_event())
    assert counter.counts["webhook"] == 1
    assert [r.outcome for r in hooks.requests] == ["hang"]
    assert await notifier.handle(*_event())  # the next one is answered normally


def test_standin_webhook_hang_is_bounded_and_releasable(no_leaked_threads: None) -> None:
    sink = WebhookSink(max_hang=0.2).start()
    sink.hang_next(1, seconds=3600)  # capped at max_hang
    assert httpx.post(sink.url_for("/x"), json={}, timeout=10).status_code == 504

    def post_in_background(path: str, results: list[int]) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.append(httpx.post(sink.url_for(path), timeout=10).status_code)
        )
        thread.start()
        return thread

    sink.behaviour.max_hang = 60.0
    sink.hang_next(1)
    released: list[int] = []
    worker = post_in_background("/y", released)
    sink.holds.wait_held(2)  # /x and now /y have been held
    sink.release()
    worker.join(10)
    assert released == [504]

    sink.hang_next(1, seconds=60)
    on_stop: list[int] = []
    worker = post_in_background("/z", on_stop)
    sink.holds.wait_held(3)
    sink.stop()  # releases the hang instead of waiting 60 s
    worker.join(10)
    assert not worker.is_alive() and on_stop == [504]
    assert [r.path for r in sink.requests] == ["/x", "/y", "/z"]


def test_standin_webhook_query_api_and_reset(hooks: WebhookSink) -> None:
    httpx.post(hooks.url_for("/q"), json={"a": 1})
    listed = httpx.get(hooks.url + "/_standin/requests").json()
    assert [(r["path"], r["body"]) for r in listed] == [("/q", '{"a":1}')]
    hooks.fail_next(3)
    httpx.post(hooks.url + "/_standin/reset")
    assert hooks.requests.snapshot() == [] and hooks.behaviour.pending == 0
