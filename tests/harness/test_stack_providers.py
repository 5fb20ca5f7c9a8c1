"""The local and embedded providers for real: working URLs, isolation, clean stop, auto."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from harness.stack import Stack, StackBuilder, StackError, choose_services
from harness.stack import services as stack_services
from harness.stack.docker import EngineStatus
from harness.stack.embedded import embedded_available
from workers.common.settings import Role, load_settings

LOCAL_PROBLEMS = stack_services.probe_local(
    *stack_services.local_urls(
        os.environ.get("SBH_TEST_DATABASE_URL"), os.environ.get("SBH_TEST_REDIS_URL")
    )
)
EMBEDDED_OK, EMBEDDED_WHY = embedded_available()

needs_local = pytest.mark.skipif(bool(LOCAL_PROBLEMS), reason="; ".join(LOCAL_PROBLEMS))
needs_embedded = pytest.mark.skipif(not EMBEDDED_OK, reason=EMBEDDED_WHY)
PROVIDERS = [
    pytest.param("local", marks=needs_local),
    pytest.param("embedded", marks=needs_embedded),
]


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes only once reaped.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" in status.read_text()


def _database_exists(server_url: str, name: str) -> bool:
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _send_and_receive(stack: Stack) -> str:
    """One job through the topology: send-only policy in, worker policy out."""
    marker = uuid.uuid4().hex
    with ServiceBusClient.from_connection_string(stack.servicebus_send_connection) as client:
        with client.get_topic_sender(stack.topic_jobs) as sender:
            sender.send_messages(
                ServiceBusMessage(
                    marker, message_id=marker, application_properties={"jobType": "chat.suggest"}
                )
            )
    with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client:
        receiver = client.get_subscription_receiver(
            stack.topic_jobs, "chat-suggestions", max_wait_time=5
        )
        with receiver:
            messages = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert len(messages) == 1
            receiver.complete_message(messages[0])
    return str(messages[0])


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_provider_starts_with_working_urls_and_stops_clean(provider: str) -> None:
    before = _threads()
    with StackBuilder().provider(provider).isolated("gw5").start() as stack:
        assert stack.name == provider and stack.services == provider
        assert stack.emulator is not None
        assert stack.database_name.startswith("sbh_gw5_")
        assert stack.redis_key_prefix.startswith("sbh:gw5:")

        settings = stack.settings()
        for role in Role:  # the workers accept the stack's settings as they are
            env = {
                **settings,
                "AZURE_PHI4_MULTIMODAL_ENDPOINT": "http://ai.local",
                "AZURE_DEEPSEEK_V3_ENDPOINT": "http://ai.local",
            }
            assert load_settings(role, env).database_url == stack.database_url

        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (stack.database_name,)
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
            assert tables == (0,), "the stack hands out an empty database"
            conn.execute("CREATE TABLE probe (v text)")
            conn.execute("INSERT INTO probe VALUES ('round trip')")
            assert conn.execute("SELECT v FROM probe").fetchone() == ("round trip",)

        client = redis.Redis.from_url(stack.redis_url)
        key = stack.redis_key_prefix + "probe"
        client.set(key, "value", px=60_000)
        assert client.get(key) == b"value"
        client.close()

        assert _send_and_receive(stack)
        server_url = stack.server_database_url
        redis_url = stack.redis_url
        name = stack.database_name
        emulator_thread_count = len(_threads() - before)
        assert emulator_thread_count >= 1
    assert _threads() - before == set(), "no thread outlives the stack"
    if provider == "local":
        assert not _database_exists(server_url, name)
        client = redis.Redis.from_url(redis_url)
        assert list(client.scan_iter(match=stack.redis_key_prefix + "*")) == []
        client.close()


@needs_embedded
def test_embedded_servers_are_reaped_and_their_files_deleted() -> None:
    from harness.stack.embedded import EmbeddedPostgres, EmbeddedRedis

    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server:
        pids = [postgres.pid, redis_server.pid]
        dirs = [postgres.directory, redis_server.directory]
        assert all(pid is not None for pid in pids)
        assert all(d is not None and d.exists() for d in dirs)
        if os.geteuid() == 0:
            # PostgreSQL refuses root; it runs as an existing unprivileged user.
            owner = Path(f"/proc/{postgres.pid}/status").read_text()
            assert "Uid:\t0\t" not in owner
    for pid in pids:
        assert pid is not None and _process_gone(pid)
    assert not any(d is not None and d.exists() for d in dirs)


def test_two_stacks_are_isolated(provider: str) -> None:
    builder = StackBuilder().provider(provider)
    with builder.isolated("gw0").start() as first, builder.isolated("gw1").start() as second:
        assert first.database_name != second.database_name
        assert first.redis_key_prefix != second.redis_key_prefix
        assert first.emulator is not None and second.emulator is not None
        assert first.emulator.port != second.emulator.port
        assert first.emulator.admin_port != second.emulator.admin_port

        with psycopg.connect(first.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE jobs (id text)")
        with psycopg.connect(second.database_url, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('public.jobs')").fetchone()
            assert found == (None,), "a table of one stack is not visible in the other"

        # The workers prefix every key with REDIS_KEY_PREFIX: same job id, different keys.
        one = redis.Redis.from_url(first.redis_url)
        two = redis.Redis.from_url(second.redis_url)
        one.set(first.redis_key_prefix + "job:1:final", "completed")
        assert two.get(second.redis_key_prefix + "job:1:final") is None
        one.close()
        two.close()

        # A message sent to one emulator never reaches the other.
        _send_and_receive(first)
        with ServiceBusClient.from_connection_string(second.servicebus_connection) as client:
            with client.get_subscription_receiver(
                second.topic_jobs, "chat-suggestions", max_wait_time=1
            ) as receiver:
                assert receiver.receive_messages(max_wait_time=1) == []


@needs_local
def test_xdist_worker_names_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    with StackBuilder().provider("local").isolated().start() as stack:
        assert stack.worker_id == "gw3"
        assert stack.database_name.startswith("sbh_gw3_")
        assert stack.redis_key_prefix.startswith("sbh:gw3:")


@needs_local
def test_auto_picks_local_here_and_says_why() -> None:
    from harness.stack import stack as stack_module
    from harness.stack.docker import detect_docker_engine, images_problem

    engine = detect_docker_engine()
    why_not_containers = "no Docker engine"
    if engine.available:  # an engine that cannot provide the images is passed over too
        problem = images_problem(stack_module.docker_client(engine), stack_module.needed_images())
        if problem is None:
            pytest.skip(f"auto takes containers here: {engine.reason} and has the images")
        why_not_containers = "missing image(s)"
    with StackBuilder().provider("auto").start() as stack:
        assert stack.name == "local"
        assert why_not_containers in stack.reason
        assert "PostgreSQL and Redis answer" in stack.reason


def test_auto_order_containers_then_local_then_embedded() -> None:
    yes = EngineStatus(True, "engine answered")
    no = EngineStatus(False, "no Docker engine: none")

    class AllImages:
        def image_present(self, name: str) -> bool:
            return True

        def image_pullable(self, name: str) -> tuple[bool, str]:
            return True, "its registry has it"

    choice = choose_services(
        engine=lambda: yes,
        probe_local=lambda d, r: [],
        containers_installed=lambda: True,
        client=lambda status: AllImages(),
        images=lambda: ["postgres:16-alpine"],
    )
    assert choice.services == "containers"
    choice = choose_services(
        engine=lambda: yes, probe_local=lambda d, r: [], containers_installed=lambda: False
    )
    assert choice.services == "local" and "testcontainers is not installed" in choice.reason
    choice = choose_services(
        engine=lambda: no,
        probe_local=lambda d, r: ["PostgreSQL at 127.0.0.1:5432: Connection refused"],
        embedded=lambda: (True, "wheels installed"),
    )
    assert choice.services == "embedded"
    assert "Connection refused" in choice.reason and "no Docker engine" in choice.reason
    with pytest.raises(StackError, match="no provider can run here"):
        choose_services(
            engine=lambda: no,
            probe_local=lambda d, r: ["down"],
            embedded=lambda: (False, "not installed"),
        )


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_local_with_nothing_listening_fails_fast_and_clearly() -> None:
    port = _closed_port()
    before = _threads()
    started = time.monotonic()
    builder = StackBuilder().provider("local")
    builder.with_services(database_url=f"postgresql://postgres@127.0.0.1:{port}/postgres")
    with pytest.raises(StackError) as caught:
        builder.start()
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith("local provider:")
    assert f"PostgreSQL at 127.0.0.1:{port}" in message and "embedded" in message
    assert _threads() - before == set()


def test_bad_topology_and_unknown_provider_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "Config.json"
    bad.write_text('{"UserConfig": {"Namespaces": [{"Name": "x", "Topics": [{"Nme": "t"}]}]}}')
    with pytest.raises(StackError, match="Nme"):
        StackBuilder().provider("local").with_topology(bad).start()
    with pytest.raises(StackError, match="unknown stack provider"):
        StackBuilder().provider("cloud")  # type: ignore[arg-type]
    with pytest.raises(StackError, match="with_servicebus"):
        StackBuilder().provider("connection-string").start()


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from harness.stack import stack as stack_module

    monkeypatch.setattr(
        stack_module, "detect_docker_engine", lambda: EngineStatus(False, "no Docker engine: t")
    )
    yield


@needs_embedded
def test_auto_falls_back_to_embedded_when_local_is_down(no_docker: None) -> None:
    port = _closed_port()
    builder = StackBuilder().provider("auto")
    builder.with_services(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        redis_url=f"redis://127.0.0.1:{port}/0",
    )
    with builder.start() as stack:
        assert stack.name == "embedded"
        assert f"127.0.0.1:{port}" in stack.reason
        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
