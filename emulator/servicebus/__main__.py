"""``python -m emulator.servicebus`` / ``sbemu``: run the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
import time

from .config import ConfigError
from .emulator import PROJECT_CONFIG, ServiceBusEmulator
from .persistence import DataDirError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sbemu", description=__doc__)
    parser.add_argument("--config", default=str(PROJECT_CONFIG), help="Config.json to load")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (0 = any free port)")
    parser.add_argument(
        "--admin-port", type=int, default=5300, help="health/admin HTTP port (0 = any free port)"
    )
    parser.add_argument(
        "--tls-dir",
        default=None,
        help="where to write the HTTPS CA bundle (default: <tempdir>/sbemu-<port>)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="keep entities, messages, sessions, duplicate ids and the clock here across "
        "restarts (default: nothing is kept; delete the directory to start fresh)",
    )
    parser.add_argument(
        "--console-write",
        action="store_true",
        help="let the web console change things (resubmit, purge, clock, faults) even when "
        "--host is not a loopback address (it is read-only there by default)",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG logs every admin/control request"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    started = time.perf_counter()
    try:
        emulator = ServiceBusEmulator.from_config(
            args.config,
            host=args.host,
            port=args.port,
            admin_port=args.admin_port,
            tls_dir=args.tls_dir,
            data_dir=args.data_dir,
            console_writable=True if args.console_write else None,
        )
        emulator.start()
    except ConfigError as exc:
        print(f"sbemu: invalid configuration {args.config}:\n{exc}", file=sys.stderr)
        return 2
    except DataDirError as exc:
        print(f"sbemu: cannot use the data dir: {exc}", file=sys.stderr)
        return 4
    except OSError as exc:
        print(
            f"sbemu: cannot listen on {args.host}:{args.port} / {args.admin_port}: {exc}\n"
            "  another server (RabbitMQ uses 5672) may hold the port: pass --port 0 for any "
            "free port, or another port",
            file=sys.stderr,
        )
        return 3
    elapsed = time.perf_counter() - started
    # What the start built (modules, topology, compiled rules, TLS) lives as long as the
    # process: frozen, the collector's full passes, which come with every few thousand
    # messages held, no longer walk it each time (a few µs per message sent, in make bench).
    gc.collect()
    gc.freeze()
    topology = emulator.topology
    print(f"Service Bus emulator ready in {elapsed:.2f}s", flush=True)
    print(f"  AMQP:   {emulator.host}:{emulator.port}", flush=True)
    print(f"  admin:  {emulator.health_url}", flush=True)
    print(f"  control API: {emulator.control_url}", flush=True)
    print(f"  console: {emulator.console_url}", flush=True)
    print(
        f"  management API: https://{emulator.host}:{emulator.port} and "
        f"{emulator.admin_endpoint} (CA bundle: {emulator.ca_bundle})",
        flush=True,
    )
    print(
        f"  entities: {len(topology.queues)} queue(s), {len(topology.topics)} topic(s), "
        f"{sum(len(t.subscriptions) for t in topology.topics)} subscription(s)",
        flush=True,
    )
    report = emulator.load_report
    if report is not None:
        found = (
            "new state"
            if report.fresh
            else f"restored {report.entities} entities, {report.messages} message(s), "
            f"{report.sessions} session state(s), {report.duplicates} duplicate id(s)"
        )
        print(f"  data dir: {emulator.data_dir} ({found})", flush=True)
    print(f"  connection string: {emulator.connection_string}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
