"""Does a Docker engine answer? A bounded check, so `auto` never hangs on a missing daemon.

The `docker` CLI may be installed without an engine (this project's CI machines), a socket
file may be left behind by a stopped daemon, and a wedged daemon may accept a connection but
never answer. So the check talks to the engine itself: `GET /_ping` over the socket (or TCP)
named by `DOCKER_HOST`, else over the usual socket paths, each with a deadline. Transports we
cannot speak here (ssh://, npipe://, TLS) fall back to `docker info` under a timeout.

An engine that answers is not enough: one that cannot reach a registry (CI behind a
firewall, an air-gapped machine) fails on the first pull, Ryuk's. So before containers are
chosen, :func:`images_problem` asks the engine whether each image testcontainers will run is
present (`GET /images/<name>/json`, what `docker image inspect` does) and, for a missing one,
whether its registry answers (`GET /distribution/<name>/json`), each under a short timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlparse

DEFAULT_TIMEOUT = 2.0
PULL_CHECK_TIMEOUT = 3.0
BUILD_IMAGES_COMMAND = "make images"


@dataclass(frozen=True)
class EngineStatus:
    """The answer of :func:`detect_docker_engine`; `reason` is meant for humans."""

    available: bool
    reason: str
    endpoint: str | None = None
    elapsed: float = 0.0

    def __bool__(self) -> bool:
        return self.available


def default_socket_paths(env: Mapping[str, str]) -> list[Path]:
    """Where Docker Engine, Docker Desktop, rootless Docker and Colima put their socket."""
    home = Path(env.get("HOME") or Path.home())
    paths = [
        Path("/var/run/docker.sock"),
        home / ".docker" / "run" / "docker.sock",
        home / ".docker" / "desktop" / "docker.sock",
        home / ".colima" / "default" / "docker.sock",
    ]
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "docker.sock")
    return paths


def _ping(sock: socket.socket, timeout: float) -> tuple[bool, str]:
    """Send `GET /_ping` on a connected socket; the engine answers `200` with body `OK`."""
    sock.settimeout(timeout)
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    data = b""
    try:
        while len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        if not data:
            return False, f"no answer to GET /_ping within {timeout:.1f}s"
    status = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if " 200 " in status + " " and data.rstrip().endswith(b"OK"):
        return True, "answered GET /_ping"
    return False, f"unexpected answer to GET /_ping: {status or 'empty'!r}"


def ping_unix_socket(path: Path, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str]:
    """Ping an engine on a unix socket; (ok, why)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return False, f"cannot connect to {path}: {exc.strerror or exc}"
        return _ping(sock, timeout)


def ping_tcp(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str]:
    """Ping an engine over plain TCP; (ok, why)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return False, f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    with sock:
        return _ping(sock, timeout)


def docker_info(
    timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """Ask the CLI (`docker info`) under a timeout; used for transports we do not speak."""
    exe = shutil.which("docker")
    if exe is None:
        return False, "the docker CLI is not installed"
    try:
        done = subprocess.run(
            [exe, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"`docker info` did not answer within {timeout:.1f}s"
    if done.returncode == 0 and done.stdout.strip():
        return True, f"`docker info` reports server {done.stdout.strip()}"
    message = (done.stderr or done.stdout).strip().splitlines()
    return False, f"`docker info` failed: {message[-1] if message else done.returncode}"


def detect_docker_engine(
    timeout: float = DEFAULT_TIMEOUT,
    *,
    env: Mapping[str, str] | None = None,
    socket_paths: Sequence[Path] | None = None,
) -> EngineStatus:
    """Find an engine that answers, within about `timeout` seconds per endpoint tried."""
    env = os.environ if env is None else env
    started = time.monotonic()

    def done(available: bool, reason: str, endpoint: str | None = None) -> EngineStatus:
        return EngineStatus(available, reason, endpoint, time.monotonic() - started)

    docker_host = env.get("DOCKER_HOST", "").strip()
    if docker_host:
        url = urlparse(docker_host)
        if url.scheme == "unix":
            ok, why = ping_unix_socket(Path(url.path), timeout)
        elif url.scheme == "tcp" and not env.get("DOCKER_TLS_VERIFY") and url.hostname:
            ok, why = ping_tcp(url.hostname, url.port or 2375, timeout)
        else:
            ok, why = docker_info(timeout, env)
        if ok:
            return done(True, f"Docker engine at DOCKER_HOST={docker_host} {why}", docker_host)
        return done(False, f"no Docker engine: DOCKER_HOST={docker_host}: {why}")

    paths = list(default_socket_paths(env) if socket_paths is None else socket_paths)
    problems: list[str] = []
    for path in paths:
        if not path.exists():
            continue
        ok, why = ping_unix_socket(path, timeout)
        if ok:
            return done(True, f"Docker engine at unix://{path} {why}", f"unix://{path}")
        problems.append(why)
    if problems:
        return done(False, "no Docker engine: " + "; ".join(problems))
    where = ", ".join(str(p) for p in paths) or "(no candidate paths)"
    return done(False, f"no Docker engine: DOCKER_HOST is unset and no socket at {where}")


# -- images -----------------------------------------------------------------------------------


class ImageClient(Protocol):
    """What choosing `containers` asks of an engine (a fake one in tests)."""

    def image_present(self, name: str) -> bool:
        """Is the image in the engine's local store?"""
        ...

    def image_pullable(self, name: str) -> tuple[bool, str]:
        """Could the engine pull it now? (ok, why not)."""
        ...


