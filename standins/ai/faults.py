"""What can go wrong with an AI call, and how slow a good one is: the stand-in's knobs.

`Latency` is the delay distribution of successful answers, `Fault` one scripted fault for
the next matching call, `FaultProfile` the random faults a run is exposed to. All draw from
an injected `RandomSource`, so a profile is reproducible from a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol


class RandomSource(Protocol):
    """Anything with `random() -> float in [0, 1)`; `random.Random` fits."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class Latency:
    """Delay distribution of successful answers (seconds).

    kinds: `none`; `fixed(a)`; `uniform(a, b)`; `lognormal(median=a, sigma=b)`, capped at `cap`.
    """

    kind: Literal["none", "fixed", "uniform", "lognormal"] = "none"
    a: float = 0.0
    b: float = 0.0
    cap: float | None = None

    @classmethod
    def none(cls) -> Latency:
        return cls()

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        return cls("fixed", seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        if high < low:
            raise ValueError("uniform latency needs low <= high")
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float, cap: float | None = None) -> Latency:
        """Long-tailed like real inference: most calls near `median`, a few much slower."""
        if median <= 0 or sigma < 0:
            raise ValueError("lognormal latency needs median > 0 and sigma >= 0")
        return cls("lognormal", median, sigma, cap)

    def sample(self, rng: RandomSource) -> float:
        if self.kind == "none":
            value = 0.0
        elif self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = self.a + (self.b - self.a) * rng.random()
        else:
            # Box-Muller from two uniforms, so any `random()`-only source works.
            u1 = max(rng.random(), 1e-12)
            u2 = rng.random()
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
            value = self.a * math.exp(self.b * z)
        value = max(0.0, value)
        return min(value, self.cap) if self.cap is not None else value


MalformedVariant = Literal["truncated", "no_choices", "empty", "html"]
FaultKind = Literal["rate_limit", "server_error", "malformed", "slow", "bad_content"]


@dataclass(frozen=True)
class Fault:
    """One scripted fault for the next matching call (see `AIBehaviour.enqueue`)."""

    kind: FaultKind
    status: int = 0
    retry_after: float = 1.0
    seconds: float = 0.0
    variant: MalformedVariant = "truncated"
    content: str = ""

    @classmethod
    def rate_limit(cls, retry_after: float = 1.0) -> Fault:
        return cls("rate_limit", status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls("server_error", status=status)

    @classmethod
    def malformed(cls, variant: MalformedVariant = "truncated") -> Fault:
        """A 200 whose body is not a chat completion."""
        return cls("malformed", status=200, variant=variant)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """A correct answer that arrives `seconds` late (beyond the client timeout → TIMEOUT)."""
        return cls("slow", seconds=seconds)

    @classmethod
    def bad_content(cls, content: str = "Sorry, I cannot help with that.") -> Fault:
        """A well-formed completion whose content is not what the prompt asked for."""
        return cls("bad_content", status=200, content=content)


@dataclass(frozen=True)
class FaultProfile:
    """Random faults at rates in [0, 1]. One draw picks at most one of 429 / 5xx / malformed;
    a second draw decides whether the answer is also slow. `models` limits it to some
    deployments (None = all)."""

    rate_limit: float = 0.0
    retry_after: float = 1.0
    server_error: float = 0.0
    server_error_statuses: tuple[int, ...] = (500, 503)
    malformed: float = 0.0
    malformed_variant: MalformedVariant = "truncated"
    slow: float = 0.0
    slow_seconds: float = 2.0
    models: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("rate_limit", "server_error", "malformed", "slow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name}={value} is not within [0, 1]")
        if self.rate_limit + self.server_error + self.malformed > 1.0 + 1e-9:
            raise ValueError("rate_limit + server_error + malformed must not exceed 1")
        if not self.server_error_statuses:
            raise ValueError("server_error_statuses must not be empty")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultProfile:
        """From JSON (the control API and the CLI); unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault profile field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if "server_error_statuses" in values:
            values["server_error_statuses"] = tuple(int(s) for s in values["server_error_statuses"])
        if values.get("models") is not None:
            values["models"] = frozenset(values["models"])
        return cls(**values)

    def applies_to(self, model: str) -> bool:
        return self.models is None or model in self.models
