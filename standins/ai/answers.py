"""Deterministic model answers in the shapes the workers' parsers accept.

The same request to the same model always gets the same answer (seeded by a hash of model
and messages), so scenario assertions can name exact results, while different prompts
still get different answers. The shapes mirror what the workers ask for in their prompts:
  - video analysis: one JSON object `{"scenes", "objects", "transcript", "sentiment"}`;
  - content analysis: one JSON object `{"engagement": 0-100, "sentiment", "recommendations"}`;
  - suggestions (chat and content): numbered lines, one suggestion per line;
  - anything else: a short plain-text echo.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any


class AnswerKind(StrEnum):
    """How a deployment answers; AUTO picks from the request's system prompt."""

    AUTO = "auto"
    VIDEO = "video"
    ANALYSIS = "analysis"
    LINES = "lines"
    TEXT = "text"


_SENTIMENTS = ("positive", "neutral", "negative")
_SCENES = ("intro", "close-up", "outdoor", "studio", "product shot", "outro", "dance", "talk")
_OBJECTS = ("person", "phone", "guitar", "car", "dog", "ring light", "cup", "laptop")
_OPENERS = ("Thanks so much", "Love that", "Great question", "Aww", "Haha", "So glad")
_IDEAS = ("behind-the-scenes", "Q&A", "tutorial", "day-in-the-life", "poll", "teaser", "recap")
_TIPS = (
    "Post between 18:00 and 21:00 local time",
    "Open with a hook in the first 2 seconds",
    "Add captions for silent viewers",
    "Reply to the top comments within an hour",
    "Cross-post a teaser to stories",
    "Use a clearer call to action",
)


def text_of(content: Any) -> str:
    """Text of a message's content: a string, or the `text` parts of a multimodal list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("image_url"), dict):
                parts.append(str(part["image_url"].get("url", "")))
        return "\n".join(parts)
    return ""


def _role_text(messages: list[dict[str, Any]], role: str) -> str:
    return "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == role)


def detect_kind(messages: list[dict[str, Any]]) -> AnswerKind:
    """Which shape the caller expects, read from its system prompt (as a model would)."""
    system = _role_text(messages, "system").lower()
    if '"scenes"' in system:
        return AnswerKind.VIDEO
    if '"engagement"' in system:
        return AnswerKind.ANALYSIS
    if "one per line" in system or "suggestion" in system:
        return AnswerKind.LINES
    return AnswerKind.TEXT


class _Picker:
    """Deterministic choices from a SHA-256 stream."""

    def __init__(self, seed: str) -> None:
        self._seed = seed.encode()
        self._counter = 0

    def number(self, modulo: int) -> int:
        digest = hashlib.sha256(self._seed + self._counter.to_bytes(4, "big")).digest()
        self._counter += 1
        return int.from_bytes(digest[:8], "big") % modulo

    def choice(self, options: tuple[str, ...]) -> str:
        return options[self.number(len(options))]

    def sample(self, options: tuple[str, ...], k: int) -> list[str]:
        pool = list(options)
        return [pool.pop(self.number(len(pool))) for _ in range(min(k, len(pool)))]


def answer(model: str, messages: list[dict[str, Any]], kind: AnswerKind = AnswerKind.AUTO) -> str:
    """The deterministic answer of `model` to `messages`."""
    if kind is AnswerKind.AUTO:
        kind = detect_kind(messages)
    seed = model + "\0" + json.dumps(messages, sort_keys=True, default=str)
    pick = _Picker(seed)
    user = _role_text(messages, "user").strip()
    if kind is AnswerKind.VIDEO:
        scenes = pick.sample(_SCENES, 2 + pick.number(3))
        return json.dumps(
            {
                "scenes": [
                    {"start": float(i * 4), "end": float(i * 4 + 4), "label": s}
                    for i, s in enumerate(scenes)
                ],
                "objects": pick.sample(_OBJECTS, 2 + pick.number(3)),
                "transcript": f"[{model}] {' then '.join(scenes)}",
                "sentiment": pick.choice(_SENTIMENTS),
            }
        )
    if kind is AnswerKind.ANALYSIS:
        return json.dumps(
            {
                "engagement": pick.number(101),
                "sentiment": pick.choice(_SENTIMENTS),
                "recommendations": pick.sample(_TIPS, 2 + pick.number(2)),
            }
        )
    if kind is AnswerKind.LINES:
        if "fan message" in user.lower():
            lines = [f"{pick.choice(_OPENERS)}! ({model} reply {i})" for i in range(1, 4)]
        else:
            ideas = pick.sample(_IDEAS, 3 + pick.number(3))
            lines = [
                f"{idea[0].upper()}{idea[1:]} post ({model} idea {i})"
                for i, idea in enumerate(ideas, start=1)
            ]
        return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))
    snippet = " ".join(user.split())[:200]
    return f"[{model}] {snippet}" if snippet else f"[{model}] Hello."


def count_tokens(text: str) -> int:
    """A stable token estimate (~4 characters per token), never zero for non-empty text."""
    return max(1, (len(text) + 3) // 4) if text else 0
