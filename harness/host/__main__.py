"""`python -m harness.host APP_DIR [--setting NAME=VALUE ...]`: run one app until Ctrl-C.

The process form of the host, for `harness up`: same code path as the in-process host,
plus readable logs and a clean exit on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from emulator.servicebus.admin.control_client import ControlError
from functions_shared.offset_clock import ClockReadError

from . import logrepeats
from .app import AppLoadError
from .broker_clock import ControlApiClock
from .config import HostConfigError, MissingSettingsError
from .environ import ProcessEnvironment
from .host import FunctionsHost


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--setting expects NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.host", description=__doc__)
    parser.add_argument("app_dir", help="folder with function_app.py and host.json")
    parser.add_argument("--setting", action="append", default=[], help="NAME=VALUE app setting")
    parser.add_argument("--signalr-endpoint", help="SignalR REST endpoint (a stand-in)")
    parser.add_argument("--no-timers", action="store_true", help="do not arm timer schedules")
    parser.add_argument(
        "--broker-clock",
        metavar="CONTROL_URL",
        help="follow the emulator's clock through its control API (http://host:port/control)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--log-repeats",
        type=int,
        default=5,
        metavar="N",
        help="lines of one kind logged per minute before the rest are counted (0: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The SDK logs every link at INFO and httpx every request (the clock refresh too).
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log = logging.getLogger("harness.host")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    clock = None
    try:
        extra: dict[str, Any] = {}
        if args.broker_clock:
            clock = ControlApiClock(
                args.broker_clock, offset_file=os.environ.get("WORKERS_CLOCK_FILE") or None
            )
            extra["broker_clock"] = clock
        host = FunctionsHost.load(
            args.app_dir,
            _settings(args.setting),
            # This process is the app's own: its settings go into the environment for good,
            # as Azure's app settings are the worker process's environment.
            environment=ProcessEnvironment(),
            signalr_endpoint=args.signalr_endpoint,
            run_timers=not args.no_timers,
            **extra,
        )
        with host:
            for line in host.describe():
                log.info("function %s", line)
            if host.settlement_address:
                log.info("settlement service at %s", host.settlement_address)
            print(f"host {host.name} running; Ctrl-C to stop", flush=True)
            # From here on, repeated lines are aggregated (the startup lines all show).
            repeats = logrepeats.install(burst=args.log_repeats) if args.log_repeats else []
            stop.wait()
            for repeat in repeats:
                repeat.flush_summaries()
            log.info("stopping %s", host.name)
    except (AppLoadError, HostConfigError, MissingSettingsError, ControlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClockReadError as exc:
        print(f"error: emulator control API unreachable: {exc}", file=sys.stderr)
        return 2
    finally:
        if clock is not None:
            clock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
