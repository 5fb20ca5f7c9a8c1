"""Events-topic subscribers and the DLQ triage monitor."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx
from workers_fakes import T0, FakeClock, FakeOutbox, encode, job_body

from workers.common.contracts import (
    AICostEvent,
    EventMessage,
    JobError,
    JobStatus,
    JobType,
    event_application_properties,
    parse_job_message,
)
from workers.common.dlq import DlqMonitor, ServiceBusDlqInspector
from workers.common.notifications import (
    SIGNATURE_HEADER,
    EmailNotifier,
    FailureCounter,
    MetricsRecorder,
    WebhookNotifier,
    signalr_output,
)
from workers.common.repository import CreatorRecord, JobRepository

TEMPLATES = Path(__file__).resolve().parents[2] / "workers" / "notify" / "templates"
HOOK = "https://hooks.example/huntaze"


def update(status: JobStatus, **kw: Any) -> EventMessage:
    return EventMessage(
        job_id="job_1",
        creator_id="creator-1",
        status=status,
        progress=100 if status is JobStatus.COMPLETED else 0,
        updated_at=T0 + timedelta(seconds=2),
        **kw,
    )


def wire(event: EventMessage) -> tuple[bytes, dict[str, str]]:
    return encode(event.to_wire()), event_application_properties(event)


@pytest.fixture
async def creator(repo: JobRepository) -> AsyncIterator[JobRepository]:
    await repo.upsert_creator(
        CreatorRecord("creator-1", "ana@example.test", "Ana", HOOK, "whsec_1")
    )
    yield repo


# --- SignalR ---------------------------------------------------------------------------


def test_workers_signalr_sends_job_update_to_the_creator() -> None:
    counter = FailureCounter()
    body, props = wire(update(JobStatus.COMPLETED, result={"x": 1}))
    payload = json.loads(signalr_output(body, props, counter) or "")
    assert payload == {
        "target": "jobUpdate",
        "userId": "creator-1",
        "arguments": [
            {"jobId": "job_1", "status": "completed", "progress": 100, "result": {"x": 1}}
            | {"error": None}
        ],
    }


def test_workers_signalr_failures_are_counted_not_raised() -> None:
    counter = FailureCounter()
    assert signalr_output(b"{garbage", {}, counter) is None
    assert counter.counts["signalr"] == 1
    cost = AICostEvent(
        job_id="j",
        job_type=JobType.CHAT_SUGGEST,
        creator_id="c",
        model="phi4",
        input_tokens=1,
        output_tokens=1,
        cost_usd=0,
        recorded_at=T0,
    )
    assert signalr_output(encode(cost.to_wire()), {"eventType": "metric.ai_cost"}, counter) is None
    assert counter.counts["signalr"] == 1


# --- email -----------------------------------------------------------------------------


class CapturingMailer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[EmailMessage] = []
        self.fail = fail

    async def send(self, message: EmailMessage) -> None:
        if self.fail:
            raise ConnectionRefusedError("smtp down")
        self.sent.append(message)


@pytest.mark.parametrize(
    ("event", "subject", "fragment"),
    [
        (update(JobStatus.COMPLETED, result=["a"]), "Your job is complete", '"a"'),
        (
            update(JobStatus.FAILED, error=JobError(code="TIMEOUT", message="slow")),
            "Your job failed",
            "TIMEOUT - slow",
        ),
    ],
)
async def test_workers_email_uses_templates_and_the_creator_address(
    creator: JobRepository, event: EventMessage, subject: str, fragment: str
) -> None:
    """Seed: the email worker used a database client it never imported."""
    mailer = CapturingMailer()
    notifier = EmailNotifier(creator, mailer, TEMPLATES, "noreply@x.test", FailureCounter())
    assert await notifier.handle(*wire(event))
    [mail] = mailer.sent
    assert mail["To"] == "ana@example.test" and mail["Subject"] == subject
    text = mail.get_content()
    assert "Hi Ana" in text and "job_1" in text and fragment in text


async def test_workers_email_skips_progress_and_unknown_creators(repo: JobRepository) -> None:
    mailer = CapturingMailer()
    counter = FailureCounter()
    notifier = EmailNotifier(repo, mailer, TEMPLATES, "noreply@x.test", counter)
    assert not await notifier.handle(*wire(update(JobStatus.PROCESSING)))
    assert not await notifier.handle(*wire(update(JobStatus.COMPLETED)))  # no creator row
    assert mailer.sent == [] and not counter.counts


async def test_workers_email_failure_is_counted(creator: JobRepository) -> None:
    counter = FailureCounter()
    notifier = EmailNotifier(creator, CapturingMailer(fail=True), TEMPLATES, "n@x.test", counter)
    assert not await notifier.handle(*wire(update(JobStatus.COMPLETED)))
    assert counter.counts["email"] == 1


# --- webhook ---------------------------------------------------------------------------


@respx.mock
async def test_workers_webhook_posts_signed_body_with_seed_headers(creator: JobRepository) -> None:
    route = respx.post(HOOK).mock(return_value=httpx.Response(204))
    async with httpx.AsyncClient() as http:
        notifier = WebhookNotifier(
            creator, http, FailureCounter(), timeout_seconds=2, clock=FakeClock()
        )
        assert await notifier.handle(*wire(update(JobStatus.COMPLETED, result=[1])))
    request = route.calls.last.request
    assert request.headers["X-Huntaze-Event"] == "job.update"
    assert request.headers["X-Huntaze-Job-Id"] == "job_1"
    assert request.headers["Content-Type"] == "application/json"
    expected = hmac.new(b"whsec_1", request.content, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    body = json.loads(request.content)
    assert body["jobId"] == "job_1" and body["status"] == "completed" and body["result"] == [1]
    assert body["timestamp"] == T0.isoformat()


@pytest.mark.parametrize(
    "outcome",
    [httpx.Response(500), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")],
)
@respx.mock
async def test_workers_webhook_failures_are_counted_never_raised(
    creator: JobRepository, outcome: Any
) -> None:
    if isinstance(outcome, Exception):
        respx.post(HOOK).mock(side_effect=outcome)
    else:
        respx.post(HOOK).mock(return_value=outcome)
    counter = FailureCounter()
    async with httpx.AsyncClient() as http:
        notifier = WebhookNotifier(creator, http, counter, timeout_seconds=1)
        assert not await notifier.handle(*wire(update(JobStatus.FAILED)))
    assert counter.counts["webhook"] == 1


async def test_workers_webhook_timeout_is_bounded(creator: JobRepository) -> None:
    async with httpx.AsyncClient() as http:
        notifier = WebhookNotifier(creator, http, FailureCounter(), timeout_seconds=3)
    assert notifier.timeout.read == 3 and notifier.timeout.connect == 3


# --- metrics ---------------------------------------------------------------------------


async def test_workers_metrics_aggregate_latency_and_cost(repo: JobRepository) -> None:
    job = parse_job_message(encode(job_body(JobType.CHAT_SUGGEST)))
    await repo.create_pending(job, T0)
    recorder = MetricsRecorder(repo, FailureCounter())
    assert await recorder.handle(*wire(update(JobStatus.PROCESSING))) is None
    assert await recorder.handle(*wire(update(JobStatus.COMPLETED))) == "latency"
    metric = await repo.job_type_metric("chat.suggest")
    assert metric == {
        "completed": 1,
        "failed": 0,
        "latency_ms_total": 2000,
        "latency_ms_max": 2000,
    }
    cost = AICostEvent(
        job_id="job_1",
        job_type=JobType.CHAT_SUGGEST,
        creator_id="creator-1",
        model="phi4",
        input_tokens=100,
        output_tokens=50,
        cost_usd=0.01,
        recorded_at=T0,
    )
    assert await recorder.handle(encode(cost.to_wire()), {"eventType": "metric.ai_cost"}) == "cost"
    assert (await repo.ai_cost_metric("phi4") or {})["input_tokens"] == 100


async def test_workers_metrics_bad_event_is_counted(repo: JobRepository) -> None:
    counter = FailureCounter()
    assert await MetricsRecorder(repo, counter).handle(b"[]", {}) is None
    assert counter.counts["metrics"] == 1


# --- DLQ triage ------------------------------------------------------------------------


class FakeInspector:
    def __init__(self, counts: dict[str, int | Exception]) -> None:
        self.counts = counts
        self.peeked: list[tuple[str, int]] = []

    async def dead_letter_count(self, topic: str, subscription: str) -> int:
        value = self.counts.get(subscription, 0)
        if isinstance(value, Exception):
            raise value
        return value

    async def peek_dead_letters(
        self, topic: str, subscription: str, max_count: int
    ) -> list[dict[str, Any]]:
        self.peeked.append((subscription, max_count))
        return [{"jobId": f"{subscription}-{i}", "reason": "TIMEOUT"} for i in range(2)]


async def test_workers_dlq_monitor_thresholds_and_alerts(outbox: FakeOutbox) -> None:
    inspector = FakeInspector(
        {
            "video-analysis": 0,
            "chat-suggestions": 3,
            "content-suggestions": 11,
            "content-analysis": RuntimeError("forbidden"),
        }
    )
    monitor = DlqMonitor(inspector, outbox, "huntaze-jobs", clock=FakeClock())
    results = {r.subscription: r for r in await monitor.run()}
    assert results["video-analysis"].severity is None
    assert results["chat-suggestions"].severity == "warning"
    assert results["content-suggestions"].severity == "critical"
    assert results["content-analysis"].error == "forbidden"
    assert inspector.peeked == [("chat-suggestions", 5), ("content-suggestions", 5)]
    [alert] = outbox.alerts
    assert (alert.subscription, alert.dead_letter_count, alert.severity) == (
        "content-suggestions",
        11,
        "critical",
    )
    assert len(alert.samples) == 2


class PeekOnlyReceiver:
    """An SDK receiver that fails the test if anything but peek is used."""

    def __init__(self) -> None:
        self.peeks: list[int] = []
        self.closed = False

    def __enter__(self) -> PeekOnlyReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closed = True

    def peek_messages(self, max_message_count: int) -> list[Any]:
        self.peeks.append(max_message_count)
        return [
            SimpleNamespace(
                body=[json.dumps({"jobId": "job_9"}).encode()],
                dead_letter_reason="INVALID_PAYLOAD",
                dead_letter_error_description="payload.videoUrl: Field required",
                delivery_count=1,
                sequence_number=42,
            )
        ]

    def receive_messages(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("DLQ triage must peek, never receive")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"DLQ triage must not call {name}")


async def test_workers_dlq_samples_are_peeked_from_the_dead_letter_subqueue() -> None:
    """Seed: received (locked, bumped delivery counts) via the admin client, which has none."""
    receiver = PeekOnlyReceiver()
    opened: dict[str, Any] = {}

    class Client:
        def get_subscription_receiver(self, **kwargs: Any) -> PeekOnlyReceiver:
            opened.update(kwargs)
            return receiver

    class Admin:
        def get_subscription_runtime_properties(self, topic: str, sub: str) -> Any:
            return SimpleNamespace(dead_letter_message_count=12)

    inspector = ServiceBusDlqInspector(Admin(), Client())
    assert await inspector.dead_letter_count("huntaze-jobs", "video-analysis") == 12
    samples = await inspector.peek_dead_letters("huntaze-jobs", "video-analysis", 5)
    assert samples == [
        {
            "jobId": "job_9",
            "reason": "INVALID_PAYLOAD",
            "errorDescription": "payload.videoUrl: Field required",
            "deliveryCount": 1,
            "sequenceNumber": 42,
        }
    ]
    assert receiver.peeks == [5] and receiver.closed
    assert opened["sub_queue"].value == "deadletter"
    assert opened["subscription_name"] == "video-analysis"
