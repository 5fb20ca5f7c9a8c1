"""The AI stand-in's behaviour: one model shared by the HTTP server and the respx router.

`AIBehaviour.handle()` takes a request (method, path, query, headers, body) and returns a
`Reply` (status, headers, body, delay) without doing any I/O, so both faces answer
identically and the decision logic — auth, routing, faults, latency, answers — is tested
once. Randomness comes from an injected source (`random.Random(seed)` by default) so a
fault profile is reproducible; scripted faults (`enqueue`) are exact, for tests that need
"the next call is a 429".

Paths served (Azure AI model inference and Azure OpenAI shapes):
  POST /chat/completions, /models/chat/completions     model from the body (shared endpoint)
  POST /{deployment}/chat/completions                  one endpoint per deployment
  POST /openai/deployments/{deployment}/chat/completions
  HEAD|GET /media/{name}                               media the video worker checks exists
                                                       (names starting "missing" → 404)
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from standins._recorder import Recorder
from standins.ai.answers import AnswerKind, answer, count_tokens, text_of
from standins.ai.faults import Fault, FaultProfile, Latency, RandomSource


@dataclass(frozen=True)
class Deployment:
    """A served model. `setting` names the worker setting that holds its endpoint."""

    name: str
    answer: AnswerKind = AnswerKind.AUTO
    setting: str | None = None
    latency: Latency | None = None


# The seed's deployments and the settings the workers read their endpoints from.
DEFAULT_DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment("phi-4-multimodal", setting="AZURE_PHI4_MULTIMODAL_ENDPOINT"),
    Deployment("phi4", setting="AZURE_PHI4_ENDPOINT"),
    Deployment("deepseek", setting="AZURE_DEEPSEEK_V3_ENDPOINT"),
    Deployment("deepseek-r1", setting="AZURE_DEEPSEEK_R1_ENDPOINT"),
)


@dataclass(frozen=True)
class Reply:
    """What to answer, after waiting `delay` seconds."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay: float = 0.0


@dataclass(frozen=True)
class AICall:
    """One recorded request and how it was answered."""

    method: str
    path: str
    deployment: str | None
    model: str | None
    api_version: str | None
    headers: dict[str, str]
    body: Any
    status: int
    outcome: str
    delay: float
    content: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    at: float = 0.0

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "deployment": self.deployment,
            "model": self.model,
            "apiVersion": self.api_version,
            "status": self.status,
            "outcome": self.outcome,
            "delay": self.delay,
            "content": self.content,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "at": self.at,
        }


Responder = str | Callable[[str, list[dict[str, Any]]], str]

_JSON = {"content-type": "application/json"}


def _error(status: int, code: str, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message, "status": status}})
    return Reply(status, {**_JSON, **headers}, body.encode())


