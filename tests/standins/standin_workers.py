"""Helpers that drive stand-ins with the workers' own code (tests may import workers)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx

from workers.common.ai_client import AIClient
from workers.common.contracts import JobMessage, JobType, parse_job_message
from workers.common.handlers import JobHandler
from workers.common.repository import CreatorRecord, JobRepository
from workers.common.runtime import build_handler
from workers.common.settings import Role, Settings, load_settings

BASE_ENV = {
    "SERVICEBUS_CONNECTION": "Endpoint=sb://localhost/;SharedAccessKeyName=k;SharedAccessKey=v",
    "TOPIC_JOBS": "huntaze-jobs",
    "TOPIC_EVENTS": "huntaze-events",
    "DATABASE_URL": "sqlite://",
    "REDIS_URL": "memory://",
}

PAYLOADS: dict[JobType, dict[str, Any]] = {
    JobType.VIDEO_ANALYSIS: {"videoUrl": "<media>"},
    JobType.CHAT_SUGGEST: {"fanMessage": "love your last post!", "context": {"tier": "vip"}},
    JobType.CONTENT_SUGGEST: {"contentType": "reel", "tone": "playful", "topic": "summer"},
    JobType.CONTENT_ANALYZE: {
        "contentId": "c-1",
        "contentType": "photo",
        "contentUrl": "https://cdn.example.test/c-1.jpg",
    },
}


def settings_for(role: Role, ai_env: Mapping[str, str]) -> Settings:
    """The workers' own settings loader, fed the stand-in's environment."""
    return load_settings(role, {**BASE_ENV, **ai_env})


def job(job_type: JobType, media_url: str = "", job_id: str = "job-1") -> JobMessage:
    payload = dict(PAYLOADS[job_type])
    if "videoUrl" in payload:
        payload["videoUrl"] = media_url
    return parse_job_message(
        json.dumps(
            {
                "jobId": job_id,
                "jobType": job_type.value,
                "creatorId": "creator-1",
                "payload": payload,
                "attempt": 0,
                "createdAt": datetime.now(UTC).isoformat(),
                "deadlineMs": 90_000,
            }
        )
    )


def handler_for(job_type: JobType, settings: Settings, http: httpx.AsyncClient) -> JobHandler:
    """The handler exactly as the workers' runtime wires it (routes from settings)."""
    ai = AIClient(
        http,
        api_key=settings.ai_api_key,
        api_version=settings.ai_api_version,
        timeout_seconds=settings.ai_timeout_seconds,
    )
    return build_handler(job_type, SimpleNamespace(settings=settings, ai=ai))  # type: ignore[arg-type]


class NullContext:
    """The processor's JobContext, reduced to recording what handlers report."""

    def __init__(self) -> None:
        self.percents: list[int] = []
        self.usage: list[Any] = []

    async def progress(self, percent: int) -> None:
        self.percents.append(percent)

    async def track_usage(self, completion: Any) -> None:
        self.usage.append(completion)


async def add_creator(
    repo: JobRepository,
    creator_id: str = "creator-1",
    *,
    email: str | None = "ana@example.test",
    webhook_url: str | None = None,
    secret: str | None = "whsec_1",
) -> None:
    await repo.upsert_creator(CreatorRecord(creator_id, email, "Ana", webhook_url, secret))
