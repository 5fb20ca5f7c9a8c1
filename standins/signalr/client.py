"""A minimal SignalR REST client: what the Functions SignalR output binding does with the
JSON a function sets on its `signalR` output.

The binding reads `AzureSignalRConnectionString`, signs a token per request and sends the
message to `userId`, `groupName`, `connectionId` or the whole hub. The local Functions host
needs exactly that to honour `signalR` outputs against this stand-in (or a real service),
so it lives here, next to the server it is tested against.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from standins.signalr.auth import ConnectionString, make_token


class SignalRRestError(RuntimeError):
    def __init__(self, status: int, url: str, text: str) -> None:
        super().__init__(f"SignalR REST {url} answered HTTP {status}: {text[:300]}")
        self.status = status


class SignalRRestClient:
    """`await client.send_binding_message("huntaze", json_or_dict)`; v1 paths."""

    def __init__(
        self,
        connection_string: str,
        http: httpx.AsyncClient | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.connection = ConnectionString.parse(connection_string)
        self._own_http = http is None
        self.http = http or httpx.AsyncClient()
        self.timeout = timeout

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> SignalRRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _url(self, hub: str, *tail: str) -> str:
        path = "/".join(quote(p, safe="") for p in ("api", "v1", "hubs", hub.lower(), *tail))
        return f"{self.connection.endpoint}/{path}"

    async def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> int:
        token = make_token(self.connection.access_key, url)
        response = await self.http.request(
            method,
            url,
            content=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            raise SignalRRestError(response.status_code, url, response.text)
        return response.status_code

    async def send_to_all(self, hub: str, target: str, arguments: list[Any]) -> int:
        return await self._call("POST", self._url(hub), {"target": target, "arguments": arguments})

    async def send_to_user(self, hub: str, user: str, target: str, arguments: list[Any]) -> int:
        url = self._url(hub, "users", user)
        return await self._call("POST", url, {"target": target, "arguments": arguments})

    async def send_to_group(self, hub: str, group: str, target: str, arguments: list[Any]) -> int:
        url = self._url(hub, "groups", group)
        return await self._call("POST", url, {"target": target, "arguments": arguments})

    async def add_user_to_group(self, hub: str, group: str, user: str) -> int:
        return await self._call("PUT", self._url(hub, "groups", group, "users", user))

    async def remove_user_from_group(self, hub: str, group: str, user: str) -> int:
        return await self._call("DELETE", self._url(hub, "groups", group, "users", user))

    async def send_binding_message(self, hub: str, message: str | dict[str, Any]) -> int:
        """Dispatch one output-binding value the way the binding does."""
        data = json.loads(message) if isinstance(message, str) else message
        if not isinstance(data, dict) or not isinstance(data.get("target"), str):
            raise ValueError("a SignalR output message needs a string 'target'")
        target, arguments = data["target"], list(data.get("arguments") or [])
        if data.get("userId"):
            return await self.send_to_user(hub, str(data["userId"]), target, arguments)
        if data.get("groupName"):
            return await self.send_to_group(hub, str(data["groupName"]), target, arguments)
        if data.get("connectionId"):
            url = self._url(hub, "connections", str(data["connectionId"]))
            return await self._call("POST", url, {"target": target, "arguments": arguments})
        return await self.send_to_all(hub, target, arguments)