class AIBehaviour:
    """Deployments, api-key, faults, latency and answers; records every call."""

    def __init__(
        self,
        deployments: Iterable[Deployment | str] = DEFAULT_DEPLOYMENTS,
        *,
        api_key: str | None = None,
        faults: FaultProfile | None = None,
        latency: Latency | None = None,
        rng: RandomSource | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        require_api_version: bool = True,
    ) -> None:
        self.deployments: dict[str, Deployment] = {}
        for d in deployments:
            dep = Deployment(d) if isinstance(d, str) else d
            self.deployments[dep.name] = dep
        self.api_key = api_key
        self.faults = faults or FaultProfile()
        self.latency = latency or Latency.none()
        self.rng: RandomSource = rng if rng is not None else random.Random(seed)
        self.clock = clock
        self.require_api_version = require_api_version
        self.calls: Recorder[AICall] = Recorder("AI calls")
        self._lock = threading.Lock()
        self._scripted: deque[tuple[str | None, Fault]] = deque()
        self._responders: dict[str, Responder] = {}
        self._sequence = 0

    # -- configuration (any thread) -------------------------------------------------------

    def set_faults(self, profile: FaultProfile) -> None:
        with self._lock:
            self.faults = profile

    def enqueue(self, *faults: Fault, model: str | None = None) -> None:
        """Script faults for the next calls (of `model`, or of any model), in order."""
        with self._lock:
            self._scripted.extend((model, f) for f in faults)

    def respond(self, model: str, content: Responder) -> None:
        """Fix `model`'s answer: a string, or `fn(model, messages) -> str`."""
        with self._lock:
            self._responders[model] = content

    def reset(self) -> None:
        """Forget calls, scripted faults and fixed answers (the profile stays)."""
        with self._lock:
            self._scripted.clear()
            self._responders.clear()
        self.calls.clear()

    # -- queries --------------------------------------------------------------------------

    def calls_for(self, model: str) -> list[AICall]:
        return [c for c in self.calls if c.model == model]

    def wait_for_calls(
        self, count: int = 1, *, model: str | None = None, timeout: float = 5.0
    ) -> list[AICall]:
        return self.calls.wait_for(
            None if model is None else (lambda c: c.model == model), count=count, timeout=timeout
        )

    # -- the request path -----------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        """Decide the reply to one request and record it."""
        lowered = {k.lower(): v for k, v in headers.items()}
        clean = "/" + path.strip("/")
        parts = [p for p in clean.split("/") if p]
        if len(parts) == 2 and parts[0] == "media":
            return self._media(method, parts[1])
        deployment = self._route(parts)
        record = _Record(method=method, path=clean, headers=lowered, query=query)
        if deployment is None:
            return self._finish(record, _error(404, "NotFound", f"no such route {clean}"))
        if method.upper() != "POST":
            return self._finish(record, _error(405, "MethodNotAllowed", f"{method} {clean}"))
        if self.api_key is not None and not self._authorized(lowered):
            return self._finish(
                record,
                _error(
                    401,
                    "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. "
                    "Send a valid key in the 'api-key' or 'Authorization: Bearer' header.",
                ),
            )
        api_version = query.get("api-version")
        record.api_version = api_version
        if self.require_api_version and not api_version:
            return self._finish(
                record,
                _error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                ),
            )
        try:
            data = json.loads(body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._finish(record, _error(400, "InvalidJson", f"body is not JSON: {exc}"))
        record.body = data
        if not isinstance(data, dict):
            return self._finish(record, _error(400, "InvalidRequest", "body must be an object"))
        model = data.get("model")
        if deployment == "":
            if not isinstance(model, str) or not model:
                return self._finish(
                    record, _error(400, "MissingModel", "'model' is required on this endpoint")
                )
            deployment = model
        if deployment not in self.deployments:
            record.model = model if isinstance(model, str) else deployment
            return self._finish(
                record,
                _error(
                    400,
                    "unknown_model",
                    f"Unknown model: {deployment}. Deployed: "
                    + ", ".join(sorted(self.deployments)),
                ),
            )
        record.deployment = deployment
        record.model = deployment
        if model is not None and model != deployment:
            record.model = str(model)
            return self._finish(
                record,
                _error(
                    400,
                    "unknown_model",
                    f"Model {model!r} is not served by the endpoint of deployment {deployment!r}",
                ),
            )
        messages = data.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and "role" in m for m in messages)
        ):
            return self._finish(
                record,
                _error(
                    422,
                    "InvalidMessages",
                    "'messages' must be a non-empty list of objects with a 'role'",
                ),
            )
        return self._finish(record, self._answer(deployment, messages, data, record))

    def _route(self, parts: list[str]) -> str | None:
        """'' for the shared endpoint, a deployment name, or None for no route."""
        if parts[-2:] != ["chat", "completions"]:
            return None
        prefix = parts[:-2]
        if prefix in ([], ["models"]):
            return ""
        if len(prefix) == 3 and prefix[:2] == ["openai", "deployments"]:
            return prefix[2]
        if len(prefix) == 1:
            return prefix[0] if prefix[0] in self.deployments else None
        return None

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        if headers.get("api-key") == self.api_key:
            return True
        auth = headers.get("authorization", "")
        return auth[:7].lower() == "bearer " and auth[7:].strip() == self.api_key

    def _media(self, method: str, name: str) -> Reply:
        if method.upper() not in ("GET", "HEAD"):
            return Reply(405, {}, b"")
        if name.startswith("missing"):
            return Reply(404, {"content-type": "text/plain"}, b"not found")
        body = b"" if method.upper() == "HEAD" else b"\x00\x00\x00\x18ftypmp42"
        return Reply(200, {"content-type": "video/mp4", "content-length": "12"}, body)

    def _next_fault(self, model: str) -> Fault | None:
        with self._lock:
            for i, (target, fault) in enumerate(self._scripted):
                if target is None or target == model:
                    del self._scripted[i]
                    return fault
            profile = self.faults
        if not profile.applies_to(model):
            return None
        draw = (
            self.rng.random()
            if (profile.rate_limit or profile.server_error or profile.malformed)
            else 1.0
        )
        fault: Fault | None = None
        if draw < profile.rate_limit:
            fault = Fault.rate_limit(profile.retry_after)
        elif draw < profile.rate_limit + profile.server_error:
            statuses = profile.server_error_statuses
            fault = Fault.server_error(statuses[int(self.rng.random() * len(statuses))])
        elif draw < profile.rate_limit + profile.server_error + profile.malformed:
            fault = Fault.malformed(profile.malformed_variant)
        if fault is None and profile.slow and self.rng.random() < profile.slow:
            fault = Fault.slow(profile.slow_seconds)
        return fault

    def _answer(
        self, model: str, messages: list[dict[str, Any]], data: dict[str, Any], record: _Record
    ) -> Reply:
        fault = self._next_fault(model)
        deployment = self.deployments[model]
        latency = (deployment.latency or self.latency).sample(self.rng)
        if fault is not None and fault.kind == "rate_limit":
            seconds = fault.retry_after
            record.outcome = "rate_limited"
            return _error(
                429,
                "429",
                f"Requests to {model} have exceeded the rate limit. "
                f"Retry after {seconds:g} seconds.",
                **{
                    "retry-after": str(max(0, math.ceil(seconds))),
                    "retry-after-ms": str(int(seconds * 1000)),
                },
            )
        if fault is not None and fault.kind == "server_error":
            record.outcome = "server_error"
            reply = _error(
                fault.status,
                "InternalServerError",
                "The server had an error while processing your request.",
            )
            return replace(reply, delay=latency)
        if fault is not None and fault.kind == "malformed":
            record.outcome = "malformed"
            return Reply(200, self._malformed_headers(fault), _MALFORMED[fault.variant], latency)
        if fault is not None and fault.kind == "slow":
            record.outcome = "slow"
            latency += fault.seconds
        with self._lock:
            responder = self._responders.get(model)
            self._sequence += 1
            sequence = self._sequence
        if fault is not None and fault.kind == "bad_content":
            record.outcome = "bad_content"
            content = fault.content
        elif responder is not None:
            content = responder if isinstance(responder, str) else responder(model, messages)
        else:
            content = answer(model, messages, self.deployments[model].answer)
        prompt_tokens = sum(count_tokens(text_of(m.get("content"))) for m in messages)
        completion_tokens = count_tokens(content)
        max_tokens = data.get("max_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and 0 < max_tokens < completion_tokens:
            finish = "length"  # report it, but keep the full answer so parsers still work
        record.content = content
        record.prompt_tokens = prompt_tokens
        record.completion_tokens = completion_tokens
        payload = {
            "id": f"chatcmpl-standin-{sequence:08d}",
            "object": "chat.completion",
            "created": int(self.clock()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "tool_calls": None},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return Reply(200, dict(_JSON), json.dumps(payload).encode(), latency)

    @staticmethod
    def _malformed_headers(fault: Fault) -> dict[str, str]:
        return {"content-type": "text/html"} if fault.variant == "html" else dict(_JSON)

    def _finish(self, record: _Record, reply: Reply) -> Reply:
        if record.outcome == "ok" and reply.status >= 400:
            record.outcome = "rejected"
        self.calls.append(
            AICall(
                method=record.method.upper(),
                path=record.path,
                deployment=record.deployment,
                model=record.model,
                api_version=record.api_version,
                headers=record.headers,
                body=record.body,
                status=reply.status,
                outcome=record.outcome,
                delay=reply.delay,
                content=record.content,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                at=self.clock(),
            )
        )
        return reply


_MALFORMED: dict[str, bytes] = {
    "truncated": b'{"id": "chatcmpl-standin", "object": "chat.completion", "choices": [{"mess',
    "no_choices": b'{"id": "chatcmpl-standin", "object": "chat.completion", "choices": []}',
    "empty": b"",
    "html": b"<html><body>502 Bad Gateway</body></html>",
}


@dataclass
class _Record:
    """Mutable notes taken while deciding a reply; frozen into an AICall at the end."""

    method: str
    path: str
    headers: dict[str, str]
    query: Mapping[str, str]
    deployment: str | None = None
    model: str | None = None
    api_version: str | None = None
    body: Any = None
    outcome: str = "ok"
    content: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
