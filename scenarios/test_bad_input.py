"""Bad input at each edge: a clear error, and nothing written, sent or lost.

- the job API answers malformed JSON, wrong types and unknown job types with 400/404 and an
  oversized body with 413, before any row is written or any message sent;
- a repeated POST with the same `Idempotency-Key` returns the same job (one row, one
  message); the same key with another body is refused;
- on the jobs topic, a non-JSON body, a body missing required fields and a payload of the
  wrong shape are dead-lettered by the worker with a reason — and a valid job sent in the
  same burst still completes.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from scenario_apps import AppDatabase, JobServiceBus

from harness.pytest_plugin import Events, WorkerFactory

TIMEOUT = 30.0
ROUTE = "/api/jobs/chat-suggestions"
BIG = b"x" * 300_000  # over the 256 KiB a Standard-tier message may carry


def _jobs_of(db: AppDatabase, creator_id: str) -> list[dict[str, Any]]:
    return db.query("SELECT id, status FROM jobs WHERE creator_id = :c", c=creator_id)


def _unrouted_and_chat(servicebus: JobServiceBus, creator_id: str) -> list[Any]:
    found = []
    for subscription in ("chat-suggestions", "unrouted"):
        found += [m for m in servicebus.peek(subscription) if creator_id in str(m)]
    return found


@pytest.mark.parametrize(
    ("route", "content", "status"),
    [
        (ROUTE, b'{"creatorId": "CREATOR", "fanMessage": ', 400),
        (ROUTE, b'["not", "an", "object"]', 400),
        (ROUTE, b'{"creatorId": "CREATOR", "fanMessage": 42}', 400),
        (ROUTE, b'{"creatorId": "CREATOR"}', 400),
        (ROUTE, b'{"creatorId": "CREATOR", "fanMessage": "hi", "context": "' + BIG + b'"}', 413),
        ("/api/jobs/chat-suggestion", b'{"creatorId": "CREATOR", "fanMessage": "hi"}', 404),
    ],
    ids=["truncated-json", "not-an-object", "wrong-type", "missing-field", "oversized",
         "unknown-type"],
)  # fmt: skip
def test_the_api_refuses_before_anything_is_written_or_sent(
    route: str,
    content: bytes,
    status: int,
    job_api: httpx.Client,
    db: AppDatabase,
    servicebus: JobServiceBus,
) -> None:
    creator_id = f"creator-{uuid.uuid4().hex[:8]}"
    response = job_api.post(
        route,
        content=content.replace(b"CREATOR", creator_id.encode()),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert response.json().get("error"), response.text  # says what is wrong
    if status == 404:
        assert "chat-suggestions" in response.text  # lists the job types there are
    assert _jobs_of(db, creator_id) == []
    assert _unrouted_and_chat(servicebus, creator_id) == []


def test_a_repeated_post_with_the_same_idempotency_key_is_the_same_job(
    job_api: httpx.Client, db: AppDatabase, servicebus: JobServiceBus
) -> None:
    creator_id = f"creator-{uuid.uuid4().hex[:8]}"
    body = {"creatorId": creator_id, "fanMessage": "hello twice"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = job_api.post(ROUTE, json=body, headers=key)
    again = job_api.post(ROUTE, json=body, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(_jobs_of(db, creator_id)) == 1
    assert len(_unrouted_and_chat(servicebus, creator_id)) == 1

    other = job_api.post(ROUTE, json={**body, "fanMessage": "something else"}, headers=key)
    assert other.status_code == 422
    assert len(_jobs_of(db, creator_id)) == 1


@pytest.mark.parametrize(
    ("body", "properties", "described"),
    [
        ("not json at all", {"jobType": "chat.suggest"}, "not valid JSON"),
        ('{"jobType": "chat.suggest"}', {"jobType": "chat.suggest"}, "jobId"),
        (None, {"jobType": "chat.suggest"}, "fanMessage"),
    ],
    ids=["non-json", "missing-fields", "bad-payload"],
)
def test_a_poison_message_is_dead_lettered_with_a_reason_and_nothing_else_is_lost(
    body: str | None,
    properties: dict[str, str],
    described: str,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
    events: Events,
) -> None:
    running = workers("jobs")
    if body is None:
        poison_job = servicebus.send_job("chat.suggest", {"context": "no fanMessage"})
        poison = f"{poison_job}:0"
    else:
        poison = servicebus.send_raw(body, properties)
    good = servicebus.send_job("chat.suggest", {"fanMessage": "still here?"})

    [run] = running.wait_for_invocation("ChatSuggestionsWorker", message_id=poison)
    assert (run.settlement, run.dead_letter_reason) == ("dead-lettered", "INVALID_PAYLOAD")
    [dead] = [m for m in servicebus.peek_dead_letters("chat-suggestions") if m.message_id == poison]
    assert described in (dead.dead_letter_error_description or "")
    events.wait_for(good, "completed", timeout=TIMEOUT)
    assert (
        len(running.invocations(lambda i: i.message_id == poison)) == 1
    )  # dead-lettered once, not redelivered
