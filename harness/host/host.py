"""The local Functions host: runs one app folder's triggers the way Azure Functions does.

This module loads an app, starts and stops it and lets a test observe it; the triggers'
runtime is in `servicebus_triggers` (receive, run, renew, settle), `timers`, and
`invoke` (calling a function on the worker side, delivering its outputs), each a part of
`FunctionsHost`.

Two event loops, like the two processes in Azure: the *host* loop owns the Service Bus
receivers, lock renewal, settlement and timers; the *worker* loop runs async functions
(sync ones go to a thread pool). A function that blocks its loop (a blocking
`ServiceBusMessageActions` call, say) therefore stalls the worker, as in Azure, but never the
host that must answer the settlement.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from functions_shared.hostjson import host_json_overrides

from .app import (
    DEFAULT_SB_CONNECTION,
    DEFAULT_SIGNALR_CONNECTION,
    SB_TRIGGER,
    TIMER_TRIGGER,
    FunctionSpec,
    connection_string,
    import_app_module,
    index_app,
    resolve_function,
)
from .config import HostOptions, MissingSettingsError, load_local_settings
from .environ import ProcessEnvironment
from .ncrontab import Schedule
from .outputs import OutputHandler, ServiceBusOutput, SignalRRestOutput
from .receivers import TriggerReceiver
from .records import Invocation, InvocationLog, utcnow
from .servicebus_triggers import ServiceBusTriggers, _Held, _Trigger
from .settlement import SettlementServer
from .timers import TimerTriggers

log = logging.getLogger("harness.host")

T = TypeVar("T")

START_TIMEOUT = 30.0


class _LoopThread:
    """An event loop on its own named thread, stopped and joined cleanly."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Cancel whatever is left (a stuck async function) and let it unwind.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


