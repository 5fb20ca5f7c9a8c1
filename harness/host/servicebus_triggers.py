"""Service Bus triggers: receive as slots free up, run each message, renew, settle.

Part of `FunctionsHost` (a base class of it). `_pump` receives for one trigger only as many
messages as it has free invocation slots (`maxConcurrentCalls`); `_run_message` runs one
message's invocation: the lock is renewed while it runs (up to
`maxAutoLockRenewalDuration`), the function may settle it through `ServiceBusMessageActions`
(`_settle_rpc`, over the settlement service), and the host completes it on success
(`autoCompleteMessages`) or abandons it on failure or timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from azure.servicebus import ServiceBusReceivedMessage
from azurefunctions.extensions.bindings.servicebus import ServiceBusMessageActions

from .app import SB_TRIGGER, FunctionSpec
from .config import HostOptions
from .invoke import FunctionInvoker, FunctionTimeout
from .messages import body_bytes, classic_message, sdk_type_message
from .outputs import Out
from .receivers import LiveReceiver, TriggerReceiver
from .records import Invocation, InvocationLog
from .settlement import Route, SettlementRefused, SettlementServer

log = logging.getLogger("harness.host")

RECEIVE_WAIT = 5.0
_SETTLED = {
    "complete": "completed",
    "abandon": "abandoned",
    "deadletter": "dead-lettered",
    "defer": "deferred",
}


@dataclass
class _Held:
    """A message this host holds a lock on, while its function runs."""

    live: LiveReceiver
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
    receivers: TriggerReceiver
    slots: asyncio.Semaphore


class ServiceBusTriggers(FunctionInvoker):
    """The Service Bus side of `FunctionsHost`: one `_pump` task per trigger."""

    # Provided by FunctionsHost.
    name: str
    options: HostOptions
    _log: InvocationLog
    _broker_now: Callable[[], datetime]
    _settlement: SettlementServer | None
    _inflight: set[asyncio.Task[None]]
    _held: dict[str, _Held]

    async def _pump(self, trigger: _Trigger) -> None:
        """Receive only as many messages as there are free invocation slots.

        A receive that fails, or that comes back empty long before its wait is over (the SDK
        does that only when its handler is unusable), retires the receiver for a new one
        (see `receivers`); the loop yields on every turn so no receiver can starve it.
        """
        slots = trigger.slots
        limit = self.options.max_concurrent_calls
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0)
            await slots.acquire()
            taken = 1
            while taken < limit and not slots.locked():
                await slots.acquire()
                taken += 1
            live = trigger.receivers.current
            if live.broken is not None:
                for _ in range(taken):
                    slots.release()
                await trigger.receivers.replace()
                continue
            started = loop.time()
            try:
                messages = await live.sdk.receive_messages(
                    max_message_count=taken, max_wait_time=RECEIVE_WAIT
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                for _ in range(taken):
                    slots.release()
                log.warning(
                    "%s: receive failed: %s: %s", trigger.spec.name, type(exc).__name__, exc
                )
                live.mark_broken(f"receive failed: {type(exc).__name__}: {exc}")
                continue
            for _ in range(taken - len(messages)):
                slots.release()
            if not messages and loop.time() - started < RECEIVE_WAIT / 2:
                live.mark_broken("receive returned at once with nothing")
            for message in messages:
                live.held += 1
                task = asyncio.create_task(self._run_message(trigger, live, message))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _run_message(
        self, trigger: _Trigger, live: LiveReceiver, message: ServiceBusReceivedMessage
    ) -> None:
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
        held = _Held(live, message, invocation, time.monotonic(), lock_duration)
        self._held[token] = held
        if self._settlement is not None:
            route = Route(asyncio.get_running_loop(), self._settle_rpc)
            self._settlement.registry.add(token, route)
        renewal = None
        if self.options.max_auto_lock_renewal_duration > 0:
            renewal = asyncio.create_task(self._renew(held))
        outcome, error, trace = "succeeded", None, None
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
            trace = traceback.format_exc()
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
            self._log.finish(invocation, outcome, error, trace)
            live.held -= 1
            trigger.receivers.release(live)
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
            async with held.lock, held.live.settle_lock:
                if held.settled:
                    return
                if held.live.broken is not None:
                    self._log.update(held.invocation, renewal_stopped=_retired(held.live))
                    return
                try:
                    await held.live.sdk.renew_message_lock(held.message)
                except Exception as exc:
                    held.live.note_failure(exc)
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
        receiver, message = held.live.sdk, held.message
        async with held.lock, held.live.settle_lock:
            if held.settled:
                raise SettlementRefused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"message already {held.invocation.settlement}",
                )
            if held.live.broken is not None:
                detail = f"{action} refused: {_retired(held.live)}"
                self._log.update(held.invocation, settlement_error=detail)
                raise SettlementRefused(grpc.StatusCode.FAILED_PRECONDITION, detail)
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
                held.live.note_failure(exc)
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


def _retired(live: LiveReceiver) -> str:
    return (
        f"the receiver that delivered this message was retired ({live.broken}); "
        "its lock lapses and the broker redelivers the message"
    )
