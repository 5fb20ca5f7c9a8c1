"""The AI stand-in as a respx router: same behaviour in-process, strict about unused routes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from standin_workers import NullContext, handler_for, job, settings_for

from standins.ai import AIBehaviour, AIRouter, Fault
from workers.common.ai_client import AIClient, ModelRoute
from workers.common.contracts import JobType
from workers.common.errors import ErrorCode, ProcessingError
from workers.common.settings import Role

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_standin_ai_router_serves_the_workers_handlers_in_process(
    http: httpx.AsyncClient,
) -> None:
    with AIRouter(api_key="k", expect=["phi4", "deepseek"]) as ai:
        settings = settings_for(Role.JOBS, ai.environment())
        chat = await handler_for(JobType.CHAT_SUGGEST, settings, http).run(
            job(JobType.CHAT_SUGGEST), NullContext()
        )
        analysis = await handler_for(JobType.CONTENT_ANALYZE, settings, http).run(
            job(JobType.CONTENT_ANALYZE), NullContext()
        )
    assert len(chat) == 3 and 0 <= analysis["engagement"] <= 100
    assert [c.model for c in ai.calls] == ["phi4", "deepseek"]
    assert ai.calls[0].headers["api-key"] == "k"


async def test_standin_ai_router_and_server_share_answers(http: httpx.AsyncClient) -> None:
    from standins.ai import AIServer

    with AIServer() as server:
        over_http = await AIClient(http).chat(
            ModelRoute(server.endpoint("phi4"), "phi4"), MESSAGES, temperature=0, max_tokens=9
        )
    with AIRouter(expect=["phi4"]) as router:
        in_process = await AIClient(http).chat(
            ModelRoute(router.endpoint("phi4"), "phi4"), MESSAGES, temperature=0, max_tokens=9
        )
    assert in_process == over_http


async def test_standin_ai_router_video_media_is_served_too(http: httpx.AsyncClient) -> None:
    with AIRouter(expect=["phi-4-multimodal"]) as ai:
        settings = settings_for(Role.VIDEO, ai.environment())
        result = await handler_for(JobType.VIDEO_ANALYSIS, settings, http).run(
            job(JobType.VIDEO_ANALYSIS, ai.media_url()), NullContext()
        )
    assert result["scenes"]


def test_standin_ai_router_fails_when_an_expected_route_is_unused() -> None:
    with pytest.raises(AssertionError) as caught:
        with AIRouter(expect=["phi4", "deepseek"]) as ai:
            httpx.post(
                ai.endpoint("phi4") + "/chat/completions?api-version=v", json={"messages": MESSAGES}
            )
    message = str(caught.value)
    assert "model 'deepseek': at least 1 call" in message
    assert "model 'phi4'" not in message.split("calls made:")[0]
    assert "POST /phi4/chat/completions model='phi4' → 200" in message


def test_standin_ai_router_fails_when_never_used_at_all() -> None:
    with pytest.raises(AssertionError, match=r"router was never used"):
        with AIRouter():
            pass


def test_standin_ai_router_exact_counts() -> None:
    router = AIRouter(require_api_version=False).expect("phi4", times=1)
    with pytest.raises(AssertionError, match=r"exactly 1 call"):
        with router:
            for _ in range(2):
                httpx.post(
                    router.endpoint("phi4") + "/chat/completions", json={"messages": MESSAGES}
                )


def test_standin_ai_router_lenient_mode_and_failing_bodies_keep_their_error() -> None:
    with AIRouter(strict=False, expect=["phi4"]):
        pass
    with pytest.raises(ZeroDivisionError):  # not masked by the unused-route assertion
        with AIRouter(expect=["phi4"]):
            1 / 0  # noqa: B018


def test_standin_ai_router_leaves_other_hosts_to_other_routers() -> None:
    with respx.mock(assert_all_called=True) as other, AIRouter(expect=["phi4"]) as ai:
        other.get("https://elsewhere.test/x").respond(204)
        assert httpx.get("https://elsewhere.test/x").status_code == 204
        assert httpx.get(ai.url + "/unknown").status_code == 404
        httpx.post(
            ai.endpoint("phi4") + "/chat/completions?api-version=v", json={"messages": MESSAGES}
        )
        with pytest.raises(Exception, match=re.escape("not mocked")):
            httpx.get("https://nobody.test/")


async def test_standin_ai_router_slow_answers_use_the_injected_sleep(
    http: httpx.AsyncClient,
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    with AIRouter(sleep=fake_sleep, expect=["deepseek"]) as ai:
        ai.behaviour.enqueue(Fault.slow(0.5), Fault.slow(120))
        client = AIClient(http, timeout_seconds=5)
        route = ModelRoute(ai.endpoint("deepseek"), "deepseek")
        assert (await client.chat(route, MESSAGES, temperature=0, max_tokens=9)).content
        with pytest.raises(ProcessingError) as caught:
            await client.chat(route, MESSAGES, temperature=0, max_tokens=9)
    assert caught.value.code is ErrorCode.TIMEOUT
    assert slept == [0.5, 5.0]  # the second waited only until the client's read timeout


async def test_standin_ai_router_rate_limit_reaches_the_worker(http: httpx.AsyncClient) -> None:
    behaviour = AIBehaviour(api_key="k")
    behaviour.enqueue(Fault.rate_limit(4))
    with AIRouter(behaviour, expect=["phi4"]) as ai:
        client = AIClient(http, api_key="k")
        with pytest.raises(ProcessingError) as caught:
            await client.chat(
                ModelRoute(ai.shared_endpoint, "phi4"), MESSAGES, temperature=0, max_tokens=9
            )
    assert caught.value.code is ErrorCode.RATE_LIMIT and caught.value.retry_after == 4


async def test_standin_ai_router_explicit_transport_needs_no_patching() -> None:
    router = AIRouter(expect=["phi4"])
    async with httpx.AsyncClient(transport=router.transport()) as client:
        response = await client.post(
            router.endpoint("phi4") + "/chat/completions",
            params={"api-version": "v"},
            json={"messages": MESSAGES},
        )
    assert response.status_code == 200
    router.assert_all_used()


def test_standin_ai_router_rejects_unknown_models_in_expectations() -> None:
    with pytest.raises(KeyError, match="gpt-9"):
        AIRouter().expect("gpt-9")