class FunctionsHost(ServiceBusTriggers, TimerTriggers):
    """Loads an app folder, then (on `start`) runs its triggers until `stop`.

    Use `FunctionsHost.load(path, settings=...)` and a `with` block; invocations are in
    `host.invocations`, and the `wait_*` helpers block on a condition until they appear.
    """

    def __init__(
        self,
        app_dir: Path,
        module: ModuleType,
        functions: dict[str, FunctionSpec],
        options: HostOptions,
        settings: dict[str, str],
        *,
        output_handlers: Mapping[str, OutputHandler] | None = None,
        signalr_endpoint: str | None = None,
        shutdown_grace: float = 10.0,
        run_timers: bool = True,
        broker_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.app_dir = app_dir
        self.name = app_dir.name
        self.module = module
        self.functions = functions
        self.options = options
        self.settings = settings
        self.shutdown_grace = shutdown_grace
        self.run_timers = run_timers
        # Lock expiry is the broker's time; an emulator whose clock a test moved ahead
        # hands out locked-until times that wall time would misjudge.
        self._broker_now = broker_clock
        self._signalr = SignalRRestOutput(settings, signalr_endpoint)
        self._servicebus_out = ServiceBusOutput(settings)
        self._output_handlers: dict[str, OutputHandler] = {
            "serviceBus": self._servicebus_out,
            "signalR": self._signalr,
            **(output_handlers or {}),
        }
        self._custom_outputs = set(output_handlers or {})
        self._signalr_endpoint = signalr_endpoint
        self._log = InvocationLog()
        self._state = "loaded"
        self._host: _LoopThread | None = None
        self._worker: _LoopThread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._settlement: SettlementServer | None = None
        self._clients: dict[str, ServiceBusClient] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._held: dict[str, _Held] = {}
        self._timer_locks: dict[str, asyncio.Lock] = {}
        self._timer_last: dict[str, str] = {}

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        app_dir: str | Path,
        settings: Mapping[str, str] | None = None,
        *,
        host_only_settings: Mapping[str, str] | None = None,
        environment: ProcessEnvironment | None = None,
        **kwargs: Any,
    ) -> FunctionsHost:
        """Import and index an app folder without starting anything.

        The app settings are the process environment overlaid with local.settings.json
        `Values` and then `settings`; the host resolves bindings and host.json overrides from
        them as data and leaves `os.environ` alone. An app that reads its settings from the
        environment (as Azure apps do, at import and at call time) needs them there: pass the
        `environment` of the process it runs in, and the host writes the local.settings.json
        `Values` and `settings` into it before importing the app; its owner restores it.
        `host_only_settings` (`AzureFunctionsJobHost__...` overrides) reach the host but not
        the app: a way to test what an app does when the host's limits are not the ones it
        planned for.
        """
        path = Path(app_dir).resolve()
        values = {**load_local_settings(path / "local.settings.json"), **(settings or {})}
        # The host reads overrides from its app settings, as Azure's does.
        effective = {**os.environ, **values}
        options = HostOptions.load(path / "host.json", {**effective, **(host_only_settings or {})})
        if environment is not None:
            environment.apply(values)
        module = import_app_module(path)
        functions = index_app(module, path)
        overrides = host_json_overrides(effective)
        if overrides:
            log.info("%s: host.json overridden by app settings %s", path.name, sorted(overrides))
        for spec in functions.values():
            resolve_function(spec, effective)
        return cls(path, module, functions, options, effective, **kwargs)

    def missing_settings(self) -> dict[str, list[str]]:
        """Per function, the app settings it needs that are not set."""
        out: dict[str, list[str]] = {}
        for name, spec in self.functions.items():
            missing = list(spec.missing_settings)
            for binding in spec.resolved_outputs.values():
                if (
                    binding["type"] == "signalR"
                    and "signalR" not in self._custom_outputs
                    and not self._signalr_endpoint
                ):
                    setting = binding.get("connectionStringSetting") or DEFAULT_SIGNALR_CONNECTION
                    if not self.settings.get(setting):
                        missing.append(setting)
            if missing:
                out[name] = missing
        return out

    def describe(self) -> list[str]:
        return [spec.describe() for spec in self.functions.values()]

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FunctionsHost:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> FunctionsHost:
        """Open every receiver and arm every timer; returns once receivers are attached."""
        if self._state != "loaded":
            raise RuntimeError(f"host is {self._state}; load a new one to start again")
        missing = self.missing_settings()
        if missing:
            raise MissingSettingsError(self.name, missing)
        for spec in self.functions.values():
            for binding in spec.resolved_outputs.values():
                if binding["type"] not in self._output_handlers:
                    raise RuntimeError(
                        f"{spec.name}: no handler for output binding type {binding['type']!r}"
                    )
        self._state = "starting"
        if any(s.actions_params or s.trigger_kind == "sdk" for s in self.functions.values()):
            self._settlement = SettlementServer.acquire()
        sync_slots = sum(
            self.options.max_concurrent_calls if s.trigger_type == SB_TRIGGER else 1
            for s in self.functions.values()
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(4, sync_slots), thread_name_prefix=f"funchost-{self.name}-sync"
        )
        self._worker = _LoopThread(f"funchost-{self.name}-worker")
        self._host = _LoopThread(f"funchost-{self.name}-host")
        self._host.call(self._start_async(), START_TIMEOUT)
        self._state = "running"
        log.info("%s started: %s", self.name, "; ".join(self.describe()))
        return self

    async def _start_async(self) -> None:
        retry = self.options.sdk_retry_kwargs()
        specs = [s for s in self.functions.values() if s.trigger_type == SB_TRIGGER]
        receivers = [
            TriggerReceiver(spec.name, functools.partial(self._receiver, spec, retry))
            for spec in specs
        ]
        # Attach every receiver now (concurrently), so a bad connection fails `start`.
        results = await asyncio.gather(*(r.open() for r in receivers), return_exceptions=True)
        for spec, receiver in zip(specs, receivers, strict=True):
            slots = asyncio.Semaphore(self.options.max_concurrent_calls)
            self._triggers[spec.name] = _Trigger(spec, receiver, slots)
        for spec, result in zip(specs, results, strict=True):
            if isinstance(result, BaseException):
                raise RuntimeError(
                    f"{spec.name}: cannot attach a receiver to {spec.source}: "
                    f"{type(result).__name__}: {result}"
                ) from result
        for trigger in self._triggers.values():
            pump = asyncio.create_task(self._pump(trigger), name=f"pump {trigger.spec.name}")
            pump.add_done_callback(self._on_loop_ended)
            self._loops.append(pump)
        for spec in self.functions.values():
            if spec.trigger_type == TIMER_TRIGGER:
                self._timer_locks[spec.name] = asyncio.Lock()
                Schedule.parse(spec.resolved_trigger["schedule"])  # fail at start if invalid
                if self.run_timers:
                    self._loops.append(asyncio.create_task(self._timer_loop(spec)))

    def _on_loop_ended(self, task: asyncio.Task[None]) -> None:
        """A pump only ends by cancellation at stop; any other end means a trigger went
        deaf, so it is logged loudly (and shown by `trigger_states`)."""
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: %s ended; its trigger receives nothing more",
                self.name,
                task.get_name(),
                exc_info=task.exception(),
            )

    def _receiver(self, spec: FunctionSpec, retry: dict[str, Any]) -> ServiceBusReceiver:
        t = spec.resolved_trigger
        conn = connection_string(t.get("connection") or DEFAULT_SB_CONNECTION, self.settings)
        client = self._clients.get(conn)
        if client is None:
            client = self._clients[conn] = ServiceBusClient.from_connection_string(conn, **retry)
        kwargs: dict[str, Any] = {
            "receive_mode": ServiceBusReceiveMode.PEEK_LOCK,
            "prefetch_count": self.options.prefetch_count,
        }
        if t.get("topicName"):
            return client.get_subscription_receiver(t["topicName"], t["subscriptionName"], **kwargs)
        return client.get_queue_receiver(t["queueName"], **kwargs)

    def stop(self) -> None:
        """Stop receiving, let running invocations finish (up to `shutdown_grace`), clean up."""
        self.quiesce()
        self.close()

    def quiesce(self) -> None:
        """Stop receiving and let running invocations finish (up to `shutdown_grace`): after
        it no function of this host runs again. The links stay open until `close`."""
        if self._state in ("stopped", "quiesced") or self._host is None:
            return
        try:
            self._host.call(self._quiesce_async(), self.shutdown_grace + 30)
        except Exception:
            log.exception("%s: shutdown did not finish cleanly", self.name)
        self._state = "quiesced"

    def close(self) -> None:
        """Close receivers, senders and clients and stop the loop threads. Slow by the SDK's
        design (each peek-lock receiver with credit drains its link on close, about a second),
        so a test harness may run it after the next test has started (`quiesce` first)."""
        if self._state == "stopped":
            return
        self.quiesce()
        try:
            if self._host is not None:
                try:
                    self._host.call(self._close_async(), 30)
                except Exception:
                    log.exception("%s: closing links did not finish cleanly", self.name)
                self._host.stop()
            if self._worker is not None:
                self._worker.stop()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                for thread in list(getattr(self._pool, "_threads", ())):
                    thread.join(self.shutdown_grace)
        finally:
            if self._settlement is not None:
                self._settlement = None
                SettlementServer.release()
            self._state = "stopped"

    async def _quiesce_async(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _close_async(self) -> None:
        closers = [t.receivers.close() for t in self._triggers.values()]
        closers += [self._signalr.aclose(), self._servicebus_out.aclose()]
        await asyncio.gather(*closers, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self._clients.values()), return_exceptions=True)

    # -- observing ----------------------------------------------------------------------------

    @property
    def invocations(self) -> list[Invocation]:
        """A snapshot of every invocation so far, oldest first."""
        return self._log.snapshot()

    def recent_invocations(self, count: int) -> list[Invocation]:
        """The last ``count`` invocations, oldest first."""
        return self._log.recent(count)

    @property
    def settlement_address(self) -> str | None:
        server = self._settlement
        return None if server is None else f"{server.host}:{server.port}"

    def trigger_states(self) -> list[str]:
        """One line per Service Bus trigger: its receiver's generation and health, messages
        it holds, runs against the limit. For diagnostics, not for decisions."""
        lines = []
        for name, trigger in self._triggers.items():
            receivers = trigger.receivers
            current = receivers.current
            lines.append(
                f"{self.name}/{name}: receiver #{current.generation} "
                f"broken={current.broken!r} held={current.held} "
                f"replacements={receivers.replacements} retired={len(receivers.retired)} "
                f"running={self._log.running(name)}/{self.options.max_concurrent_calls}"
            )
        for task in self._loops:
            if task.done() and not task.cancelled() and task.exception() is not None:
                lines.append(f"{self.name}: {task.get_name()} ended: {task.exception()!r}")
        lines.append(f"{self.name}: {len(self._inflight)} invocation(s) in flight")
        return lines

    def peak_concurrency(self, function: str) -> int:
        """The most invocations of `function` that were running at the same time."""
        return self._log.peak_concurrency(function)

    def running(self, function: str | None = None) -> int:
        return self._log.running(function)

    def wait_for_invocations(
        self,
        count: int,
        *,
        function: str | None = None,
        where: Callable[[Invocation], bool] | None = None,
        finished: bool = True,
        timeout: float = 10.0,
    ) -> list[Invocation]:
        """Block until `count` invocations match (finished ones by default); returns them."""

        def probe(items: list[Invocation]) -> list[Invocation] | None:
            hits = [
                i
                for i in items
                if (function is None or i.function == function)
                and (not finished or i.ended_at is not None)
                and (where is None or where(i))
            ]
            return hits if len(hits) >= count else None

        what = f"{count} {'finished ' if finished else ''}invocation(s)" + (
            f" of {function}" if function else ""
        )
        return self._log.wait(probe, timeout, what)

    def wait_until(
        self, predicate: Callable[[list[Invocation]], Any], timeout: float = 10.0, what: str = ""
    ) -> Any:
        """Block until `predicate(invocations)` is truthy; returns its value."""
        return self._log.wait(predicate, timeout, what or "condition")

    def wait_running(self, count: int, function: str | None = None, timeout: float = 10.0) -> None:
        """Block until at least `count` invocations are running at once."""
        self._log.wait(
            lambda items: (
                sum(1 for i in items if i.ended_at is None and function in (None, i.function))
                >= count
            ),
            timeout,
            f"{count} running invocation(s)",
        )

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no invocation is running."""
        self._log.wait(
            lambda items: all(i.ended_at is not None for i in items) or None,
            timeout,
            "no running invocations",
        )


@contextlib.contextmanager
def running_host(app_dir: str | Path, **kwargs: Any) -> Iterator[FunctionsHost]:
    """`with running_host(path, settings=...) as host:` — load and start in one step."""
    with FunctionsHost.load(app_dir, **kwargs) as host:
        yield host
