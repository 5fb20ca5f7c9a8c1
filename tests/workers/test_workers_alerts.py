"""The DLQ monitor's alert.dlq reaches the operators: ops webhook and ops email."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
import respx
from workers_fakes import T0, FakeClock

from workers.common.alerts import (
    OpsEmailAlerter,
    OpsWebhookAlerter,
    describe_samples,
    is_dlq_alert,
)
from workers.common.contracts import EVENT_TYPE_DLQ_ALERT, DlqAlertEvent
from workers.common.dlq import DlqMonitor
from workers.common.messaging import ServiceBusOutbox, message_body_bytes
from workers.common.notifications import SIGNATURE_HEADER, FailureCounter
from workers.common.settings import Role, SettingsError, load_settings

TEMPLATES = Path(__file__).resolve().parents[2] / "workers" / "notify" / "templates"
OPS_HOOK = "https://ops.example/alerts"
SAMPLE = {
    "jobId": "job_9",
    "reason": "MaxDeliveryCountExceeded",
    "errorDescription": "after 5 deliveries",
    "deliveryCount": 5,
    "sequenceNumber": 42,
}


def alert(**kw: Any) -> DlqAlertEvent:
    values: dict[str, Any] = {
        "severity": "critical",
        "topic": "huntaze-jobs",
        "subscription": "chat-suggestions",
        "dead_letter_count": 12,
        "samples": [SAMPLE],
        "raised_at": T0,
    }
    values.update(kw)
    return DlqAlertEvent(**values)


def wire(event: DlqAlertEvent) -> tuple[bytes, dict[str, str]]:
    props = {"eventType": EVENT_TYPE_DLQ_ALERT, "severity": event.severity}
    return json.dumps(event.to_wire()).encode(), props


class CapturingMailer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[EmailMessage] = []
        self.fail = fail

    async def send(self, message: EmailMessage) -> None:
        if self.fail:
            raise ConnectionRefusedError("smtp down")
        self.sent.append(message)


# -- which events are alerts -------------------------------------------------------------------


def test_workers_alerts_are_told_apart_by_event_type_or_body_type() -> None:
    body, props = wire(alert())
    assert is_dlq_alert(body, props)
    assert is_dlq_alert(body, {})  # no eventType: the body's "type" says it
    assert is_dlq_alert(body, {b"eventType": b"alert.dlq"})  # AMQP-decoded properties
    assert not is_dlq_alert(body, {"eventType": "job.update"})
    assert not is_dlq_alert(b'{"jobId": "j", "status": "completed"}', {})
    assert not is_dlq_alert(b"{not json", {})


def test_workers_samples_read_as_one_line_each() -> None:
    text = describe_samples([SAMPLE, {"jobId": None}])
    assert "job job_9: MaxDeliveryCountExceeded — after 5 deliveries" in text
    assert "(deliveries 5, sequence 42)" in text
    assert "job ?: no reason — no description" in text
    assert describe_samples([]) == "  (no samples)"


# -- ops webhook -------------------------------------------------------------------------------


@respx.mock
async def test_workers_ops_webhook_posts_the_signed_alert() -> None:
    route = respx.post(OPS_HOOK).mock(return_value=httpx.Response(204))
    counter = FailureCounter()
    async with httpx.AsyncClient() as http:
        alerter = OpsWebhookAlerter(OPS_HOOK, http, counter, secret="s3cret")
        assert await alerter.handle(*wire(alert()))
    [call] = route.calls
    raw = call.request.content
    assert json.loads(raw) == alert().to_wire()
    assert call.request.headers["X-Huntaze-Event"] == "alert.dlq"
    assert call.request.headers["X-Huntaze-Severity"] == "critical"
    expected = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert call.request.headers[SIGNATURE_HEADER] == expected
    assert counter.counts == {}


@respx.mock
async def test_workers_ops_webhook_without_a_secret_is_unsigned() -> None:
    route = respx.post(OPS_HOOK).mock(return_value=httpx.Response(200))
    async with httpx.AsyncClient() as http:
        assert await OpsWebhookAlerter(OPS_HOOK, http, FailureCounter()).handle(*wire(alert()))
    assert SIGNATURE_HEADER not in route.calls[0].request.headers


@respx.mock
@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (httpx.Response(500), "answered HTTP 500"),
        (httpx.ConnectError("refused"), "refused"),
        (httpx.ReadTimeout("slow"), "slow"),
    ],
)
async def test_workers_ops_webhook_failures_are_counted_never_raised(
    response: Any, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    if isinstance(response, Exception):
        respx.post(OPS_HOOK).mock(side_effect=response)
    else:
        respx.post(OPS_HOOK).mock(return_value=response)
    counter = FailureCounter()
    async with httpx.AsyncClient() as http:
        assert not await OpsWebhookAlerter(OPS_HOOK, http, counter).handle(*wire(alert()))
    assert counter.counts["ops-webhook"] == 1
    assert fragment in caplog.text


@respx.mock
async def test_workers_ops_webhook_skips_when_unset_or_unreadable() -> None:
    route = respx.post(OPS_HOOK).mock(return_value=httpx.Response(200))
    counter = FailureCounter()
    async with httpx.AsyncClient() as http:
        assert not await OpsWebhookAlerter("", http, counter).handle(*wire(alert()))
        broken = OpsWebhookAlerter(OPS_HOOK, http, counter)
        assert not await broken.handle(b'{"type": "alert.dlq"}', {"eventType": "alert.dlq"})
        assert not await broken.handle(b"{torn", {"eventType": "alert.dlq"})
    assert route.calls == [] and counter.counts["ops-webhook"] == 2


# -- ops email ---------------------------------------------------------------------------------


async def test_workers_ops_email_mails_the_alert_from_its_template() -> None:
    mailer = CapturingMailer()
    counter = FailureCounter()
    alerter = OpsEmailAlerter(
        ["ops@example.com", "oncall@example.com"], mailer, TEMPLATES, "noreply@x.test", counter
    )
    assert await alerter.handle(*wire(alert()))
    [mail] = mailer.sent
    assert mail["Subject"] == "[critical] 12 dead letters in huntaze-jobs/chat-suggestions"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert mail["From"] == "noreply@x.test"
    text = mail.get_content()
    assert "job job_9: MaxDeliveryCountExceeded — after 5 deliveries" in text
    assert T0.isoformat() in text and "$" not in text
    assert counter.counts == {}


async def test_workers_ops_email_failures_are_counted_and_unset_skips() -> None:
    counter = FailureCounter()
    failing = OpsEmailAlerter(["ops@x.test"], CapturingMailer(fail=True), TEMPLATES, "n@x", counter)
    assert not await failing.handle(*wire(alert()))
    assert counter.counts["ops-email"] == 1
    assert not await failing.handle(b"[]", {"eventType": "alert.dlq"})
    assert counter.counts["ops-email"] == 2
    mailer = CapturingMailer()
    assert not await OpsEmailAlerter([], mailer, TEMPLATES, "n@x", counter).handle(*wire(alert()))
    assert not await OpsEmailAlerter(["o@x"], None, TEMPLATES, "n@x", counter).handle(
        *wire(alert())
    )
    assert mailer.sent == [] and counter.counts["ops-email"] == 2


async def test_workers_ops_email_missing_template_is_counted(tmp_path: Path) -> None:
    counter = FailureCounter()
    alerter = OpsEmailAlerter(["o@x.test"], CapturingMailer(), tmp_path, "n@x", counter)
    assert not await alerter.handle(*wire(alert()))
    assert counter.counts["ops-email"] == 1


# -- settings ----------------------------------------------------------------------------------

NOTIFY_ENV = {
    "SERVICEBUS_CONNECTION": "Endpoint=sb://localhost/;SharedAccessKeyName=a;SharedAccessKey=b",
    "TOPIC_JOBS": "huntaze-jobs",
    "TOPIC_EVENTS": "huntaze-events",
    "DATABASE_URL": "sqlite://",
}


def test_workers_ops_alert_settings_are_read_and_checked() -> None:
    settings = load_settings(
        Role.NOTIFY,
        {
            **NOTIFY_ENV,
            "OPS_ALERT_WEBHOOK_URL": OPS_HOOK,
            "OPS_ALERT_EMAIL": "ops@example.com, oncall@example.com",
            "SMTP_HOST": "smtp.example",
        },
    )
    assert settings.ops_alert_webhook_url == OPS_HOOK
    assert settings.ops_alert_emails == ("ops@example.com", "oncall@example.com")
    unset = load_settings(Role.NOTIFY, NOTIFY_ENV)
    assert (unset.ops_alert_webhook_url, unset.ops_alert_emails) == ("", ())


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"OPS_ALERT_WEBHOOK_URL": "ftp://ops.example"}, "OPS_ALERT_WEBHOOK_URL must start"),
        ({"OPS_ALERT_EMAIL": "ops@example.com"}, "OPS_ALERT_EMAIL needs SMTP_HOST"),
        (
            {"OPS_ALERT_EMAIL": "ops@example.com, nobody, @x", "SMTP_HOST": "smtp"},
            "invalid addresses: nobody, @x",
        ),
    ],
)
def test_workers_bad_ops_alert_settings_fail_startup(extra: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Role.NOTIFY, {**NOTIFY_ENV, **extra})
    assert fragment in str(info.value)


# -- the notify app, from the monitor's message to the operators -------------------------------


@pytest.fixture
def notify_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    import importlib

    name = "workers.notify.function_app"
    sys.modules.pop(name, None)
    env = {
        **NOTIFY_ENV,
        "OPS_ALERT_WEBHOOK_URL": OPS_HOOK,
        "OPS_ALERT_EMAIL": "ops@example.com",
        "SMTP_HOST": "smtp.example",
        "WEBHOOK_SIGNING_SECRET": "fallback",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


class _Inspector:
    async def dead_letter_count(self, topic: str, subscription: str) -> int:
        return 12 if subscription == "chat-suggestions" else 0

    async def peek_dead_letters(self, topic: str, subscription: str, n: int) -> list[Any]:
        return [SAMPLE]


class _Sender:
    def __init__(self, sink: list[Any]) -> None:
        self.sink = sink

    async def send_messages(self, message: Any) -> None:
        self.sink.append(message)


def _user_functions(module: ModuleType) -> dict[str, Any]:
    """The app's functions by name (an app may be indexed only once)."""
    return {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}


