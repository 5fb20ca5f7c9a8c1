"""ServiceBusEmulatorContainer: configuration, connection string, the official image's SQL
Server mode and every error, with fakes (no engine); then for real, where an engine holds the
image `make images` builds (skipped, saying why, elsewhere; `make test-containers` fails)."""

from __future__ import annotations

import http.server
import json
import os
import re
import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testcontainers.core.container import DockerContainer

from harness import testcontainers_servicebus as tcsb
from harness.stack.containers import (
    EMULATOR_IMAGE_ENV,
    LOCAL_EMULATOR_IMAGE,
    REQUIRE_ENGINE_ENV,
    engine_images_problem,
)
from harness.stack.docker import testcontainers_settings as tc_settings  # not a test
from harness.testcontainers_servicebus import (
    EmulatorContainerError,
    HealthWait,
    ServiceBusEmulatorContainer,
)

ROOT = Path(__file__).resolve().parents[2]
NO_ENGINE = {"version": "1.41"}  # a fixed API version: constructing asks the engine nothing


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No engine is reachable: any call that would reach one fails loudly."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/sbh-test.sock")
    monkeypatch.delenv(EMULATOR_IMAGE_ENV, raising=False)


def container(**kwargs: Any) -> ServiceBusEmulatorContainer:
    return ServiceBusEmulatorContainer(docker_client_kw=NO_ENGINE, **kwargs)


# -- configuration ----------------------------------------------------------------------------


def test_connection_string_is_the_emulators() -> None:
    assert tcsb.connection_string("localhost", 32768) == (
        "Endpoint=sb://localhost:32768;SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
    assert "SharedAccessKeyName=p;SharedAccessKey=k;" in tcsb.connection_string("h", 1, "p", "k")


@pytest.mark.parametrize(
    ("image", "official"),
    [
        ("mcr.microsoft.com/azure-messaging/servicebus-emulator", True),
        ("mcr.microsoft.com/azure-messaging/servicebus-emulator:latest", True),
        ("mcr.microsoft.com/azure-messaging/servicebus-emulator:1.1.2", True),
        ("mcr.microsoft.com/azure-messaging/servicebus-emulator@sha256:ab", True),
        ("mcr.microsoft.com/azure-messaging/servicebus-emulator-next", False),
        (LOCAL_EMULATOR_IMAGE, False),
    ],
)
def test_official_image_is_recognised(image: str, official: bool) -> None:
    assert tcsb.is_official(image) is official


@pytest.mark.usefixtures("offline")
def test_defaults_ports_config_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    sb = container(config=ROOT / "config" / "Config.json")
    assert sb.image == LOCAL_EMULATOR_IMAGE and not sb.official
    assert set(sb.ports) == {"5672", "5300"}
    mount = sb.volumes[str((ROOT / "config" / "Config.json").resolve())]
    assert mount == {"bind": "/ServiceBus_Emulator/ConfigFiles/Config.json", "mode": "ro"}
    sb._host, sb._mapped = "127.0.0.1", {5672: 40001, 5300: 40002}
    assert sb.get_connection_string() == tcsb.connection_string("127.0.0.1", 40001)
    assert sb.admin_url == "http://127.0.0.1:40002"
    assert sb.health_url == "http://127.0.0.1:40002/health"
    assert sb.control_url == "http://127.0.0.1:40002/control"
    assert sb.health._startup_timeout == 30.0
    monkeypatch.setenv(EMULATOR_IMAGE_ENV, "mirror.local/sbemu:1")
    assert container().image == "mirror.local/sbemu:1"
    assert container(image="other:2").image == "other:2"


@pytest.mark.usefixtures("offline")
def test_with_config_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EmulatorContainerError, match=r"emulator config .*nope.json is not a file"):
        container().with_config(tmp_path / "nope.json")


@pytest.mark.usefixtures("offline")
def test_official_image_has_no_control_api_or_ca_bundle(tmp_path: Path) -> None:
    sb = container(image=tcsb.OFFICIAL_IMAGE)
    sb._host, sb._mapped = "127.0.0.1", {5672: 1, 5300: 2}
    assert sb.official and sb.health._startup_timeout == 180.0
    assert sb.admin_url == "http://127.0.0.1:2"
    with pytest.raises(EmulatorContainerError, match="has no control API"):
        _ = sb.control_url
    with pytest.raises(EmulatorContainerError, match="serves no CA bundle"):
        sb.get_ca_bundle(tmp_path)


