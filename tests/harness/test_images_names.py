"""The containers provider runs the images it is given: builder option, environment, defaults."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from harness.stack import StackBuilder, StackError
from harness.stack import services as stack_services
from harness.stack import stack as stack_module
from harness.stack.containers import (
    EMULATOR_IMAGE_ENV,
    LOCAL_EMULATOR_IMAGE,
    LOCAL_POSTGRES_IMAGE,
    POSTGRES_IMAGE_ENV,
    REDIS_IMAGE_ENV,
    ContainerImages,
    emulator_image,
    is_local_build,
    resolve_images,
)
from harness.stack.docker import EngineStatus

YES = EngineStatus(True, "fake engine answered GET /_ping", "unix:///fake.sock")


def test_given_then_environment_then_pinned_upstream() -> None:
    upstream = ContainerImages(stack_services.POSTGRES_IMAGE, stack_services.REDIS_IMAGE)
    assert resolve_images(env={}) == upstream
    env = {POSTGRES_IMAGE_ENV: " sbh/postgres:15-bookworm ", REDIS_IMAGE_ENV: ""}
    assert resolve_images(env=env) == ContainerImages(LOCAL_POSTGRES_IMAGE, upstream.redis)
    assert resolve_images("pg:x", "rd:y", env=env) == ContainerImages("pg:x", "rd:y")
    assert emulator_image({}) == LOCAL_EMULATOR_IMAGE
    assert emulator_image({EMULATOR_IMAGE_ENV: "mirror/sbemu:2"}) == "mirror/sbemu:2"
    assert is_local_build(LOCAL_POSTGRES_IMAGE) and not is_local_build(upstream.postgres)


@pytest.fixture
def no_ryuk(monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core.config import testcontainers_config as config

    monkeypatch.setattr(config, "_ryuk_disabled", True)
    monkeypatch.setattr(config, "hub_image_name_prefix", "")
    monkeypatch.delenv(POSTGRES_IMAGE_ENV, raising=False)
    monkeypatch.delenv(REDIS_IMAGE_ENV, raising=False)


@pytest.mark.usefixtures("no_ryuk")
def test_needed_images_follow_the_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stack_module.needed_images() == [
        stack_services.POSTGRES_IMAGE,
        stack_services.REDIS_IMAGE,
    ]
    monkeypatch.setenv(REDIS_IMAGE_ENV, "sbh/redis:7-bookworm")
    assert stack_module.needed_images(postgres="pg:1") == ["pg:1", "sbh/redis:7-bookworm"]


class Docker:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def image_present(self, name: str) -> bool:
        return name in self.present

    def image_pullable(self, name: str) -> tuple[bool, str]:
        return False, "no such host"


@pytest.mark.usefixtures("no_ryuk")
def test_the_builders_images_are_checked_and_started(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def backend(postgres: str, redis: str) -> Iterator[stack_services.ServerUrls]:
        started.append((postgres, redis))
        raise StackError("stop here: the names are what this test is about")
        yield  # pragma: no cover

    monkeypatch.setattr(stack_module, "detect_docker_engine", lambda: YES)
    monkeypatch.setattr(stack_services, "containers_backend", backend)
    monkeypatch.setenv(REDIS_IMAGE_ENV, "sbh/redis:7-bookworm")
    monkeypatch.setattr(
        stack_module,
        "docker_client",
        lambda status: Docker({LOCAL_POSTGRES_IMAGE, "sbh/redis:7-bookworm"}),
    )
    builder = StackBuilder().provider("containers").with_images(postgres=LOCAL_POSTGRES_IMAGE)
    with pytest.raises(StackError, match="stop here"):
        builder.start()
    assert started == [(LOCAL_POSTGRES_IMAGE, "sbh/redis:7-bookworm")]


@pytest.mark.usefixtures("no_ryuk")
def test_a_missing_given_image_is_named_with_make_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_module, "detect_docker_engine", lambda: YES)
    monkeypatch.setattr(stack_module, "docker_client", lambda status: Docker(set()))
    builder = StackBuilder().provider("containers").with_images(postgres="sbh/postgres:nope")
    with pytest.raises(StackError) as caught:
        builder.start()
    assert str(caught.value) == (
        "containers provider: missing image(s) sbh/postgres:nope, "
        f"{stack_services.REDIS_IMAGE}: not on the Docker engine, and sbh/postgres:nope cannot "
        "be pulled (no such host); build them with `make images`"
    )


@pytest.mark.usefixtures("no_ryuk")
def test_auto_checks_the_builders_images(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def choose(**kwargs: object) -> stack_module.Choice:
        images = kwargs["images"]
        assert callable(images)
        seen.append(images())
        raise StackError("stop here")

    monkeypatch.setattr(stack_module, "choose_services", choose)
    with pytest.raises(StackError, match="stop here"):
        StackBuilder().with_images(redis="rd:9").start()
    assert seen == [[stack_services.POSTGRES_IMAGE, "rd:9"]]
