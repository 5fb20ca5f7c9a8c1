"""A testcontainers-python module for the Service Bus emulator.

    with ServiceBusEmulatorContainer(config="config/Config.json") as sb:
        client = ServiceBusClient.from_connection_string(sb.get_connection_string())

By default it runs this project's emulator image (``sbh/servicebus-emulator:latest``, built by
`make images`; ``SBH_SERVICEBUS_EMULATOR_IMAGE`` to change): one container, ready (``GET
/health`` on the admin port answers healthy) in well under a second. With ``image=`` the
official emulator (``mcr.microsoft.com/azure-messaging/servicebus-emulator``) it also starts
the SQL Server that one needs, on a network of their own, and passes ``SQL_SERVER``,
``MSSQL_SA_PASSWORD`` and ``ACCEPT_EULA`` (``accept_eula=True`` is required: its licence is
Microsoft's). Both read the topology from ``/ServiceBus_Emulator/ConfigFiles/Config.json``
and listen for AMQP on 5672 and for health/admin on 5300.
"""

from __future__ import annotations

import json
import os
import secrets
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any, Self

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from harness.stack.containers import emulator_image, is_local_build

CONFIG_PATH = "/ServiceBus_Emulator/ConfigFiles/Config.json"
CA_BUNDLE_PATH = "/ServiceBus_Emulator/tls/ca.pem"
AMQP_PORT = 5672
ADMIN_PORT = 5300
OFFICIAL_IMAGE = "mcr.microsoft.com/azure-messaging/servicebus-emulator"
MSSQL_IMAGE = "mcr.microsoft.com/mssql/server:2022-latest"
SQL_ALIAS = "sqledge"
"""The SQL Server's name on the shared network (the official docker-compose file's)."""
ROOT_POLICY = "RootManageSharedAccessKey"
ROOT_KEY = "SAS_KEY_VALUE"
BUILD_IMAGES = "make images"


class EmulatorContainerError(RuntimeError):
    """The emulator container cannot start; the message says why and what to do."""


def is_official(image: str) -> bool:
    """Is this Microsoft's emulator image (which needs a SQL Server)?"""
    return image.split("@")[0].rsplit(":", 1)[0] == OFFICIAL_IMAGE or image.startswith(
        OFFICIAL_IMAGE + "@"
    )


def connection_string(host: str, port: int, policy: str = ROOT_POLICY, key: str = ROOT_KEY) -> str:
    """The emulator's connection string (plain AMQP: ``UseDevelopmentEmulator=true``)."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName={policy};"
        f"SharedAccessKey={key};UseDevelopmentEmulator=true;"
    )


def sql_password() -> str:
    """A password SQL Server's policy accepts (upper, lower, digits and a symbol)."""
    return f"Sb{secrets.token_hex(12)}!x9"


class HealthWait(WaitStrategy):
    """Until ``GET /health`` on the admin port answers ``{"status": "healthy"}``, the container
    exits (its logs in the error), or the deadline passes (the last answer in the error)."""

    def __init__(self, port: int = ADMIN_PORT, timeout: float = 30.0, interval: float = 0.02):
        super().__init__()
        self.port = port
        self.with_startup_timeout(timeout)
        self.with_poll_interval(interval)
        self.waited = 0.0

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        started = time.monotonic()
        deadline = started + self._startup_timeout
        last = "no answer yet"
        url = ""
        while True:
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status not in ("created", "running", "restarting"):
                logs = b"".join(container.get_logs()).decode("utf-8", "replace")[-2000:]
                raise EmulatorContainerError(
                    f"the emulator container exited ({wrapped.status}, exit code "
                    f"{wrapped.attrs.get('State', {}).get('ExitCode')}) before it was healthy; "
                    f"its logs:\n{logs}"
                )
            if not url:
                with_port = container.get_exposed_port(self.port)
                url = f"http://{container.get_container_host_ip()}:{with_port}/health"
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    body = json.loads(answer.read() or b"{}")
                    if body.get("status") == "healthy":
                        self.waited = time.monotonic() - started
                        return
                    last = f"answered {body}"
            except (OSError, ValueError) as exc:
                last = str(getattr(exc, "reason", exc))
            if time.monotonic() >= deadline:
                raise EmulatorContainerError(
                    f"the emulator container was not healthy within {self._startup_timeout:g}s "
                    f"({url}: {last})"
                )
            time.sleep(self._poll_interval)


