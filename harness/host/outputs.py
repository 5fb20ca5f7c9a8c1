"""Output bindings: what the worker hands back after a run, delivered by the host.

Handlers are pluggable per binding type (`output_handlers={"signalR": ...}`), so a test can
capture outputs or point SignalR at a stand-in. Built in: `serviceBus` (sent through the
SDK) and `signalR` (POSTed to the SignalR Service REST API named by the connection string).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import azure.functions as func
import httpx
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from .app import DEFAULT_SB_CONNECTION, DEFAULT_SIGNALR_CONNECTION, connection_string

T = TypeVar("T")

# (binding dict with settings resolved, value the function set) → delivered
OutputHandler = Callable[[dict[str, Any], Any], Awaitable[None]]


class Out(func.Out[T], Generic[T]):
    """The worker's `func.Out`: holds what the function sets."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


def parse_connection_string(text: str) -> dict[str, str]:
    parts = (p.split("=", 1) for p in text.split(";") if "=" in p)
    return {k.strip().lower(): v.strip() for k, v in parts}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signalr_token(audience: str, access_key: str, lifetime: int = 3600) -> str:
    """HS256 JWT the SignalR Service REST API expects (audience = the request URL)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"aud": audience, "exp": int(time.time()) + lifetime}).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = hmac.new(access_key.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64url(signature)}"


class SignalRRestOutput:
    """Sends SignalR output messages to `{endpoint}/api/v1/hubs/{hub}[/users/{u}|/groups/{g}]`.

    `endpoint` overrides the connection string's (a stand-in's URL); the access key still
    signs the bearer token when there is one.
    """

    def __init__(self, settings: Mapping[str, str], endpoint: str | None = None) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self._client: httpx.AsyncClient | None = None

    def _target(self, binding: dict[str, Any]) -> tuple[str, str]:
        setting = binding.get("connectionStringSetting") or DEFAULT_SIGNALR_CONNECTION
        parsed = parse_connection_string(self.settings.get(setting, ""))
        endpoint = self.endpoint or parsed.get("endpoint", "")
        if not endpoint:
            raise RuntimeError(f"SignalR output: setting {setting} has no Endpoint")
        port = parsed.get("port")
        if port and not self.endpoint:
            scheme, _, rest = endpoint.partition("://")
            endpoint = f"{scheme}://{rest.rstrip('/').split(':')[0]}:{port}"
        return endpoint.rstrip("/"), parsed.get("accesskey", "")

    async def __call__(self, binding: dict[str, Any], value: Any) -> None:
        endpoint, key = self._target(binding)
        hub = str(binding.get("hubName", "")).lower()
        items = json.loads(value) if isinstance(value, str | bytes) else value
        for item in items if isinstance(items, list) else [items]:
            url = f"{endpoint}/api/v1/hubs/{hub}"
            if item.get("userId"):
                url += f"/users/{item['userId']}"
            elif item.get("groupName"):
                url += f"/groups/{item['groupName']}"
            body = {"target": item.get("target"), "arguments": item.get("arguments", [])}
            headers = {"Authorization": f"Bearer {signalr_token(url, key)}"} if key else {}
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=10.0)
            response = await self._client.post(url, json=body, headers=headers)
            response.raise_for_status()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _sb_messages(value: Any) -> list[ServiceBusMessage]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, ServiceBusMessage):
            out.append(item)
        elif isinstance(item, bytes | str):
            out.append(ServiceBusMessage(item))
        else:
            out.append(ServiceBusMessage(json.dumps(item), content_type="application/json"))
    return out


class ServiceBusOutput:
    """Sends to the binding's queue or topic with one SDK client per connection string."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self.settings = settings
        self._clients: dict[str, ServiceBusClient] = {}

    async def __call__(self, binding: dict[str, Any], value: Any) -> None:
        conn = connection_string(binding.get("connection") or DEFAULT_SB_CONNECTION, self.settings)
        client = self._clients.get(conn)
        if client is None:
            client = self._clients[conn] = ServiceBusClient.from_connection_string(conn)
        if binding.get("topicName"):
            sender = client.get_topic_sender(binding["topicName"])
        else:
            sender = client.get_queue_sender(binding["queueName"])
        async with sender:
            await sender.send_messages(_sb_messages(value))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
