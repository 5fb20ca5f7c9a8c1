"""Docker engine detection (bounded, never hangs) and the containers provider's plumbing."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.stack import StackBuilder, StackError, detect_docker_engine
from harness.stack import services as stack_services
from harness.stack import stack as stack_module
from harness.stack.docker import EngineStatus, docker_info

ENGINE = detect_docker_engine()


@contextmanager
def fake_engine(path: Path, answer: bytes | None) -> Iterator[None]:
    """A unix socket that answers `answer` to anything (None: accept and stay silent)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.recv(1024)
            if answer is None:
                held.append(conn)
                continue
            conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


PONG = b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Length: 2\r\n\r\nOK"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sbh-dk-", dir="/tmp") as d:
        yield Path(d)


def test_no_engine_here_is_reported_quickly() -> None:
    if ENGINE.available:
        pytest.skip(f"a Docker engine answers here: {ENGINE.reason}")
    started = time.monotonic()
    status = detect_docker_engine(timeout=1.0)
    assert not status.available and not status
    assert status.reason.startswith("no Docker engine")
    assert time.monotonic() - started < 3


def test_no_socket_and_no_docker_host(tmp_path: Path) -> None:
    missing = tmp_path / "docker.sock"
    status = detect_docker_engine(env={}, socket_paths=[missing])
    assert not status.available
    assert "DOCKER_HOST is unset" in status.reason and str(missing) in status.reason


def test_engine_answering_ping_is_detected(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    with fake_engine(path, PONG):
        status = detect_docker_engine(env={}, socket_paths=[path])
    assert status.available, status.reason
    assert status.endpoint == f"unix://{path}"


def test_docker_host_unix_url_is_used(sock_dir: Path) -> None:
    path = sock_dir / "d.sock"
    with fake_engine(path, PONG):
        status = detect_docker_engine(env={"DOCKER_HOST": f"unix://{path}"})
    assert status.available and "DOCKER_HOST" in status.reason


def test_silent_engine_times_out_within_the_bound(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    with fake_engine(path, None):
        started = time.monotonic()
        status = detect_docker_engine(timeout=0.3, env={}, socket_paths=[path])
        elapsed = time.monotonic() - started
    assert not status.available
    assert "no answer" in status.reason
    assert elapsed < 2


def test_stale_socket_file_is_not_an_engine(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.close()  # the file stays, nothing listens: what a stopped daemon leaves behind
    status = detect_docker_engine(env={}, socket_paths=[path])
    assert not status.available and "cannot connect" in status.reason


def test_wrong_answer_is_not_an_engine(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    with fake_engine(path, b"HTTP/1.1 404 Not Found\r\n\r\nnope"):
        status = detect_docker_engine(env={}, socket_paths=[path])
    assert not status.available and "404" in status.reason


def test_docker_host_tcp_closed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status = detect_docker_engine(timeout=0.5, env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert not status.available and f"127.0.0.1:{port}" in status.reason


def test_cli_fallback_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    started = time.monotonic()
    ok, why = docker_info(timeout=0.5)
    assert not ok and "did not answer" in why
    assert time.monotonic() - started < 3
    status = detect_docker_engine(timeout=0.5, env={"DOCKER_HOST": "ssh://user@host"})
    assert not status.available and "ssh://" in status.reason


def test_containers_provider_says_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        stack_module, "detect_docker_engine", lambda: EngineStatus(False, "no Docker engine: x")
    )
    started = time.monotonic()
    with pytest.raises(StackError, match="containers provider: no Docker engine"):
        StackBuilder().provider("containers").start()
    assert time.monotonic() - started < 5


@pytest.mark.skipif(not ENGINE.available, reason=ENGINE.reason)
def test_containers_provider_for_real() -> None:
    with StackBuilder().provider("containers").isolated("tc").start() as stack:
        assert stack.name == "containers"
        import psycopg
        import redis

        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        client = redis.Redis.from_url(stack.redis_url)
        assert client.ping()
        client.close()


class _FakeContainer:
    """Stands in for a testcontainers container; points at this machine's services."""

    started: list[str] = []
    stopped: list[str] = []

    def __init__(self, image: str, port: int, **kwargs: object) -> None:
        self.image = image
        self.port = port

    def __enter__(self) -> _FakeContainer:
        self.started.append(self.image)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.append(self.image)

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        return self.port


def test_containers_plumbing_with_fake_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The URLs built from container host/ports reach a server, and containers are stopped."""
    if stack_services.probe_local(stack_services.LOCAL_DATABASE_URL, "redis://127.0.0.1:6379"):
        pytest.skip("needs the local PostgreSQL and Redis to stand in for containers")

    def pg(image: str, **kwargs: object) -> _FakeContainer:
        assert kwargs["username"] == "postgres"
        return _FakeContainer(image, 5432)

    def rd(image: str, **kwargs: object) -> _FakeContainer:
        return _FakeContainer(image, 6379)

    monkeypatch.setattr(stack_services, "_container_classes", lambda: (pg, rd))
    monkeypatch.setattr(
        stack_module, "detect_docker_engine", lambda: EngineStatus(True, "fake engine")
    )
    _FakeContainer.started.clear()
    _FakeContainer.stopped.clear()
    with StackBuilder().provider("containers").start() as stack:
        assert stack.name == "containers" and stack.services == "containers"
        # The local server's trust auth ignores the container's password.
        assert stack.database_url.startswith("postgresql://postgres:postgres@127.0.0.1:5432/")
        import psycopg

        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (stack.database_name,)
    assert _FakeContainer.started == [stack_services.POSTGRES_IMAGE, stack_services.REDIS_IMAGE]
    assert sorted(_FakeContainer.stopped) == sorted(_FakeContainer.started)
