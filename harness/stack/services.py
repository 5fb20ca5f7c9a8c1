"""Where PostgreSQL and Redis come from, and how one stack gets its own share of them.

A backend (local / embedded / containers) yields *server* URLs. Isolation is then the same
for all: a fresh database `sbh_<worker>_<random>` created on start and dropped (WITH FORCE)
on stop, and a Redis key prefix `sbh:<worker>:<random>:` handed to the workers as
`REDIS_KEY_PREFIX` (they prefix every key with it) whose keys are deleted on stop. A prefix,
not a db number: Redis has 16 databases by default, managed Redis often only db 0, and
`pytest -n auto` on a large machine would run out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse

from .embedded import EmbeddedPostgres, EmbeddedRedis
from .errors import StackError

log = logging.getLogger("harness.stack")

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
PROBE_TIMEOUT = 2.0
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"


def sync_url(url: str) -> str:
    """The psycopg (sync) driver URL for a plain `postgresql://` one; others unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class ServerUrls:
    """What a backend provides: a maintenance database URL and a Redis URL, plus who."""

    backend: str
    postgres_url: str
    redis_url: str
    detail: str = ""


# -- reachability -----------------------------------------------------------------------------


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def _tcp_reachable(host: str, port: int, timeout: float) -> str | None:
    """None when something accepts on host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def probe_postgres(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when PostgreSQL at `url` accepts a login, else a one-line reason."""
    host, port = _host_port(url, 5432)
    problem = _tcp_reachable(host, port, timeout)
    if problem:
        return f"PostgreSQL at {host}:{port}: {problem}"
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=max(2, int(timeout)), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()
        return f"PostgreSQL at {host}:{port}: {first[0] if first else type(exc).__name__}"
    return None


def probe_redis(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when Redis at `url` answers PING, else a one-line reason."""
    host, port = _host_port(url, 6379)
    problem = _tcp_reachable(host, port, timeout)
    if problem:
        return f"Redis at {host}:{port}: {problem}"
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {host}:{port}: {exc}"
    finally:
        client.close()
    return None


def local_urls(
    database_url: str | None = None,
    redis_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Explicit URLs, else DATABASE_URL / REDIS_URL, else this machine's local services."""
    env = os.environ if env is None else env
    return (
        database_url or env.get("DATABASE_URL", "").strip() or LOCAL_DATABASE_URL,
        redis_url or env.get("REDIS_URL", "").strip() or LOCAL_REDIS_URL,
    )


def probe_local(database_url: str, redis_url: str, timeout: float = PROBE_TIMEOUT) -> list[str]:
    """Problems with the local services (empty when both answer)."""
    problems = []
    if not database_url.startswith(("postgresql://", "postgres://")):
        problems.append(f"DATABASE_URL {database_url!r} is not a postgresql:// URL")
    else:
        problems.append(probe_postgres(database_url, timeout) or "")
    if not redis_url.startswith(("redis://", "rediss://")):
        problems.append(f"REDIS_URL {redis_url!r} is not a redis:// URL")
    else:
        problems.append(probe_redis(redis_url, timeout) or "")
    return [p for p in problems if p]


# -- backends -------------------------------------------------------------------------------


@contextlib.contextmanager
def local_backend(database_url: str, redis_url: str) -> Iterator[ServerUrls]:
    """Services that already run; checked quickly so a dead one fails with a clear message."""
    problems = probe_local(database_url, redis_url)
    if problems:
        raise StackError(
            "local provider: " + "; ".join(problems) + ". Start the service, point "
            "DATABASE_URL / REDIS_URL at one, or use the embedded provider"
        )
    yield ServerUrls("local", database_url, redis_url, f"{_safe(database_url)}, {redis_url}")


@contextlib.contextmanager
def embedded_backend() -> Iterator[ServerUrls]:
    """A private PostgreSQL and Redis for this stack, stopped and deleted afterwards."""
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server:
        detail = (
            f"postgres pid {postgres.pid} on :{postgres.port} ({postgres.start_seconds:.2f}s), "
            f"redis pid {redis_server.pid} on :{redis_server.port} "
            f"({redis_server.start_seconds:.2f}s)"
        )
        log.info("embedded servers up: %s", detail)
        yield ServerUrls("embedded", postgres.url, redis_server.url, detail)


def _container_classes() -> tuple[Any, Any]:
    try:
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        try:
            from testcontainers.postgres import PostgresContainer
            from testcontainers.redis import RedisContainer
        except ImportError as exc:
            raise StackError(
                "containers provider: testcontainers is not installed (pip install -e '.[stack]')"
            ) from exc
    return PostgresContainer, RedisContainer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _start_on_own_port(
    make: Callable[[], Any], container_port: int, exits: contextlib.ExitStack, attempts: int = 3
) -> Any:
    """Start a container with its port bound to a host port chosen here rather than by
    Docker, which picks a new one each time a container starts: a container stopped and
    started again (the fault scenarios do it) comes back where the stack's URLs point.
    A port taken between choosing and binding is retried with another."""
    for attempt in range(1, attempts + 1):
        container = make().with_bind_ports(container_port, _free_port())
        try:
            return exits.enter_context(container)
        except Exception as exc:
            with contextlib.suppress(Exception):
                container.stop()
            text = str(exc).lower()
            if attempt == attempts or not ("allocated" in text or "address already" in text):
                raise
            log.info("container port taken, trying another: %s", exc)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def containers_backend(
    postgres_image: str = POSTGRES_IMAGE, redis_image: str = REDIS_IMAGE
) -> Iterator[ServerUrls]:
    """Throwaway containers via testcontainers (its Ryuk reaper removes them if we die)."""
    postgres_cls, redis_cls = _container_classes()
    with contextlib.ExitStack() as exits:
        postgres = _start_on_own_port(
            lambda: postgres_cls(
                postgres_image, username="postgres", password="postgres", dbname="postgres"
            ),
            5432,
            exits,
        )
        redis_container = _start_on_own_port(lambda: redis_cls(redis_image), 6379, exits)
        pg_host = postgres.get_container_host_ip()
        pg_port = int(postgres.get_exposed_port(5432))
        rd_host = redis_container.get_container_host_ip()
        rd_port = int(redis_container.get_exposed_port(6379))
        yield ServerUrls(
            "containers",
            f"postgresql://postgres:postgres@{pg_host}:{pg_port}/postgres",
            f"redis://{rd_host}:{rd_port}/0",
            f"{postgres_image} on {pg_host}:{pg_port}, {redis_image} on {rd_host}:{rd_port}",
        )


# -- isolation ------------------------------------------------------------------------------


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "main"


def isolation_names(worker_id: str) -> tuple[str, str]:
    """(database name, Redis key prefix) unique to this stack; the worker id shows in both."""
    token = secrets.token_hex(4)
    worker = _slug(worker_id, 30)
    return f"sbh_{worker}_{token}", f"sbh:{worker}:{token}:"


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database (credentials, host and query kept)."""
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/" + database))


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return urlunparse(parsed._replace(netloc=netloc))


def create_database(server_url: str, name: str) -> str:
    """Create an empty database; return its URL. The workers create their tables."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop it even if a worker still holds a connection (PostgreSQL 13+ `WITH (FORCE)`)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def delete_prefixed_keys(redis_url: str, prefix: str, timeout: float = 10.0) -> int:
    """Delete every key under `prefix` (SCAN, never KEYS); returns how many."""
    import redis

    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch = []
            if time.monotonic() > deadline:
                raise StackError(f"deleting Redis keys under {prefix!r} took over {timeout}s")
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
