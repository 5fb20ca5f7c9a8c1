"""The local Functions host: runs one app folder's triggers the way Azure Functions does.

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
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import grpc
from azure.functions.timer import TimerRequest
from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azurefunctions.extensions.bindings.servicebus import ServiceBusMessageActions

from workers.common.hostjson import host_json_overrides

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
from .messages import body_bytes, classic_message, sdk_type_message
from .ncrontab import Schedule
from .outputs import Out, OutputHandler, ServiceBusOutput, SignalRRestOutput
from .records import Invocation, InvocationLog, utcnow
from .settlement import Route, SettlementRefused, SettlementServer

log = logging.getLogger("harness.host")

T = TypeVar("T")

RECEIVE_WAIT = 5.0
START_TIMEOUT = 30.0
# How long a cancelled async function may take to unwind before its message is abandoned.
CANCEL_GRACE = 5.0
_SETTLED = {
    "complete": "completed",
    "abandon": "abandoned",
    "deadletter": "dead-lettered",
    "defer": "deferred",
}


class FunctionTimeout(Exception):
    """A run outlived functionTimeout and was cancelled."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__(f"exceeded functionTimeout ({seconds}s)")


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


@dataclass
class _Held:
    """A message this host holds a lock on, while its function runs."""

    receiver: ServiceBusReceiver
    message: ServiceBusReceivedMessage
    invocation: Invocation
    received: float  # monotonic
    lock_duration: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    settled: bool = False


@dataclass
class _Trigger:
    """Runtime state of one Service Bus triggered function."""

    spec: FunctionSpec
    receiver: ServiceBusReceiver
    slots: asyncio.Semaphore


