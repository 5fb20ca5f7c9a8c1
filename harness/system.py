"""The whole local system: stack, stand-ins, the three worker apps, the job API.

`harness up` runs it until Ctrl-C, each worker app in its own host process (as Azure runs
one host per app); tests start it with the apps in-process, where their invocation records
can be read. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from standins._http_runner import ServerThread
from standins.ai import AIServer
from standins.mail import MailSink
from standins.signalr import SignalRServer
from standins.webhook import WebhookSink

from .console import InvocationsPanel, QueryPanel
from .host import FunctionsHost, ProcessEnvironment
from .processes import HostProcess, child_environment
from .stack import ProviderName, Stack, StackBuilder

log = logging.getLogger("harness.system")

WORKERS_DIR = Path(__file__).resolve().parents[1] / "workers"
APPS = ("video", "jobs", "notify")
WEBHOOK_SECRET = "local-webhook-secret"
# The console's jobs table: this project's `jobs` (workers/common/db.py), newest first.
JOBS_QUERY = (
    "SELECT id, job_type, status, attempt, error, created_at, started_at, finished_at "
    "FROM jobs ORDER BY created_at DESC LIMIT 50"
)
JOB_COLUMNS = ("job", "type", "status", "attempt", "last error", "created", "started", "took")
JOB_TONES = {"completed": "ok", "failed": "bad", "pending": "warn", "processing": "warn"}


def _job_row(row: Any) -> tuple[object, ...]:
    error = row.error if isinstance(row.error, dict) else {}
    last_error = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    took = (
        f"{(row.finished_at - row.created_at).total_seconds():.1f}s"
        if row.finished_at is not None and row.created_at is not None
        else ""
    )
    return (
        row.id,
        row.job_type,
        row.status,
        row.attempt,
        last_error,
        _hms(row.created_at),
        _hms(row.started_at),
        took,
    )


def _hms(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%H:%M:%S")


@dataclass
class SystemPorts:
    servicebus: int = 5673
    admin: int = 5300
    api: int = 8000


@dataclass
class LocalSystem:
    """Start with `start()` (or `with`); `stop()` tears down in reverse order."""

    provider: ProviderName = "auto"
    ports: SystemPorts = field(default_factory=SystemPorts)
    apps: tuple[str, ...] = APPS
    stack: Stack | None = None
    ai: AIServer | None = None
    signalr: SignalRServer | None = None
    mail: MailSink | None = None
    webhooks: WebhookSink | None = None
    processes: bool = False
    """Run each worker app as a child process (`harness up`) instead of in this process."""
    data_dir: Path | None = None
    """Where the emulator keeps its state across restarts (None: in memory only)."""
    run_timers: bool = True
    """In-process apps only: False leaves timer functions (sweepers, monitors) unscheduled."""
    extra_settings: dict[str, str] = field(default_factory=dict)
    """App settings laid over the system's own (`harness dlq reproduce` shortens a timeout)."""
    instances: dict[str, int] = field(default_factory=dict)
    """Host processes per app (default 1): several are competing consumers of the app's
    subscriptions, as Azure scales an app out. Needs `processes`."""
    hosts: dict[str, FunctionsHost] = field(default_factory=dict)
    host_processes: dict[str, HostProcess] = field(default_factory=dict)
    """By instance name: the app's name, or `app#N` when it runs more than once."""
    api: ServerThread | None = None
    invocations_panel: InvocationsPanel = field(default_factory=InvocationsPanel)
    """The console's "Recent invocations" table (filled from every app's runs)."""
    jobs_panel: QueryPanel | None = None
    """The console's "Jobs" table (read from the database every 2 s)."""
    _stack_cm: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._check_instances()
        stop = self._stack_cm
        self.stack = stop.enter_context(
            StackBuilder()
            .provider(self.provider)
            .with_emulator_options(
                port=self.ports.servicebus, admin_port=self.ports.admin, data_dir=self.data_dir
            )
            .start()
        )
        self.ai = stop.enter_context(AIServer())
        self.signalr = stop.enter_context(SignalRServer())
        self.mail = stop.enter_context(MailSink())
        self.webhooks = stop.enter_context(WebhookSink())
        settings = self.settings()
        # In-process apps and the job API read their settings from this process's
        # environment (the API like the Next.js routes did); put back when all have stopped.
        environment = stop.enter_context(ProcessEnvironment())
        if self.processes:
            self._start_processes(settings)
        else:
            for name in self.apps:
                host = FunctionsHost.load(
                    WORKERS_DIR / name,
                    settings=settings,
                    environment=environment,
                    broker_clock=self.stack.broker_now,
                    run_timers=self.run_timers,
                )
                self.hosts[name] = stop.enter_context(host)
                self.invocations_panel.watch_host(name, host)
                log.info("worker app %s: %s", name, ", ".join(host.functions))
        environment.apply(settings)
        from workers.api.app import app_from_env

        self.api = stop.enter_context(
            ServerThread(app_from_env(), port=self.ports.api, name="job-api")
        )
        self._add_console_panels()

    def _add_console_panels(self) -> None:
        """The jobs table and the workers' runs on the emulator's console (in-process only)."""
        assert self.stack is not None
        emulator = self.stack.emulator
        if emulator is None:
            return
        jobs = QueryPanel(
            "Jobs",
            self.stack.database_url,
            JOBS_QUERY,
            JOB_COLUMNS,
            row=_job_row,
            tone=lambda r: JOB_TONES.get(r.status, ""),
        ).start()
        self._stack_cm.callback(jobs.stop)
        self.jobs_panel = jobs
        emulator.console.add_panel("jobs", jobs.table)
        emulator.console.add_panel("invocations", self.invocations_panel.table)
        self._stack_cm.callback(emulator.console.remove_panel, "jobs")
        self._stack_cm.callback(emulator.console.remove_panel, "invocations")

    def _check_instances(self) -> None:
        """Refuse counts the system cannot honour before anything starts."""
        unknown = sorted(set(self.instances) - set(self.apps))
        if unknown:
            raise ValueError(f"instances of unknown app(s) {unknown}; apps: {list(self.apps)}")
        if any(count < 1 for count in self.instances.values()):
            raise ValueError(f"instances must be at least 1: {self.instances}")
        if not self.processes and any(count > 1 for count in self.instances.values()):
            raise ValueError("several instances of an app need host processes (processes=True)")

    def instance_names(self, app: str) -> list[str]:
        """`jobs` for a single instance (its log prefix stays `[jobs]`), else `jobs#1`, ..."""
        count = self.instances.get(app, 1)
        return [app] if count == 1 else [f"{app}#{i}" for i in range(1, count + 1)]

    def _start_processes(self, settings: dict[str, str]) -> None:
        """Spawn every instance at once (imports take seconds), then wait for each to attach.

        Only an app's first instance arms its timers: Azure runs a timer function on one
        instance at a time (a singleton lock), and the notify app's DLQ monitor run by every
        instance would raise each alert once per instance."""
        assert self.stack is not None
        emulator = self.stack.emulator
        env = child_environment(settings)
        for app in self.apps:
            for index, name in enumerate(self.instance_names(app)):
                process = HostProcess(
                    name,
                    WORKERS_DIR / app,
                    env,
                    broker_clock_url=None if emulator is None else emulator.control_url,
                    run_timers=index == 0,
                )
                self.host_processes[name] = process
                self._stack_cm.callback(process.stop)
                process.line_listeners.append(self.invocations_panel.feed(name))
                process.start()
        for name, process in self.host_processes.items():
            process.wait_ready()
            log.info("worker app %s: process %s", name, process.pid)

    def settings(self) -> dict[str, str]:
        """Every app setting the workers and the job API read, pointing at this system."""
        assert self.stack and self.ai and self.signalr and self.mail and self.webhooks
        return {
            **self.stack.settings(),
            **self.ai.environment(),
            **self.mail.environment(),
            "AzureSignalRConnectionString": self.signalr.connection_string,
            "WEBHOOK_SIGNING_SECRET": WEBHOOK_SECRET,
            **self.extra_settings,
        }

    def describe(self) -> list[str]:
        assert self.stack and self.api and self.ai and self.signalr and self.mail
        assert self.webhooks
        emulator = self.stack.emulator
        lines = [
            f"job API            {self.api.url}   (POST /api/jobs/..., GET /api/jobs/{{id}})",
            f"Service Bus        {self.stack.servicebus_connection}",
            f"  send-only        {self.stack.servicebus_send_connection}",
        ]
        if emulator is not None:
            lines.append(f"  control API      {emulator.control_url}")
            lines.append(f"  console          {emulator.console_url}   (open in a browser)")
        lines += [
            f"database           {self.stack.database_url}",
            f"redis              {self.stack.redis_url} (prefix {self.stack.redis_key_prefix})",
            f"AI stand-in        {self.ai.url}",
            f"SignalR stand-in   {self.signalr.url}",
            f"SMTP sink          {self.mail.host}:{self.mail.port}",
            f"webhook sink       {self.webhooks.url}",
            f"worker apps        {self._describe_apps()}",
        ]
        scaled = [a for a in self.apps if len(self.instance_names(a)) > 1]
        if scaled and self.host_processes:
            first = ", ".join(self.instance_names(a)[0] for a in scaled)
            lines.append(f"  timers           in {first} only (one instance per app runs them)")
        return lines

    def _describe_apps(self) -> str:
        if self.host_processes:
            return ", ".join(f"{n} (pid {p.pid})" for n, p in self.host_processes.items())
        return ", ".join(self.hosts)

    def stop(self) -> None:
        self.hosts.clear()
        self.host_processes.clear()
        self._stack_cm.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
