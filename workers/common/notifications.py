"""Subscribers of the events topic: SignalR, email, webhook and metrics.

Notifications are best effort: a failure is logged and counted, never raised, so the
auto-completing trigger completes the message and nothing is dead-lettered for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from string import Template
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from workers.common.clock import Clock, SystemClock
from workers.common.contracts import (
    EVENT_TYPE_AI_COST,
    EVENT_TYPE_DLQ_ALERT,
    EVENT_TYPE_JOB_UPDATE,
    TERMINAL_STATUSES,
    AICostEvent,
    EventMessage,
    JobStatus,
    decode_json_object,
    normalize_properties,
)
from workers.common.repository import JobRepository

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Huntaze-Signature"


class FailureCounter:
    """Counts notification failures per channel (also logged); read by health/metrics."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def record(self, channel: str, error: BaseException | str) -> None:
        self.counts[channel] += 1
        log.error("[notify-%s] failed (%d so far): %s", channel, self.counts[channel], error)


def parse_event(body: bytes | str, properties: Any = None) -> EventMessage | AICostEvent | None:
    """Parse an events-topic message; None (logged) for kinds this subscriber ignores."""
    props = normalize_properties(properties)
    data = decode_json_object(body)
    kind = props.get("eventType") or data.get("type") or EVENT_TYPE_JOB_UPDATE
    if kind == EVENT_TYPE_AI_COST:
        return AICostEvent.model_validate(data)
    if kind == EVENT_TYPE_JOB_UPDATE:
        return EventMessage.model_validate(data)
    if kind != EVENT_TYPE_DLQ_ALERT:
        log.warning("ignoring events-topic message of unknown type %r", kind)
    return None


def parse_job_update(
    body: bytes | str, properties: Any, counter: FailureCounter, channel: str
) -> EventMessage | None:
    """Job update or None; malformed bodies are counted as failures, not raised."""
    try:
        event = parse_event(body, properties)
    except (ValueError, ValidationError) as exc:
        counter.record(channel, f"unreadable event: {exc}")
        return None
    return event if isinstance(event, EventMessage) else None


def signalr_message(event: EventMessage) -> dict[str, Any]:
    """SignalR output binding payload: `jobUpdate` sent to the creator (serverless mode)."""
    data = event.to_wire()
    return {
        "target": "jobUpdate",
        "userId": event.creator_id,
        "arguments": [{k: data.get(k) for k in ("jobId", "status", "progress", "result", "error")}],
    }


def signalr_output(body: bytes | str, properties: Any, counter: FailureCounter) -> str | None:
    """JSON for the SignalR output binding, or None when there is nothing to send."""
    try:
        event = parse_job_update(body, properties, counter, "signalr")
        return None if event is None else json.dumps(signalr_message(event))
    except Exception as exc:
        counter.record("signalr", exc)
        return None


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


@dataclass
class SmtpMailer:
    """SMTP via the standard library, in a thread so the event loop is not blocked."""

    host: str
    port: int = 25
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout: float = 10.0

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)


TEMPLATE_FOR_STATUS = {JobStatus.COMPLETED: "job-completed", JobStatus.FAILED: "job-failed"}


def render_template(directory: Path, name: str, values: dict[str, str]) -> tuple[str, str]:
    """Template files hold `Subject: ...`, a blank line, then the body (string.Template)."""
    text = Template((directory / f"{name}.txt").read_text()).safe_substitute(values)
    head, _, body = text.partition("\n\n")
    subject = head.removeprefix("Subject:").strip()
    return subject, body.strip() + "\n"


