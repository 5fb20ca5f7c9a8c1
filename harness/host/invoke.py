"""Calling a function the way the Functions worker does, bounded by functionTimeout.

Part of `FunctionsHost` (a base class of it): async functions run on the worker loop, sync
ones on the thread pool; outputs (`Out` parameters and `$return`) go to their binding's
handler once the function has returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import TYPE_CHECKING, Any

from .app import FunctionSpec
from .config import HostOptions
from .outputs import Out, OutputHandler
from .records import Invocation, InvocationLog

if TYPE_CHECKING:
    from .host import _LoopThread

# How long a cancelled async function may take to unwind before its message is abandoned.
CANCEL_GRACE = 5.0


class FunctionTimeout(Exception):
    """A run outlived functionTimeout and was cancelled."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__(f"exceeded functionTimeout ({seconds}s)")


class FunctionInvoker:
    """Runs one invocation's function and hands its outputs to the output bindings."""

    # Provided by FunctionsHost.
    name: str
    options: HostOptions
    _log: InvocationLog
    _worker: _LoopThread | None
    _pool: concurrent.futures.ThreadPoolExecutor | None
    _output_handlers: dict[str, OutputHandler]

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
