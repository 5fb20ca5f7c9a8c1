"""Webhook sink: records every request and can misbehave for the next N on demand.

Creators' webhook URLs point here in tests. Besides recording (method, path, headers,
body), it can answer an error status or hang (bounded — a hang never outlives `max_hang`
or `stop()`) for the next N requests, which is how tests show the notifier's timeout and
failure counting without a flaky real endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from standins._http_runner import Holds, HttpStandin, ServerThread
from standins._recorder import Recorder

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = field(repr=False)
    status: int = 0
    outcome: str = "ok"
    received_at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def signature_valid(self, secret: str, header: str = "X-Huntaze-Signature") -> bool:
        """True when `header` is `sha256=<hex HMAC of the exact body>` under `secret`."""
        sent = self.header(header) or ""
        return hmac.compare_digest(sent, hmac_sha256_signature(secret, self.body))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "status": self.status,
            "outcome": self.outcome,
            "receivedAt": self.received_at,
        }


def hmac_sha256_signature(secret: str, body: bytes) -> str:
    """The `sha256=<hex>` signature scheme webhook senders use over the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Misbehaviour:
    kind: str  # "error" | "hang"
    status: int
    seconds: float
    body: bytes


class WebhookBehaviour:
    """Queue of misbehaviours for the next requests, plus the default answer."""

    def __init__(self, *, default_status: int = 200, max_hang: float = 30.0) -> None:
        self.default_status = default_status
        self.max_hang = max_hang
        self._queue: deque[_Misbehaviour] = deque()
        self._lock = threading.Lock()

    def fail_next(self, count: int = 1, status: int = 500, body: bytes | str = b"") -> None:
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._queue.extend([_Misbehaviour("error", status, 0.0, data)] * count)

    def hang_next(self, count: int = 1, seconds: float | None = None, status: int = 504) -> None:
        """Hold the next `count` requests open for `seconds` (≤ max_hang), then answer `status`."""
        hold = self.max_hang if seconds is None else min(seconds, self.max_hang)
        with self._lock:
            self._queue.extend([_Misbehaviour("hang", status, hold, b"")] * count)

    def take(self) -> _Misbehaviour | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)


def create_app(
    requests: Recorder[WebhookRequest], behaviour: WebhookBehaviour, holds: Holds
) -> FastAPI:
    app = FastAPI(title="Webhook sink", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/_standin/requests")
    async def list_requests() -> list[dict[str, Any]]:
        return [r.to_dict() for r in requests]

    @app.post("/_standin/reset")
    async def reset() -> dict[str, bool]:
        requests.clear()
        behaviour.clear()
        return {"reset": True}

    @app.api_route("/{path:path}", methods=_METHODS)
    async def sink(request: Request, path: str) -> Response:
        body = await request.body()
        plan = behaviour.take()
        status, outcome, answer = behaviour.default_status, "ok", b'{"received":true}'
        if plan is not None and plan.kind == "error":
            status, outcome, answer = plan.status, "error", plan.body
        record = WebhookRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            status=status if plan is None or plan.kind != "hang" else plan.status,
            outcome="hang" if plan is not None and plan.kind == "hang" else outcome,
            received_at=time.time(),
        )
        # Record before hanging, so a test can see the request arrived while it is held.
        requests.append(record)
        if plan is not None and plan.kind == "hang":
            await holds.wait(plan.seconds)
            return JSONResponse({"error": "hung on purpose"}, status_code=plan.status)
        if status >= 400:
            return Response(answer, status_code=status)
        return Response(answer, status_code=status, media_type="application/json")

    return app


class WebhookSink(HttpStandin):
    """`with WebhookSink() as hooks:` → `hooks.url_for("/creator-1")`, `hooks.requests`,
    `hooks.fail_next(2, 503)`, `hooks.hang_next(1, seconds=10)`, `hooks.wait_for(...)`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_status: int = 200,
        max_hang: float = 30.0,
    ) -> None:
        self.requests: Recorder[WebhookRequest] = Recorder("webhook requests")
        self.behaviour = WebhookBehaviour(default_status=default_status, max_hang=max_hang)
        self.holds = Holds()
        self.app = create_app(self.requests, self.behaviour, self.holds)
        self._runner = ServerThread(self.app, host=host, port=port, name="webhook-standin")
        self._runner.before_stop.append(self.holds.release_all)

    def url_for(self, path: str = "/hook") -> str:
        return self.url + "/" + path.lstrip("/")

    def fail_next(self, count: int = 1, status: int = 500, body: bytes | str = b"") -> None:
        self.behaviour.fail_next(count, status, body)

    def hang_next(self, count: int = 1, seconds: float | None = None, status: int = 504) -> None:
        self.behaviour.hang_next(count, seconds, status)

    def release(self) -> None:
        """End all current hangs now."""
        self.holds.release_all()

    def reset(self) -> None:
        self.requests.clear()
        self.behaviour.clear()

    def to_path(self, path: str) -> list[WebhookRequest]:
        path = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path == path]

    def wait_for(
        self, path: str | None = None, *, count: int = 1, timeout: float = 5.0
    ) -> list[WebhookRequest]:
        wanted = None if path is None else "/" + path.lstrip("/")
        return self.requests.wait_for(
            None if wanted is None else (lambda r: r.path == wanted), count=count, timeout=timeout
        )
