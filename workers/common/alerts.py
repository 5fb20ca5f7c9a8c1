"""Operator channels for the DLQ monitor's `alert.dlq`: an ops webhook and an ops mailbox.

The monitor publishes its alert to the events topic, whose four subscriptions take every
event (no filter), and every subscriber used to drop it: the alert reached nobody. Now the
webhook subscriber posts it to `OPS_ALERT_WEBHOOK_URL` and the email subscriber mails it
to `OPS_ALERT_EMAIL`; SignalR (creators' browsers) and metrics still ignore it. Like the
other notifications these are best effort: a failure is logged and counted, never raised,
and the monitor raises the alert again at its next run while the backlog stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from workers.common.contracts import (
    EVENT_TYPE_DLQ_ALERT,
    DlqAlertEvent,
    decode_json_object,
    normalize_properties,
)
from workers.common.notifications import (
    SIGNATURE_HEADER,
    FailureCounter,
    Mailer,
    render_template,
    sign_body,
)

log = logging.getLogger(__name__)

ALERT_TEMPLATE = "dlq-alert"


def is_dlq_alert(body: bytes | str, properties: Any = None) -> bool:
    """True for an `alert.dlq` event (by `eventType`, else by the body's `type`)."""
    kind = normalize_properties(properties).get("eventType")
    if kind is None:
        try:
            kind = decode_json_object(body).get("type")
        except ValueError:
            return False
    return kind == EVENT_TYPE_DLQ_ALERT


def _parse(body: bytes | str, counter: FailureCounter, channel: str) -> DlqAlertEvent | None:
    try:
        return DlqAlertEvent.model_validate(decode_json_object(body))
    except (ValueError, ValidationError) as exc:
        counter.record(channel, f"unreadable alert: {exc}")
        return None


def describe_samples(samples: Sequence[dict[str, Any]]) -> str:
    """One line per peeked sample, for people."""
    if not samples:
        return "  (no samples)"
    lines = []
    for s in samples:
        lines.append(
            f"  - job {s.get('jobId') or '?'}: {s.get('reason') or 'no reason'}"
            f" — {s.get('errorDescription') or 'no description'}"
            f" (deliveries {s.get('deliveryCount')}, sequence {s.get('sequenceNumber')})"
        )
    return "\n".join(lines)


class OpsWebhookAlerter:
    """POSTs the alert's JSON to the ops webhook, signed like creator webhooks."""

    channel = "ops-webhook"

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        counter: FailureCounter,
        *,
        secret: str = "",
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.http = http
        self.counter = counter
        self.secret = secret
        self.timeout = httpx.Timeout(timeout_seconds)

    async def handle(self, body: bytes | str, properties: Any = None) -> bool:
        """True when the webhook accepted the alert."""
        if not self.url:
            log.info("[ops-webhook] OPS_ALERT_WEBHOOK_URL not set; alert not posted")
            return False
        alert = _parse(body, self.counter, self.channel)
        if alert is None:
            return False
        raw = json.dumps(alert.to_wire(), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Huntaze-Event": EVENT_TYPE_DLQ_ALERT,
            "X-Huntaze-Severity": alert.severity,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign_body(self.secret, raw)
        try:
            response = await self.http.post(
                self.url, content=raw, headers=headers, timeout=self.timeout
            )
        except Exception as exc:
            self.counter.record(self.channel, exc)
            return False
        if response.status_code >= 300:
            self.counter.record(self.channel, f"{self.url} answered HTTP {response.status_code}")
            return False
        return True


class OpsEmailAlerter:
    """Mails the alert (template `dlq-alert.txt`) to the ops addresses."""

    channel = "ops-email"

    def __init__(
        self,
        recipients: Sequence[str],
        mailer: Mailer | None,
        templates: Path,
        sender: str,
        counter: FailureCounter,
    ) -> None:
        self.recipients = list(recipients)
        self.mailer = mailer
        self.templates = templates
        self.sender = sender
        self.counter = counter

    async def handle(self, body: bytes | str, properties: Any = None) -> bool:
        """True when the mail was handed to the SMTP server."""
        if not self.recipients or self.mailer is None:
            log.info("[ops-email] OPS_ALERT_EMAIL or SMTP_HOST not set; alert not mailed")
            return False
        alert = _parse(body, self.counter, self.channel)
        if alert is None:
            return False
        try:
            subject, text = render_template(
                self.templates,
                ALERT_TEMPLATE,
                {
                    "severity": alert.severity,
                    "topic": alert.topic,
                    "subscription": alert.subscription,
                    "dead_letter_count": str(alert.dead_letter_count),
                    "raised_at": alert.raised_at.isoformat(),
                    "samples": describe_samples(alert.samples),
                },
            )
            message = EmailMessage()
            message["From"] = self.sender
            message["To"] = ", ".join(self.recipients)
            message["Subject"] = subject
            message.set_content(text)
            await self.mailer.send(message)
        except Exception as exc:
            self.counter.record(self.channel, exc)
            return False
        return True
