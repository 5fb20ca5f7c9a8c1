"""The AI stand-in's shared behaviour model, without any transport."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from standins.ai import (
    AIBehaviour,
    AnswerKind,
    Deployment,
    Fault,
    FaultProfile,
    Latency,
    answer,
    detect_kind,
)

VERSION = {"api-version": "2024-05-01-preview"}
CHAT = [
    {"role": "system", "content": "Generate 3 smart reply suggestions, one per line."},
    {"role": "user", "content": "Fan message: hi!\nContext: {}"},
]


class Scripted:
    """A random source that returns the given numbers in order (then 0.99)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0) if self.values else 0.99


def post(
    behaviour: AIBehaviour,
    path: str = "/models/chat/completions",
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
):
    payload = {"model": "phi4", "messages": CHAT} if body is None else body
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return behaviour.handle("POST", path, VERSION if query is None else query, headers or {}, raw)


def test_standin_ai_answers_are_deterministic_per_model_and_prompt() -> None:
    assert answer("phi4", CHAT) == answer("phi4", CHAT)
    assert answer("phi4", CHAT) != answer("deepseek", CHAT)
    other = [CHAT[0], {"role": "user", "content": "Fan message: bye"}]
    assert answer("phi4", CHAT) != answer("phi4", other)


@pytest.mark.parametrize(
    ("system", "kind"),
    [
        ('Answer with one JSON object: {"scenes": [...]}', AnswerKind.VIDEO),
        ('Answer with one JSON object: {"engagement": 0-100}', AnswerKind.ANALYSIS),
        ("Generate content suggestions, one per line.", AnswerKind.LINES),
        ("You are helpful.", AnswerKind.TEXT),
    ],
)
def test_standin_ai_detects_the_shape_the_prompt_asks_for(system: str, kind: AnswerKind) -> None:
    assert detect_kind([{"role": "system", "content": system}]) is kind


def test_standin_ai_video_and_analysis_answers_are_json_objects() -> None:
    video = json.loads(answer("m", [], AnswerKind.VIDEO))
    assert set(video) == {"scenes", "objects", "transcript", "sentiment"}
    assert isinstance(video["scenes"], list) and isinstance(video["objects"], list)
    analysis = json.loads(answer("m", [], AnswerKind.ANALYSIS))
    assert 0 <= analysis["engagement"] <= 100
    assert isinstance(analysis["recommendations"], list)


def test_standin_ai_completion_shape_and_usage() -> None:
    behaviour = AIBehaviour(clock=lambda: 1_700_000_000.0)
    reply = post(behaviour)
    assert reply.status == 200 and reply.delay == 0
    data = json.loads(reply.body)
    assert data["object"] == "chat.completion" and data["model"] == "phi4"
    assert data["created"] == 1_700_000_000
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert len(choice["message"]["content"].splitlines()) == 3
    usage = data["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    (call,) = behaviour.calls
    assert (call.model, call.status, call.outcome) == ("phi4", 200, "ok")
    assert call.prompt_tokens == usage["prompt_tokens"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"api-key": "wrong"}, 401),
        ({"api-key": "k"}, 200),
        ({"Authorization": "Bearer k"}, 200),
        ({"authorization": "bearer k"}, 200),
        ({"Authorization": "Basic k"}, 401),
    ],
)
def test_standin_ai_checks_the_api_key(headers: dict[str, str], status: int) -> None:
    assert post(AIBehaviour(api_key="k"), headers=headers).status == status


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/phi4/chat/completions", {"messages": CHAT}, 200, None),
        ("/openai/deployments/phi4/chat/completions", {"messages": CHAT}, 200, None),
        ("/chat/completions", {"model": "deepseek", "messages": CHAT}, 200, None),
        ("/phi4/chat/completions", {"model": "deepseek", "messages": CHAT}, 400, "unknown_model"),
        ("/models/chat/completions", {"model": "gpt-9", "messages": CHAT}, 400, "unknown_model"),
        ("/models/chat/completions", {"messages": CHAT}, 400, "MissingModel"),
        ("/nope/chat/completions", {"messages": CHAT}, 404, "NotFound"),
        ("/models/embeddings", {"model": "phi4"}, 404, "NotFound"),
        ("/models/chat/completions", {"model": "phi4", "messages": []}, 422, "InvalidMessages"),
        ("/models/chat/completions", b"{not json", 400, "InvalidJson"),
    ],
)
def test_standin_ai_routes_and_validates(
    path: str, body: Any, status: int, code: str | None
) -> None:
    reply = post(AIBehaviour(), path, body)
    assert reply.status == status
    if code:
        assert json.loads(reply.body)["error"]["code"] == code


def test_standin_ai_requires_api_version_unless_told_not_to() -> None:
    assert post(AIBehaviour(), query={}).status == 400
    assert post(AIBehaviour(require_api_version=False), query={}).status == 200


