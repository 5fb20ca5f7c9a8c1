"""Worker apps as child processes (`python -m harness.host`), for `harness up`.

One process per app, as Azure runs one host per function app: apps cannot share imported
state or environment by accident, and one app crashing does not take the others down.
Each child's output is relayed line by line with an `[app]` prefix, so the interleaved log
stays readable.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

READY_MARK = "running; Ctrl-C to stop"  # printed by harness.host once receivers are attached


class HostProcessError(RuntimeError):
    """A worker app's process exited or did not become ready; carries its last lines."""


class HostProcess:
    """`start()` spawns, `wait_ready()` blocks until the host says it runs, `stop()` ends it."""

    def __init__(
        self,
        name: str,
        app_dir: Path,
        env: Mapping[str, str],
        *,
        broker_clock_url: str | None = None,
        run_timers: bool = True,
        output: TextIO | None = None,
    ) -> None:
        self.name = name
        self.app_dir = app_dir
        self.env = dict(env)
        self.broker_clock_url = broker_clock_url
        self.run_timers = run_timers
        self.output = output if output is not None else sys.stdout
        self.process: subprocess.Popen[str] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.line_listeners: list[Callable[[str], None]] = []
        """Called with each output line, on the relay thread (the console's invocations)."""
        self._ready = threading.Event()
        self._decided = threading.Event()  # ready, or the output ended (process exited)
        self._relay: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "harness.host", str(self.app_dir)]
        if not self.run_timers:
            command.append("--no-timers")
        if self.broker_clock_url:
            command += ["--broker-clock", self.broker_clock_url]
        return command

    def start(self) -> HostProcess:
        # Settings go through the environment, not argv: connection strings carry keys.
        self.process = subprocess.Popen(
            self.command(),
            env={**self.env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._relay = threading.Thread(
            target=self._relay_lines, name=f"relay-{self.name}", daemon=True
        )
        self._relay.start()
        return self

    def _relay_lines(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.tail.append(line)
            for listener in self.line_listeners:
                listener(line)
            if READY_MARK in line:
                self._ready.set()
                self._decided.set()
            self.output.write(f"[{self.name}] {line}\n")
            self.output.flush()
        self._decided.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the host reports its receivers attached; raise if it died first."""
        decided = self._decided.wait(timeout)
        if self._ready.is_set():
            return
        reason = "exited" if decided else "did not start"
        code = None if self.process is None else self.process.poll()
        last = "\n".join(self.tail)
        raise HostProcessError(
            f"worker app {self.name} {reason} within {timeout:.0f}s (exit code {code}):\n{last}"
        )

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT (the host drains in-flight runs), then SIGKILL if it does not exit."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._relay is not None:
            self._relay.join(5)
        return process.returncode


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment plus the app settings (a child needs PATH, HOME, ...)."""
    return {**os.environ, **settings}