class EmailNotifier:
    """job-completed / job-failed mails to the creator's address from the database."""

    def __init__(
        self,
        repository: JobRepository,
        mailer: Mailer | None,
        templates: Path,
        sender: str,
        counter: FailureCounter,
    ) -> None:
        self.repository = repository
        self.mailer = mailer
        self.templates = templates
        self.sender = sender
        self.counter = counter

    async def handle(self, body: bytes | str, properties: Any = None) -> bool:
        """True when a mail was sent."""
        event = parse_job_update(body, properties, self.counter, "email")
        if event is None or event.status not in TEMPLATE_FOR_STATUS:
            return False
        if self.mailer is None:
            log.info("[notify-email] SMTP_HOST not set; skipping job %s", event.job_id)
            return False
        try:
            creator = await self.repository.get_creator(event.creator_id)
            if creator is None or not creator.email:
                log.warning("[notify-email] no email for creator %s", event.creator_id)
                return False
            values = {
                "name": creator.name or "there",
                "job_id": event.job_id,
                "status": event.status.value,
                "result": json.dumps(event.result, indent=2) if event.result is not None else "",
                "error_code": event.error.code if event.error else "",
                "error_message": event.error.message if event.error else "",
            }
            subject, text = render_template(
                self.templates, TEMPLATE_FOR_STATUS[event.status], values
            )
            message = EmailMessage()
            message["From"] = self.sender
            message["To"] = creator.email
            message["Subject"] = subject
            message.set_content(text)
            await self.mailer.send(message)
            return True
        except Exception as exc:
            self.counter.record("email", exc)
            return False


def sign_body(secret: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC of the exact bytes sent, for receivers to verify."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    """POST job updates to the creator's webhook with the seed's headers plus a signature."""

    def __init__(
        self,
        repository: JobRepository,
        http: httpx.AsyncClient,
        counter: FailureCounter,
        *,
        default_secret: str = "",
        timeout_seconds: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.repository = repository
        self.http = http
        self.counter = counter
        self.default_secret = default_secret
        self.timeout = httpx.Timeout(timeout_seconds)
        self.clock = clock or SystemClock()

    async def handle(self, body: bytes | str, properties: Any = None) -> bool:
        event = parse_job_update(body, properties, self.counter, "webhook")
        if event is None:
            return False
        try:
            creator = await self.repository.get_creator(event.creator_id)
            if creator is None or not creator.webhook_url:
                log.info("[notify-webhook] no webhook URL for creator %s", event.creator_id)
                return False
            wire = event.to_wire()
            payload = {
                "jobId": event.job_id,
                "creatorId": event.creator_id,
                "status": event.status.value,
                "progress": event.progress,
                "result": wire.get("result"),
                "error": wire.get("error"),
                "timestamp": self.clock.now().isoformat(),
            }
            raw = json.dumps(payload, separators=(",", ":")).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Huntaze-Event": "job.update",
                "X-Huntaze-Job-Id": event.job_id,
            }
            secret = creator.webhook_secret or self.default_secret
            if secret:
                headers[SIGNATURE_HEADER] = sign_body(secret, raw)
            response = await self.http.post(
                creator.webhook_url, content=raw, headers=headers, timeout=self.timeout
            )
            if response.status_code >= 300:
                self.counter.record(
                    "webhook", f"{creator.webhook_url} answered HTTP {response.status_code}"
                )
                return False
            return True
        except Exception as exc:
            self.counter.record("webhook", exc)
            return False


class MetricsRecorder:
    """Aggregates job latency (enqueue → final status) and AI cost in the database."""

    def __init__(self, repository: JobRepository, counter: FailureCounter) -> None:
        self.repository = repository
        self.counter = counter

    async def handle(self, body: bytes | str, properties: Any = None) -> str | None:
        try:
            event = parse_event(body, properties)
        except (ValueError, ValidationError) as exc:
            self.counter.record("metrics", f"unreadable event: {exc}")
            return None
        try:
            if isinstance(event, AICostEvent):
                await self.repository.record_ai_cost(
                    event.model, event.input_tokens, event.output_tokens, event.cost_usd
                )
                return "cost"
            if isinstance(event, EventMessage) and event.status in TERMINAL_STATUSES:
                job = await self.repository.get(event.job_id)
                if job is None:
                    log.warning("[metrics] unknown job %s", event.job_id)
                    return None
                latency = _ms(event.updated_at) - _ms(job.created_at)
                await self.repository.record_job_latency(job.job_type, event.status, latency)
                return "latency"
        except Exception as exc:
            self.counter.record("metrics", exc)
        return None


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)
