"""SMTP sink: records parsed mails sent by smtplib and by the notify worker's own code."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from standin_workers import add_creator

from standins.mail import MailSink
from workers.common.contracts import (
    EventMessage,
    JobError,
    JobStatus,
    event_application_properties,
)
from workers.common.notifications import EmailNotifier, FailureCounter, SmtpMailer
from workers.common.repository import JobRepository
from workers.common.settings import Role, load_settings

TEMPLATES = Path(__file__).resolve().parents[2] / "workers" / "notify" / "templates"


@pytest.fixture
def smtp() -> Iterator[MailSink]:
    with MailSink() as sink:
        yield sink


def _message(to: str = "bob@example.test", subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Huntaze <noreply@huntaze.local>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Line one\nLine two — ünïcode\n")
    return msg


def test_standin_mail_records_parsed_mail(smtp: MailSink, no_leaked_threads: None) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        client.send_message(_message(), to_addrs=["bob@example.test", "audit@example.test"])
    (mail,) = smtp.wait_for("bob@example.test")
    assert mail.sender == "Huntaze <noreply@huntaze.local>"
    assert mail.mail_from == "noreply@huntaze.local"
    assert mail.to == ("bob@example.test",)
    assert mail.recipients == ("bob@example.test", "audit@example.test")
    assert mail.subject == "Hello"
    assert mail.body == "Line one\nLine two — ünïcode\n"
    assert mail.message()["Subject"] == "Hello"
    assert smtp.to("AUDIT@example.test") == [mail]


async def test_standin_mail_receives_the_notify_workers_job_mail(
    smtp: MailSink, repo: JobRepository
) -> None:
    await add_creator(repo, email="ana@example.test")
    settings = load_settings(
        Role.NOTIFY,
        {
            "SERVICEBUS_CONNECTION": "Endpoint=sb://localhost/;SharedAccessKeyName=a;"
            "SharedAccessKey=b",
            "TOPIC_JOBS": "huntaze-jobs",
            "TOPIC_EVENTS": "huntaze-events",
            "DATABASE_URL": "sqlite://",
            **smtp.environment(),
        },
    )
    mailer = SmtpMailer(settings.smtp_host, settings.smtp_port)
    notifier = EmailNotifier(repo, mailer, TEMPLATES, settings.smtp_from, FailureCounter())
    event = EventMessage(
        job_id="job-9",
        creator_id="creator-1",
        status=JobStatus.FAILED,
        error=JobError(code="TIMEOUT", message="too slow"),
        updated_at=datetime.now(UTC),
    )
    body = event.model_dump_json(by_alias=True).encode()
    assert await notifier.handle(body, event_application_properties(event))
    (mail,) = smtp.wait_for("ana@example.test", subject="failed")
    assert mail.sender == settings.smtp_from
    assert "job-9" in mail.body and "TIMEOUT - too slow" in mail.body


def test_standin_mail_requires_auth_when_given_credentials() -> None:
    with MailSink(credentials=("user", "secret")) as sink:
        assert sink.environment()["SMTP_USERNAME"] == "user"
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPSenderRefused):
                client.send_message(_message())
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("user", "wrong")
        # the worker's mailer, with the right password, gets through
        mailer = SmtpMailer(sink.host, sink.port, "user", "secret")
        mailer._send(_message())
        assert len(sink.wait_for()) == 1
        # smtplib tries each offered mechanism before giving up, hence several failures
        assert sink.auth_attempts[-1] == ("user", True)
        assert ("user", False) in sink.auth_attempts


def test_standin_mail_can_refuse_the_next_mails(smtp: MailSink) -> None:
    smtp.fail_next(1, "451 4.3.0 Mailbox busy")
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.send_message(_message())
        assert caught.value.smtp_code == 451
        client.send_message(_message(subject="second"))
    assert [m.subject for m in smtp.mails] == ["second"]


def test_standin_mail_wait_for_times_out_listing_what_came(smtp: MailSink) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        client.send_message(_message())
    with pytest.raises(AssertionError, match="Hello"):
        smtp.wait_for("carol@example.test", timeout=0.05)


def test_standin_mail_stop_with_an_open_connection(no_leaked_threads: None) -> None:
    sink = MailSink().start()
    client = smtplib.SMTP(sink.host, sink.port, timeout=5)
    client.ehlo()
    sink.stop()  # an idle client must not keep the sink alive
    client.close()
