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

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlparse

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


# -- the containers of a running stack (fault scenarios pause and stop them) --------------------


@dataclass(frozen=True)
class ServiceContainer:
    """A container of a containers stack, found by the host port its URL names, driven
    through the Engine API (what `docker pause|unpause|stop|start` do)."""

    id: str
    image: str
    host_port: int
    endpoint: str

    def _post(self, action: str, timeout: float = 10.0) -> None:
        from .docker import _api_message, http_request

        status, body = http_request(
            self.endpoint, "POST", f"/containers/{self.id}/{action}", timeout
        )
        if status not in (204, 304):  # 304: already in that state
            raise RuntimeError(f"docker {action} {self.id[:12]}: {_api_message(body) or status}")

    def pause(self) -> None:
        self._post("pause")

    def unpause(self) -> None:
        self._post("unpause")

    def stop(self, grace_seconds: int = 5) -> None:
        self._post(f"stop?t={grace_seconds}", timeout=grace_seconds + 10.0)

    def start(self) -> None:
        self._post("start")

    def state(self) -> str:
        """`running`, `paused`, `exited` ... (Docker's State.Status)."""
        from .docker import _http_get

        status, body = _http_get(self.endpoint, f"/containers/{self.id}/json", 5.0)
        if status != 200:
            raise RuntimeError(f"docker inspect {self.id[:12]}: answered {status}")
        return str(json.loads(body)["State"]["Status"])

    def ensure_running(self) -> None:
        """Back to running from whatever a test left (paused or stopped)."""
        state = self.state()
        if state == "paused":
            self.unpause()
        elif state != "running":
            self.start()


def service_container(url: str, endpoint: str | None = None) -> ServiceContainer:
    """The testcontainers container publishing the host port of `url` (a stack's
    `server_database_url` or `redis_url`), on the engine that answers."""
    from .docker import _http_get, detect_docker_engine

    if endpoint is None:
        status = detect_docker_engine()
        if not status.available or status.endpoint is None:
            raise RuntimeError(f"no Docker engine to find the container of {url}: {status.reason}")
        endpoint = status.endpoint
    port = urlparse(url).port
    filters = quote(json.dumps({"label": ["org.testcontainers=true"]}))
    code, body = _http_get(endpoint, f"/containers/json?filters={filters}", 5.0)
    if code != 200:
        raise RuntimeError(f"docker ps on {endpoint}: answered {code}")
    for item in json.loads(body):
        if any(p.get("PublicPort") == port for p in item.get("Ports", [])):
            return ServiceContainer(item["Id"], item["Image"], int(port or 0), endpoint)
    raise RuntimeError(f"no testcontainers container publishes port {port} (of {url})")
