"""SignalR Service data-plane REST stand-in (serverless mode) and its runner.

Serves what the Functions SignalR output binding (or any server SDK) calls, in both path
styles the service documents:
  v1:          POST /api/v1/hubs/{hub}[/users/{user}|/groups/{group}|/connections/{id}]
  2022-06-01:  POST /api/hubs/{hub}[/users/{user}|/groups/{group}|/connections/{id}]/:send
  membership:  PUT|DELETE .../groups/{group}/users/{user}  (or .../users/{user}/groups/{group})
  health:      GET|HEAD /api/v1/health, /api/health
Requests carry `Authorization: Bearer <HS256 JWT>` signed with the AccessKey, `aud` = the
request URL. Sends answer 202; bodies are `{"target": str, "arguments": [...]}`.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from standins._http_runner import HttpStandin, ServerThread
from standins.signalr.auth import ConnectionString, TokenError, verify_token
from standins.signalr.store import Audience, SignalRMessage, SignalRStore

_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DEFAULT_ACCESS_KEY = "c3RhbmRpbi1zaWduYWxyLWFjY2Vzcy1rZXktMDEyMzQ1Njc4OQ=="


class _Failures:
    """`fail_next(n, status)`: the next n data-plane requests answer `status`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[int] = []

    def add(self, count: int, status: int) -> None:
        with self._lock:
            self._queue.extend([status] * count)

    def take(self) -> int | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def create_app(
    store: SignalRStore,
    *,
    access_key: str | None = DEFAULT_ACCESS_KEY,
    failures: _Failures | None = None,
) -> FastAPI:
    """ASGI app recording into `store`; `access_key=None` accepts unauthenticated calls."""
    failures = failures or _Failures()
    app = FastAPI(title="SignalR stand-in", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/_standin/messages")
    async def list_messages(hub: str | None = None, user: str | None = None) -> list[dict]:
        found = store.for_user(user, hub) if user else store.all(hub)
        return [m.to_dict() for m in found]

    @app.post("/_standin/reset")
    async def reset() -> dict[str, bool]:
        store.reset()
        failures.clear()
        return {"reset": True}

    @app.api_route("/api/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
    async def data_plane(request: Request, rest: str) -> Response:
        parts = [p for p in rest.split("/") if p]
        version = "v1"
        if parts[:1] == ["v1"]:
            parts = parts[1:]
        else:
            version = request.query_params.get("api-version") or "2022-06-01"
        if parts == ["health"]:
            return Response(status_code=200)
        if len(parts) < 2 or parts[0] != "hubs":
            return _error(404, f"no such API: /api/{rest}")
        if access_key is not None:
            denied = _check_auth(request, access_key)
            if denied is not None:
                return denied
        status = failures.take()
        if status is not None:
            return _error(status, "injected failure")
        hub = parts[1]
        if not _HUB.match(hub):
            return _error(400, f"invalid hub name {hub!r}")
        hub = hub.lower()
        tail = parts[2:]
        explicit_send = bool(tail) and tail[-1] == ":send"
        if explicit_send:
            tail = tail[:-1]
        if version != "v1" and not explicit_send and request.method == "POST":
            return _error(404, "2022-06-01 sends end with /:send")
        if request.method in ("PUT", "DELETE") and len(tail) == 4:
            return _membership(store, request.method, hub, tail)
        if request.method != "POST":
            return _error(405, f"{request.method} not allowed here")
        audience: Audience
        if not tail:
            audience, key = "all", None
        elif len(tail) == 2 and tail[0] in ("users", "groups", "connections"):
            audience = {"users": "user", "groups": "group", "connections": "connection"}[tail[0]]
            key = tail[1]
        else:
            return _error(404, f"no such API: /api/{rest}")
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "body must be JSON")
        if not isinstance(body, dict) or not isinstance(body.get("target"), str):
            return _error(400, "body must be an object with a string 'target'")
        if not body["target"]:
            return _error(400, "'target' must not be empty")
        arguments = body.get("arguments", [])
        if not isinstance(arguments, list):
            return _error(400, "'arguments' must be an array")
        store.record(
            SignalRMessage(
                hub=hub,
                audience=audience,
                target=body["target"],
                arguments=arguments,
                user_id=key if audience == "user" else None,
                group=key if audience == "group" else None,
                connection_id=key if audience == "connection" else None,
                excluded=tuple(request.query_params.getlist("excluded")),
                group_members=store.group_members(hub, key)
                if audience == "group" and key
                else frozenset(),
                api_version=version,
                received_at=store.clock(),
            )
        )
        return Response(status_code=202)

    return app


def _check_auth(request: Request, access_key: str) -> Response | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        return _error(401, "missing 'Authorization: Bearer <token>'")
    url = str(request.url)
    audiences = {url, url.split("?", 1)[0]}
    try:
        verify_token(header[7:].strip(), access_key, audiences)
    except TokenError as exc:
        return _error(401, str(exc))
    return None


def _membership(store: SignalRStore, method: str, hub: str, tail: list[str]) -> Response:
    if tail[0] == "groups" and tail[2] == "users":
        group, user = tail[1], tail[3]
    elif tail[0] == "users" and tail[2] == "groups":
        user, group = tail[1], tail[3]
    else:
        return _error(404, "no such membership API")
    if method == "PUT":
        store.add_to_group(hub, group, user)
    else:
        store.remove_from_group(hub, group, user)
    return Response(status_code=200)


class SignalRServer(HttpStandin):
    """SignalR REST stand-in on a free port; `connection_string` goes into
    `AzureSignalRConnectionString`, `store` answers what each user received."""

    def __init__(
        self,
        *,
        access_key: str | None = DEFAULT_ACCESS_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        store: SignalRStore | None = None,
    ) -> None:
        self.access_key = access_key
        self.store = store or SignalRStore()
        self._failures = _Failures()
        self.app = create_app(self.store, access_key=access_key, failures=self._failures)
        self._runner = ServerThread(self.app, host=host, port=port, name="signalr-standin")

    @property
    def connection_string(self) -> str:
        """`Endpoint=http://127.0.0.1:<port>;AccessKey=...;Version=1.0;`."""
        return str(ConnectionString(self.url, self.access_key or DEFAULT_ACCESS_KEY))

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next `count` data-plane requests answer `status` (outage drills)."""
        self._failures.add(count, status)

    def reset(self) -> None:
        self.store.reset()
        self._failures.clear()

    @property
    def messages(self) -> list[SignalRMessage]:
        return self.store.all()

    def for_user(self, user: str, hub: str | None = None, **kw: Any) -> list[SignalRMessage]:
        return self.store.for_user(user, hub, **kw)

    def wait_for_user(self, user: str, hub: str | None = None, **kw: Any) -> list[SignalRMessage]:
        return self.store.wait_for_user(user, hub, **kw)
