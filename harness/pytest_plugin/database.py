"""The `db` fixture: sync SQLAlchemy on the stack's (per-worker) database.

Generic: raw `query` / `execute` only. A project that wants its tables created and
helpers on them subclasses `Database` and overrides `db` in its conftest (this
repository's apps: `scenarios/scenario_apps.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from harness.stack.services import sync_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from harness.stack import Stack


class Database:
    """Sync SQLAlchemy access to the stack's database, for arranging and asserting."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.url = url
        self.engine: Engine = create_engine(sync_url(url), pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]

    def execute(self, sql: str, **params: Any) -> int:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            return conn.execute(text(sql), params).rowcount


@pytest.fixture(scope="session")
def db(stack: Stack) -> Iterator[Database]:
    """The stack's (per-worker) PostgreSQL database."""
    database = Database(stack.database_url)
    try:
        yield database
    finally:
        database.close()
