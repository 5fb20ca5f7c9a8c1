"""The durable emulator's state in SQLite: what the core names changed, written per operation.

Why this shape:

- **Beneath the core, not inside it.** The core stays pure: its stores only *name* what
  changed (``core.journal``) through an optional reference that is None in memory mode, so an
  in-memory emulator makes no extra calls. This class reads the named objects' current state
  when the core commits at the end of an operation.
- **State tables, not an event log.** A row per message, session, sequence counter, remembered
  message id and entity holds its latest state, so a restart is one ``SELECT`` per table, the
  file never needs compacting, and several transitions of one message within an operation (a
  receive that also expires others, a dead-letter that moves one) cost one write each.
- **One transaction per operation.** A batch of 100 messages is one ``BEGIN .. COMMIT``; the
  core commits before the operation returns, i.e. before the AMQP adapter answers the SDK, so
  an acknowledged send, complete or dead-letter is on disk (the WAL) when the client hears of
  it. ``synchronous=NORMAL`` in WAL mode survives the process being killed.
- **Locks are not state.** A message locked when its row was written is restored with a lock
  that has already lapsed: the first ``process_due`` makes it available again with its delivery
  counted (or dead-letters it at MaxDeliveryCount), as the service counts a delivery whose lock
  was lost. Session locks likewise start free.
- **SQLite from the standard library**: transactions, crash safety and a file anyone can inspect
  with ``sqlite3``, with no dependency and no server.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TypeVar

from ..core.broker import Broker
from ..core.clock import EmulatorClock
from ..core.dedup import DuplicateDetector
from ..core.entities import Queue, SequenceCounter, Subscription, Topic
from ..core.message import BrokerMessage
from ..core.rules import CompiledRule
from ..core.sessions import MessageSession
from ..sqlfilter import SqlFilterError
from ..topology import (
    NamespaceTopology,
    QueueDescription,
    RuleDescription,
    SubscriptionDescription,
    TopicDescription,
)
from . import descriptions, rows
from .descriptions import DescriptionError
from .schema import (
    DATABASE_NAME,
    DataDirError,
    check_database,
    check_directory,
    connect,
    lock_directory,
    unlock_directory,
)

log = logging.getLogger("emulator.servicebus.persistence")

_SUBSCRIPTIONS = "/subscriptions/"
_T = TypeVar("_T")

_UPSERT_ENTITY = (
    "INSERT INTO entities (path, kind, deleted, description, rule_parameters, created_at,"
    " updated_at) VALUES (?, ?, 0, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
    " kind = excluded.kind, deleted = 0, description = excluded.description,"
    " rule_parameters = excluded.rule_parameters, created_at = excluded.created_at,"
    " updated_at = excluded.updated_at"
)
_DELETE_ENTITY = "UPDATE entities SET deleted = 1, description = NULL, rule_parameters = NULL"


@dataclasses.dataclass
class _Entity:
    """One row of ``entities``."""

    kind: str
    deleted: bool
    description: str | None
    rule_parameters: str | None
    created_at: float | None
    updated_at: float | None


@dataclasses.dataclass
class LoadReport:
    """What a start found in the data directory (printed by ``sbemu``, asserted by tests)."""

    entities: int = 0
    messages: int = 0
    sessions: int = 0
    duplicates: int = 0
    orphans: int = 0
    """Messages of stores that no entity has any more (kept, logged)."""
    fresh: bool = True


class SqliteJournal:
    """The ``core.journal.Journal`` of a durable emulator, on one data directory.

    Use on one thread at a time (the emulator's loop once it runs). ``open`` checks the
    directory; ``merge_topology`` and ``restore`` rebuild a broker from what it holds.
    """

    def __init__(self, directory: Path, connection: sqlite3.Connection, lock: IO[str]) -> None:
        self.directory = directory
        self._db: sqlite3.Connection | None = connection
        self._lock: IO[str] | None = lock
        self._broker: Broker | None = None
        self._pending = False
        self._messages: dict[str, tuple[dict[int, BrokerMessage], set[int]]] = {}
        self._cleared: set[str] = set()
        self._sessions: dict[tuple[str, str], MessageSession] = {}
        self._sequences: set[SequenceCounter] = set()
        self._seen: list[tuple[DuplicateDetector, object, float]] = []
        self._seen_cleared: set[str] = set()
        self._entities: set[str] = set()
        self._meta: dict[str, object] = {}
        self._pending_rules: dict[str, list[tuple[RuleDescription, object, object]]] = {}
        self._stale_duplicates: list[tuple[str, object]] = []
        self.report = LoadReport()
        self.commits = 0
        """Transactions written (tests check that a batch is one)."""

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | Path) -> SqliteJournal:
        """Open (or create) the state in ``directory``; DataDirError, changing nothing, if it
        is unusable: not a writable directory, in use, or of another schema version."""
        path = Path(directory)
        check_directory(path)
        database = path / DATABASE_NAME
        check_database(database)
        lock = lock_directory(path)
        try:
            connection = connect(database)
        except BaseException:
            unlock_directory(lock)
            raise
        journal = cls(path, connection, lock)
        journal.report.fresh = not journal._read_entities()
        return journal

    @property
    def database(self) -> Path:
        return self.directory / DATABASE_NAME

    def close(self) -> None:
        """Write what is pending and release the directory (an idempotent last step)."""
        if self._db is None:
            return
        try:
            self.commit()
        finally:
            self._db.close()
            self._db = None
            if self._lock is not None:
                unlock_directory(self._lock)
                self._lock = None

    @property
    def closed(self) -> bool:
        return self._db is None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the state journal of {self.directory} is closed")
        return self._db

    # -- loading -------------------------------------------------------------------------------

    def _read_entities(self) -> dict[str, _Entity]:
        found = self._connection().execute(
            "SELECT path, kind, deleted, description, rule_parameters, created_at, updated_at"
            " FROM entities ORDER BY rowid"
        )
        return {
            str(path): _Entity(str(kind), bool(deleted), description, parameters, created, updated)
            for path, kind, deleted, description, parameters, created, updated in found
        }

    def restore_clock(self, clock: EmulatorClock) -> None:
        """Take up the clock offset the last run had (tests move the clock; it must stay)."""
        row = (
            self._connection()
            .execute("SELECT value FROM meta WHERE key = 'clock_offset'")
            .fetchone()
        )
        if row is not None:
            clock.restore_offset(float(row[0]))

    def merge_topology(self, topology: NamespaceTopology) -> None:
        """Make ``topology`` (Config.json's) the entities the last run had, in place.

        An entity the journal knows replaces the configured one of that name, or removes it
        when it was deleted at run time; entities created at run time are added; configured
        entities the journal never saw (new in Config.json) are kept as configured.
        """
        try:
            self._merge(topology, self._read_entities())
        except DescriptionError as exc:
            raise DataDirError(
                f"{self.database}: {exc}; delete the data dir to start fresh"
            ) from None

    def _merge(self, topology: NamespaceTopology, known: dict[str, _Entity]) -> None:
        queues: list[QueueDescription] = []
        topics: list[TopicDescription] = []
        added: set[str] = set()
        for queue in topology.queues:
            key = queue.name.casefold()
            row = known.get(key)
            if row is None:
                queues.append(queue)
            elif not row.deleted and row.kind == "queue":
                queues.append(self._description(row, QueueDescription))
            added.add(key)
        for topic in topology.topics:
            key = topic.name.casefold()
            row = known.get(key)
            if row is None:
                topics.append(topic)
            elif not row.deleted and row.kind == "topic":
                topics.append(self._topic(row, topic.subscriptions, known))
            added.add(key)
        for path, row in known.items():
            if row.deleted or row.kind == "subscription":
                continue
            if path in added and not self._replaces_other_kind(path, row, topology):
                continue
            if row.kind == "queue":
                queues.append(self._description(row, QueueDescription))
            elif row.kind == "topic":
                topics.append(self._topic(row, [], known))
        topology.queues = queues
        topology.topics = topics

    @staticmethod
    def _replaces_other_kind(path: str, row: _Entity, topology: NamespaceTopology) -> bool:
        """A configured queue deleted at run time and re-created as a topic (or the reverse)."""
        if row.kind == "queue":
            return any(t.name.casefold() == path for t in topology.topics)
        return any(q.name.casefold() == path for q in topology.queues)

    def _topic(
        self,
        row: _Entity,
        configured: list[SubscriptionDescription],
        known: dict[str, _Entity],
    ) -> TopicDescription:
        topic = self._description(row, TopicDescription)
        prefix = topic.name.casefold() + _SUBSCRIPTIONS
        subscriptions: list[SubscriptionDescription] = []
        for sub in configured:
            sub_row = known.get(prefix + sub.name.casefold())
            if sub_row is None:
                subscriptions.append(sub)
            elif not sub_row.deleted:
                subscriptions.append(self._subscription(prefix, sub_row))
        names = {prefix + s.name.casefold() for s in configured}
        for path, sub_row in known.items():
            if path.startswith(prefix) and path not in names and not sub_row.deleted:
                subscriptions.append(self._subscription(prefix, sub_row))
        topic.subscriptions = subscriptions
        return topic

    def _subscription(self, prefix: str, row: _Entity) -> SubscriptionDescription:
        """A stored subscription; its rules are compiled in ``restore`` (with their
        parameters, which a description alone cannot carry)."""
        sub = self._description(row, SubscriptionDescription)
        parameters = json.loads(row.rule_parameters) if row.rule_parameters else []
        if len(parameters) != len(sub.rules):
            raise DescriptionError(f"rule parameters of '{sub.name}' do not match its rules")
        self._pending_rules[prefix + sub.name.casefold()] = [
            (rule, fp, ap) for rule, (fp, ap) in zip(sub.rules, parameters, strict=True)
        ]
        sub.rules = []
        return sub

    @staticmethod
    def _description(row: _Entity, kind: type[_T]) -> _T:
        value = descriptions.loads(row.description or "null")
        if not isinstance(value, kind):
            raise DescriptionError(f"stored {row.kind} is a {type(value).__name__}")
        return value

    def restore(self, broker: Broker) -> LoadReport:
        """Fill a broker built from ``merge_topology``'s topology with the stored state, then
        attach this journal and apply what fell due while the emulator was down."""
        self._broker = broker
        try:
            self._restore_entities(broker)
        except (DescriptionError, SqlFilterError) as exc:
            raise DataDirError(
                f"{self.database}: {exc}; delete the data dir to start fresh"
            ) from None
        self._restore_messages(broker)
        self._restore_sessions(broker)
        self._restore_duplicates(broker)
        broker.attach_journal(self)
        for queue in broker.queues.values():
            self._entities.add(queue.name)
        for topic in broker.topics.values():
            self._entities.add(topic.name)
        self._pending = True
        broker.process_due()  # due schedules, lapsed (restored) locks, TTLs; then commits
        return self.report

    def _restore_entities(self, broker: Broker) -> None:
        known = self._read_entities()
        for entity in _all_entities(broker):
            row = known.get(_path_of(entity).casefold())
            if row is None or row.deleted:
                continue
            self.report.entities += 1
            entity.created_at = row.created_at or entity.created_at
            entity.updated_at = row.updated_at or 0.0
            if isinstance(entity, Subscription):
                pending = self._pending_rules.pop(entity.path.casefold(), None)
                if pending is not None:
                    entity.rules = [
                        CompiledRule.compile(
                            rule,
                            descriptions.load_parameters(fp),
                            descriptions.load_parameters(ap),
                        )
                        for rule, fp, ap in pending
                    ]
                    entity.description.rules = [r.description for r in entity.rules]
        counters = {c.key.casefold(): c for c in _counters(broker)}
        for name, last in self._connection().execute("SELECT entity, last FROM sequences"):
            counter = counters.get(str(name).casefold())
            if counter is not None:
                counter.restore(int(last))

    def _restore_messages(self, broker: Broker) -> None:
        stores = {}
        for entity in _all_entities(broker):
            if isinstance(entity, Topic):
                stores[entity.scheduled_key.casefold()] = (entity, entity.sequence)
                continue
            counter = entity.topic.sequence if isinstance(entity, Subscription) else entity.sequence
            for store in entity.stores():
                stores[store.path.casefold()] = (store, counter)
        found = self._connection().execute(f"SELECT {rows.COLUMNS} FROM messages")
        for row in found:
            try:
                key, message, locked = rows.from_row(row)
            except Exception as exc:
                raise DataDirError(
                    f"{self.database}: message {row[1]} of '{row[0]}' cannot be read ({exc}); "
                    "delete the data dir to start fresh"
                ) from None
            target = stores.get(key.casefold())
            if target is None:
                self.report.orphans += 1
                continue
            owner, counter = target
            counter.restore(message.sequence_number)
            if isinstance(owner, Topic):
                owner.restore_scheduled(message)
            else:
                owner.restore(message, locked=locked)
            self.report.messages += 1
        if self.report.orphans:
            log.warning(
                "%s: %d stored message(s) belong to entities that no longer exist; kept",
                self.database,
                self.report.orphans,
            )

    def _restore_sessions(self, broker: Broker) -> None:
        stores = {s.path.casefold(): s for s in broker.stores()}
        found = self._connection().execute(
            "SELECT store, session_id, state, updated_at FROM sessions"
        )
        for store_key, session_id, state, updated_at in found:
            store = stores.get(str(store_key).casefold())
            if store is not None:
                store.restore_session(
                    str(session_id), None if state is None else bytes(state), float(updated_at)
                )
                self.report.sessions += 1

    def _restore_duplicates(self, broker: Broker) -> None:
        detectors = {
            d.key.casefold(): d
            for e in [*broker.queues.values(), *broker.topics.values()]
            if (d := e.duplicates) is not None
        }
        now = broker.clock.now()
        found = self._connection().execute(
            "SELECT entity, message_id, seen_at FROM duplicates ORDER BY seen_at"
        )
        for entity, message_id, seen_at in found:
            detector = detectors.get(str(entity).casefold())
            if detector is None or float(seen_at) <= now - detector.window:
                self._stale_duplicates.append((str(entity), message_id))
                continue
            detector.restore(message_id, float(seen_at))
            self.report.duplicates += 1

    # -- core.journal.Journal ------------------------------------------------------------------

    def message(self, key: str, messages: dict[int, BrokerMessage], seq: int) -> None:
        entry = self._messages.get(key)
        if entry is None:
            self._messages[key] = (messages, {seq})
        else:
            if entry[0] is not messages:
                entry = self._messages[key] = (messages, entry[1])
            entry[1].add(seq)
        self._pending = True

    def cleared(self, key: str) -> None:
        self._cleared.add(key)
        self._pending = True

    def session(self, key: str, session: MessageSession) -> None:
        self._sessions[(key, session.id)] = session
        self._pending = True

    def sequence(self, counter: SequenceCounter) -> None:
        self._sequences.add(counter)
        self._pending = True

    def duplicate(self, detector: DuplicateDetector, message_id: object, at: float) -> None:
        self._seen.append((detector, message_id, at))
        self._pending = True

    def duplicates_cleared(self, detector: DuplicateDetector) -> None:
        self._seen_cleared.add(detector.key)
        self._pending = True

    def entity(self, path: str) -> None:
        self._entities.add(path)
        self._pending = True

    def clock_offset(self, offset: float) -> None:
        """The emulator clock's offset changed (advance, reset)."""
        self._meta["clock_offset"] = offset
        self._pending = True

    def commit(self) -> None:
        if not self._pending:
            return
        db = self._connection()
        db.execute("BEGIN")
        try:
            self._write(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise  # the operation fails before it is answered; its changes stay pending
        self.commits += 1
        self._pending = False
        self._messages.clear()
        self._cleared.clear()
        self._sessions.clear()
        self._sequences.clear()
        self._seen.clear()
        self._seen_cleared.clear()
        self._entities.clear()
        self._meta.clear()
        self._stale_duplicates.clear()

    # -- writing -------------------------------------------------------------------------------

    def _write(self, db: sqlite3.Connection) -> None:
        for key in self._cleared:
            db.execute("DELETE FROM messages WHERE store = ?", (key,))
            db.execute("DELETE FROM sessions WHERE store = ?", (key,))
        if self._entities:
            self._write_entities(db)
        upserts: list[rows.Row] = []
        deletes: list[tuple[str, int]] = []
        for key, (messages, seqs) in self._messages.items():
            for seq in seqs:
                message = messages.get(seq)
                if message is None:
                    deletes.append((key, seq))
                else:
                    upserts.append(rows.to_row(key, message))
        if deletes:
            db.executemany("DELETE FROM messages WHERE store = ? AND seq = ?", deletes)
        if upserts:
            db.executemany(
                f"INSERT OR REPLACE INTO messages ({rows.COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                upserts,
            )
        if self._sessions:
            db.executemany(
                "INSERT OR REPLACE INTO sessions (store, session_id, state, updated_at)"
                " VALUES (?, ?, ?, ?)",
                [(k, s.id, s.state, s.updated_at) for (k, _), s in self._sessions.items()],
            )
        if self._sequences:
            db.executemany(
                "INSERT OR REPLACE INTO sequences (entity, last) VALUES (?, ?)",
                [(c.key, c.last) for c in self._sequences],
            )
        self._write_duplicates(db)
        if self._meta:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", self._meta.items()
            )

    def _write_duplicates(self, db: sqlite3.Connection) -> None:
        for key in self._seen_cleared:
            db.execute("DELETE FROM duplicates WHERE entity = ?", (key,))
        if self._stale_duplicates:
            db.executemany(
                "DELETE FROM duplicates WHERE entity = ? AND message_id = ?",
                self._stale_duplicates,
            )
        if not self._seen:
            return
        db.executemany(
            "INSERT OR REPLACE INTO duplicates (entity, message_id, seen_at) VALUES (?, ?, ?)",
            [(d.key, message_id, at) for d, message_id, at in self._seen],
        )
        latest: dict[int, tuple[DuplicateDetector, float]] = {}
        for detector, _, at in self._seen:
            latest[id(detector)] = (detector, at)
        db.executemany(
            "DELETE FROM duplicates WHERE entity = ? AND seen_at <= ?",
            [(d.key, at - d.window) for d, at in latest.values() if d.window != math.inf],
        )

    def _write_entities(self, db: sqlite3.Connection) -> None:
        broker = self._broker
        assert broker is not None, "restore() attaches the journal to its broker"
        for path in self._entities:
            entity = _find(broker, path)
            key = path.casefold()
            if entity is None:
                db.execute(_DELETE_ENTITY + " WHERE path = ?", (key,))
                if _SUBSCRIPTIONS not in key:
                    self._delete_subscriptions(db, key, keep=())
            elif isinstance(entity, Topic):
                self._upsert(db, entity)
                for sub in entity.subscriptions.values():
                    self._upsert(db, sub)
                keep = [s.path.casefold() for s in entity.subscriptions.values()]
                self._delete_subscriptions(db, key, keep)
            else:
                self._upsert(db, entity)

    @staticmethod
    def _delete_subscriptions(db: sqlite3.Connection, topic_key: str, keep: Iterable[str]) -> None:
        prefix = topic_key + _SUBSCRIPTIONS
        kept = set(keep)
        found = db.execute(
            "SELECT path FROM entities WHERE substr(path, 1, ?) = ? AND deleted = 0",
            (len(prefix), prefix),
        ).fetchall()
        gone = [(p,) for (p,) in found if p not in kept]
        db.executemany(_DELETE_ENTITY + " WHERE path = ?", gone)

    @staticmethod
    def _upsert(db: sqlite3.Connection, entity: Queue | Topic | Subscription) -> None:
        parameters = None
        if isinstance(entity, Queue):
            kind, text = "queue", descriptions.dumps(entity.description)
        elif isinstance(entity, Topic):
            kind = "topic"
            text = descriptions.dumps(dataclasses.replace(entity.description, subscriptions=[]))
        else:
            kind = "subscription"
            rules = [r.description for r in entity.rules]
            text = descriptions.dumps(dataclasses.replace(entity.description, rules=rules))
            parameters = json.dumps(
                [
                    [
                        descriptions.dump_parameters(r.filter_parameters),
                        descriptions.dump_parameters(r.action_parameters),
                    ]
                    for r in entity.rules
                ]
            )
        db.execute(
            _UPSERT_ENTITY,
            (
                _path_of(entity).casefold(),
                kind,
                text,
                parameters,
                entity.created_at,
                entity.updated_at,
            ),
        )


def _path_of(entity: Queue | Topic | Subscription) -> str:
    return entity.path if isinstance(entity, Subscription) else entity.name


def _all_entities(broker: Broker) -> list[Queue | Topic | Subscription]:
    found: list[Queue | Topic | Subscription] = list(broker.queues.values())
    for topic in broker.topics.values():
        found.append(topic)
        found.extend(topic.subscriptions.values())
    return found


def _counters(broker: Broker) -> list[SequenceCounter]:
    return [e.sequence for e in [*broker.queues.values(), *broker.topics.values()]]


def _find(broker: Broker, path: str) -> Queue | Topic | Subscription | None:
    folded = path.casefold()
    if _SUBSCRIPTIONS in folded:
        topic_name, _, sub_name = folded.partition(_SUBSCRIPTIONS)
        topic = broker.topics.get(topic_name)
        return topic.subscription(sub_name) if topic is not None else None
    return broker.queues.get(folded) or broker.topics.get(folded)
