"""Retry policy: which failures are retried, after how long, and how many times.

`attempt` is the attempt number carried by the message that failed, starting at 0. The
first retry therefore uses `delays[0]` — the seed indexed `delays[attempt - 1]` with
`attempt == 0` and got `undefined` (or, in a naive Python port, the *last* delay).
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.common.contracts import JobType
from workers.common.errors import ProcessingError


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ladder; the number of retries equals the number of delays."""

    delays: tuple[float, ...]

    @property
    def max_retries(self) -> int:
        return len(self.delays)

    def backoff(self, attempt: int) -> float:
        """Delay before retrying a message that failed on `attempt` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        return self.delays[min(attempt, len(self.delays) - 1)]

    def decide(self, error: ProcessingError, attempt: int) -> RetryDecision:
        if not error.transient:
            return RetryDecision(False, reason=f"{error.code.value} is permanent")
        if attempt >= self.max_retries:
            return RetryDecision(
                False,
                reason=f"retries exhausted after attempt {attempt} ({self.max_retries} retries)",
            )
        delay = self.backoff(attempt)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return RetryDecision(True, delay_seconds=delay, reason=f"{error.code.value} is transient")


VIDEO_POLICY = RetryPolicy(delays=(15.0, 45.0, 120.0))
DEFAULT_POLICY = RetryPolicy(delays=(3.0, 10.0, 30.0, 120.0))


def policy_for(job_type: JobType) -> RetryPolicy:
    """The seed's ladders: video +15 s, +45 s, +2 min; chat/content +3 s, +10 s, +30 s, +2 min."""
    return VIDEO_POLICY if job_type is JobType.VIDEO_ANALYSIS else DEFAULT_POLICY
