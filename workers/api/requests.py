"""What the job API accepts: one route per job type, the body limits, the idempotency key.

Everything here runs before the API writes or sends anything, so a rejected request
leaves no job row and no message behind. Each rejection is a `Rejected` carrying the
HTTP status and a body that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from workers.common.contracts import JobType

# Service Bus Standard refuses messages over 256 KiB (body, properties and headers); a
# request that large can never be queued, so it is refused before anything is written.
MAX_REQUEST_BYTES = 256 * 1024
# Room kept for the message's headers and application properties.
MESSAGE_OVERHEAD_BYTES = 2 * 1024
MAX_MESSAGE_BODY_BYTES = MAX_REQUEST_BYTES - MESSAGE_OVERHEAD_BYTES

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_IDEMPOTENCY_KEY_LENGTH = 255


class Rejected(Exception):
    """A request refused before any effect: HTTP `status` with a JSON `body`."""

    def __init__(self, status: int, error: str, details: list[str], **extra: Any) -> None:
        super().__init__(f"{status} {error}: {'; '.join(details)}")
        self.status = status
        self.body: dict[str, Any] = {"error": error, "details": details, **extra}


class _Request(BaseModel):
    # strict: a number where a string belongs is a client bug, not something to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)

    creatorId: str = Field(min_length=1, max_length=128)


class VideoAnalysisRequest(_Request):
    videoUrl: AnyHttpUrl
    videoId: str | None = Field(default=None, max_length=200)


class ChatSuggestionsRequest(_Request):
    fanMessage: str = Field(min_length=1, max_length=4000)
    context: Any = None


class ContentSuggestionsRequest(_Request):
    contentType: str = Field(min_length=1, max_length=200)
    tone: str = Field(min_length=1, max_length=200)
    topic: str | None = Field(default=None, max_length=500)


class ContentAnalysisRequest(_Request):
    contentId: str = Field(min_length=1, max_length=200)
    contentType: str = Field(min_length=1, max_length=200)
    contentUrl: AnyHttpUrl


def _payload(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"creatorId"}, exclude_none=True)


def _chat_payload(body: BaseModel) -> dict[str, Any]:
    assert isinstance(body, ChatSuggestionsRequest)
    return {"fanMessage": body.fanMessage, "context": body.context}  # the seed sends null too


@dataclass(frozen=True)
class JobRoute:
    """`POST /api/jobs/<name>`: its job type, request model and payload mapping."""

    name: str
    job_type: JobType
    model: type[_Request]
    label: str
    payload: Callable[[BaseModel], dict[str, Any]] = _payload


ROUTES: dict[str, JobRoute] = {
    r.name: r
    for r in (
        JobRoute("video-analysis", JobType.VIDEO_ANALYSIS, VideoAnalysisRequest, "Video analysis"),
        JobRoute(
            "chat-suggestions",
            JobType.CHAT_SUGGEST,
            ChatSuggestionsRequest,
            "Chat suggestions",
            _chat_payload,
        ),
        JobRoute(
            "content-suggestions",
            JobType.CONTENT_SUGGEST,
            ContentSuggestionsRequest,
            "Content suggestions",
        ),
        JobRoute(
            "content-analysis", JobType.CONTENT_ANALYZE, ContentAnalysisRequest, "Content analysis"
        ),
    )
}


def route_for(name: str) -> JobRoute:
    route = ROUTES.get(name)
    if route is None:
        raise Rejected(
            404,
            "Unknown job type",
            [f"no job type {name!r}; POST to /api/jobs/<type> with one of: {', '.join(ROUTES)}"],
            jobTypes=list(ROUTES),
        )
    return route


def _too_large(size: str) -> Rejected:
    return Rejected(
        413,
        "Request too large",
        [f"body is {size}; the limit is {MAX_REQUEST_BYTES} bytes (Service Bus message limit)"],
    )


async def read_body(
    chunks: AsyncIterable[bytes], content_length: str | None, limit: int = MAX_REQUEST_BYTES
) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` (declared or streamed)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise _too_large(f"{content_length} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _too_large(f"over {limit} bytes")
    return bytes(body)


def decode_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(400, "Invalid JSON", [f"body is not valid JSON: {exc}"]) from exc
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise Rejected(400, "Invalid JSON", [f"body must be a JSON object, got {kind}"])
    return data


def validate(route: JobRoute, data: dict[str, Any]) -> _Request:
    try:
        return route.model.model_validate(data)
    except ValidationError as exc:
        details = []
        for item in exc.errors():
            loc = ".".join(str(p) for p in item.get("loc", ())) or "body"
            details.append(f"{loc}: {item.get('msg')}")
        raise Rejected(400, "Invalid request", details) from exc


def check_message_size(body: bytes) -> None:
    """The message the API would send must fit too (the envelope adds to the request)."""
    if len(body) > MAX_MESSAGE_BODY_BYTES:
        raise Rejected(
            413,
            "Request too large",
            [
                f"the job message would be {len(body)} bytes; at most {MAX_MESSAGE_BODY_BYTES} "
                "fit in a Service Bus message with its properties"
            ],
        )


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    fits = 0 < len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH
    if not (fits and value.isascii() and value.isprintable()):
        raise Rejected(
            400,
            "Invalid Idempotency-Key",
            [
                f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable "
                "ASCII characters"
            ],
        )
    return value


def request_hash(route: JobRoute, data: dict[str, Any]) -> str:
    """Hash of the route and the JSON value (key order and whitespace do not matter)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{route.name}\n{canonical}".encode()).hexdigest()
