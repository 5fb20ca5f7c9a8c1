"""Command-line options of the plugin and the report header that echoes them."""

from __future__ import annotations

import os

import pytest

STACK_CHOICES = ("auto", "local", "embedded", "containers", "connection-string")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sbharness", "Service Bus harness")
    group.addoption(
        "--stack",
        choices=STACK_CHOICES,
        default=os.environ.get("HARNESS_STACK", "auto"),
        help="where Service Bus, PostgreSQL and Redis come from (default auto, or "
        "$HARNESS_STACK); auto prints what it chose and why",
    )
    group.addoption(
        "--sb-connection-string",
        default=os.environ.get("HARNESS_SB_CONNECTION_STRING") or None,
        help="use this Service Bus (official emulator or a namespace; needs Manage rights to "
        "apply the topology) instead of the in-process emulator",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    stack = config.getoption("--stack", None)
    if stack is None:
        return None
    sb = " with --sb-connection-string" if config.getoption("--sb-connection-string") else ""
    return f"sbharness: --stack {stack}{sb}"
