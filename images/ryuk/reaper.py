#!/usr/bin/env python3
"""A reaper that speaks testcontainers' Ryuk protocol, for engines without a registry.

Stands in for ``testcontainers/ryuk``: it listens on ``RYUK_PORT`` (8080); every line a
client sends is a filter in query-string form (``label=org.testcontainers.session-id=<id>``,
several joined by ``&``), answered ``ACK``. When the last client has been gone for
``RYUK_RECONNECTION_TIMEOUT`` (10s), or none came within ``RYUK_CONNECTION_TIMEOUT`` (60s), it
removes every container (forced, with its anonymous volumes), network, volume and image that
matches a filter, through the Docker socket mounted at ``/var/run/docker.sock``, and exits.
SIGTERM / SIGINT prune at once. Standard library only (it runs on Debian's python3).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import signal
import socket
import sys
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlparse

DEFAULTS = {
    "RYUK_PORT": "8080",
    "RYUK_CONNECTION_TIMEOUT": "60s",
    "RYUK_RECONNECTION_TIMEOUT": "10s",
    "RYUK_REMOVE_RETRIES": "10",
}
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``10s``, ``1m30s``, ``500ms``); a bare number is seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_filter(line: str) -> dict[str, list[str]]:
    """One protocol line as Docker API filters: ``label=a=b&label=c`` → {"label": [...]}."""
    filters: dict[str, list[str]] = {}
    for key, value in parse_qsl(line.strip(), keep_blank_values=True, strict_parsing=True):
        filters.setdefault(key, []).append(value)
    if not filters:
        raise ValueError("empty filter")
    return filters


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DockerApi:
    """The few Engine API calls pruning needs, over a unix socket or plain TCP."""

    def __init__(self, endpoint: str = "unix:///var/run/docker.sock", timeout: float = 10) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        url = urlparse(self.endpoint)
        if url.scheme == "unix":
            return _UnixConnection(url.path, self.timeout)
        return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 2375)

    def request(self, method: str, path: str) -> tuple[int, object]:
        conn = self._connection()
        try:
            conn.request(method, path, headers={"Host": "docker"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(body) if body else None
        except ValueError:
            return response.status, body.decode("utf-8", "replace")

    def listing(self, path: str, filters: Mapping[str, list[str]], **query: str) -> list[dict]:
        status, body = self.request(
            "GET", f"{path}?{urlencode({**query, 'filters': json.dumps(filters)})}"
        )
        if status != 200:
            raise OSError(f"GET {path}: {status} {body}")
        if isinstance(body, dict):  # /volumes answers {"Volumes": [...]}
            body = body.get("Volumes") or []
        return list(body or [])


def prune(
    api: DockerApi, filter_sets: list[dict[str, list[str]]], retries: int = 10
) -> dict[str, int]:
    """Remove what matches each filter set: containers, then networks, volumes, images."""
    removed = {"containers": 0, "networks": 0, "volumes": 0, "images": 0}
    kinds = (
        ("containers", "/containers/json", {"all": "1"}, "Id", "/containers/{}?force=1&v=1"),
        ("networks", "/networks", {}, "Id", "/networks/{}"),
        ("volumes", "/volumes", {}, "Name", "/volumes/{}?force=1"),
        ("images", "/images/json", {}, "Id", "/images/{}?force=1"),
    )
    for kind, path, query, key, delete in kinds:
        for filters in filter_sets:
            for attempt in range(retries):
                left = []
                for item in api.listing(path, filters, **query):
                    status, body = api.request("DELETE", delete.format(quote(item[key], safe="")))
                    if status in (200, 204, 404):
                        removed[kind] += status != 404
                    else:
                        left.append(f"{item[key][:12]}: {status} {body}")
                if not left:
                    break
                if attempt + 1 == retries:
                    log(f"could not remove {kind}: {'; '.join(left)}")
                else:  # a network still attached, a container still being removed
                    time.sleep(min(0.1 * 2**attempt, 2.0))
    return removed


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sbh-reaper: {message}", flush=True)


class Reaper:
    """The protocol loop: accept clients, collect filters, prune when they are gone."""

    def __init__(self, listener: socket.socket, api: DockerApi, env: Mapping[str, str]) -> None:
        settings = {**DEFAULTS, **{k: v for k, v in env.items() if k in DEFAULTS and v}}
        self.listener = listener
        self.api = api
        self.connection_timeout = parse_duration(settings["RYUK_CONNECTION_TIMEOUT"])
        self.reconnection_timeout = parse_duration(settings["RYUK_RECONNECTION_TIMEOUT"])
        self.retries = int(settings["RYUK_REMOVE_RETRIES"])
        self.filter_sets: list[dict[str, list[str]]] = []
        self.clients: dict[socket.socket, bytes] = {}
        self.stopping = False
        self._wake_r, self._wake_w = socket.socketpair()

    def stop(self) -> None:
        """Prune now (signal-safe: wakes the loop through a socket pair)."""
        self.stopping = True
        self._wake_w.send(b"x")

    def _deadline(self, started: float, last_gone: float | None) -> float | None:
        if self.clients:
            return None
        if last_gone is None:
            return started + self.connection_timeout
        return last_gone + self.reconnection_timeout

    def serve(self) -> dict[str, int]:
        """Run until it is time to prune; prune; return what was removed."""
        selector = selectors.DefaultSelector()
        self.listener.setblocking(False)
        selector.register(self.listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        started, last_gone = time.monotonic(), None
        while not self.stopping:
            deadline = self._deadline(started, last_gone)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            events = selector.select(timeout)
            if not events and deadline is not None and time.monotonic() >= deadline:
                break
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    continue
                if sock is self.listener:
                    client, _address = self.listener.accept()
                    client.setblocking(False)
                    self.clients[client] = b""
                    selector.register(client, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    del self.clients[sock]
                    last_gone = time.monotonic()
                    continue
                self._lines(sock, self.clients[sock] + data)
        selector.close()
        for client in self.clients:
            client.close()
        log(f"pruning {self.filter_sets or 'nothing'}")
        removed = prune(self.api, self.filter_sets, self.retries) if self.filter_sets else {}
        log(f"removed {removed}")
        return removed

    def _lines(self, sock: socket.socket, buffer: bytes) -> None:
        *lines, rest = buffer.split(b"\n")
        self.clients[sock] = rest
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                filters = parse_filter(line)
            except ValueError as exc:
                log(f"bad filter {line!r}: {exc}")
                sock.sendall(b"ERROR\n")
                continue
            if filters not in self.filter_sets:
                self.filter_sets.append(filters)
                log(f"added filter {filters}")
            sock.sendall(b"ACK\n")


def main(env: Mapping[str, str] = os.environ) -> int:
    port = int(env.get("RYUK_PORT") or DEFAULTS["RYUK_PORT"])
    listener = socket.create_server(("", port))
    endpoint = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    reaper = Reaper(listener, DockerApi(endpoint), env)

    signal.signal(signal.SIGTERM, lambda *_: reaper.stop())
    signal.signal(signal.SIGINT, lambda *_: reaper.stop())
    log(f"Started! listening on :{port}, Docker at {endpoint}")
    reaper.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
