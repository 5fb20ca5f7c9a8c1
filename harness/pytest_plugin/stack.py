"""The `stack` fixture: one started stack per xdist worker, and who may manage it."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
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
        from .hosts import closing_hosts

        # Hosts of the last tests close their links while the stack still runs.
        left = closing_hosts.wait()
        if left:
            log.warning(
                "%d host close(s) still running after 10 s: stopping the stack under them", left
            )
        started.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """A failed test that ran on the in-process emulator gets its state in the report: the
    open receiver links (credit, window) and the entities holding messages, so a stalled
    delivery can be told apart from a stalled host after the fact (e.g. in CI)."""
    report = yield
    if not (report.failed and call.when == "call"):
        return report
    funcargs = getattr(item, "funcargs", {})
    started = funcargs.get("stack")
    if getattr(started, "emulator", None) is not None:
        _add_section(report, "emulator state", lambda: _emulator_state(started.emulator))
    hosts = getattr(getattr(funcargs.get("workers"), "running", None), "hosts", None)
    if hosts:
        _add_section(
            report,
            "host triggers",
            lambda: "\n".join(line for h in hosts.values() for line in h.trigger_states()),
        )
    return report


def _add_section(report: pytest.TestReport, title: str, render: Callable[[], str]) -> None:
    try:
        report.sections.append((title, render()))
    except Exception as exc:  # diagnostics must never hide the failure itself
        report.sections.append((title, f"unavailable: {exc!r}"))


def _emulator_state(emulator: Any) -> str:
    from emulator.servicebus.admin.control_client import ControlClient

    lines = ["receiver links:", *(f"  {line}" for line in emulator.describe_links())]
    with ControlClient(emulator.control_url) as control:
        entities = control.entities()
    lines.append("entities holding messages:")
    for topic in entities["topics"]:
        for sub in topic["subscriptions"]:
            counts = {k: v for k, v in sub["counts"].items() if isinstance(v, int) and v}
            if counts:
                lines.append(f"  {sub['path']}: {counts}")
    return "\n".join(lines)


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
