"""The AI stand-in over real HTTP, driven by the workers' own AI client and handlers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from standin_workers import NullContext, handler_for, job, settings_for

from standins.ai import AIServer, Fault, FaultProfile
from workers.common.ai_client import AIClient, ModelRoute
from workers.common.contracts import JobType
from workers.common.errors import ErrorCode, ProcessingError
from workers.common.settings import Role

KEY = "standin-key"


@pytest.fixture
def ai() -> Iterator[AIServer]:
    with AIServer(api_key=KEY) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.mark.parametrize("job_type", list(JobType))
async def test_standin_ai_server_answers_every_worker_handler(
    ai: AIServer, http: httpx.AsyncClient, job_type: JobType
) -> None:
    role = Role.VIDEO if job_type is JobType.VIDEO_ANALYSIS else Role.JOBS
    settings = settings_for(role, ai.environment())
    ctx = NullContext()
    result = await handler_for(job_type, settings, http).run(job(job_type, ai.media_url()), ctx)
    (call,) = ai.calls
    assert call.status == 200 and call.api_version == settings.ai_api_version
    assert call.headers["api-key"] == KEY and call.headers["authorization"] == f"Bearer {KEY}"
    assert ctx.usage[0].input_tokens == call.prompt_tokens > 0
    assert ctx.usage[0].output_tokens == call.completion_tokens > 0
    if job_type is JobType.VIDEO_ANALYSIS:
        assert call.model == "phi-4-multimodal" and ctx.percents == [10, 30]
        assert set(result) == {"scenes", "objects", "transcript", "sentiment"}
        assert result["scenes"] and result["objects"]
    elif job_type is JobType.CHAT_SUGGEST:
        assert call.model == "phi4" and call.path == "/phi4/chat/completions"
        assert len(result) == 3 and all(isinstance(s, str) and s for s in result)
    elif job_type is JobType.CONTENT_SUGGEST:
        assert call.model == "deepseek" and result["model"] == "deepseek"
        assert len(result["suggestions"]) >= 3
    else:
        assert call.model == "deepseek" and 0 <= result["engagement"] <= 100
        assert result["recommendations"]


async def test_standin_ai_server_same_job_same_result(
    ai: AIServer, http: httpx.AsyncClient
) -> None:
    settings = settings_for(Role.JOBS, ai.environment(shared=True))
    handler = handler_for(JobType.CONTENT_ANALYZE, settings, http)
    first = await handler.run(job(JobType.CONTENT_ANALYZE), NullContext())
    second = await handler.run(job(JobType.CONTENT_ANALYZE), NullContext())
    assert first == second
    assert {c.path for c in ai.calls} == {"/models/chat/completions"}


async def test_standin_ai_server_missing_media_is_video_not_found(
    ai: AIServer, http: httpx.AsyncClient
) -> None:
    settings = settings_for(Role.VIDEO, ai.environment())
    handler = handler_for(JobType.VIDEO_ANALYSIS, settings, http)
    with pytest.raises(ProcessingError) as caught:
        await handler.run(job(JobType.VIDEO_ANALYSIS, ai.media_url("missing.mp4")), NullContext())
    assert caught.value.code is ErrorCode.VIDEO_NOT_FOUND
    assert ai.calls == []


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.rate_limit(2.5), ErrorCode.RATE_LIMIT),
        (Fault.server_error(503), ErrorCode.AI_SERVER_ERROR),
        (Fault.malformed("truncated"), ErrorCode.AI_BAD_OUTPUT),
        (Fault.malformed("html"), ErrorCode.AI_BAD_OUTPUT),
        (Fault.bad_content("I'd rather not."), ErrorCode.AI_BAD_OUTPUT),
        (Fault.slow(30), ErrorCode.TIMEOUT),
    ],
)
async def test_standin_ai_server_faults_map_to_worker_error_codes(
    ai: AIServer, http: httpx.AsyncClient, fault: Fault, code: ErrorCode
) -> None:
    ai.behaviour.enqueue(fault)
    settings = settings_for(Role.JOBS, {**ai.environment(), "AZURE_AI_TIMEOUT_SECONDS": "0.3"})
    handler = handler_for(JobType.CONTENT_ANALYZE, settings, http)
    with pytest.raises(ProcessingError) as caught:
        await handler.run(job(JobType.CONTENT_ANALYZE), NullContext())
    assert caught.value.code is code
    if code is ErrorCode.RATE_LIMIT:
        assert caught.value.retry_after == 2.5
    # the next call is healthy again
    assert await handler.run(job(JobType.CONTENT_ANALYZE), NullContext())


async def test_standin_ai_server_rejects_a_wrong_key(ai: AIServer, http: httpx.AsyncClient) -> None:
    client = AIClient(http, api_key="not-the-key")
    with pytest.raises(ProcessingError) as caught:
        await client.chat(
            ModelRoute(ai.endpoint("phi4"), "phi4"),
            [{"role": "user", "content": "hi"}],
            temperature=0,
            max_tokens=5,
        )
    assert caught.value.code is ErrorCode.INVALID_PAYLOAD and "401" in caught.value.message
    assert ai.calls[0].status == 401 and ai.calls[0].outcome == "rejected"


def test_standin_ai_server_control_api(ai: AIServer) -> None:
    chat = ai.shared_endpoint + "/chat/completions?api-version=2024-05-01-preview"
    body = {"model": "phi4", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(headers={"api-key": KEY}) as client:
        assert client.put(ai.url + "/_standin/faults", json={"rate_limit": 1.0}).status_code == 200
        assert client.post(chat, json=body).status_code == 429
        assert client.put(ai.url + "/_standin/faults", json={"rate_limit": 7}).status_code == 400
        assert client.put(ai.url + "/_standin/faults", json={}).status_code == 200
        queued = {"kind": "server_error", "status": 502, "model": "phi4"}
        assert client.post(ai.url + "/_standin/faults/next", json=queued).status_code == 200
        assert client.post(chat, json=body).status_code == 502
        assert client.post(chat, json=body).status_code == 200
        calls = client.get(ai.url + "/_standin/calls").json()
        assert [c["status"] for c in calls] == [429, 502, 200]
        assert calls[-1]["model"] == "phi4" and calls[-1]["completionTokens"] > 0
        client.post(ai.url + "/_standin/reset")
        assert client.get(ai.url + "/_standin/calls").json() == []


async def test_standin_ai_server_random_faults_with_a_seed_repeat_exactly() -> None:
    async def statuses(seed: int) -> list[int]:
        profile = FaultProfile(rate_limit=0.3, server_error=0.2)
        with AIServer(faults=profile, seed=seed) as server:
            async with httpx.AsyncClient() as client:
                url = server.endpoint("phi4") + "/chat/completions?api-version=v"
                body = {"messages": [{"role": "user", "content": "x"}]}
                return [(await client.post(url, json=body)).status_code for _ in range(20)]

    first = await statuses(11)
    assert first == await statuses(11)
    assert set(first) >= {200, 429}


def test_standin_ai_server_stops_promptly_during_a_slow_answer(no_leaked_threads: None) -> None:
    server = AIServer().start()
    server.behaviour.enqueue(Fault.slow(60))
    url = server.endpoint("phi4") + "/chat/completions?api-version=v"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={"messages": [{"role": "user", "content": "x"}]}, timeout=0.2)
    server.holds.wait_held(1)
    server.stop()  # returns without waiting the 60 s


def test_standin_ai_cli_serves_on_the_printed_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "standins.ai", "--port", "0", "--api-key", "cli-key"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("AI stand-in listening on http://127.0.0.1:"), first
        url = first.rsplit(" ", 1)[1].strip()
        # the socket is bound and listening before the line is printed; connects queue
        response = httpx.post(
            url + "/deepseek/chat/completions?api-version=2024-05-01-preview",
            headers={"Authorization": "Bearer cli-key"},
            json={"messages": [{"role": "user", "content": "hello"}]},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "[deepseek] hello"
    finally:
        proc.terminate()
        proc.wait(10)
