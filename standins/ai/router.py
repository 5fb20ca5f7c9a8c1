"""The AI stand-in in-process: a respx router answering from the same `AIBehaviour`.

For tests that run worker code in the test's own event loop: no port, no thread, and
delays go through an injectable `sleep`, so a "slow" answer can be tested without waiting.
A delay longer than the client's read timeout raises `httpx.ReadTimeout`, as a real slow
server would make httpx do.

Strict by default, like pytest-httpx: on exit, every expectation must have been met —
each `expect(model)` saw calls (or exactly `times`), and the router saw at least one
request at all — otherwise an AssertionError lists what was expected and what came.
Requests to other hosts are left to other respx routers (and fail if none matches).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
import respx
from respx.models import AllMockedAssertionError

from standins.ai.behaviour import AIBehaviour, AICall, Reply
from standins.ai.endpoints import AIEndpoints

Sleep = Callable[[float], Awaitable[None]]

DEFAULT_BASE_URL = "https://ai.standin.test"


@dataclass(frozen=True)
class Expectation:
    model: str
    times: int | None = None

    def describe(self) -> str:
        wanted = "at least 1 call" if self.times is None else f"exactly {self.times} call(s)"
        return f"model {self.model!r}: {wanted}"

    def met(self, calls: list[AICall]) -> bool:
        n = sum(1 for c in calls if c.model == self.model)
        return n >= 1 if self.times is None else n == self.times


class AIRouter(AIEndpoints):
    """respx face of the AI stand-in; `with AIRouter(api_key="k") as ai: ...`."""

    def __init__(
        self,
        behaviour: AIBehaviour | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        strict: bool = True,
        expect: Iterable[str] = (),
        sleep: Sleep = asyncio.sleep,
        sync_sleep: Callable[[float], None] = time.sleep,
        **behaviour_options: Any,
    ) -> None:
        if behaviour is not None and behaviour_options:
            raise TypeError("pass either a behaviour or behaviour options, not both")
        self.behaviour = behaviour or AIBehaviour(**behaviour_options)
        self.url = base_url.rstrip("/")
        self.strict = strict
        self.sleep = sleep
        self.expectations: list[Expectation] = [Expectation(m) for m in expect]
        self.slept: list[float] = []
        self.sync_sleep = sync_sleep
        self._pattern = re.compile(rf"^{re.escape(self.url)}(?:[/?]|$)")
        self._mock = _OwnedMockRouter(self)

    # -- expectations ---------------------------------------------------------------------

    def expect(self, model: str, times: int | None = None) -> Self:
        """Require calls of `model` before the router stops (strict mode)."""
        if model not in self.behaviour.deployments:
            raise KeyError(f"no deployment {model!r}; have {sorted(self.behaviour.deployments)}")
        self.expectations.append(Expectation(model, times))
        return self

    def unmet(self) -> list[str]:
        """Descriptions of expectations not met so far (empty when all are)."""
        calls = self.behaviour.calls.snapshot()
        problems = [e.describe() for e in self.expectations if not e.met(calls)]
        if not calls:
            problems.append(f"any request to {self.url} (the router was never used)")
        return problems

    def assert_all_used(self) -> None:
        problems = self.unmet()
        if problems:
            made = [f"{c.method} {c.path} model={c.model!r} → {c.status}" for c in self.calls]
            raise AssertionError(
                "AI stand-in router: expected calls were not made:\n"
                + "\n".join(f"  - {p}" for p in problems)
                + "\ncalls made:\n"
                + ("\n".join(f"  - {m}" for m in made) or "  (none)")
                + "\n(pass strict=False to allow unused routes)"
            )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Patch httpx (all clients) until `stop()`."""
        self._mock.start()
        return self

    def stop(self, *, check: bool = True) -> None:
        """Unpatch httpx; in strict mode raise if an expectation is unmet."""
        self._mock.stop(clear=False, reset=False, quiet=True)
        if check and self.strict:
            self.assert_all_used()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A failing test keeps its own error; strictness only speaks when the body passed.
        self.stop(check=exc_type is None)

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(check=exc_type is None)

    def transport(self) -> _Transport:
        """An explicit transport (no global patching), for sync or async httpx clients."""
        return _Transport(self)

    # -- endpoints, as AIServer has them ---------------------------------------------------

    # -- answering ------------------------------------------------------------------------

    def matches(self, request: httpx.Request) -> bool:
        return bool(self._pattern.match(str(request.url)))

    def _reply(self, request: httpx.Request) -> tuple[Reply, float | None]:
        if not self.matches(request):
            raise AllMockedAssertionError(
                f"RESPX: {request!r} not mocked (the AI stand-in router serves {self.url} only)"
            )
        reply = self.behaviour.handle(
            request.method,
            request.url.path,
            dict(request.url.params),
            dict(request.headers),
            request.content,
        )
        return reply, _read_timeout(request)

    def _response(self, request: httpx.Request, reply: Reply) -> httpx.Response:
        return httpx.Response(
            reply.status, headers=reply.headers, content=reply.body, request=request
        )

    def _timeout(self, request: httpx.Request, reply: Reply, limit: float) -> httpx.ReadTimeout:
        return httpx.ReadTimeout(
            f"AI stand-in answered after {reply.delay:g}s; read timeout is {limit:g}s",
            request=request,
        )

    def respond_sync(self, request: httpx.Request) -> httpx.Response:
        reply, limit = self._reply(request)
        if reply.delay > 0:
            wait = reply.delay if limit is None else min(reply.delay, limit)
            self.slept.append(wait)
            self.sync_sleep(wait)
            if limit is not None and reply.delay > limit:
                raise self._timeout(request, reply, limit)
        return self._response(request, reply)

    async def respond_async(self, request: httpx.Request) -> httpx.Response:
        reply, limit = self._reply(request)
        if reply.delay > 0:
            wait = reply.delay if limit is None else min(reply.delay, limit)
            self.slept.append(wait)
            await self.sleep(wait)
            if limit is not None and reply.delay > limit:
                raise self._timeout(request, reply, limit)
        return self._response(request, reply)


class _OwnedMockRouter(respx.MockRouter):
    """A respx router whose only route is the stand-in; requests for other hosts raise
    AllMockedAssertionError, which respx takes as "try the next router"."""

    def __init__(self, owner: AIRouter) -> None:
        super().__init__(assert_all_called=False, assert_all_mocked=True)
        self._owner = owner

    def handler(self, request: httpx.Request) -> httpx.Response:
        return self._owner.respond_sync(request)

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        return await self._owner.respond_async(request)


class _Transport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def __init__(self, owner: AIRouter) -> None:
        self._owner = owner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self._owner.respond_sync(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return await self._owner.respond_async(request)


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout")
    if isinstance(timeout, dict):
        value = timeout.get("read")
        return float(value) if value is not None else None
    return None
