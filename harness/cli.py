"""``harness``: the local system's command line. ``harness up`` runs everything until Ctrl-C;
``harness dlq list|export|replay|reproduce`` inspects, moves and reproduces dead letters."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from .dlq.cli import add_dlq_commands, run_dlq

MAX_INSTANCES = 8
"""Per app: more host processes than this on a laptop is a typo, not a scale-out."""

CURL_EXAMPLE = """\
Try it:
  curl -s -X POST {api}/api/jobs/chat-suggestions -H 'content-type: application/json' \\
       -d '{{"creatorId": "creator-1", "fanMessage": "hi! what are you up to?"}}'
  curl -s {api}/api/jobs/<jobId>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="emulator, stand-ins, worker apps and job API, until Ctrl-C"
    )
    up.add_argument(
        "--stack",
        default="auto",
        choices=["auto", "local", "embedded", "containers"],
        help="where Postgres and Redis come from (auto explains its choice)",
    )
    up.add_argument("--sb-port", type=int, default=5673, help="Service Bus AMQP port (0 = any)")
    up.add_argument("--admin-port", type=int, default=5300, help="emulator admin/control port")
    up.add_argument("--api-port", type=int, default=8000, help="job API port")
    up.add_argument("--log-level", default="INFO")
    up.add_argument(
        "--data-dir",
        type=Path,
        help="keep the emulator's entities, messages, dead letters and clock here across "
        "restarts (`make up` uses .data/servicebus); default: in memory",
    )
    up.add_argument(
        "--fresh", action="store_true", help="with --data-dir: delete what it holds and start empty"
    )
    up.add_argument(
        "--in-process",
        action="store_true",
        help="run the worker apps in this process instead of one child process per app",
    )
    up.add_argument(
        "--instances",
        action="append",
        default=[],
        metavar="APP=N[,APP=N]",
        help="run N host processes of APP, competing for its messages as Azure's scaled-out "
        f"instances do (repeatable; N from 1 to {MAX_INSTANCES}; e.g. --instances jobs=2)",
    )
    add_dlq_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "dlq":
        return run_dlq(args)
    return _up(args)


def parse_instances(values: list[str], apps: tuple[str, ...]) -> dict[str, int]:
    """`["jobs=2,notify=3", "video=1"]` → `{"jobs": 2, "notify": 3, "video": 1}`; a bad
    item raises ValueError saying what --instances accepts."""
    counts: dict[str, int] = {}
    allowed = f"APP=N with APP one of {', '.join(apps)} and N from 1 to {MAX_INSTANCES}"
    for item in (part.strip() for value in values for part in value.split(",")):
        app, sep, number = item.partition("=")
        app, number = app.strip(), number.strip()
        if not sep or app not in apps or not number.isdigit():
            raise ValueError(f"--instances {item!r}: expected {allowed}")
        count = int(number)
        if not 1 <= count <= MAX_INSTANCES:
            raise ValueError(f"--instances {item!r}: N must be from 1 to {MAX_INSTANCES}")
        if app in counts and counts[app] != count:
            raise ValueError(f"--instances: {app} given twice ({counts[app]} and {count})")
        counts[app] = count
    return counts


def _up(args: argparse.Namespace) -> int:
    from .system import APPS, LocalSystem, SystemPorts  # heavy: the worker apps' imports

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)-32s %(message)s",
        datefmt="%H:%M:%S",
    )
    # The SDK logs every link at INFO; keep the interleaved log about the system itself.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO, and the apps read the emulator's clock by one.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.fresh and args.data_dir is None:
        print("harness up: --fresh needs --data-dir", file=sys.stderr)
        return 2
    try:
        instances = parse_instances(args.instances, APPS)
    except ValueError as exc:
        print(f"harness up: {exc}", file=sys.stderr)
        return 2
    if args.in_process and any(n > 1 for n in instances.values()):
        print(
            "harness up: --instances above 1 needs host processes (not --in-process)",
            file=sys.stderr,
        )
        return 2
    if args.fresh and args.data_dir.exists():
        shutil.rmtree(args.data_dir)
        print(f"harness up: {args.data_dir} emptied (--fresh)", flush=True)
    started = time.perf_counter()
    system = LocalSystem(
        data_dir=args.data_dir,
        provider=args.stack,
        ports=SystemPorts(servicebus=args.sb_port, admin=args.admin_port, api=args.api_port),
        processes=not args.in_process,
        instances=instances,
    )
    try:
        system.start()
    except Exception as exc:
        print(f"harness up: could not start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"\nLocal system up in {time.perf_counter() - started:.1f}s (Ctrl-C to stop)", flush=True)
    for line in system.describe():
        print("  " + line, flush=True)
    if args.data_dir is not None:
        emulator = system.stack.emulator if system.stack else None
        report = emulator.load_report if emulator is not None else None
        found = (
            "started empty"
            if report is None or report.fresh
            else f"restored {report.messages} message(s), {report.entities} entities"
        )
        print(f"  emulator state     {args.data_dir}: {found} (--fresh starts empty)", flush=True)
    assert system.api is not None
    print("\n" + CURL_EXAMPLE.format(api=system.api.url), flush=True)
    stop.wait()
    print("stopping ...", flush=True)
    system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
