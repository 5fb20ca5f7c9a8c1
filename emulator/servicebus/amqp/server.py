"""The AMQP listener: accepts connections and keeps deliveries and timers moving.

Everything runs on one asyncio loop, so the broker core needs no locks. Broker events
(a message became available) only mark links as wanting a pump; the pumps run once per loop
turn, after the frame that caused them has been handled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..core.broker import Broker
from ..faults import FaultInjector
from ..topology import NamespaceTopology
from .cbs import CbsNode
from .connection import AmqpConnection
from .links import Link, Session
from .management import ManagementNode

log = logging.getLogger("emulator.servicebus.amqp")

HEARTBEAT_SECONDS = 0.5
"""An open connection never stays silent much longer than this: an empty frame fills the gap.

The SDK's keep-alive thread (every 30 s) blocks reading the socket for up to
``socket_timeout`` while holding the lock its sends need, so on a silent connection a send
can wait that long (60 s with ``socket_timeout=60``). Any frame releases the reader. Real
time, not the emulator clock: the SDK's timers are the subject.
"""


ProtocolFactory = Callable[[], asyncio.Protocol]


class AmqpServer:
    """The AMQP port. ``wrap_protocol`` lets another listener share it (the admin API's HTTPS).

    ``faults`` is the injector every connection asks before acting; the emulator owns it so
    the control API can change its rules.
    """

    def __init__(
        self,
        broker: Broker,
        topology: NamespaceTopology,
        faults: FaultInjector,
        *,
        wrap_protocol: Callable[[ProtocolFactory], ProtocolFactory] | None = None,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.namespace = topology.name
        self.cbs = CbsNode(self)
        self.management = ManagementNode(self)
        self.faults = faults
        self._wrap_protocol = wrap_protocol
        self.connections: set[AmqpConnection] = set()
        self._pending: dict[int, tuple[AmqpConnection, Link]] = {}
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> int:
        self._loop = asyncio.get_running_loop()
        factory: ProtocolFactory = lambda: AmqpConnection(self)  # noqa: E731
        if self._wrap_protocol is not None:
            factory = self._wrap_protocol(factory)
        self._server = await self._loop.create_server(factory, host, port)
        bound = self._server.sockets[0].getsockname()[1]
        self.after_activity()
        self._heartbeat()
        return int(bound)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def describe_links(self) -> list[str]:
        """One line per open link the emulator sends on (a receiver's): credit, deliveries,
        window, whether its store has messages queued for it. What a test prints when
        deliveries stall; it reads only, so printing it changes nothing."""
        now = self.broker.clock.now()
        lines = []
        for connection in sorted(self.connections, key=lambda c: c.id):
            for session in connection.sessions.values():
                for link in session.links.values():
                    if not link.is_sender or link.store is None:
                        continue
                    # The cheap hint, not `has_available`: that one expires messages, and a
                    # report must not change what it reports on.
                    queued = link.store.has_any_available(link.message_session)
                    lines.append(
                        f"conn {connection.id} {link.entity_path}: credit={link.credit} "
                        f"delivered={link.delivery_count} drain={link.drain} "
                        f"window={session.remote_incoming_window} "
                        f"delayed={max(0.0, link.delayed_until - now):.1f}s "
                        f"closed={link.closed} queued={queued} "
                        f"active={link.store.active_count}"
                    )
        return lines

    # -- pumping -------------------------------------------------------------------------------

    def want_pump(self, connection: AmqpConnection, link: Link) -> None:
        self._pending[id(link)] = (connection, link)
        self._schedule_flush()

    def want_pump_session(self, connection: AmqpConnection, session: Session) -> None:
        for link in session.links.values():
            if link.is_sender and link.store is not None:
                self._pending[id(link)] = (connection, link)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        # A pump can make more messages available elsewhere (lapsed locks): loop until quiet.
        for _ in range(100):
            if not self._pending:
                break
            pending = list(self._pending.values())
            self._pending.clear()
            for connection, link in pending:
                if not connection.closed and not link.closed:
                    try:
                        connection.pump(link)
                    except Exception:
                        log.exception("pump failed on %s", link.entity_path)
                        connection.close("amqp:internal-error", "internal error in the emulator")
        self._rearm_timer()

    def after_activity(self) -> None:
        """Called after every input: pumps run on the next turn, then the timer is re-armed."""
        self._schedule_flush()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        assert self._loop is not None
        return self._loop.call_later(delay, callback)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.heartbeat(now, HEARTBEAT_SECONDS / 2)
        self._heartbeat_timer = self.call_later(HEARTBEAT_SECONDS / 2, self._heartbeat)

    # -- time ----------------------------------------------------------------------------------

    def process_due(self) -> None:
        """Apply everything due now; called by the timer and after the clock is advanced."""
        self.broker.process_due()
        now = self.broker.clock.now()
        for connection in list(self.connections):
            connection.session_accepts.expire_due(now)
            for session in connection.sessions.values():
                self.want_pump_session(connection, session)
        self._schedule_flush()

    def _rearm_timer(self) -> None:
        if self._loop is None:
            return
        deadlines = [self.broker.next_deadline()]
        deadlines += [c.session_accepts.next_deadline() for c in self.connections]
        deadline = min((d for d in deadlines if d is not None), default=None)
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.broker.clock.now()) + 0.001
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.process_due()