@respx.mock
async def test_workers_the_monitors_alert_reaches_the_ops_webhook_and_mailbox(
    notify_app: ModuleType,
) -> None:
    """DlqMonitor → its events-topic message → NotifyWebhookWorker / NotifyEmailWorker."""
    sent: list[Any] = []
    outbox = ServiceBusOutbox(lambda topic: _Sender(sent), "huntaze-jobs", "huntaze-events")
    monitor = DlqMonitor(_Inspector(), outbox, "huntaze-jobs", clock=FakeClock())
    await monitor.run()
    [message] = sent
    delivered = SimpleNamespace(
        get_body=lambda: message_body_bytes(message),
        application_properties=dict(message.application_properties),
    )
    route = respx.post(OPS_HOOK).mock(return_value=httpx.Response(200))
    mailer = CapturingMailer()
    notify_app.OPS_EMAIL.mailer = mailer

    functions = _user_functions(notify_app)
    await functions["NotifyWebhookWorker"](delivered)
    await functions["NotifyEmailWorker"](delivered)

    [call] = route.calls
    posted = json.loads(call.request.content)
    assert (posted["type"], posted["subscription"], posted["deadLetterCount"]) == (
        "alert.dlq",
        "chat-suggestions",
        12,
    )
    assert posted["samples"] == [SAMPLE]
    assert call.request.headers[SIGNATURE_HEADER].startswith("sha256=")
    [mail] = mailer.sent
    assert mail["To"] == "ops@example.com" and "chat-suggestions" in mail["Subject"]
    assert notify_app.COUNTER.counts == {}
    # SignalR (creators' browsers) still ignores it.
    assert (
        notify_app.signalr_output(
            delivered.get_body(), delivered.application_properties, notify_app.COUNTER
        )
        is None
    )


@respx.mock
async def test_workers_job_updates_still_go_to_the_creators_not_the_operators(
    notify_app: ModuleType,
) -> None:
    route = respx.post(OPS_HOOK).mock(return_value=httpx.Response(200))
    mailer = CapturingMailer()
    notify_app.OPS_EMAIL.mailer = mailer
    notify_app.EMAIL.mailer = mailer
    update = SimpleNamespace(
        get_body=lambda: json.dumps(
            {
                "jobId": "j",
                "creatorId": "nobody",
                "status": "completed",
                "updatedAt": T0.isoformat(),
            }
        ).encode(),
        application_properties={"eventType": "job.update", "status": "completed"},
    )
    functions = _user_functions(notify_app)
    await functions["NotifyWebhookWorker"](update)
    await functions["NotifyEmailWorker"](update)
    assert route.calls == [] and mailer.sent == []  # unknown creator: nothing to send
    assert notify_app.COUNTER.counts == {}
