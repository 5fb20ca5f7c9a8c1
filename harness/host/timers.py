"""Timer triggers: each schedule's loop, and firing a timer function on demand.

Part of `FunctionsHost` (a base class of it). A timer function never overlaps itself: one
lock per function serialises the schedule's runs and `fire_timer`'s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from azure.functions.timer import TimerRequest

from .app import TIMER_TRIGGER, FunctionSpec
from .config import HostOptions
from .invoke import FunctionInvoker, FunctionTimeout
from .ncrontab import Schedule
from .records import Invocation, InvocationLog, utcnow

if TYPE_CHECKING:
    from .host import _LoopThread

log = logging.getLogger("harness.host")


class TimerTriggers(FunctionInvoker):
    """The timer side of `FunctionsHost`: one `_timer_loop` task per armed schedule."""

    # Provided by FunctionsHost.
    name: str
    options: HostOptions
    _log: InvocationLog
    functions: dict[str, FunctionSpec]
    _host: _LoopThread | None
    _state: str
    _timer_locks: dict[str, asyncio.Lock]
    _timer_last: dict[str, str]

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
