"""Error codes of job processing and the exception that carries them.

The seed threw `new Error('SOFT_TIMEOUT')` without a code, so its retry check never saw
it; here every failure a handler can produce is a `ProcessingError` with an `ErrorCode`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from workers.common.contracts import JobError


class ErrorCode(StrEnum):
    RATE_LIMIT = "RATE_LIMIT"
    TIMEOUT = "TIMEOUT"
    NETWORK_ERROR = "NETWORK_ERROR"
    SOFT_TIMEOUT = "SOFT_TIMEOUT"
    AI_SERVER_ERROR = "AI_SERVER_ERROR"
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    VIDEO_NOT_FOUND = "VIDEO_NOT_FOUND"
    AI_BAD_OUTPUT = "AI_BAD_OUTPUT"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"


TRANSIENT_CODES = frozenset(
    {
        ErrorCode.RATE_LIMIT,
        ErrorCode.TIMEOUT,
        ErrorCode.NETWORK_ERROR,
        ErrorCode.SOFT_TIMEOUT,
        ErrorCode.AI_SERVER_ERROR,
    }
)


class ProcessingError(Exception):
    """A job failure with a code; `retry_after` is a minimum delay asked by the server."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retry_after: float | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details = details

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES

    def to_job_error(self) -> JobError:
        return JobError(code=self.code.value, message=self.message, details=self.details)


class InfrastructureError(Exception):
    """Our own storage or messaging failed; the message is abandoned, the job untouched."""
