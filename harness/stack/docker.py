"""Does a Docker engine answer? A bounded check, so `auto` never hangs on a missing daemon.

The `docker` CLI may be installed without an engine (this project's CI machines), a socket
file may be left behind by a stopped daemon, and a wedged daemon may accept a connection but
never answer. So the check talks to the engine itself: `GET /_ping` over the socket (or TCP)
named by `DOCKER_HOST`, else over the usual socket paths, each with a deadline. Transports we
cannot speak here (ssh://, npipe://, TLS) fall back to `docker info` under a timeout.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_TIMEOUT = 2.0


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
