"""Fixtures for this repository's apps, built from the generic `harness.pytest_plugin`.

`db` and `servicebus` override the plugin's with the apps' tables and job messages;
`workers` and `job_api` start the apps in `workers/` (see scenario_apps.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from scenario_apps import AppDatabase, JobServiceBus, worker_factory

from harness.pytest_plugin import KeptLinks, WorkerFactory

if TYPE_CHECKING:
    import httpx
    from azure.servicebus import ServiceBusClient

    from harness.stack import Stack
    from standins.ai import AIServer
    from standins.mail import MailSink
    from standins.signalr import SignalRServer


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replays", "dead letters kept as regression tests (scenarios/replays/)")
    group.addoption(
        "--replays",
        action="append",
        default=[],
        metavar="PATH",
        help="also run these export files (or directories of them) as tests",
    )
    group.addoption(
        "--replays-update",
        action="store_true",
        help="write each kept dead letter's outcome to NAME.expected.json instead of comparing",
    )


@pytest.fixture(scope="session")
def db(stack: Stack) -> Iterator[AppDatabase]:
    """The stack's (per-worker) PostgreSQL database, the apps' tables created."""
    database = AppDatabase(stack.database_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def servicebus(
    stack: Stack, _servicebus_client: ServiceBusClient, _servicebus_links: KeptLinks
) -> Iterator[JobServiceBus]:
    """The plugin's `servicebus`, plus `send_job` in the job API's wire format."""
    helper = JobServiceBus(stack, _servicebus_client, _servicebus_links)
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def workers(
    stack: Stack,
    db: AppDatabase,
    ai_stub: AIServer,
    signalr: SignalRServer,
    mailbox: MailSink,
) -> Iterator[WorkerFactory]:
    """Factory: `running = workers("video", "jobs", "notify")`; hosts stop at teardown."""
    with worker_factory(stack, ai_stub, signalr, mailbox) as factory:
        yield factory


@pytest.fixture
def job_api(stack: Stack, db: AppDatabase) -> Iterator[httpx.Client]:
    """httpx client on the real job API (uvicorn in a thread), send-only connection string."""
    import httpx

    from standins._http_runner import ServerThread
    from workers.api.app import create_app, deps_from_settings
    from workers.common.settings import Role, load_settings

    settings = load_settings(Role.API, env=stack.settings())
    server = ServerThread(create_app(deps_from_settings(settings)), name="job-api")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()
