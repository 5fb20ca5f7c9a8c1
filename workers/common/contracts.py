"""Wire contracts of both topics, as the seed defines them, validated on receipt.

Field names on the wire are camelCase (the seed's TypeScript); Python code uses snake_case
through aliases. Validation failures become `InvalidMessage` with a description that says
which field is wrong, because that text ends up as the dead-letter error description.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel


class JobType(StrEnum):
    """The four job types routed by the SQL filters of the jobs topic."""

    VIDEO_ANALYSIS = "video.analysis"
    CHAT_SUGGEST = "chat.suggest"
    CONTENT_SUGGEST = "content.suggest"
    CONTENT_ANALYZE = "content.analyze"


class JobStatus(StrEnum):
    """Job lifecycle; `completed` and `failed` are terminal."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT})

# Subscription of the jobs topic that receives each job type (the seed's routing rules).
SUBSCRIPTION_FOR_JOB_TYPE: dict[JobType, str] = {
    JobType.VIDEO_ANALYSIS: "video-analysis",
    JobType.CHAT_SUGGEST: "chat-suggestions",
    JobType.CONTENT_SUGGEST: "content-suggestions",
    JobType.CONTENT_ANALYZE: "content-analysis",
}

# SLA per job type, as the seed's API routes set `deadlineMs`.
DEFAULT_DEADLINE_MS: dict[JobType, int] = {
    JobType.VIDEO_ANALYSIS: 120_000,
    JobType.CHAT_SUGGEST: 90_000,
    JobType.CONTENT_SUGGEST: 90_000,
    JobType.CONTENT_ANALYZE: 90_000,
}

EVENT_TYPE_JOB_UPDATE = "job.update"
EVENT_TYPE_AI_COST = "metric.ai_cost"
EVENT_TYPE_DLQ_ALERT = "alert.dlq"


class InvalidMessage(ValueError):
    """A message body that can never be processed; `description` says why."""

    def __init__(self, description: str, job_id: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.job_id = job_id


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, coerce_numbers_to_str=True
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class JobMessage(WireModel):
    """Body of a message on the jobs topic (seed `JobMessage`)."""

    job_id: str = Field(min_length=1, max_length=128)
    job_type: JobType
    creator_id: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any]
    attempt: int = Field(ge=0)
    created_at: datetime
    deadline_ms: int = Field(gt=0)

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("createdAt must carry a timezone (ISO 8601 with Z or offset)")
        return value

    def next_attempt(self) -> JobMessage:
        """The copy sent for a retry."""
        return self.model_copy(update={"attempt": self.attempt + 1})


class VideoPayload(WireModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)
    video_url: AnyHttpUrl
    video_id: str | None = None


class ChatPayload(WireModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)
    fan_message: str = Field(min_length=1, max_length=4000)
    context: Any = None


class ContentSuggestPayload(WireModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)
    content_type: str = Field(min_length=1, max_length=200)
    tone: str = Field(min_length=1, max_length=200)
    topic: str | None = Field(default=None, max_length=500)


class ContentAnalyzePayload(WireModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)
    content_id: str = Field(min_length=1, max_length=200)
    content_type: str = Field(min_length=1, max_length=200)
    content_url: AnyHttpUrl


PAYLOAD_MODELS: dict[JobType, type[WireModel]] = {
    JobType.VIDEO_ANALYSIS: VideoPayload,
    JobType.CHAT_SUGGEST: ChatPayload,
    JobType.CONTENT_SUGGEST: ContentSuggestPayload,
    JobType.CONTENT_ANALYZE: ContentAnalyzePayload,
}


class JobError(WireModel):
    """Error object carried by events and stored on failed jobs."""

    code: str
    message: str
    details: Any = None


class EventMessage(WireModel):
    """Body of a job update on the events topic (seed `EventMessage`)."""

    job_id: str
    creator_id: str
    status: JobStatus
    progress: int = Field(default=0, ge=0, le=100)
    message: str | None = None
    result: Any = None
    error: JobError | None = None
    updated_at: datetime
    job_type: JobType | None = None
    attempt: int | None = None


class AICostEvent(WireModel):
    """The seed's `trackAzureAICost` metric, published on the events topic."""

    type: Literal["metric.ai_cost"] = EVENT_TYPE_AI_COST
    job_id: str
    job_type: JobType
    creator_id: str
    model: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    recorded_at: datetime


class DlqAlertEvent(WireModel):
    """Critical dead-letter backlog alert raised by the DLQ triage monitor."""

    type: Literal["alert.dlq"] = EVENT_TYPE_DLQ_ALERT
    severity: Literal["warning", "critical"]
    topic: str
    subscription: str
    dead_letter_count: int
    samples: list[dict[str, Any]] = Field(default_factory=list)
    raised_at: datetime


def _describe(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{prefix}{loc}: {item['msg']}")
    return "; ".join(parts)


def decode_json_object(body: bytes | str) -> dict[str, Any]:
    """Decode a JSON object body or raise InvalidMessage saying what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidMessage(f"body must be a JSON object, got {type(data).__name__}")
    return data


def parse_job_message(body: bytes | str) -> JobMessage:
    """Validate the envelope of a job message (payload is validated separately)."""
    data = decode_json_object(body)
    job_id = data.get("jobId") if isinstance(data.get("jobId"), str) else None
    try:
        return JobMessage.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage("invalid job message: " + _describe(exc), job_id=job_id) from exc


def validate_payload(job: JobMessage) -> WireModel:
    """Validate `job.payload` against its job type's schema."""
    model = PAYLOAD_MODELS[job.job_type]
    try:
        return model.model_validate(job.payload)
    except ValidationError as exc:
        raise InvalidMessage(
            f"invalid payload for {job.job_type.value}: " + _describe(exc, "payload."),
            job_id=job.job_id,
        ) from exc


def job_application_properties(job: JobMessage) -> dict[str, str]:
    """Application properties the API sets on a job message (the SQL filters read jobType)."""
    return {"jobType": job.job_type.value, "jobId": job.job_id, "creatorId": job.creator_id}


def event_application_properties(event: EventMessage) -> dict[str, str]:
    """The seed's event properties, plus `eventType` so subscribers can tell kinds apart."""
    return {
        "jobId": event.job_id,
        "creatorId": event.creator_id,
        "status": event.status.value,
        "eventType": EVENT_TYPE_JOB_UPDATE,
    }


def normalize_properties(props: Any) -> dict[str, Any]:
    """AMQP-decoded application properties may have bytes keys and values; make them str."""
    out: dict[str, Any] = {}
    for key, value in (props or {}).items():
        k = key.decode() if isinstance(key, bytes | bytearray) else str(key)
        v = value.decode() if isinstance(value, bytes | bytearray) else value
        out[k] = v
    return out
