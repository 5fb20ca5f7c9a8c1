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
from harness.stack.docker import (
    EngineClient,
    EngineStatus,
    docker_info,
    images_problem,
    required_images,
)
from harness.stack.docker import testcontainers_settings as tc_settings  # not a test

ENGINE = detect_docker_engine()


def _real_images_problem() -> str | None:
    if not ENGINE.available:
        return ENGINE.reason
    return images_problem(stack_module.docker_client(ENGINE), stack_module.needed_images())


REAL_IMAGES_PROBLEM = _real_images_problem()
RYUK, PG, RD = "testcontainers/ryuk:0.8.1", "postgres:16-alpine", "redis:7-alpine"
IMAGES = [RYUK, PG, RD]


class FakeDocker:
    """An engine's image store: `present` images are local, `pullable` ones a registry has."""

    def __init__(self, present: set[str] = frozenset(), pullable: set[str] = frozenset()) -> None:
        self.present = set(present)
        self.pullable = set(pullable)
        self.inspected: list[str] = []
        self.pull_checked: list[str] = []

    def image_present(self, name: str) -> bool:
        self.inspected.append(name)
        return name in self.present

    def image_pullable(self, name: str) -> tuple[bool, str]:
        self.pull_checked.append(name)
        if name in self.pullable:
            return True, "its registry has it"
        return False, "lookup registry-1.docker.io: no such host"


NOT_FOUND = b'HTTP/1.0 404 Not Found\r\n\r\n{"message":"No such image"}'


@contextmanager
def fake_engine(path: Path, answer: bytes | None) -> Iterator[None]:
    """A unix socket that answers `answer` to anything (None: accept and stay silent)."""
    with fake_api(path, {}, default=answer):
        yield


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


@pytest.mark.skipif(REAL_IMAGES_PROBLEM is not None, reason=f"{REAL_IMAGES_PROBLEM}")
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
    bound: list[tuple[str, int, int]] = []

    def __init__(self, image: str, port: int, **kwargs: object) -> None:
        self.image = image
        self.port = port

    def with_bind_ports(self, container: int, host: int) -> _FakeContainer:
        self.bound.append((self.image, container, host))
        return self

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
    monkeypatch.setattr(stack_module, "needed_images", lambda: IMAGES)
    monkeypatch.setattr(stack_module, "docker_client", lambda status: FakeDocker(set(IMAGES)))
    _FakeContainer.started.clear()
    _FakeContainer.stopped.clear()
    _FakeContainer.bound.clear()
    with StackBuilder().provider("containers").start() as stack:
        assert stack.name == "containers" and stack.services == "containers"
        # The local server's trust auth ignores the container's password.
        assert stack.database_url.startswith("postgresql://postgres:postgres@127.0.0.1:5432/")
        import psycopg

        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (stack.database_name,)
    assert _FakeContainer.started == [stack_services.POSTGRES_IMAGE, stack_services.REDIS_IMAGE]
    # Each on a host port of its own choosing, so a restarted container keeps its address.
    bound = [(image, port) for image, port, _ in _FakeContainer.bound]
    assert bound == [(stack_services.POSTGRES_IMAGE, 5432), (stack_services.REDIS_IMAGE, 6379)]
    assert all(host > 0 for *_, host in _FakeContainer.bound)
    assert sorted(_FakeContainer.stopped) == sorted(_FakeContainer.started)


# -- images: does the engine have what containers needs? -----------------------------------

YES = EngineStatus(True, "Docker engine at unix:///fake.sock answered GET /_ping", "unix:///f")


def _choose(docker: FakeDocker, problems: list[str] | None = None) -> stack_module.Choice:
    return stack_module.choose_services(
        engine=lambda: YES,
        containers_installed=lambda: True,
        probe_local=lambda d, r: problems or [],
        embedded=lambda: (True, "wheels installed"),
        client=lambda status: docker,
        images=lambda: IMAGES,
    )


def test_auto_takes_containers_when_the_images_are_there(
    caplog: pytest.LogCaptureFixture,
) -> None:
    docker = FakeDocker(present=set(IMAGES))
    with caplog.at_level("WARNING", logger="harness.stack"):
        choice = _choose(docker)
    assert choice.services == "containers"
    assert docker.inspected == IMAGES and docker.pull_checked == []
    assert caplog.records == []


def test_auto_takes_containers_when_missing_images_can_be_pulled() -> None:
    docker = FakeDocker(present={PG}, pullable={RYUK, RD})
    assert _choose(docker).services == "containers"
    assert docker.pull_checked == [RYUK, RD]


def test_auto_falls_back_when_an_image_is_missing_and_cannot_be_pulled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    docker = FakeDocker(present={PG})  # an engine that answers, no registry (this machine)
    with caplog.at_level("WARNING", logger="harness.stack"):
        choice = _choose(docker)
    assert choice.services == "local"
    assert docker.pull_checked == [RYUK], "one unpullable image settles it: no more waiting"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "\n" not in line
    assert line.startswith("stack auto: not using containers, missing image(s) ")
    assert f"{RYUK}, {RD}" in line and PG not in line.split("(")[0]
    assert "no such host" in line and "`make images`" in line
    assert "make images" in choice.reason and "answered GET /_ping" in choice.reason
    # ... and on to embedded when local is down too, the finding kept in the reason.
    choice = _choose(FakeDocker(), problems=["PostgreSQL at 127.0.0.1:5432: refused"])
    assert choice.services == "embedded" and "missing image(s)" in choice.reason