def test_sql_passwords_meet_sql_servers_policy() -> None:
    passwords = {tcsb.sql_password() for _ in range(20)}
    assert len(passwords) == 20
    for password in passwords:
        assert len(password) >= 8
        assert re.search("[A-Z]", password) and re.search("[a-z]", password)
        assert re.search("[0-9]", password) and re.search("[^A-Za-z0-9]", password)


# -- the official image's mode, with fakes -----------------------------------------------------


class FakeNetwork:
    def __init__(self, events: list[str]) -> None:
        self.name = "net-1"
        self.events = events

    def create(self) -> FakeNetwork:
        self.events.append("network create")
        return self

    def remove(self) -> None:
        self.events.append("network remove")


class FakeSql:
    """Records what a SQL Server container would be started with."""

    def __init__(self, image: str, events: list[str]) -> None:
        self.image = image
        self.env: dict[str, str] = {}
        self.network: object = None
        self.aliases: tuple[str, ...] = ()
        self.events = events

    def with_env(self, key: str, value: str) -> FakeSql:
        self.env[key] = value
        return self

    def with_network(self, network: object) -> FakeSql:
        self.network = network
        return self

    def with_network_aliases(self, *aliases: str) -> FakeSql:
        self.aliases = aliases
        return self

    def start(self) -> FakeSql:
        self.events.append(f"sql start {self.image}")
        return self

    def stop(self) -> None:
        self.events.append("sql stop")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """DockerContainer.start/stop and the image check record instead of reaching an engine."""
    log: list[str] = []

    def start(self: DockerContainer) -> DockerContainer:
        network = self._network.name if self._network else None
        log.append(f"emulator start {self.image} env={dict(self.env)} network={network}")
        self._container = object()  # type: ignore[assignment]
        return self

    def stop(self: DockerContainer, force: bool = True, delete_volume: bool = True) -> None:
        log.append("emulator stop")

    monkeypatch.setattr(DockerContainer, "start", start)
    monkeypatch.setattr(DockerContainer, "stop", stop)
    monkeypatch.setattr(
        ServiceBusEmulatorContainer, "_ensure_image", lambda self, image: log.append(f"has {image}")
    )
    monkeypatch.setattr(HealthWait, "wait_until_ready", lambda self, c: log.append("healthy"))
    monkeypatch.setattr(
        ServiceBusEmulatorContainer, "get_container_host_ip", lambda self: "127.0.0.1"
    )
    monkeypatch.setattr(ServiceBusEmulatorContainer, "get_exposed_port", lambda self, p: p + 1)
    return log


def official(log: list[str], **kwargs: Any) -> ServiceBusEmulatorContainer:
    sqls: list[FakeSql] = []

    def sql(image: str) -> FakeSql:
        sqls.append(FakeSql(image, log))
        return sqls[-1]

    sb = container(
        image=tcsb.OFFICIAL_IMAGE + ":latest",
        network_factory=lambda: FakeNetwork(log),  # type: ignore[arg-type,return-value]
        sql_container_factory=sql,  # type: ignore[arg-type]
        **kwargs,
    )
    sb.fake_sqls = sqls  # type: ignore[attr-defined]
    return sb


@pytest.mark.usefixtures("offline")
def test_official_image_needs_the_eula_accepted(events: list[str]) -> None:
    sb = official(events)
    with pytest.raises(EmulatorContainerError) as caught:
        sb.start()
    assert "pass accept_eula=True" in str(caught.value) and "`make images`" in str(caught.value)
    assert not any("start" in e for e in events), "nothing was started"


@pytest.mark.usefixtures("offline")
def test_official_image_starts_sql_server_on_a_shared_network(events: list[str]) -> None:
    sb = official(events, accept_eula=True, mssql_password="Pw-1234567a")
    with sb:
        assert sb.get_connection_string() == tcsb.connection_string("127.0.0.1", 5673)
        (sql,) = sb.fake_sqls  # type: ignore[attr-defined]
        assert sql.image == tcsb.MSSQL_IMAGE
        assert sql.env == {"ACCEPT_EULA": "Y", "MSSQL_SA_PASSWORD": "Pw-1234567a"}
        assert sql.aliases == (tcsb.SQL_ALIAS,) and sql.network is sb.network
    emulator_env = {"SQL_SERVER": "sqledge", "MSSQL_SA_PASSWORD": "Pw-1234567a", "ACCEPT_EULA": "Y"}
    assert events == [
        f"has {tcsb.OFFICIAL_IMAGE}:latest",
        f"has {tcsb.MSSQL_IMAGE}",
        "network create",
        f"sql start {tcsb.MSSQL_IMAGE}",
        f"emulator start {tcsb.OFFICIAL_IMAGE}:latest env={emulator_env} network=net-1",
        "healthy",
        "emulator stop",
        "sql stop",
        "network remove",
    ]