def _http_get(endpoint: str, path: str, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.0 GET to the engine on a unix:// or tcp:// endpoint: (status, body)."""
    return http_request(endpoint, "GET", path, timeout)


def http_request(endpoint: str, method: str, path: str, timeout: float) -> tuple[int, bytes]:
    """One bodiless HTTP/1.0 request to the engine on a unix:// or tcp:// endpoint."""
    url = urlparse(endpoint)
    if url.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(url.path)
        except OSError:
            sock.close()
            raise
    else:
        sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 2375), timeout)
    with sock:
        sock.settimeout(timeout)
        length = "Content-Length: 0\r\n" if method != "GET" else ""
        sock.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\n{length}\r\n".encode())
        data = b""
        while len(data) < 1 << 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {head[:60]!r}")
    return int(parts[1]), body


def _api_message(body: bytes) -> str:
    """The engine's error text (`{"message": ...}`), else the body's start."""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    return " ".join(str(message).split())[:200]


class EngineClient:
    """The Engine API on the endpoint :func:`detect_docker_engine` found (unix:// or plain
    tcp://); other transports (ssh://, TLS, none known) go through the docker CLI. Every call
    is bounded and none raises: an engine that stops answering just has no images."""

    def __init__(
        self,
        endpoint: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pull_timeout: float = PULL_CHECK_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self.env = os.environ if env is None else env
        scheme = urlparse(endpoint).scheme if endpoint else ""
        self.speaks_http = scheme == "unix" or (
            scheme == "tcp" and not self.env.get("DOCKER_TLS_VERIFY")
        )

    @classmethod
    def for_status(cls, status: EngineStatus) -> EngineClient:
        return cls(status.endpoint)

    def image_present(self, name: str) -> bool:
        if not self.speaks_http:
            ok, _ = self._cli(["image", "inspect", "--format", "{{.Id}}", name], self.timeout)
            return ok
        assert self.endpoint is not None
        try:
            status, _ = _http_get(self.endpoint, f"/images/{_quote(name)}/json", self.timeout)
        except OSError:
            return False
        return status == 200

    def image_pullable(self, name: str) -> tuple[bool, str]:
        if not self.speaks_http:
            return self._cli(["manifest", "inspect", name], self.pull_timeout)
        assert self.endpoint is not None
        path = f"/distribution/{_quote(name)}/json"
        try:
            status, body = _http_get(self.endpoint, path, self.pull_timeout)
        except TimeoutError:
            return False, f"its registry did not answer within {self.pull_timeout:.0f}s"
        except OSError as exc:
            return False, f"the engine did not answer: {exc}"
        if status == 200:
            return True, "its registry has it"
        return False, _api_message(body) or f"the engine answered {status}"

    def _cli(self, args: list[str], timeout: float) -> tuple[bool, str]:
        exe = shutil.which("docker")
        if exe is None:
            return False, "the docker CLI is not installed"
        try:
            done = subprocess.run(
                [exe, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=dict(self.env),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False, f"`docker {args[0]} {args[1]}` did not answer within {timeout:.0f}s"
        lines = (done.stderr or done.stdout).strip().splitlines()
        return done.returncode == 0, lines[-1] if lines else f"exit status {done.returncode}"


def _quote(name: str) -> str:
    return quote(name, safe="/:@")


def testcontainers_settings() -> tuple[str | None, str]:
    """(Ryuk image, or None when Ryuk is disabled; hub image prefix) as testcontainers reads
    them (environment and ~/.testcontainers.properties)."""
    from testcontainers.core.config import testcontainers_config as config

    ryuk = None if config.ryuk_disabled else config.ryuk_image
    return ryuk, config.hub_image_name_prefix


def required_images(
    images: Sequence[str], *, ryuk_image: str | None, prefix: str = ""
) -> list[str]:
    """Every image a containers stack runs: Ryuk first (testcontainers starts it first), each
    with the hub prefix testcontainers puts before every image name."""
    wanted = [ryuk_image, *images] if ryuk_image else list(images)
    return [prefix + name for name in wanted]


def images_problem(client: ImageClient, images: Sequence[str]) -> str | None:
    """None when every image is present or pullable; else one line naming the missing ones
    and how to build them. Stops at the first that cannot be pulled: one is enough to fail,
    and each pull check may take its whole timeout."""
    missing = [name for name in images if not client.image_present(name)]
    for name in missing:
        ok, why = client.image_pullable(name)
        if not ok:
            return (
                f"missing image(s) {', '.join(missing)}: not on the Docker engine, and "
                f"{name} cannot be pulled ({why}); build them with `{BUILD_IMAGES_COMMAND}`"
            )
    return None