def test_containers_provider_with_missing_images_says_which_and_how(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stack_module, "detect_docker_engine", lambda: YES)
    monkeypatch.setattr(stack_module, "docker_client", lambda status: FakeDocker(present={PG}))
    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED", raising=False)
    with pytest.raises(StackError) as caught:
        StackBuilder().provider("containers").start()
    message = str(caught.value)
    ryuk, prefix = tc_settings()
    assert ryuk is not None and prefix == ""
    assert message == (
        f"containers provider: missing image(s) {ryuk}, {stack_services.REDIS_IMAGE}: not on "
        f"the Docker engine, and {ryuk} cannot be pulled (lookup registry-1.docker.io: no "
        f"such host); build them with `make images`"
    )


def test_containers_provider_without_testcontainers_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> tuple[str | None, str]:
        raise ImportError("No module named 'testcontainers'")

    monkeypatch.setattr(stack_module, "detect_docker_engine", lambda: YES)
    monkeypatch.setattr(stack_module, "testcontainers_settings", missing)
    with pytest.raises(StackError, match="testcontainers is not installed"):
        StackBuilder().provider("containers").start()


def test_needed_images_follow_testcontainers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core.config import testcontainers_config as config

    assert required_images([PG, RD], ryuk_image=RYUK) == IMAGES
    assert required_images([PG, RD], ryuk_image=None, prefix="mirror/") == [
        "mirror/" + PG,
        "mirror/" + RD,
    ]
    monkeypatch.setattr(config, "_ryuk_disabled", None)  # it caches what it read
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    assert stack_module.needed_images() == [
        stack_services.POSTGRES_IMAGE,
        stack_services.REDIS_IMAGE,
    ]
    monkeypatch.setattr(config, "_ryuk_disabled", None)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "false")
    monkeypatch.setattr(config, "hub_image_name_prefix", "mirror.local/")
    assert stack_module.needed_images() == [
        "mirror.local/" + config.ryuk_image,
        "mirror.local/" + stack_services.POSTGRES_IMAGE,
        "mirror.local/" + stack_services.REDIS_IMAGE,
    ]


@contextmanager
def fake_api(
    path: Path, routes: dict[str, bytes | None], default: bytes | None = NOT_FOUND
) -> Iterator[list[str]]:
    """A unix socket speaking just enough of the Engine API: the request path picks the
    answer (None: stay silent); unknown paths get `default` (a 404). Yields the paths
    asked for."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []
    asked: list[str] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            request = conn.recv(4096).decode()
            target = request.split(" ")[1] if " " in request else ""
            asked.append(target)
            answer = routes.get(target, default)
            if answer is None:
                held.append(conn)
                continue
            conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield asked
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


OK_JSON = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"Id":"sha256:1"}'


def test_engine_client_asks_the_engine_api(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    refused = (
        b"HTTP/1.0 500 Internal Server Error\r\n\r\n"
        b'{"message":"Get \\"https://registry-1.docker.io/v2/\\": dial tcp: lookup '
        b'registry-1.docker.io: no such host"}'
    )
    routes: dict[str, bytes | None] = {
        f"/images/{PG}/json": OK_JSON,
        f"/distribution/{RD}/json": OK_JSON,
        f"/distribution/{RYUK}/json": refused,
        "/distribution/slow:1/json": None,
    }
    with fake_api(path, routes) as asked:
        client = EngineClient(f"unix://{path}", timeout=1.0, pull_timeout=0.3)
        assert client.image_present(PG)
        assert not client.image_present(RD)
        assert client.image_pullable(RD) == (True, "its registry has it")
        ok, why = client.image_pullable(RYUK)
        assert not ok and why.endswith("lookup registry-1.docker.io: no such host")
        started = time.monotonic()
        ok, why = client.image_pullable("slow:1")
        assert not ok and "did not answer within" in why
        assert time.monotonic() - started < 2
        problem = images_problem(client, IMAGES)
    assert f"/images/{RYUK}/json" in asked and f"/distribution/{RYUK}/json" in asked
    assert problem is not None and problem.startswith(f"missing image(s) {RYUK}, {RD}:")


def test_engine_client_on_a_dead_engine_has_no_images(sock_dir: Path) -> None:
    path = sock_dir / "gone.sock"
    client = EngineClient(f"unix://{path}", timeout=0.3, pull_timeout=0.3)
    assert not client.image_present(PG)
    ok, why = client.image_pullable(PG)
    assert not ok and why.startswith("the engine did not answer")
    with fake_api(path, {f"/images/{PG}/json": b"garbage"}):
        assert not client.image_present(PG)


def test_engine_client_tcp_endpoint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = EngineClient(f"tcp://127.0.0.1:{port}", timeout=0.3, env={})
    assert client.speaks_http and not client.image_present(PG)
    assert not EngineClient(f"tcp://127.0.0.1:{port}", env={"DOCKER_TLS_VERIFY": "1"}).speaks_http


def test_engine_client_falls_back_to_the_cli_and_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1 $2" in\n'
        '  "image inspect") [ "$5" = "postgres:16-alpine" ] && exit 0;'
        ' echo "Error: No such image: $5" >&2; exit 1;;\n'
        '  "manifest inspect") sleep 30;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    client = EngineClient("ssh://user@host", timeout=1.0, pull_timeout=0.3)
    assert not client.speaks_http
    assert client.image_present(PG) and not client.image_present(RD)
    started = time.monotonic()
    ok, why = client.image_pullable(RD)
    assert not ok and "did not answer within" in why
    assert time.monotonic() - started < 3
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert EngineClient(None).image_pullable(RD) == (False, "the docker CLI is not installed")
