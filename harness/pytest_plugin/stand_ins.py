"""Fixtures for the stand-ins (standins/): AI inference, SignalR, SMTP and webhook sinks.

Each is a real server on a free port, one per test, so recorded calls never leak between
tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from standins.ai import AIServer
    from standins.mail import MailSink
    from standins.signalr import SignalRServer
    from standins.webhook import WebhookSink

AI_API_KEY = "harness-ai-key"


@pytest.fixture
def ai_stub() -> Iterator[AIServer]:
    """The AI inference stand-in over HTTP (the workers run in threads and call httpx)."""
    from standins.ai import AIServer

    with AIServer(api_key=AI_API_KEY) as server:
        yield server


@pytest.fixture
def signalr() -> Iterator[SignalRServer]:
    """SignalR Service REST stand-in; an app's SignalR output binding posts here."""
    from standins.signalr import SignalRServer

    with SignalRServer() as server:
        yield server


@pytest.fixture
def mailbox() -> Iterator[MailSink]:
    """SMTP sink an app mails to."""
    from standins.mail import MailSink

    with MailSink() as sink:
        yield sink


@pytest.fixture
def webhooks() -> Iterator[WebhookSink]:
    """Webhook sink; hand an app `webhooks.url_for(path)` as the address to call."""
    from standins.webhook import WebhookSink

    with WebhookSink() as sink:
        yield sink
