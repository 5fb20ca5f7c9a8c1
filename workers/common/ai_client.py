"""Azure AI model-inference chat-completions client with the seed's error codes.

POST `{endpoint}/chat/completions?api-version=...` with an OpenAI-shaped body whose `model`
selects the deployment. Failures map to `ProcessingError` codes the retry policy reads:
429 → RATE_LIMIT (Retry-After honoured as a minimum delay), timeout → TIMEOUT, connection
failure → NETWORK_ERROR, other 4xx → INVALID_PAYLOAD, 5xx → AI_SERVER_ERROR (transient),
and an unparseable response → AI_BAD_OUTPUT.
"""

from __future__ import annotations

import email.utils
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from workers.common.errors import ErrorCode, ProcessingError


@dataclass(frozen=True)
class ModelRoute:
    """Which endpoint serves a model, and the model (deployment) name sent in the body."""

    endpoint: str
    model: str


@dataclass(frozen=True)
class ChatCompletion:
    content: str
    model: str
    input_tokens: int
    output_tokens: int


def parse_retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or data["error"])[:300]
    return str(data)[:300]


def map_http_error(response: httpx.Response, what: str) -> ProcessingError:
    status = response.status_code
    detail = f"{what} returned HTTP {status}: {_error_text(response)}"
    if status == 429:
        return ProcessingError(
            ErrorCode.RATE_LIMIT, detail, retry_after=parse_retry_after(response.headers)
        )
    if status == 408:
        return ProcessingError(ErrorCode.TIMEOUT, detail)
    if 400 <= status < 500:
        return ProcessingError(ErrorCode.INVALID_PAYLOAD, detail)
    return ProcessingError(ErrorCode.AI_SERVER_ERROR, detail)


def map_transport_error(exc: httpx.HTTPError, what: str) -> ProcessingError:
    if isinstance(exc, httpx.TimeoutException):
        return ProcessingError(ErrorCode.TIMEOUT, f"{what} timed out: {exc!r}")
    return ProcessingError(ErrorCode.NETWORK_ERROR, f"{what} unreachable: {exc!r}")


class AIClient:
    """Thin async client; one shared httpx.AsyncClient for all endpoints."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str = "",
        api_version: str = "2024-05-01-preview",
        timeout_seconds: float = 60.0,
    ) -> None:
        self.http = http
        self.api_key = api_key
        self.api_version = api_version
        self.timeout = httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            # Azure OpenAI-style resources read `api-key`; serverless and Foundry model
            # endpoints read a bearer token. Sending both works with either.
            headers["api-key"] = self.api_key
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def chat(
        self,
        route: ModelRoute,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        max_tokens: int,
    ) -> ChatCompletion:
        url = route.endpoint.rstrip("/") + "/chat/completions"
        body = {
            "model": route.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        what = f"model {route.model}"
        try:
            response = await self.http.post(
                url,
                params={"api-version": self.api_version},
                json=body,
                headers=self._headers(),
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, what) from exc
        if response.status_code >= 400:
            raise map_http_error(response, what)
        return _parse_completion(response, route.model)

    async def ensure_url_exists(self, url: str) -> None:
        """HEAD the media URL; 404/410 means VIDEO_NOT_FOUND (falls back to GET on 405)."""
        what = f"media URL {url}"
        try:
            response = await self.http.head(url, timeout=self.timeout, follow_redirects=True)
            if response.status_code in (405, 501):
                async with self.http.stream(
                    "GET", url, timeout=self.timeout, follow_redirects=True
                ) as streamed:
                    response = streamed
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, what) from exc
        if response.status_code in (404, 410):
            raise ProcessingError(
                ErrorCode.VIDEO_NOT_FOUND, f"{what} returned HTTP {response.status_code}"
            )
        if response.status_code >= 400:
            raise map_http_error(response, what)


def _parse_completion(response: httpx.Response, model: str) -> ChatCompletion:
    try:
        data = response.json()
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ProcessingError(
            ErrorCode.AI_BAD_OUTPUT,
            f"model {model} returned a response without choices[0].message.content",
        ) from exc
    if not isinstance(content, str):
        raise ProcessingError(ErrorCode.AI_BAD_OUTPUT, f"model {model} returned non-text content")
    usage = data.get("usage") or {}
    return ChatCompletion(
        content=content,
        model=str(data.get("model") or model),
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_json_object(content: str, model: str) -> dict[str, Any]:
    """Parse a model's JSON answer (tolerating a ```json fence) or raise AI_BAD_OUTPUT."""
    text = content.strip()
    match = _FENCE.match(text)
    if match:
        text = match.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProcessingError(
            ErrorCode.AI_BAD_OUTPUT, f"model {model} did not return JSON: {text[:120]!r}"
        ) from exc
    if not isinstance(data, dict):
        raise ProcessingError(
            ErrorCode.AI_BAD_OUTPUT,
            f"model {model} returned JSON {type(data).__name__}, not an object",
        )
    return data


def non_empty_lines(content: str) -> list[str]:
    """Lines of a list answer, without bullets or numbering."""
    lines = []
    for line in content.splitlines():
        cleaned = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()
        if cleaned:
            lines.append(cleaned)
    return lines