class FunctionsHost:
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
        applied_env: dict[str, str | None],
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
        self._applied_env = applied_env
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
        self._values: Mapping[str, str] = {}

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        app_dir: str | Path,
        settings: Mapping[str, str] | None = None,
        *,
        host_only_settings: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> FunctionsHost:
        """Import and index an app folder without starting anything.

        local.settings.json `Values` and then `settings` are written into the process
        environment (the app reads them at import, as in Azure); `stop` restores it.
        `host_only_settings` (`AzureFunctionsJobHost__...` overrides) reach the host but not
        the app: a way to test what an app does when the host's limits are not the ones it
        planned for.
        """
        path = Path(app_dir).resolve()
        values = {**load_local_settings(path / "local.settings.json"), **(settings or {})}
        # The host reads overrides from its environment, as Azure's does from app settings.
        options = HostOptions.load(
            path / "host.json", {**os.environ, **values, **(host_only_settings or {})}
        )
        applied: dict[str, str | None] = {}
        for key, value in values.items():
            applied[key] = os.environ.get(key)
            os.environ[key] = value
        try:
            module = import_app_module(path)
            functions = index_app(module, path)
        except BaseException:
            _restore_env(applied, values)
            raise
        effective = dict(os.environ)
        overrides = host_json_overrides(effective)
        if overrides:
            log.info("%s: host.json overridden by app settings %s", path.name, sorted(overrides))
        for spec in functions.values():
            resolve_function(spec, effective)
        host = cls(path, module, functions, options, effective, applied, **kwargs)
        host._values = values
        return host

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
        receivers = [self._receiver(spec, retry) for spec in specs]
        # Attach every receiver now (concurrently), so a bad connection fails `start`.
        results = await asyncio.gather(*(r.__aenter__() for r in receivers), return_exceptions=True)
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
            self._loops.append(asyncio.create_task(self._pump(trigger)))
        for spec in self.functions.values():
            if spec.trigger_type == TIMER_TRIGGER:
                self._timer_locks[spec.name] = asyncio.Lock()
                Schedule.parse(spec.resolved_trigger["schedule"])  # fail at start if invalid
                if self.run_timers:
                    self._loops.append(asyncio.create_task(self._timer_loop(spec)))

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
        if self._state in ("stopped",):
            return
        try:
            if self._host is not None:
                try:
                    self._host.call(self._stop_async(), self.shutdown_grace + 30)
                except Exception:
                    log.exception("%s: shutdown did not finish cleanly", self.name)
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
            _restore_env(self._applied_env, getattr(self, "_values", {}))
            self._state = "stopped"

    async def _stop_async(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        closers = [t.receiver.close() for t in self._triggers.values()]
        closers += [self._signalr.aclose(), self._servicebus_out.aclose()]
        await asyncio.gather(*closers, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self._clients.values()), return_exceptions=True)

    # -- Service Bus triggers -----------------------------------------------------------------

    async def _pump(self, trigger: _Trigger) -> None:
        """Receive only as many messages as there are free invocation slots."""
        slots = trigger.slots
        limit = self.options.max_concurrent_calls
        while True:
            await slots.acquire()
            taken = 1
            while taken < limit and not slots.locked():
                await slots.acquire()
                taken += 1
            try:
                messages = await trigger.receiver.receive_messages(
                    max_message_count=taken, max_wait_time=RECEIVE_WAIT
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                for _ in range(taken):
                    slots.release()
                log.exception("%s: receive failed; retrying", trigger.spec.name)
                await asyncio.sleep(1.0)
                continue
            for _ in range(taken - len(messages)):
                slots.release()
            for message in messages:
                task = asyncio.create_task(self._run_message(trigger, message))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _run_message(self, trigger: _Trigger, message: ServiceBusReceivedMessage) -> None:
        spec = trigger.spec
        token = str(message.lock_token)
        locked_until = message.locked_until_utc
        lock_duration = (locked_until - self._broker_now()).total_seconds() if locked_until else 0.0
        invocation = self._log.start(
            spec.name,
            SB_TRIGGER,
            message_id=None if message.message_id is None else str(message.message_id),
            delivery_count=message.delivery_count,
            sequence_number=message.sequence_number,
            lock_token=token,
        )
        held = _Held(trigger.receiver, message, invocation, time.monotonic(), lock_duration)
        self._held[token] = held
        if self._settlement is not None:
            route = Route(asyncio.get_running_loop(), self._settle_rpc)
            self._settlement.registry.add(token, route)
        renewal = None
        if self.options.max_auto_lock_renewal_duration > 0:
            renewal = asyncio.create_task(self._renew(held))
        outcome, error = "succeeded", None
        try:
            kwargs, outs = self._message_args(spec, message)
            result = await self._call(spec, kwargs)
            await self._deliver_outputs(spec, outs, result, invocation)
        except FunctionTimeout as exc:
            outcome, error = "timeout", str(exc)
        except asyncio.CancelledError:
            outcome, error = "cancelled", "host shutting down"
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("%s failed on message %s: %s", spec.name, invocation.message_id, error)
        finally:
            if renewal is not None:
                renewal.cancel()
                await asyncio.gather(renewal, return_exceptions=True)
            try:
                if not held.settled:
                    if outcome != "succeeded":
                        await self._settle(held, "abandon", "host")
                    elif self.options.auto_complete_messages:
                        await self._settle(held, "complete", "host")
            except SettlementRefused:
                pass  # recorded on the invocation
            self._held.pop(token, None)
            if self._settlement is not None:
                self._settlement.registry.remove(token)
            self._log.finish(invocation, outcome, error)
            trigger.slots.release()

    def _message_args(
        self, spec: FunctionSpec, message: ServiceBusReceivedMessage
    ) -> tuple[dict[str, Any], dict[str, Out[Any]]]:
        kwargs: dict[str, Any] = {}
        param = spec.trigger_param
        if spec.trigger_kind == "sdk":
            kwargs[param] = sdk_type_message(message, spec.trigger_annotation)
        elif spec.trigger_kind == "classic":
            kwargs[param] = classic_message(message)
        elif spec.trigger_kind == "bytes":
            kwargs[param] = body_bytes(message)
        else:
            kwargs[param] = body_bytes(message).decode()
        for name in spec.actions_params:
            kwargs[name] = ServiceBusMessageActions.get_instance()
        outs = self._outs(spec)
        kwargs.update(outs)
        return kwargs, outs

    def _outs(self, spec: FunctionSpec) -> dict[str, Out[Any]]:
        return {name: Out() for name in spec.outputs if name != "$return"}

    async def _call(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
        """Run the function on the worker side, bounded by functionTimeout."""
        assert self._worker is not None and self._pool is not None
        unwound: concurrent.futures.Future[None] = concurrent.futures.Future()
        if spec.is_async:

            async def run() -> Any:
                try:
                    return await spec.user_function(**kwargs)
                finally:
                    unwound.set_result(None)

            future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self._worker.loop))
        else:
            unwound.set_result(None)  # a thread cannot be stopped: it runs to its end
            future = asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(spec.user_function, **kwargs)
            )
        # On timeout wait_for cancels the future, and with it the async function's task on
        # the worker loop. Its `finally` blocks (releasing a lease, say) get a moment to run
        # before the host abandons the message, so a redelivery does not race them.
        try:
            return await asyncio.wait_for(future, self.options.function_timeout)
        except TimeoutError as exc:
            if future.cancelled():
                await asyncio.wait([asyncio.wrap_future(unwound)], timeout=CANCEL_GRACE)
                raise FunctionTimeout(self.options.function_timeout) from exc
            raise

    async def _deliver_outputs(
        self, spec: FunctionSpec, outs: dict[str, Out[Any]], result: Any, invocation: Invocation
    ) -> None:
        values = {name: out.get() for name, out in outs.items()}
        if "$return" in spec.outputs:
            values["$return"] = result
        for name, value in values.items():
            if value is None:
                continue
            self._log.update(invocation, outputs={**invocation.outputs, name: value})
            binding = spec.resolved_outputs[name]
            await self._output_handlers[binding["type"]](binding, value)

    async def _renew(self, held: _Held) -> None:
        """Keep the lock until the run ends or maxAutoLockRenewalDuration has passed.

        Own loop rather than the SDK's AutoLockRenewer: renewal must stop the moment the
        run ends even when nothing settled the message (AutoLockRenewer has no unregister).
        """
        deadline = held.received + self.options.max_auto_lock_renewal_duration
        lead = min(10.0, max(held.lock_duration, 0.2) / 2)
        while True:
            locked_until = held.message.locked_until_utc
            remaining = (locked_until - self._broker_now()).total_seconds() if locked_until else 0.0
            delay = max(0.0, remaining - lead)
            if time.monotonic() + delay >= deadline:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                self._log.update(held.invocation, renewal_stopped="maxAutoLockRenewalDuration")
                return
            await asyncio.sleep(delay)
            async with held.lock:
                if held.settled:
                    return
                try:
                    await held.receiver.renew_message_lock(held.message)
                except Exception as exc:
                    self._log.update(held.invocation, renewal_stopped=f"renewal failed: {exc!r}")
                    return
            self._log.bump(held.invocation, "lock_renewals")

    async def _settle_rpc(self, token: str, action: str, **kwargs: Any) -> None:
        held = self._held.get(token.lower())
        if held is None:
            raise SettlementRefused(
                grpc.StatusCode.NOT_FOUND, f"lock token {token} is not held (run ended?)"
            )
        await self._settle(held, action, "function", **kwargs)

    async def _settle(self, held: _Held, action: str, by: str, **kwargs: Any) -> None:
        """Settle through the SDK receiver that holds the lock; record what happened."""
        receiver, message = held.receiver, held.message
        async with held.lock:
            if held.settled:
                raise SettlementRefused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"message already {held.invocation.settlement}",
                )
            try:
                if action == "complete":
                    await receiver.complete_message(message)
                elif action == "abandon":
                    await receiver.abandon_message(message)
                elif action == "deadletter":
                    await receiver.dead_letter_message(
                        message,
                        reason=kwargs.get("reason"),
                        error_description=kwargs.get("description"),
                    )
                elif action == "defer":
                    await receiver.defer_message(message)
                elif action == "renew":
                    await receiver.renew_message_lock(message)
                else:
                    raise SettlementRefused(grpc.StatusCode.UNIMPLEMENTED, action)
            except SettlementRefused:
                raise
            except Exception as exc:
                detail = f"{action} failed: {type(exc).__name__}: {exc}"
                self._log.update(held.invocation, settlement_error=detail)
                raise SettlementRefused(grpc.StatusCode.FAILED_PRECONDITION, detail) from exc
            if action == "renew":
                self._log.bump(held.invocation, "lock_renewals")
                return
            held.settled = True
            self._log.update(
                held.invocation,
                settlement=_SETTLED[action],
                settled_by=by,
                dead_letter_reason=kwargs.get("reason"),
            )

    # -- timers -------------------------------------------------------------------------------

    async def _timer_loop(self, spec: FunctionSpec) -> None:
        schedule = Schedule.parse(spec.resolved_trigger["schedule"])
        if spec.resolved_trigger.get("runOnStartup"):
            await self._run_timer(spec, schedule)
        while True:
            due = schedule.next_after(utcnow())
            await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()))
            await self._run_timer(spec, schedule)

    async def _run_timer(self, spec: FunctionSpec, schedule: Schedule | None = None) -> Invocation:
        schedule = schedule or Schedule.parse(spec.resolved_trigger["schedule"])
        async with self._timer_locks[spec.name]:  # a timer function never overlaps itself
            now = utcnow()
            status = {
                "Last": self._timer_last.get(spec.name, ""),
                "Next": schedule.next_after(now).isoformat(),
                "LastUpdated": now.isoformat(),
            }
            self._timer_last[spec.name] = now.isoformat()
            invocation = self._log.start(spec.name, TIMER_TRIGGER)
            outcome, error = "succeeded", None
            try:
                outs = self._outs(spec)
                kwargs: dict[str, Any] = {
                    spec.trigger_param: TimerRequest(
                        past_due=False, schedule_status=status, schedule={"AdjustForDST": True}
                    ),
                    **outs,
                }
                result = await self._call(spec, kwargs)
                await self._deliver_outputs(spec, outs, result, invocation)
            except FunctionTimeout as exc:
                outcome, error = "timeout", str(exc)
            except asyncio.CancelledError:
                outcome, error = "cancelled", "host shutting down"
                self._log.finish(invocation, outcome, error)
                raise
            except Exception as exc:
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"
                log.warning("%s failed: %s", spec.name, error)
            self._log.finish(invocation, outcome, error)
            return invocation

    def fire_timer(self, name: str, timeout: float = 60.0) -> Invocation:
        """Run a timer function now (as the admin endpoint does) and return its record."""
        spec = self.functions.get(name)
        if spec is None or spec.trigger_type != TIMER_TRIGGER:
            raise KeyError(f"{name} is not a timer function of {self.name}")
        if self._host is None or self._state != "running":
            raise RuntimeError("the host is not running")
        return self._host.call(self._run_timer(spec), timeout)

    # -- observing ----------------------------------------------------------------------------

    @property
    def invocations(self) -> list[Invocation]:
        """A snapshot of every invocation so far, oldest first."""
        return self._log.snapshot()

    @property
    def settlement_address(self) -> str | None:
        server = self._settlement
        return None if server is None else f"{server.host}:{server.port}"

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


def _restore_env(applied: Mapping[str, str | None], values: Mapping[str, str]) -> None:
    """Undo what `load` wrote to os.environ, unless someone changed it since."""
    for key, previous in applied.items():
        if os.environ.get(key) != values.get(key):
            continue
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


@contextlib.contextmanager
def running_host(app_dir: str | Path, **kwargs: Any) -> Iterator[FunctionsHost]:
    """`with running_host(path, settings=...) as host:` — load and start in one step."""
    with FunctionsHost.load(app_dir, **kwargs) as host:
        yield host
