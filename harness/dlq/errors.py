"""Failures the dlq commands report as one line, with the broker's own words where the SDK
hides them; nothing is lost when one is raised."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.servicebus.exceptions import MessageSizeExceededError

if TYPE_CHECKING:
    pass


class DlqError(Exception):
    """A failure the CLI reports as one line (no traceback); nothing was lost."""


class BadRecordsError(DlqError):
    """Unreadable lines in an export file; ``problems`` holds one ``line N: why`` each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"{source}: {count} bad line{'s' if count != 1 else ''}, nothing sent "
            "(--skip-bad sends the good ones):\n  " + "\n  ".join(self.problems)
        )


_STATUS_LABELS = {401: "unauthorized", 403: "forbidden", 404: "not found"}


def describe_error(exc: BaseException) -> str:
    """One line about an SDK failure, with the broker's own words where the SDK hides them
    (a put-token refusal surfaces as an "authentication" error with a generic message)."""
    inner = getattr(exc, "inner_exception", None)
    status = getattr(inner, "status_code", None)
    if isinstance(status, int) and status in _STATUS_LABELS:
        detail = getattr(inner, "status_description", "") or ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"{_STATUS_LABELS[status]} ({status}): {detail}".rstrip(": ")
    if isinstance(exc, ResourceNotFoundError | ClientAuthenticationError):
        found = re.search(r"<Detail>(.*?)</Detail>", str(exc), re.S)
        detail = found.group(1).split(" To know more")[0] if found else ""
        code = exc.status_code or 404
        label = _STATUS_LABELS.get(code, "refused")
        if code == 401:
            detail = f"the management API needs a Manage policy. {detail}"
        return f"{label} ({code}): {detail}".strip()
    if isinstance(exc, ServiceRequestError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "the management endpoint's TLS certificate is not trusted (pass --ca-bundle)"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


@contextlib.contextmanager
def _sdk_errors(what: str) -> Iterator[None]:
    try:
        yield
    except AzureError as exc:  # ServiceBusError included
        raise DlqError(f"{what}: {describe_error(exc)}") from exc


def _fatal(exc: BaseException) -> bool:
    """A send error that every further send would hit too (the target, the connection)."""
    return isinstance(exc, AzureError) and not isinstance(exc, MessageSizeExceededError)
