"""AI client error mapping and the handlers' result shapes, against respx-mocked endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from workers_fakes import FakeOutbox, FakeSettler, encode, job_body

from workers.common.ai_client import (
    AIClient,
    ModelRoute,
    non_empty_lines,
    parse_json_object,
    parse_retry_after,
)
from workers.common.contracts import JobType, parse_job_message
from workers.common.errors import ErrorCode, ProcessingError
from workers.common.handlers import (
    ChatSuggestHandler,
    ContentAnalyzeHandler,
    ContentSuggestHandler,
    VideoAnalysisHandler,
)
from workers.common.messaging import ReceivedJob
from workers.common.processor import JobProcessor, Outcome

ENDPOINT = "https://ai.example/models"
CHAT_URL = ENDPOINT + "/chat/completions"
VIDEO_URL = "https://media.example/v.mp4"
ROUTE = ModelRoute(ENDPOINT, "deepseek")


def completion(content: str, *, prompt: int = 12, completion_tokens: int = 34) -> dict[str, Any]:
    return {
        "id": "c1",
        "model": "deepseek",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens},
    }


@pytest.fixture
async def ai() -> AsyncIterator[AIClient]:
    async with httpx.AsyncClient() as http:
        yield AIClient(http, api_key="k3y", api_version="2024-05-01-preview", timeout_seconds=5)


class NullCtx:
    def __init__(self) -> None:
        self.progress_seen: list[int] = []
        self.usage: list[Any] = []

    async def progress(self, percent: int) -> None:
        self.progress_seen.append(percent)

    async def track_usage(self, completion: Any) -> None:
        self.usage.append(completion)


@respx.mock
async def test_workers_chat_request_shape_and_usage(ai: AIClient) -> None:
    route = respx.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion("hello")))
    result = await ai.chat(
        ROUTE, [{"role": "user", "content": "hi"}], temperature=0.5, max_tokens=10
    )
    assert (result.content, result.input_tokens, result.output_tokens) == ("hello", 12, 34)
    request = route.calls.last.request
    assert request.url.params["api-version"] == "2024-05-01-preview"
    assert request.headers["api-key"] == "k3y"
    assert request.headers["authorization"] == "Bearer k3y"
    body = json.loads(request.content)
    assert body == {
        "model": "deepseek",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "max_tokens": 10,
    }


@pytest.mark.parametrize(
    ("response", "code", "transient"),
    [
        (httpx.Response(429, headers={"Retry-After": "7"}), ErrorCode.RATE_LIMIT, True),
        (httpx.Response(408), ErrorCode.TIMEOUT, True),
        (httpx.Response(400, json={"error": {"message": "bad"}}), ErrorCode.INVALID_PAYLOAD, False),
        (httpx.Response(401), ErrorCode.INVALID_PAYLOAD, False),
        (httpx.Response(500), ErrorCode.AI_SERVER_ERROR, True),
        (httpx.Response(503, text="busy"), ErrorCode.AI_SERVER_ERROR, True),
        (httpx.Response(200, text="<html>"), ErrorCode.AI_BAD_OUTPUT, False),
        (httpx.Response(200, json={"choices": []}), ErrorCode.AI_BAD_OUTPUT, False),
        (
            httpx.Response(200, json={"choices": [{"message": {"content": None}}]}),
            ErrorCode.AI_BAD_OUTPUT,
            False,
        ),
    ],
)
@respx.mock
async def test_workers_http_outcomes_map_to_codes(
    ai: AIClient, response: httpx.Response, code: ErrorCode, transient: bool
) -> None:
    respx.post(CHAT_URL).mock(return_value=response)
    with pytest.raises(ProcessingError) as info:
        await ai.chat(ROUTE, [], temperature=0, max_tokens=1)
    assert info.value.code is code
    assert info.value.transient is transient
    if code is ErrorCode.RATE_LIMIT:
        assert info.value.retry_after == 7


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ReadTimeout("slow"), ErrorCode.TIMEOUT),
        (httpx.ConnectTimeout("slow"), ErrorCode.TIMEOUT),
        (httpx.ConnectError("refused"), ErrorCode.NETWORK_ERROR),
        (httpx.RemoteProtocolError("reset"), ErrorCode.NETWORK_ERROR),
    ],
)
@respx.mock
async def test_workers_transport_failures_map_to_codes(
    ai: AIClient, exc: Exception, code: ErrorCode
) -> None:
    respx.post(CHAT_URL).mock(side_effect=exc)
    with pytest.raises(ProcessingError) as info:
        await ai.chat(ROUTE, [], temperature=0, max_tokens=1)
    assert info.value.code is code and info.value.transient


def test_workers_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    assert parse_retry_after(httpx.Headers({"Retry-After": "12"})) == 12
    date = "Wed, 01 Jan 2025 12:00:30 GMT"
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now) == 30
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


def test_workers_model_output_parsing() -> None:
    assert parse_json_object('```json\n{"a": 1}\n```', "m") == {"a": 1}
    with pytest.raises(ProcessingError) as info:
        parse_json_object("Sure! Here is the analysis", "m")
    assert info.value.code is ErrorCode.AI_BAD_OUTPUT
    with pytest.raises(ProcessingError):
        parse_json_object("[1, 2]", "m")
    assert non_empty_lines("1. one\n\n- two\n* three\n") == ["one", "two", "three"]


@pytest.mark.parametrize("status", [404, 410])
@respx.mock
async def test_workers_missing_video_is_video_not_found(ai: AIClient, status: int) -> None:
    respx.head(VIDEO_URL).mock(return_value=httpx.Response(status))
    with pytest.raises(ProcessingError) as info:
        await ai.ensure_url_exists(VIDEO_URL)
    assert info.value.code is ErrorCode.VIDEO_NOT_FOUND
    assert not info.value.transient


@respx.mock
async def test_workers_head_not_allowed_falls_back_to_get(ai: AIClient) -> None:
    respx.head(VIDEO_URL).mock(return_value=httpx.Response(405))
    get = respx.get(VIDEO_URL).mock(return_value=httpx.Response(200, content=b"x" * 10))
    await ai.ensure_url_exists(VIDEO_URL)
    assert get.called


# --- handlers: the seed's result shapes ----------------------------------------------


def _job(job_type: JobType) -> Any:
    return parse_job_message(encode(job_body(job_type)))


@respx.mock
async def test_workers_video_result_shape(ai: AIClient) -> None:
    respx.head(VIDEO_URL).mock(return_value=httpx.Response(200))
    answer = {"scenes": ["intro"], "objects": ["cat"], "transcript": "hey", "sentiment": "positive"}
    respx.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion(json.dumps(answer))))
    ctx = NullCtx()
    result = await VideoAnalysisHandler(ai, ModelRoute(ENDPOINT, "phi-4-multimodal")).run(
        _job(JobType.VIDEO_ANALYSIS), ctx
    )
    assert result == answer
    assert ctx.progress_seen == [10, 30]
    assert len(ctx.usage) == 1


@respx.mock
async def test_workers_video_defaults_missing_fields_and_rejects_bad_types(ai: AIClient) -> None:
    respx.head(VIDEO_URL).mock(return_value=httpx.Response(200))
    respx.post(CHAT_URL).mock(
        side_effect=[
            httpx.Response(200, json=completion("{}")),
            httpx.Response(200, json=completion('{"scenes": "not a list"}')),
        ]
    )
    handler = VideoAnalysisHandler(ai, ModelRoute(ENDPOINT, "phi-4-multimodal"))
    assert await handler.run(_job(JobType.VIDEO_ANALYSIS), NullCtx()) == {
        "scenes": [],
        "objects": [],
        "transcript": "",
        "sentiment": "neutral",
    }
    with pytest.raises(ProcessingError) as info:
        await handler.run(_job(JobType.VIDEO_ANALYSIS), NullCtx())
    assert info.value.code is ErrorCode.AI_BAD_OUTPUT


@respx.mock
async def test_workers_chat_and_content_result_shapes(ai: AIClient) -> None:
    respx.post(CHAT_URL).mock(
        side_effect=[
            httpx.Response(200, json=completion("1. Hey!\n2. Thanks\n3. Sure\n4. Extra")),
            httpx.Response(200, json=completion("- idea one\n- idea two")),
            httpx.Response(
                200,
                json=completion(
                    '{"engagement": 72.5, "sentiment": "positive", "recommendations": ["post"]}'
                ),
            ),
        ]
    )
    chat = await ChatSuggestHandler(ai, ModelRoute(ENDPOINT, "phi4")).run(
        _job(JobType.CHAT_SUGGEST), NullCtx()
    )
    assert chat == ["Hey!", "Thanks", "Sure"]
    content = await ContentSuggestHandler(ai, ROUTE).run(_job(JobType.CONTENT_SUGGEST), NullCtx())
    assert content == {"suggestions": ["idea one", "idea two"], "model": "deepseek"}
    analysis = await ContentAnalyzeHandler(ai, ROUTE).run(_job(JobType.CONTENT_ANALYZE), NullCtx())
    assert analysis == {
        "engagement": 72.5,
        "sentiment": "positive",
        "recommendations": ["post"],
    }


@pytest.mark.parametrize(
    ("handler_cls", "job_type", "content"),
    [
        (ChatSuggestHandler, JobType.CHAT_SUGGEST, "\n\n"),
        (ContentSuggestHandler, JobType.CONTENT_SUGGEST, "   "),
        (ContentAnalyzeHandler, JobType.CONTENT_ANALYZE, '{"engagement": "high"}'),
        (ContentAnalyzeHandler, JobType.CONTENT_ANALYZE, "no json here"),
    ],
)
@respx.mock
async def test_workers_malformed_model_output_is_a_coded_error(
    ai: AIClient, handler_cls: Callable[..., Any], job_type: JobType, content: str
) -> None:
    respx.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion(content)))
    with pytest.raises(ProcessingError) as info:
        await handler_cls(ai, ROUTE).run(_job(job_type), NullCtx())
    assert info.value.code is ErrorCode.AI_BAD_OUTPUT


# --- through the processor ------------------------------------------------------------


@respx.mock
async def test_workers_video_job_progress_events_0_10_30_100(
    ai: AIClient, make_processor: Callable[..., JobProcessor], outbox: FakeOutbox
) -> None:
    respx.head(VIDEO_URL).mock(return_value=httpx.Response(200))
    respx.post(CHAT_URL).mock(
        return_value=httpx.Response(200, json=completion('{"scenes": ["a"]}'))
    )
    processor = make_processor(VideoAnalysisHandler(ai, ModelRoute(ENDPOINT, "phi-4-multimodal")))
    body = job_body(JobType.VIDEO_ANALYSIS, deadline_ms=120_000)
    settler = FakeSettler()
    outcome = await processor.process(ReceivedJob(encode(body), {}), settler)
    assert outcome is Outcome.COMPLETED
    assert outbox.statuses() == [
        ("processing", 0),
        ("processing", 10),
        ("processing", 30),
        ("completed", 100),
    ]
    assert len(outbox.costs) == 1


@respx.mock
async def test_workers_rate_limited_ai_call_retries_after_retry_after(
    ai: AIClient, make_processor: Callable[..., JobProcessor], outbox: FakeOutbox
) -> None:
    respx.post(CHAT_URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "40"}))
    processor = make_processor(ChatSuggestHandler(ai, ModelRoute(ENDPOINT, "phi4")))
    outcome = await processor.process(ReceivedJob(encode(job_body()), {}), FakeSettler())
    assert outcome is Outcome.RETRY_SCHEDULED
    [copy] = outbox.scheduled
    assert (copy.enqueue_at - outbox.events[0].updated_at).total_seconds() == 40


@respx.mock
async def test_workers_missing_video_dead_letters_through_the_processor(
    ai: AIClient, make_processor: Callable[..., JobProcessor], outbox: FakeOutbox
) -> None:
    respx.head(VIDEO_URL).mock(return_value=httpx.Response(404))
    processor = make_processor(VideoAnalysisHandler(ai, ModelRoute(ENDPOINT, "phi-4-multimodal")))
    settler = FakeSettler()
    body = job_body(JobType.VIDEO_ANALYSIS)
    assert await processor.process(ReceivedJob(encode(body), {}), settler) is (
        Outcome.DEAD_LETTERED
    )
    assert settler.actions[0][1] == "VIDEO_NOT_FOUND"
    assert outbox.statuses()[-1] == ("failed", 0)
