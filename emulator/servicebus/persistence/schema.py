"""The data directory and its SQLite database: checks, locking, and the table layout.

Everything that can make a directory unusable (not a directory, not writable, another
emulator using it, a database this version cannot read) is found *before* anything is
written, and reported as one :class:`DataDirError` naming the problem and what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the layout below; any other version is refused, never migrated
in place (the state is a test fixture's: start fresh rather than guess)."""
APPLICATION_ID = 0x53424D55
"""``PRAGMA application_id`` ("SBMU"): tells our database from any other SQLite file."""
DATABASE_NAME = "servicebus.sqlite3"
LOCK_NAME = "servicebus.lock"
_SQLITE_MAGIC = b"SQLite format 3\x00"

DDL = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
CREATE TABLE entities (
    path TEXT PRIMARY KEY,          -- folded: 'q', 't', 't/subscriptions/s'
    kind TEXT NOT NULL,             -- queue | topic | subscription
    deleted INTEGER NOT NULL,       -- 1: deleted at run time (Config.json must not revive it)
    description TEXT,               -- JSON (descriptions.py); NULL once deleted
    rule_parameters TEXT,           -- JSON: [[filter params, action params], ...] per rule
    created_at REAL,
    updated_at REAL
);
CREATE TABLE sequences (
    entity TEXT PRIMARY KEY,        -- queue or topic name
    last INTEGER NOT NULL           -- the last sequence number handed out
) WITHOUT ROWID;
CREATE TABLE messages (
    store TEXT NOT NULL,            -- 'q', 'q/$DeadLetterQueue', 't/Subscriptions/s', ...
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,         -- 0 active, 1 deferred, 2 scheduled
    locked INTEGER NOT NULL,        -- locked when written: comes back with the delivery counted
    delivery_count INTEGER NOT NULL,
    enqueued_time REAL NOT NULL,
    expires_at REAL NOT NULL,
    size INTEGER NOT NULL,
    dead_letter_source TEXT,
    hops INTEGER NOT NULL,
    wire BLOB NOT NULL,             -- header, message annotations and bare sections as sent
    system BLOB,                    -- AMQP map, only when the broker changed the properties
    user BLOB,                      -- application-properties section, idem
    PRIMARY KEY (store, seq)
) WITHOUT ROWID;
CREATE TABLE sessions (
    store TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state BLOB,
    updated_at REAL NOT NULL,
    PRIMARY KEY (store, session_id)
) WITHOUT ROWID;
CREATE TABLE duplicates (
    entity TEXT NOT NULL,
    message_id NOT NULL,            -- text, or a blob for binary ids
    seen_at REAL NOT NULL,
    PRIMARY KEY (entity, message_id)
) WITHOUT ROWID;
CREATE INDEX duplicates_by_time ON duplicates (entity, seen_at);
"""


class DataDirError(Exception):
    """The data directory cannot be used; nothing in it was changed."""


def check_directory(directory: Path) -> None:
    """Create ``directory`` if missing; refuse one that is not a writable directory."""
    if directory.exists() and not directory.is_dir():
        raise DataDirError(f"data dir {directory} exists and is not a directory")
    if not directory.exists():
        try:
            directory.mkdir(parents=True)
        except OSError as exc:
            raise DataDirError(
                f"cannot create data dir {directory}: {exc.strerror or exc}"
            ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DataDirError(f"data dir {directory} is not writable")
    database = directory / DATABASE_NAME
    if database.exists() and not os.access(database, os.R_OK | os.W_OK):
        raise DataDirError(f"{database} is not readable and writable")


def check_database(database: Path) -> None:
    """Refuse a database of another application or schema version, without writing to it.

    Without a ``-wal`` file the header of the database file is authoritative and is read
    directly; with one (an emulator that crashed) SQLite itself reads, read-only. A database
    without either mark is ours to set up only while it holds no tables at all.
    """
    if not database.exists():
        return
    wal = database.with_name(database.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        application_id, version, tables = _read_with_sqlite(database)
    else:
        try:
            with database.open("rb") as handle:
                header = handle.read(100)
        except OSError as exc:
            raise DataDirError(f"cannot read {database}: {exc.strerror or exc}") from None
        if not header:
            return  # an empty file is an empty database
        if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
            raise DataDirError(f"{database} is not an SQLite database")
        version = int.from_bytes(header[60:64], "big")
        application_id = int.from_bytes(header[68:72], "big")
        tables = int.from_bytes(header[28:32], "big") > 1  # pages beyond the schema page
    if application_id == 0 and version == 0 and not tables:
        return  # created, never set up (our set-up is one transaction): ours to set up
    if application_id != APPLICATION_ID:
        raise DataDirError(
            f"{database} is not a Service Bus emulator state database "
            f"(application id {application_id:#x}); use another --data-dir"
        )
    if version != SCHEMA_VERSION:
        raise DataDirError(
            f"{database} holds emulator state of schema version {version}, and this emulator "
            f"reads version {SCHEMA_VERSION}; delete {database.parent} to start fresh, or run "
            "the emulator version that wrote it"
        )


def _read_with_sqlite(database: Path) -> tuple[int, int, bool]:
    try:
        connection = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            application_id = int(connection.execute("PRAGMA application_id").fetchone()[0])
            version = int(connection.execute("PRAGMA user_version").fetchone()[0])
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise DataDirError(f"{database} cannot be read as an SQLite database: {exc}") from None
    return application_id, version, bool(tables)


def lock_directory(directory: Path) -> IO[str]:
    """Hold the directory for this process (released when it exits, even by SIGKILL)."""
    path = directory / LOCK_NAME
    try:
        handle = path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise DataDirError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirError(
            f"data dir {directory} is in use by another emulator (pid {holder})"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def unlock_directory(handle: IO[str]) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()


def connect(database: Path) -> sqlite3.Connection:
    """Open (creating the tables on first use) in WAL mode with ``synchronous=NORMAL``.

    WAL with NORMAL writes every commit to the log before ``commit`` returns, so it survives
    the emulator process being killed; it may lose the last commits only if the machine itself
    loses power, which is not a failure a local test emulator guards against.
    """
    try:
        connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        if int(connection.execute("PRAGMA user_version").fetchone()[0]) == 0:
            _create(connection)
    except sqlite3.Error as exc:
        raise DataDirError(f"cannot open {database}: {exc}") from None
    return connection


def _create(connection: sqlite3.Connection) -> None:
    """The tables and the two marks, in one transaction: a half-made database cannot exist."""
    connection.executescript(
        f"""BEGIN IMMEDIATE;
        {DDL}
        PRAGMA application_id = {APPLICATION_ID};
        PRAGMA user_version = {SCHEMA_VERSION};
        COMMIT;"""
    )
