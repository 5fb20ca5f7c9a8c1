"""This repository's apps, as the scenarios see them: which apps, their settings, their
tables and their job messages.

The installed plugin (`harness.pytest_plugin`) is generic; what only makes sense for the
apps in `workers/` lives here and is wired into fixtures by `conftest.py`.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.pytest_plugin import Database, RunningWorkers, ServiceBusHelper, WorkerFactory

if TYPE_CHECKING:
    import httpx

    from harness.host import Invocation
    from harness.stack import Stack
    from standins.ai import AIServer
    from standins.mail import MailSink
    from standins.signalr import SignalRServer

WORKERS_DIR = Path(__file__).resolve().parents[1] / "workers"
APPS: dict[str, Path] = {name: WORKERS_DIR / name for name in ("video", "jobs", "notify")}
WEBHOOK_SECRET = "harness-webhook-secret"


def worker_settings(
    stack: Stack, ai: AIServer, signalr: SignalRServer, mail: MailSink
) -> dict[str, str]:
    """Every app setting the three worker apps read, pointing at this stack and stand-ins."""
    return {
        **stack.settings(),
        **ai.environment(),
        **mail.environment(),
        "AzureSignalRConnectionString": signalr.connection_string,
        "WEBHOOK_SIGNING_SECRET": WEBHOOK_SECRET,
        "SMTP_FROM": "noreply@harness.local",
    }


class AppDatabase(Database):
    """The stack's database with the apps' tables, and helpers on them."""

    def __init__(self, url: str) -> None:
        from workers.common.db import Base

        super().__init__(url)
        # Tables exist before any worker starts, so worker and test never race on DDL.
        Base.metadata.create_all(self.engine)

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM jobs WHERE id = :id", id=job_id)
        return rows[0] if rows else None

    def add_creator(
        self,
        creator_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        """Insert or replace a creator (notifications read email and webhook from here)."""
        self.execute("DELETE FROM creators WHERE id = :id", id=creator_id)
        self.execute(
            "INSERT INTO creators (id, email, name, webhook_url, webhook_secret) "
            "VALUES (:id, :email, :name, :url, :secret)",
            id=creator_id,
            email=email,
            name=name,
            url=webhook_url,
            secret=webhook_secret,
        )

    def job_type_metric(self, job_type: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM job_type_metrics WHERE job_type = :t", t=job_type)
        return rows[0] if rows else {"completed_count": 0, "failed_count": 0}

    def ai_cost(self, model: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM ai_cost_metrics WHERE model = :m", m=model)
        return rows[0] if rows else {"calls": 0, "input_tokens": 0, "output_tokens": 0}


class JobServiceBus(ServiceBusHelper):
    """The Service Bus helper, plus sending a job the way the job API does."""

    def send_job(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        creator_id: str = "creator-1",
        job_id: str | None = None,
        attempt: int = 0,
        deadline_ms: int | None = None,
    ) -> str:
        """Send a job message exactly as the job API does (body, properties, message id);
        returns the job id. No database row is created: use `job_api` for that."""
        from workers.common.contracts import (
            DEFAULT_DEADLINE_MS,
            JobMessage,
            JobType,
            job_application_properties,
        )

        kind = JobType(job_type)
        job = JobMessage(
            job_id=job_id or f"job_{uuid.uuid4().hex[:12]}",
            job_type=kind,
            creator_id=creator_id,
            payload=dict(payload),
            attempt=attempt,
            created_at=self.stack.broker_now(),  # the job API stamps broker time too
            deadline_ms=deadline_ms or DEFAULT_DEADLINE_MS[kind],
        )
        self.send_raw(
            json.dumps(job.to_wire()),
            job_application_properties(job),
            message_id=f"{job.job_id}:{attempt}",
        )
        return job.job_id


class JobRuns(RunningWorkers):
    """The running apps, plus their runs by job (message ids are `<jobId>:<attempt>`)."""

    def for_job(self, job_id: str, function: str | None = None) -> list[Invocation]:
        """Runs of a job's messages (every attempt), oldest first."""
        runs = self.invocations(
            lambda i: (
                (i.message_id or "").startswith(f"{job_id}:") and function in (None, i.function)
            )
        )
        return sorted(runs, key=lambda i: i.started_at)


def post_job(job_api: httpx.Client, route: str, body: Mapping[str, Any]) -> str:
    """`POST /api/jobs/<route>` on the real job API; asserts it was accepted, returns the id."""
    response = job_api.post(f"/api/jobs/{route}", json=dict(body))
    assert response.status_code == 200, response.text
    return str(response.json()["jobId"])


@contextlib.contextmanager
def worker_factory(
    stack: Stack, ai_stub: AIServer, signalr: SignalRServer, mailbox: MailSink
) -> Iterator[WorkerFactory]:
    """One instance of the apps on this stack and these stand-ins, stopped on leaving."""
    factory = WorkerFactory(
        APPS,
        worker_settings(stack, ai_stub, signalr, mailbox),
        stack.broker_now,
        running=JobRuns(),
    )
    try:
        yield factory
    finally:
        factory.stop()
