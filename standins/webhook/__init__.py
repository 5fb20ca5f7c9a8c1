"""Webhook sink: records requests; answers errors or hangs (bounded) for the next N."""

from standins.webhook.sink import (
    WebhookBehaviour,
    WebhookRequest,
    WebhookSink,
    create_app,
    hmac_sha256_signature,
)

__all__ = [
    "WebhookBehaviour",
    "WebhookRequest",
    "WebhookSink",
    "create_app",
    "hmac_sha256_signature",
]
