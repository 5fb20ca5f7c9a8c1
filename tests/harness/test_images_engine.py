"""The images `make images` builds, on a real engine: the containers provider's stack on them,
the upstream images' settings they honour, their HEALTHCHECKs, and the reaper removing a
killed session's containers. Skipped, saying why, without an engine holding the images
(`make test-containers` sets SBH_REQUIRE_ENGINE=1: then they fail instead)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness.stack import StackBuilder
from harness.stack.containers import (
    LOCAL_BUILD_LABEL,
    LOCAL_EMULATOR_IMAGE,
    LOCAL_POSTGRES_IMAGE,
    LOCAL_REDIS_IMAGE,
    LOCAL_RYUK_IMAGE,
    REQUIRE_ENGINE_ENV,
    engine_images_problem,
)

IMAGES = [LOCAL_POSTGRES_IMAGE, LOCAL_REDIS_IMAGE, LOCAL_RYUK_IMAGE, LOCAL_EMULATOR_IMAGE]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    problem = engine_images_problem(IMAGES)
    if problem is not None:
        if os.environ.get(REQUIRE_ENGINE_ENV):
            pytest.fail(f"{REQUIRE_ENGINE_ENV} is set and {problem}")
        pytest.skip(problem)
    import docker

    client = docker.from_env()
    yield client
    client.close()


def test_images_are_marked_as_local_builds(docker_client: Any) -> None:
    for name in IMAGES:
        labels = docker_client.images.get(name).labels
        assert labels.get(LOCAL_BUILD_LABEL) == "true", name


def test_containers_stack_on_the_built_images(docker_client: Any) -> None:
    import psycopg
    import redis

    builder = StackBuilder().provider("containers").isolated("images")
    builder.with_images(postgres=LOCAL_POSTGRES_IMAGE, redis=LOCAL_REDIS_IMAGE)
    started = time.monotonic()
    with builder.start() as stack:
        print(f"containers stack start: {time.monotonic() - started:.2f}s {stack.timings}")
        assert stack.name == "containers"
        with psycopg.connect(stack.database_url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            database = conn.execute("SELECT current_database()").fetchone()
        assert version and version[0].startswith("15.")
        assert database == (stack.database_name,)
        client = redis.Redis.from_url(stack.redis_url)
        client.set(stack.redis_key_prefix + "k", "v")
        assert client.get(stack.redis_key_prefix + "k") == b"v"
        client.close()
        running = {c.attrs["Config"]["Image"] for c in docker_client.containers.list()}
        assert {LOCAL_POSTGRES_IMAGE, LOCAL_REDIS_IMAGE} <= running, "the images given ran"
        server = stack.server_database_url
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server, connect_timeout=2)  # the container is gone


def test_postgres_image_creates_the_asked_user_and_database(docker_client: Any) -> None:
    import psycopg
    from testcontainers.community.postgres import PostgresContainer

    pg = PostgresContainer(LOCAL_POSTGRES_IMAGE, username="app", password="pw", dbname="appdb")
    with pg:
        host, port = pg.get_container_host_ip(), pg.get_exposed_port(5432)
        url = f"postgresql://app:not-the-password@{host}:{port}/appdb"  # trust: not checked
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
        assert row == ("app", "appdb")
        _healthcheck_passes(docker_client, pg.get_wrapped_container().id, LOCAL_POSTGRES_IMAGE)


def test_redis_image_takes_a_password_when_given_one(docker_client: Any) -> None:
    import redis
    from testcontainers.community.redis import RedisContainer

    with RedisContainer(LOCAL_REDIS_IMAGE, password="pw") as rd:
        host, port = rd.get_container_host_ip(), int(rd.get_exposed_port(6379))
        assert redis.Redis(host=host, port=port, password="pw").ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=host, port=port).ping()
        _healthcheck_passes(docker_client, rd.get_wrapped_container().id, LOCAL_REDIS_IMAGE)


def test_emulator_image_healthcheck_passes(docker_client: Any) -> None:
    from harness.testcontainers_servicebus import ServiceBusEmulatorContainer

    with ServiceBusEmulatorContainer() as sb:
        _healthcheck_passes(docker_client, sb.get_wrapped_container().id, LOCAL_EMULATOR_IMAGE)


def _healthcheck_passes(docker_client: Any, container_id: str, image: str) -> None:
    """Run the image's HEALTHCHECK command in the container (without waiting its interval)."""
    test = docker_client.images.get(image).attrs["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD-SHELL", test
    result = docker_client.containers.get(container_id).exec_run(["/bin/sh", "-c", test[1]])
    assert result.exit_code == 0, result.output


CHILD = """
import sys
from testcontainers.core.container import DockerContainer
container = DockerContainer(sys.argv[1]).with_command("redis-server").start()
print(container.get_wrapped_container().id, flush=True)
sys.stdin.read()  # until killed
"""


def test_reaper_removes_a_killed_sessions_containers(docker_client: Any) -> None:
    """Ryuk's job, done by the image `make images` builds: the session's process is SIGKILLed
    (no cleanup runs), and its container goes once the reconnection timeout has passed."""
    env = {
        **os.environ,
        "RYUK_RECONNECTION_TIMEOUT": "1s",
        "RYUK_CONTAINER_IMAGE": LOCAL_RYUK_IMAGE,
    }
    env.pop("TESTCONTAINERS_RYUK_DISABLED", None)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, LOCAL_REDIS_IMAGE],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        container_id = child.stdout.readline().strip()
        assert container_id, "the child did not start its container"
        since = datetime.now(UTC) - timedelta(seconds=1)
        child.kill()
        child.wait(timeout=10)
        # Docker's event stream, bounded by `until`: no polling, a deadline of 30 s.
        events = docker_client.events(
            since=since,
            until=datetime.now(UTC) + timedelta(seconds=30),
            filters={"event": "destroy", "container": container_id},
            decode=True,
        )
        started = time.monotonic()
        destroyed = next((e for e in events if e.get("id") == container_id), None)
        events.close()
        assert destroyed is not None, "the reaper did not remove the container within 30 s"
        print(f"reaped {time.monotonic() - started:.2f}s after the kill")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
