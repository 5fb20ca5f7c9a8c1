"""pytest plugin (`pytest11` entry point `sbharness`): the harness as fixtures.

Tests ask for what they need and get it running, isolated per xdist worker:

    def test_event_seen(stack, servicebus, events):
        body = '{"jobId": "j1", "status": "completed"}'
        servicebus.send_raw(body, {}, topic=stack.topic_events)
        events.wait_for("j1", "completed")

Options: `--stack auto|local|embedded|containers|connection-string` (where Service Bus,
PostgreSQL and Redis come from) and `--sb-connection-string` (a Service Bus namespace or
the official emulator instead of the in-process emulator). Heavy imports happen inside the
fixtures, so the plugin costs nothing to suites that do not use it.

The plugin is generic: it knows the stack, not the apps. A project's conftest builds its
own fixtures from the pieces exported here (this repository's are in `scenarios/conftest.py`:
`workers`, `job_api`, and `db` / `servicebus` with the apps' tables and job messages).
Each concern is a plugin module of its own, registered through `pytest_plugins`.
"""

from .database import Database
from .events import Event, EventCollector, Events
from .hosts import RunningWorkers, WorkerFactory
from .servicebus import KeptLinks, ServiceBusHelper
from .stack import admin_connection

pytest_plugins = [
    "harness.pytest_plugin.options",
    "harness.pytest_plugin.stack",
    "harness.pytest_plugin.events",
    "harness.pytest_plugin.servicebus",
    "harness.pytest_plugin.clock",
    "harness.pytest_plugin.stand_ins",
    "harness.pytest_plugin.database",
    "harness.pytest_plugin.timeline",
    "harness.pytest_plugin.reruns",
]

__all__ = [
    "Database",
    "Event",
    "EventCollector",
    "Events",
    "KeptLinks",
    "RunningWorkers",
    "ServiceBusHelper",
    "WorkerFactory",
    "admin_connection",
]