def test_standin_ai_media_exists_unless_named_missing() -> None:
    behaviour = AIBehaviour()
    assert behaviour.handle("HEAD", "/media/clip.mp4", {}, {}, b"").status == 200
    assert behaviour.handle("GET", "/media/missing.mp4", {}, {}, b"").status == 404


def test_standin_ai_scripted_faults_apply_in_order_and_per_model() -> None:
    behaviour = AIBehaviour()
    behaviour.enqueue(Fault.rate_limit(2.5), Fault.server_error(503))
    behaviour.enqueue(Fault.malformed("no_choices"), model="deepseek")
    first = post(behaviour)
    assert first.status == 429
    assert first.headers["retry-after"] == "3" and first.headers["retry-after-ms"] == "2500"
    assert json.loads(first.body)["error"]["code"] == "429"
    assert post(behaviour).status == 503
    assert post(behaviour).status == 200  # phi4: the deepseek fault is not its own
    malformed = post(behaviour, body={"model": "deepseek", "messages": CHAT})
    assert malformed.status == 200 and json.loads(malformed.body)["choices"] == []
    assert [c.outcome for c in behaviour.calls] == [
        "rate_limited",
        "server_error",
        "ok",
        "malformed",
    ]


def test_standin_ai_fault_profile_uses_the_injected_random_source() -> None:
    profile = FaultProfile(rate_limit=0.1, server_error=0.2, malformed=0.1, slow=0.5)
    # draws: 0.05 → 429; 0.15 → 5xx (then 0.6 picks the 2nd status); 0.35 → malformed;
    # 0.9 → no fault, then 0.2 < slow → slow; 0.9 → none, 0.9 → not slow.
    rng = Scripted(0.05, 0.15, 0.6, 0.35, 0.9, 0.2, 0.9, 0.9)
    behaviour = AIBehaviour(faults=profile, rng=rng)
    replies = [post(behaviour) for _ in range(5)]
    assert [r.status for r in replies] == [429, 503, 200, 200, 200]
    assert [c.outcome for c in behaviour.calls] == [
        "rate_limited",
        "server_error",
        "malformed",
        "slow",
        "ok",
    ]
    assert replies[3].delay == profile.slow_seconds and replies[4].delay == 0


def test_standin_ai_fault_rates_hold_over_many_calls() -> None:
    behaviour = AIBehaviour(faults=FaultProfile(rate_limit=0.2), seed=7)
    statuses = [post(behaviour).status for _ in range(500)]
    assert 70 <= statuses.count(429) <= 130


def test_standin_ai_fault_profile_can_target_models() -> None:
    behaviour = AIBehaviour(faults=FaultProfile(server_error=1.0, models=frozenset({"deepseek"})))
    assert post(behaviour).status == 200
    assert post(behaviour, body={"model": "deepseek", "messages": CHAT}).status >= 500


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_limit": 1.5},
        {"rate_limit": 0.6, "server_error": 0.6},
        {"server_error_statuses": []},
        {"nonsense": 1},
    ],
)
def test_standin_ai_fault_profile_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultProfile.from_dict(bad)


def test_standin_ai_latency_distributions() -> None:
    rng = random.Random(3)
    assert Latency.none().sample(rng) == 0
    assert Latency.fixed(0.25).sample(rng) == 0.25
    samples = [Latency.uniform(0.1, 0.3).sample(rng) for _ in range(200)]
    assert all(0.1 <= s <= 0.3 for s in samples)
    tail = sorted(Latency.lognormal(0.2, 0.8, cap=5).sample(rng) for _ in range(2000))
    assert 0.15 < tail[1000] < 0.27  # median near 0.2
    assert tail[-1] <= 5 and tail[1900] > 2 * tail[1000]  # long tail, capped
    with pytest.raises(ValueError):
        Latency.uniform(2, 1)


def test_standin_ai_per_deployment_latency_and_fixed_answers() -> None:
    behaviour = AIBehaviour(
        [Deployment("phi4", latency=Latency.fixed(0.5)), Deployment("echo", AnswerKind.TEXT)],
        latency=Latency.fixed(0.1),
    )
    assert post(behaviour).delay == 0.5
    echo = post(behaviour, body={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
    assert echo.delay == 0.1
    assert json.loads(echo.body)["choices"][0]["message"]["content"] == "[echo] x"
    behaviour.respond("phi4", lambda model, messages: f"{model}:{len(messages)}")
    assert json.loads(post(behaviour).body)["choices"][0]["message"]["content"] == "phi4:2"
    behaviour.reset()
    assert len(behaviour.calls) == 0
    assert "phi4:2" not in post(behaviour).body.decode()


def test_standin_ai_bad_content_is_a_valid_envelope_with_useless_text() -> None:
    behaviour = AIBehaviour()
    behaviour.enqueue(Fault.bad_content("no."))
    data = json.loads(post(behaviour).body)
    assert data["choices"][0]["message"]["content"] == "no."
