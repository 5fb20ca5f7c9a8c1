"""The work of each job type: prompts, AI calls and the seed's result shapes.

Handlers are plain classes with `run(job, ctx)`; the processor owns status, events,
retries and settlement, so a handler only does its job and reports progress and usage.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, TypeVar

from workers.common.ai_client import (
    AIClient,
    ChatCompletion,
    ModelRoute,
    non_empty_lines,
    parse_json_object,
)
from workers.common.contracts import (
    ChatPayload,
    ContentAnalyzePayload,
    ContentSuggestPayload,
    InvalidMessage,
    JobMessage,
    JobType,
    VideoPayload,
    validate_payload,
)
from workers.common.errors import ErrorCode, ProcessingError


class JobContext(Protocol):
    """What the processor offers a running handler."""

    async def progress(self, percent: int) -> None:
        """Record and publish progress; also checks the soft deadline."""
        ...

    async def track_usage(self, completion: ChatCompletion) -> None:
        """Report token usage of one AI call (becomes a cost metric event)."""
        ...


class JobHandler(Protocol):
    job_type: JobType

    async def run(self, job: JobMessage, ctx: JobContext) -> Any: ...


T = TypeVar("T")


def _payload(job: JobMessage, model: type[T]) -> T:
    try:
        payload = validate_payload(job)
    except InvalidMessage as exc:
        raise ProcessingError(ErrorCode.INVALID_PAYLOAD, exc.description) from exc
    if not isinstance(payload, model):
        raise ProcessingError(ErrorCode.INVALID_PAYLOAD, f"{job.job_type} payload mismatch")
    return payload


class VideoAnalysisHandler:
    """Phi-4 multimodal over the video URL; progress 10 (fetched) and 30 (frames)."""

    job_type = JobType.VIDEO_ANALYSIS

    def __init__(self, ai: AIClient, route: ModelRoute) -> None:
        self.ai = ai
        self.route = route

    async def run(self, job: JobMessage, ctx: JobContext) -> dict[str, Any]:
        payload = _payload(job, VideoPayload)
        url = str(payload.video_url)
        await self.ai.ensure_url_exists(url)
        await ctx.progress(10)
        await ctx.progress(30)
        completion = await self.ai.chat(
            self.route,
            [
                {
                    "role": "system",
                    "content": (
                        "You analyse short videos for content trends. Answer with one JSON "
                        'object: {"scenes": [...], "objects": [...], "transcript": "...", '
                        '"sentiment": "positive|neutral|negative"}.'
                    ),
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Analyze this video for content trends."},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                },
            ],
            temperature=0.3,
            max_tokens=2000,
        )
        await ctx.track_usage(completion)
        data = parse_json_object(completion.content, self.route.model)
        return {
            "scenes": _list(data.get("scenes"), "scenes", self.route.model),
            "objects": _list(data.get("objects"), "objects", self.route.model),
            "transcript": str(data.get("transcript") or ""),
            "sentiment": str(data.get("sentiment") or "neutral"),
        }


class ChatSuggestHandler:
    """Three reply suggestions from phi4 (seed `generateChatSuggestions`)."""

    job_type = JobType.CHAT_SUGGEST

    def __init__(self, ai: AIClient, route: ModelRoute) -> None:
        self.ai = ai
        self.route = route

    async def run(self, job: JobMessage, ctx: JobContext) -> list[str]:
        payload = _payload(job, ChatPayload)
        completion = await self.ai.chat(
            self.route,
            [
                {
                    "role": "system",
                    "content": "Generate 3 smart reply suggestions for a creator's fan chat, "
                    "one per line.",
                },
                {
                    "role": "user",
                    "content": f"Fan message: {payload.fan_message}\n"
                    f"Context: {json.dumps(payload.context)}",
                },
            ],
            temperature=0.7,
            max_tokens=300,
        )
        await ctx.track_usage(completion)
        suggestions = non_empty_lines(completion.content)[:3]
        if not suggestions:
            raise ProcessingError(
                ErrorCode.AI_BAD_OUTPUT, f"model {self.route.model} returned no suggestions"
            )
        return suggestions


class ContentSuggestHandler:
    """Content ideas from deepseek (seed `generateContentSuggestions`)."""

    job_type = JobType.CONTENT_SUGGEST

    def __init__(self, ai: AIClient, route: ModelRoute) -> None:
        self.ai = ai
        self.route = route

    async def run(self, job: JobMessage, ctx: JobContext) -> dict[str, Any]:
        payload = _payload(job, ContentSuggestPayload)
        completion = await self.ai.chat(
            self.route,
            [
                {"role": "system", "content": "Generate content suggestions, one per line."},
                {
                    "role": "user",
                    "content": f"Type: {payload.content_type}\nTone: {payload.tone}\n"
                    f"Topic: {payload.topic or 'general'}",
                },
            ],
            temperature=0.8,
            max_tokens=500,
        )
        await ctx.track_usage(completion)
        suggestions = non_empty_lines(completion.content)
        if not suggestions:
            raise ProcessingError(
                ErrorCode.AI_BAD_OUTPUT, f"model {self.route.model} returned no suggestions"
            )
        return {"suggestions": suggestions, "model": self.route.model}


class ContentAnalyzeHandler:
    """Engagement analysis from deepseek (seed `analyzeContent`), asked for as JSON."""

    job_type = JobType.CONTENT_ANALYZE

    def __init__(self, ai: AIClient, route: ModelRoute) -> None:
        self.ai = ai
        self.route = route

    async def run(self, job: JobMessage, ctx: JobContext) -> dict[str, Any]:
        payload = _payload(job, ContentAnalyzePayload)
        completion = await self.ai.chat(
            self.route,
            [
                {
                    "role": "system",
                    "content": "Analyze content performance and engagement. Answer with one "
                    'JSON object: {"engagement": 0-100, "sentiment": "...", '
                    '"recommendations": ["..."]}.',
                },
                {
                    "role": "user",
                    "content": f"Analyze content {payload.content_id} "
                    f"({payload.content_type}): {payload.content_url}",
                },
            ],
            temperature=0.4,
            max_tokens=800,
        )
        await ctx.track_usage(completion)
        data = parse_json_object(completion.content, self.route.model)
        engagement = data.get("engagement", 0)
        if not isinstance(engagement, int | float) or isinstance(engagement, bool):
            raise ProcessingError(
                ErrorCode.AI_BAD_OUTPUT,
                f"model {self.route.model} returned a non-numeric engagement {engagement!r}",
            )
        return {
            "engagement": engagement,
            "sentiment": str(data.get("sentiment") or "neutral"),
            "recommendations": _list(
                data.get("recommendations"), "recommendations", self.route.model
            ),
        }


def _list(value: Any, name: str, model: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProcessingError(
            ErrorCode.AI_BAD_OUTPUT, f"model {model} returned {name} that is not a list"
        )
    return value
