"""Durable emulator state (``--data-dir``): the core's changes kept in SQLite.

``journal.SqliteJournal`` implements ``core.journal.Journal``; ``schema`` checks and opens the
data directory; ``rows`` and ``descriptions`` turn messages and entities into rows and back.
See ``journal``'s docstring for the design and docs/emulator.md ("Durable state") for use.
"""

from __future__ import annotations

from .journal import LoadReport, SqliteJournal
from .schema import DATABASE_NAME, SCHEMA_VERSION, DataDirError

__all__ = ["DATABASE_NAME", "SCHEMA_VERSION", "DataDirError", "LoadReport", "SqliteJournal"]