@pytest.mark.usefixtures("offline")
def test_a_failed_start_stops_what_it_started(
    events: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unhealthy(self: HealthWait, target: object) -> None:
        raise EmulatorContainerError("not healthy within 1s")

    monkeypatch.setattr(HealthWait, "wait_until_ready", unhealthy)
    sb = official(events, accept_eula=True)
    with pytest.raises(EmulatorContainerError, match="not healthy"):
        with sb:
            pass
    assert events[-3:] == ["emulator stop", "sql stop", "network remove"]
    assert events.count("sql stop") == 1, "stop runs once however often it is called"


# -- missing images ----------------------------------------------------------------------------


class FakeImages:
    def __init__(self, pull_error: Exception | None) -> None:
        self.pull_error = pull_error
        self.pulled: list[str] = []

    def get(self, name: str) -> None:
        import docker.errors

        raise docker.errors.ImageNotFound(f"No such image: {name}")

    def pull(self, name: str) -> None:
        self.pulled.append(name)
        if self.pull_error:
            raise self.pull_error


class FakeClient:
    def __init__(self, images: FakeImages) -> None:
        self.client = type("C", (), {"images": images})()


@pytest.mark.usefixtures("offline")
def test_a_missing_local_image_says_make_images_without_pulling() -> None:
    images = FakeImages(None)
    sb = container()
    sb.get_docker_client = lambda: FakeClient(images)  # type: ignore[assignment,method-assign,return-value]
    with pytest.raises(EmulatorContainerError) as caught:
        sb.start()
    assert str(caught.value) == (
        f"image {LOCAL_EMULATOR_IMAGE} is not on the Docker engine at "
        "unix:///nonexistent/sbh-test.sock; build it with `make images`"
    )
    assert images.pulled == []


@pytest.mark.usefixtures("offline")
def test_an_unpullable_image_says_why_and_what_else() -> None:
    import docker.errors

    images = FakeImages(docker.errors.APIError("Get https://mcr.microsoft.com/v2/: no such host"))
    sb = container(image=tcsb.OFFICIAL_IMAGE, accept_eula=True)
    sb.get_docker_client = lambda: FakeClient(images)  # type: ignore[assignment,method-assign,return-value]
    with pytest.raises(EmulatorContainerError) as caught:
        sb.start()
    message = str(caught.value)
    assert message.startswith(f"image {tcsb.OFFICIAL_IMAGE} is not on the Docker engine at ")
    assert "cannot be pulled (" in message and "no such host" in message
    assert "`make images`" in message and images.pulled == [tcsb.OFFICIAL_IMAGE]


# -- the health wait, against a local HTTP server -----------------------------------------------


class Target:
    """What HealthWait asks of a container."""

    def __init__(self, port: int, status: str = "running") -> None:
        self.port = port
        self.status = status
        self.attrs = {"State": {"ExitCode": 2}}

    def get_wrapped_container(self) -> Target:
        return self

    def reload(self) -> None:
        pass

    def get_logs(self) -> tuple[bytes, bytes]:
        return b"sbemu: invalid configuration /x.json\n", b""

    def get_exposed_port(self, port: int) -> int:
        return self.port

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[dict[str, str]]]]:
    answers: list[dict[str, str]] = [{"status": "healthy"}]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answers[0]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], answers
    server.shutdown()
    server.server_close()


def test_health_wait_returns_once_healthy(health_server: tuple[int, list[dict[str, str]]]) -> None:
    port, _ = health_server
    wait = HealthWait(timeout=5)
    wait.wait_until_ready(Target(port))  # type: ignore[arg-type]
    assert 0 <= wait.waited < 5


def test_health_wait_gives_the_last_answer_at_its_deadline(
    health_server: tuple[int, list[dict[str, str]]],
) -> None:
    port, answers = health_server
    answers[0] = {"status": "starting"}
    started = time.monotonic()
    with pytest.raises(EmulatorContainerError) as caught:
        HealthWait(timeout=0.3).wait_until_ready(Target(port))  # type: ignore[arg-type]
    assert time.monotonic() - started < 3
    assert "the emulator container was not healthy within 0.3s (http://127.0.0.1:" in str(
        caught.value
    )
    assert "answered {'status': 'starting'}" in str(caught.value)


