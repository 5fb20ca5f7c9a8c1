"""The one error type of the stack providers, so callers catch one thing and read why."""

from __future__ import annotations


class StackError(RuntimeError):
    """A stack could not be started; the message names the provider, the cause and a fix."""
