"""The `stack` fixture: one started stack per xdist worker, and who may manage it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.stack import Stack

from . import timeline

log = logging.getLogger("harness.pytest")


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One stack per xdist worker (own emulator, database and Redis key prefix)."""
    from harness.stack import StackBuilder, StackError

    config = request.config
    provider = config.getoption("--stack")
    connection = config.getoption("--sb-connection-string")
    if provider == "connection-string" and not connection:
        raise pytest.UsageError("--stack connection-string needs --sb-connection-string")
    if connection and provider == "auto":
        provider = "connection-string"
    builder = StackBuilder().provider(provider).isolated()
    if connection:
        builder = builder.with_servicebus(connection)
    try:
        started = builder.start()
    except StackError as exc:
        pytest.fail(f"stack {provider!r} did not start: {exc}", pytrace=False)
    _report(config, started.describe())
    if started.emulator is not None:
        timeline.watch(started.emulator.clock)
    try:
        yield started
    finally:
        started.stop()


def _report(config: pytest.Config, text: str) -> None:
    """Say which stack ran: on the terminal when there is one (not under xdist), else log."""
    log.info("%s", text)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not os.environ.get("PYTEST_XDIST_WORKER"):
        reporter.write_line("")
        reporter.write_line(text)


def admin_connection(stack: Stack) -> tuple[str, dict[str, Any]]:
    """A Manage connection string and the admin-client kwargs (CA bundle for the emulator)."""
    if stack.emulator is not None:
        return stack.emulator.connection_string, {
            "connection_verify": str(stack.emulator.ca_bundle)
        }
    return stack.servicebus_connection, {}
