"""Worker apps under the local Functions host, started per test and waited on by event.

Generic: which apps exist and what settings they read is the project's business (its
`workers` fixture, here `scenarios/conftest.py`); this module starts and stops hosts and
waits on what they record."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.host import FunctionsHost, Invocation, ProcessEnvironment

DEFAULT_TIMEOUT = 30.0


@dataclass
class RunningWorkers:
    """The hosts started for one test, by app name, with waits across all of them."""

    hosts: dict[str, FunctionsHost] = field(default_factory=dict)

    def __getitem__(self, app: str) -> FunctionsHost:
        return self.hosts[app]

    def invocations(self, where: Callable[[Invocation], bool] | None = None) -> list[Invocation]:
        return [i for h in self.hosts.values() for i in h.invocations if where is None or where(i)]

    def host_of(self, function: str) -> FunctionsHost:
        for host in self.hosts.values():
            if function in host.functions:
                return host
        raise KeyError(f"no running app has {function}; running: {sorted(self.hosts)}")

    def wait_for_invocation(
        self,
        function: str,
        *,
        message_id: str | None = None,
        where: Callable[[Invocation], bool] | None = None,
        count: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[Invocation]:
        """Block until `count` finished runs of `function` (of `message_id`) are recorded."""

        def match(i: Invocation) -> bool:
            return (message_id is None or i.message_id == message_id) and (
                where is None or where(i)
            )

        return self.host_of(function).wait_for_invocations(
            count, function=function, where=match, timeout=timeout
        )

    def wait_for_condition(
        self,
        check: Callable[[], Any],
        *,
        function: str,
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "condition",
    ) -> Any:
        """Re-check `check()` (e.g. a database query) each time a run of `function`
        finishes, until it is truthy. Event-driven: no polling, no sleeps."""
        host = self.host_of(function)
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            seen = sum(1 for i in host.invocations if i.function == function and i.finished)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                host.wait_until(
                    lambda items, seen=seen: (
                        sum(1 for i in items if i.function == function and i.finished) > seen
                    ),
                    timeout=remaining,
                    what=f"a new finished run of {function}",
                )


class WorkerFactory:
    """`workers("jobs", "notify")` loads and starts apps under FunctionsHost with the
    given settings; every host is stopped at teardown (reverse order). The apps run in this
    process, so their settings are in its environment from the first load until `stop`.

    `apps` maps each app name to its folder (where `function_app.py` and `host.json` are);
    a project's `workers` fixture builds one with its own apps and settings."""

    def __init__(
        self,
        apps: Mapping[str, Path],
        base_settings: Mapping[str, str],
        broker_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        running: RunningWorkers | None = None,
    ) -> None:
        self.apps = dict(apps)
        self.base_settings = dict(base_settings)
        self.broker_clock = broker_clock
        self.running = running if running is not None else RunningWorkers()
        self._started: list[FunctionsHost] = []
        self._environment: ProcessEnvironment | None = None

    def __call__(
        self,
        *apps: str,
        settings: Mapping[str, str] | None = None,
        host_only_settings: Mapping[str, str] | None = None,
        run_timers: bool = False,
        shutdown_grace: float = 10.0,
    ) -> RunningWorkers:
        from harness.host import FunctionsHost, ProcessEnvironment

        for app in apps:
            if app not in self.apps:
                raise ValueError(f"unknown worker app {app!r}; choose from {tuple(self.apps)}")
            if app in self.running.hosts:
                raise ValueError(f"{app} is already running in this test")
        values = {**self.base_settings, **(settings or {})}
        if self._environment is None:
            self._environment = ProcessEnvironment()
        # Loading writes os.environ and imports, so one at a time; starting (attaching
        # receivers) is network-bound, so all at once.
        loaded = []
        try:
            for app in apps:
                loaded.append(
                    FunctionsHost.load(
                        self.apps[app],
                        settings=values,
                        environment=self._environment,
                        host_only_settings=host_only_settings,
                        run_timers=run_timers,
                        shutdown_grace=shutdown_grace,
                        broker_clock=self.broker_clock,
                    )
                )
            in_parallel([host.start for host in loaded])
        except BaseException:
            in_parallel([host.stop for host in reversed(loaded)])
            raise
        self._started.extend(loaded)
        self.running.hosts.update((host.name, host) for host in loaded)
        return self.running

    def stop(self) -> None:
        """Stop every host: none runs a function once this returns and the environment is
        put back; their links close in the background (see `closing_hosts`)."""
        hosts, self._started = self._started, []
        try:
            in_parallel([host.quiesce for host in reversed(hosts)])
        finally:
            if self._environment is not None:
                self._environment.restore()
            if hosts:
                closing_hosts.add(hosts)


class _ClosingHosts:
    """Hosts whose links are still closing. The SDK takes about a second per receiver to
    close (it drains the link), which a test need not wait for once its hosts have
    quiesced; the stack waits for them all before it stops (`wait`)."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def add(self, hosts: Sequence[Any]) -> None:
        thread = threading.Thread(
            target=in_parallel,
            args=([host.close for host in hosts],),
            name="harness-closing-hosts",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` s in all; returns how many closes are still running.

        A close normally takes about a second. Now and then one hangs for 30-40 s (seen at the
        end of a scenario run); stopping the stack under it ends it at once, since the
        emulator's connections then close, so the rest of the run need not wait for it.
        """
        with self._lock:
            threads, self._threads = self._threads, []
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in threads)


closing_hosts = _ClosingHosts()


def in_parallel(calls: Sequence[Callable[[], Any]]) -> None:
    """Run the calls in threads; all run even if some fail, then the first error raises."""
    if len(calls) <= 1:
        for call in calls:
            call()
        return
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,), name="harness-parallel") for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