def test_health_wait_reports_an_exited_container_with_its_logs() -> None:
    with pytest.raises(EmulatorContainerError) as caught:
        HealthWait(timeout=5).wait_until_ready(Target(1, status="exited"))  # type: ignore[arg-type]
    assert "exited (exited, exit code 2) before it was healthy" in str(caught.value)
    assert "sbemu: invalid configuration /x.json" in str(caught.value)


# -- for real: an engine with the image `make images` builds -------------------------------------


def _real_problem() -> str | None:
    ryuk, prefix = tc_settings()
    images = [LOCAL_EMULATOR_IMAGE, *([prefix + ryuk] if ryuk else [])]
    return engine_images_problem(images)


@pytest.fixture(scope="module")
def engine() -> None:
    problem = _real_problem()
    if problem is not None:
        if os.environ.get(REQUIRE_ENGINE_ENV):
            pytest.fail(f"{REQUIRE_ENGINE_ENV} is set and {problem}")
        pytest.skip(problem)


def _send_receive_topic(connection: str) -> str:
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    marker = uuid.uuid4().hex
    with ServiceBusClient.from_connection_string(connection) as client:
        with client.get_topic_sender("huntaze-jobs") as sender:
            message = ServiceBusMessage(
                marker, application_properties={"jobType": "chat.suggest"}, message_id=marker
            )
            sender.send_messages(message)
        receiver = client.get_subscription_receiver("huntaze-jobs", "chat-suggestions")
        with receiver:
            got = receiver.receive_messages(max_message_count=1, max_wait_time=10)
            assert len(got) == 1
            receiver.complete_message(got[0])
    return str(got[0])


@pytest.mark.usefixtures("engine")
def test_real_container_starts_fast_and_carries_sdk_messages(tmp_path: Path) -> None:
    starts = []
    for attempt in range(3):
        with ServiceBusEmulatorContainer(config=ROOT / "config" / "Config.json") as sb:
            starts.append(sb.start_seconds)
            with urllib.request.urlopen(sb.health_url, timeout=5) as answer:
                assert json.loads(answer.read())["status"] == "healthy"
            if attempt == 0:
                marker = _send_receive_topic(sb.get_connection_string())
                assert len(marker) == 32
                with urllib.request.urlopen(f"{sb.control_url}/clock", timeout=5) as answer:
                    assert "offset_seconds" in json.loads(answer.read())
                ca = sb.get_ca_bundle(tmp_path)
                assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    print(f"emulator container start (create, start, healthy): {starts} s")
    # The goal is under a second; the bound leaves room for a loaded CI machine.
    assert statistics.median(starts) < 5, starts


@pytest.mark.usefixtures("engine")
def test_real_container_reads_a_mounted_config(tmp_path: Path) -> None:
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    config = tmp_path / "Config.json"
    namespace = {"Name": "sbemulatorns", "Queues": [{"Name": "tc-queue"}], "Topics": []}
    config.write_text(json.dumps({"UserConfig": {"Namespaces": [namespace]}}))
    config.chmod(0o644)
    with ServiceBusEmulatorContainer().with_config(config) as sb:
        with ServiceBusClient.from_connection_string(sb.get_connection_string()) as client:
            with client.get_queue_sender("tc-queue") as sender:
                sender.send_messages(ServiceBusMessage("from the host"))
            with client.get_queue_receiver("tc-queue") as receiver:
                (got,) = receiver.receive_messages(max_message_count=1, max_wait_time=10)
                receiver.complete_message(got)
        assert str(got) == "from the host"


@pytest.mark.usefixtures("engine")
def test_real_container_with_a_bad_config_fails_with_its_logs(tmp_path: Path) -> None:
    config = tmp_path / "Config.json"
    config.write_text('{"UserConfig": ')
    config.chmod(0o644)
    started = time.monotonic()
    with pytest.raises(EmulatorContainerError) as caught:
        with ServiceBusEmulatorContainer(config=config):
            pass
    assert "exited (exited, exit code 2) before it was healthy" in str(caught.value)
    assert "invalid configuration" in str(caught.value)
    assert time.monotonic() - started < 10


@pytest.mark.usefixtures("engine")
def test_real_missing_image_says_make_images() -> None:
    with pytest.raises(EmulatorContainerError, match="build it with `make images`"):
        with ServiceBusEmulatorContainer(image="sbh/servicebus-emulator:no-such-tag"):
            pass