class ServiceBusEmulatorContainer(DockerContainer):
    """The Service Bus emulator in a container; see the module docstring."""

    def __init__(
        self,
        image: str | None = None,
        config: str | Path | None = None,
        *,
        accept_eula: bool = False,
        mssql_image: str = MSSQL_IMAGE,
        mssql_password: str | None = None,
        startup_timeout: float | None = None,
        network_factory: Callable[[], Network] | None = None,
        sql_container_factory: Callable[[str], DockerContainer] | None = None,
        **kwargs: Any,
    ) -> None:
        image = image or emulator_image()
        super().__init__(image, **kwargs)
        self.official = is_official(image)
        self.accept_eula = accept_eula
        self.mssql_image = mssql_image
        self.mssql_password = mssql_password or sql_password()
        # The official emulator waits for SQL Server (SQL_WAIT_INTERVAL, 15 s by default).
        self.health = HealthWait(timeout=startup_timeout or (180.0 if self.official else 30.0))
        self._network_factory = network_factory or Network
        self._sql_factory = sql_container_factory or DockerContainer
        self.sql_server: DockerContainer | None = None
        self.network: Network | None = None
        self.config: Path | None = None
        self._mapped: dict[int, int] = {}
        self._host: str | None = None
        self.start_seconds = 0.0
        """Seconds from start() to healthy (the container's create, start and health wait)."""
        self.with_exposed_ports(AMQP_PORT, ADMIN_PORT)
        if config is not None:
            self.with_config(config)

    def with_config(self, path: str | Path) -> Self:
        """Mount this Config.json (read-only) where both emulators read theirs."""
        config = Path(path).resolve()
        if not config.is_file():
            raise EmulatorContainerError(f"emulator config {config} is not a file")
        self.config = config
        self.with_volume_mapping(str(config), CONFIG_PATH, "ro")
        return self

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start (with the official image: SQL Server first) and wait until healthy."""
        started = time.monotonic()
        self._ensure_image(self.image)
        if self.official:
            if not self.accept_eula:
                raise EmulatorContainerError(
                    f"{self.image} needs its licence accepted: pass accept_eula=True (it runs "
                    "with ACCEPT_EULA=Y), or use this project's emulator image (`make images`)"
                )
            self._start_sql_server()
        try:
            super().start()
            self.health.wait_until_ready(self)
            self._host = self.get_container_host_ip()
            self._mapped = {p: int(self.get_exposed_port(p)) for p in (AMQP_PORT, ADMIN_PORT)}
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _start_sql_server(self) -> None:
        self._ensure_image(self.mssql_image)
        self.network = self._network_factory()
        self.network.create()
        self.sql_server = (
            self._sql_factory(self.mssql_image)
            .with_env("ACCEPT_EULA", "Y")
            .with_env("MSSQL_SA_PASSWORD", self.mssql_password)
            .with_network(self.network)
            .with_network_aliases(SQL_ALIAS)
        )
        self.sql_server.start()
        self.with_network(self.network)
        self.with_env("SQL_SERVER", SQL_ALIAS)
        self.with_env("MSSQL_SA_PASSWORD", self.mssql_password)
        self.with_env("ACCEPT_EULA", "Y")

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        """Remove the emulator, then its SQL Server and network (each once)."""
        try:
            if self._container is not None:
                super().stop(force, delete_volume)
                self._container = None
                self._mapped, self._host = {}, None
        finally:
            if self.sql_server is not None:
                sql, self.sql_server = self.sql_server, None
                sql.stop()
            if self.network is not None:
                network, self.network = self.network, None
                network.remove()

    def _ensure_image(self, image: str) -> None:
        """On the engine, or pulled now; else one error that says how to get it."""
        import docker.errors

        images = self.get_docker_client().client.images
        try:
            images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        host = os.environ.get("DOCKER_HOST") or "the default socket"
        if is_local_build(image):
            raise EmulatorContainerError(
                f"image {image} is not on the Docker engine at {host}; build it with "
                f"`{BUILD_IMAGES}`"
            )
        try:
            images.pull(image)
        except docker.errors.DockerException as exc:
            why = " ".join(str(exc).split())[:300]
            raise EmulatorContainerError(
                f"image {image} is not on the Docker engine at {host} and cannot be pulled "
                f"({why}); pull it where a registry answers, or run this project's emulator "
                f"(`{BUILD_IMAGES}`, then ServiceBusEmulatorContainer() with no image)"
            ) from exc

    # -- what clients need ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Where the mapped ports are (the Docker host, as testcontainers sees it)."""
        return self._host or self.get_container_host_ip()

    def _port(self, port: int) -> int:
        return self._mapped.get(port) or int(self.get_exposed_port(port))

    @property
    def amqp_port(self) -> int:
        return self._port(AMQP_PORT)

    @property
    def admin_port(self) -> int:
        return self._port(ADMIN_PORT)

    def get_connection_string(self, policy: str = ROOT_POLICY, key: str = ROOT_KEY) -> str:
        """Endpoint=sb://<host>:<mapped 5672>;...;UseDevelopmentEmulator=true;"""
        return connection_string(self.host, self.amqp_port, policy, key)

    @property
    def admin_url(self) -> str:
        """Plain-HTTP base URL of the admin port (health; this emulator's control API)."""
        return f"http://{self.host}:{self.admin_port}"

    @property
    def health_url(self) -> str:
        return f"{self.admin_url}/health"

    @property
    def control_url(self) -> str:
        """This emulator's JSON control API (clock, faults, reload): not in the official one."""
        if self.official:
            raise EmulatorContainerError(f"{self.image} has no control API (this project's has)")
        return f"{self.admin_url}/control"

    def get_ca_bundle(self, directory: str | Path) -> Path:
        """Copy the CA bundle of the management API's HTTPS into ``directory``; pass it to
        ``ServiceBusAdministrationClient(..., connection_verify=path)``."""
        if self.official:
            raise EmulatorContainerError(f"{self.image} serves no CA bundle of ours")
        stream, _ = self.get_wrapped_container().get_archive(CA_BUNDLE_PATH)
        with tarfile.open(fileobj=BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile("ca.pem")
            assert member is not None
            target = Path(directory) / "ca.pem"
            target.write_bytes(member.read())
        return target
