"""Which images the containers provider runs, and the names `make images` builds them under.

The provider runs PostgreSQL and Redis from the pinned upstream images by default
(``postgres:16-alpine``, ``redis:7-alpine``, and testcontainers' ``testcontainers/ryuk:0.8.1``
reaper). Another image is given by :meth:`StackBuilder.with_images` or the environment
(``SBH_POSTGRES_IMAGE``, ``SBH_REDIS_IMAGE``; Ryuk: testcontainers' ``RYUK_CONTAINER_IMAGE``).
`make images` (images/build.sh) builds equivalents from Debian without a registry, named
``sbh/...``, and tags them with the upstream names the engine does not hold yet, so the
defaults find them (see "Images without a registry" in docs/stack.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import services

POSTGRES_IMAGE_ENV = "SBH_POSTGRES_IMAGE"
REDIS_IMAGE_ENV = "SBH_REDIS_IMAGE"
EMULATOR_IMAGE_ENV = "SBH_SERVICEBUS_EMULATOR_IMAGE"

# What `make images` builds (images/build.sh): keep the two in step.
LOCAL_POSTGRES_IMAGE = "sbh/postgres:15-bookworm"
LOCAL_REDIS_IMAGE = "sbh/redis:7-bookworm"
LOCAL_RYUK_IMAGE = "sbh/ryuk:0.8.1"
LOCAL_EMULATOR_IMAGE = "sbh/servicebus-emulator:latest"
LOCAL_IMAGES = (LOCAL_POSTGRES_IMAGE, LOCAL_REDIS_IMAGE, LOCAL_RYUK_IMAGE, LOCAL_EMULATOR_IMAGE)
LOCAL_BUILD_LABEL = "org.sbh.local-build"
"""Set (to ``true``) on every image `make images` builds."""


@dataclass(frozen=True)
class ContainerImages:
    """The PostgreSQL and Redis images a containers stack starts."""

    postgres: str
    redis: str


def resolve_images(
    postgres: str | None = None,
    redis: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ContainerImages:
    """Each image: the one given, else its environment variable, else the pinned upstream."""
    env = os.environ if env is None else env
    return ContainerImages(
        postgres=postgres or env.get(POSTGRES_IMAGE_ENV, "").strip() or services.POSTGRES_IMAGE,
        redis=redis or env.get(REDIS_IMAGE_ENV, "").strip() or services.REDIS_IMAGE,
    )


def emulator_image(env: Mapping[str, str] | None = None) -> str:
    """The emulator image: ``SBH_SERVICEBUS_EMULATOR_IMAGE``, else the one `make images` builds."""
    env = os.environ if env is None else env
    return env.get(EMULATOR_IMAGE_ENV, "").strip() or LOCAL_EMULATOR_IMAGE


def is_local_build(image: str) -> bool:
    """A name only `make images` makes (no registry has it, so pulling is pointless)."""
    return image.startswith("sbh/")


REQUIRE_ENGINE_ENV = "SBH_REQUIRE_ENGINE"
"""Set (`make test-containers` does): tests needing an engine and images fail instead of
skipping when there is none."""


def engine_images_problem(images: Sequence[str]) -> str | None:
    """None when a Docker engine answers and holds every image (no pulling: built images
    are never pullable); else one line saying what is missing, for a test's skip."""
    from .docker import EngineClient, detect_docker_engine

    status = detect_docker_engine()
    if not status.available:
        return status.reason
    client = EngineClient.for_status(status)
    missing = [name for name in images if not client.image_present(name)]
    if missing:
        return (
            f"{status.reason}, but it lacks image(s) {', '.join(missing)}: "
            "build them with `make images`"
        )
    return None
