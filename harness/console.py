"""Tables the harness adds to the emulator's web console (``/console``): the workers' recent
invocations, and a table a project reads from its own database (``harness up``: the jobs).

A console panel is rendered on the emulator's loop thread, which must never wait on a
database or a lock held by a worker, so each panel here keeps a snapshot that something
else fills: host processes' output lines as they arrive, a polling thread for the database.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from emulator.servicebus.console import PanelTable
from harness.stack.services import sync_url

if TYPE_CHECKING:
    from .host import FunctionsHost

INVOCATION_COLUMNS = (
    "time",
    "app",
    "function",
    "message",
    "dc",
    "outcome",
    "settlement",
    "error",
    "duration",
)
# What harness.host.records.InvocationLog.finish logs for each run, after the log prefix.
_SUMMARY = re.compile(
    r"^(?P<time>\S+(?: \d\d:\d\d:\d\d\S*)?) .*?harness\.host\.invocations:? +"
    r"#\d+ (?P<function>\S+) msg=(?P<message>\S+) dc=(?P<dc>\S+) (?P<outcome>\w+) "
    r"settlement=(?P<settlement>\S+)(?: error=(?P<error>.*?))?(?: settle_error=(?P<settle>.*?))?"
    r" in (?P<duration>[\d.]+s)$"
)
_TONES = {"succeeded": "ok", "failed": "bad", "timeout": "bad", "cancelled": "warn"}


@dataclass(frozen=True)
class InvocationRow:
    time: str
    app: str
    function: str
    message: str
    delivery_count: str
    outcome: str
    settlement: str
    error: str
    duration: str

    def cells(self) -> tuple[str, ...]:
        return (
            self.time,
            self.app,
            self.function,
            self.message,
            self.delivery_count,
            self.outcome,
            self.settlement,
            self.error,
            self.duration,
        )


def parse_invocation_line(app: str, line: str) -> InvocationRow | None:
    """One host process's log line about a finished run, or None for any other line."""
    match = _SUMMARY.match(line.strip())
    if match is None:
        return None
    time = match["time"]
    error = match["error"] or (f"settle: {match['settle']}" if match["settle"] else "")
    return InvocationRow(
        time=time.split(" ")[-1].split(",")[0],
        app=app,
        function=match["function"],
        message=match["message"],
        delivery_count=match["dc"],
        outcome=match["outcome"],
        settlement=match["settlement"],
        error=error,
        duration=match["duration"],
    )


class InvocationsPanel:
    """The last ``limit`` runs of every watched app, newest first."""

    def __init__(self, limit: int = 30) -> None:
        self.limit = limit
        self._rows: collections.deque[InvocationRow] = collections.deque(maxlen=limit)
        self._hosts: dict[str, FunctionsHost] = {}
        self._lock = threading.Lock()

    def feed(self, app: str) -> Callable[[str], None]:
        """A line listener for one host process's output."""

        def listen(line: str) -> None:
            row = parse_invocation_line(app, line)
            if row is not None:
                with self._lock:
                    self._rows.append(row)

        return listen

    def watch_host(self, app: str, host: FunctionsHost) -> None:
        """An in-process host: its invocation log is read at each refresh."""
        self._hosts[app] = host

    def _from_hosts(self) -> list[tuple[datetime, InvocationRow]]:
        found = []
        for app, host in self._hosts.items():
            for item in host.recent_invocations(self.limit):
                if not item.finished:
                    continue
                found.append(
                    (
                        item.started_at,
                        InvocationRow(
                            time=item.started_at.strftime("%H:%M:%S"),
                            app=app,
                            function=item.function,
                            message=str(item.message_id or ""),
                            delivery_count=str(item.delivery_count or ""),
                            outcome=item.outcome,
                            settlement=str(item.settlement),
                            error=item.error or "",
                            duration=f"{item.duration:.2f}s" if item.duration is not None else "",
                        ),
                    )
                )
        found.sort(key=lambda pair: pair[0])
        return found[-self.limit :]

    def table(self) -> PanelTable:
        with self._lock:
            rows = list(self._rows)
        rows += [row for _, row in self._from_hosts()]
        rows = rows[-self.limit :][::-1]
        return PanelTable(
            "Recent invocations",
            INVOCATION_COLUMNS,
            [row.cells() for row in rows],
            note=f"the workers' last {self.limit} finished runs, newest first",
            row_status=[_TONES.get(row.outcome, "") for row in rows],
        )


class QueryPanel:
    """A table read from a database every ``interval`` seconds by a thread of its own."""

    def __init__(
        self,
        title: str,
        database_url: str,
        query: str,
        columns: Sequence[str],
        *,
        row: Callable[[Any], tuple[object, ...]] = tuple,
        tone: Callable[[Any], str] = lambda _: "",
        interval: float = 2.0,
    ) -> None:
        self.title = title
        self.database_url = database_url
        self.query = query
        self.columns = tuple(columns)
        self.row = row
        self.tone = tone
        self.interval = interval
        self._table = PanelTable(title, self.columns, (), note="not read yet")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> QueryPanel:
        self._thread = threading.Thread(target=self._run, name="console-query", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def refresh(self, connection: Any) -> None:
        """Read the query once on ``connection`` into the snapshot."""
        import sqlalchemy

        rows = connection.execute(sqlalchemy.text(self.query)).all()
        self._table = PanelTable(
            self.title,
            self.columns,
            [self.row(r) for r in rows],
            note=f"read at {datetime.now().strftime('%H:%M:%S')}, every {self.interval:g} s",
            row_status=[self.tone(r) for r in rows],
        )

    def read_now(self) -> PanelTable:
        """Read once, now (tests; the thread reads on its own)."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(sync_url(self.database_url), pool_size=1)
        try:
            self._read(engine)
        finally:
            engine.dispose()
        return self._table

    def _read(self, engine: Any) -> None:
        """One read into the snapshot; a failure becomes the table's note, never an error."""
        import sqlalchemy

        try:
            with engine.connect() as connection:
                self.refresh(connection)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            self._table = PanelTable(
                self.title, self.columns, (), note=f"cannot read: {_first_line(exc)}"
            )

    def _run(self) -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(sync_url(self.database_url), pool_size=1)
        try:
            while not self._stop.is_set():
                self._read(engine)
                self._stop.wait(self.interval)
        finally:
            engine.dispose()

    def table(self) -> PanelTable:
        return self._table


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
