"""One trigger's Service Bus receiver, replaced whole when it breaks instead of repaired.

The SDK's async receiver is not coroutine-safe, yet a host must settle many messages on it
while it receives. After a dropped connection each concurrent settle falls back to the
management link and reopens the handler at the same time as the receive does; the SDK then
ends up with a handler that is `None` or shut down while it believes itself open
(`AttributeError: 'NoneType' object has no attribute 'client_ready_async'`), and every later
`receive_messages` returns nothing at once — a busy loop that starves the host's event loop
and never receives again. Measured before this module: 75 of 1,200 messages completed.

So the host never lets a broken receiver be reused. :class:`LiveReceiver` records whether a
receiver may still be used (and why not); settles on it are serialised, and once it is
marked broken they are refused without touching the SDK, as Azure refuses a lock whose link
is gone (the broker redelivers the message when the lock lapses). :class:`TriggerReceiver`
holds the current receiver, opens a fresh one when the current one breaks, and closes a
retired one once no message it delivered is still held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import MessageAlreadySettled, MessageLockLostError

log = logging.getLogger("harness.host")

# Errors that say something about one message, not about the receiver that carries it.
MESSAGE_ERRORS: tuple[type[BaseException], ...] = (MessageLockLostError, MessageAlreadySettled)
REOPEN_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


@dataclass(eq=False)
class LiveReceiver:
    """An SDK receiver and what the host knows about its health."""

    sdk: ServiceBusReceiver
    generation: int
    broken: str | None = None
    """Why this receiver may no longer be used (None while it is healthy)."""
    held: int = 0
    """Messages it delivered whose invocation has not ended."""
    settle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def mark_broken(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason

    def note_failure(self, exc: BaseException) -> None:
        """A settle, renew or receive failed: unless the error is about the message, the
        receiver's handler is suspect and it is retired."""
        if not isinstance(exc, MESSAGE_ERRORS):
            self.mark_broken(f"{type(exc).__name__}: {exc}")


class TriggerReceiver:
    """The receiver a trigger currently receives through, and the ones it retired."""

    def __init__(self, name: str, factory: Callable[[], ServiceBusReceiver]) -> None:
        self.name = name
        self._factory = factory
        self._generation = 0
        self.current = LiveReceiver(factory(), 0)
        self.retired: set[LiveReceiver] = set()
        self.replacements = 0
        self._failures = 0
        self._closing: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        await self.current.sdk.__aenter__()

    async def replace(self) -> None:
        """Retire the current receiver and open a new one; backs off while opening fails.

        Returns once a new receiver is open (cancellation, at shutdown, ends the wait).
        """
        old = self.current
        log.warning(
            "%s: receiver %d retired (%s); opening a new one",
            self.name,
            old.generation,
            old.broken or "replaced",
        )
        old.mark_broken("replaced")
        self.retired.add(old)
        self.release(old)
        while True:
            self._generation += 1
            fresh = LiveReceiver(self._factory(), self._generation)
            try:
                await fresh.sdk.__aenter__()
            except asyncio.CancelledError:
                await _close_quietly(fresh.sdk)
                raise
            except Exception as exc:
                await _close_quietly(fresh.sdk)
                delay = REOPEN_BACKOFF[min(self._failures, len(REOPEN_BACKOFF) - 1)]
                self._failures += 1
                log.warning(
                    "%s: cannot open a receiver (%r); again in %.1fs", self.name, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            self.current = fresh
            self.replacements += 1
            return

    def release(self, live: LiveReceiver) -> None:
        """Close a retired receiver once nothing it delivered is still running."""
        if live in self.retired and live.held == 0:
            self.retired.discard(live)
            task = asyncio.get_running_loop().create_task(_close_quietly(live.sdk))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        receivers = [self.current, *self.retired]
        self.retired.clear()
        await asyncio.gather(*(_close_quietly(r.sdk) for r in receivers), *self._closing)


async def _close_quietly(receiver: ServiceBusReceiver) -> None:
    try:
        await receiver.close()
    except Exception:  # a broken handler may fail to close; it is being discarded anyway
        log.debug("closing a retired receiver failed", exc_info=True)
