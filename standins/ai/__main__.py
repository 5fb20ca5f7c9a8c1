"""`python -m standins.ai --port 8090`: the AI stand-in as a process (for `harness up`, load).

Prints the URL and the worker settings that point at it, then serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import uvicorn

from standins.ai.behaviour import DEFAULT_DEPLOYMENTS, AIBehaviour, Deployment
from standins.ai.faults import FaultProfile, Latency
from standins.ai.server import create_app


def parse_latency(text: str) -> Latency:
    """`none`, `fixed:0.2`, `uniform:0.1,0.5`, `lognormal:0.3,0.6[,cap]` (seconds)."""
    kind, _, args = text.partition(":")
    values = [float(v) for v in args.split(",") if v.strip()]
    try:
        if kind == "none":
            return Latency.none()
        if kind == "fixed":
            return Latency.fixed(*values)
        if kind == "uniform":
            return Latency.uniform(*values)
        if kind == "lognormal":
            return Latency.lognormal(*values)
    except TypeError as exc:
        raise argparse.ArgumentTypeError(f"bad arguments for {kind} latency: {text}") from exc
    raise argparse.ArgumentTypeError(f"unknown latency kind {kind!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m standins.ai", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    p.add_argument("--api-key", default=None, help="require this key (api-key or Bearer)")
    p.add_argument(
        "--deployment",
        action="append",
        default=None,
        help="deployment/model name to serve (repeatable; default: the seed's models)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for faults and latency")
    p.add_argument("--latency", type=parse_latency, default=Latency.none())
    p.add_argument("--rate-limit", type=float, default=0.0, help="429 rate in [0, 1]")
    p.add_argument("--retry-after", type=float, default=1.0, help="seconds in Retry-After")
    p.add_argument("--server-error", type=float, default=0.0, help="5xx rate in [0, 1]")
    p.add_argument("--malformed", type=float, default=0.0, help="malformed-body rate")
    p.add_argument("--slow", type=float, default=0.0, help="rate of slow answers")
    p.add_argument("--slow-seconds", type=float, default=2.0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    deployments = (
        [Deployment(name) for name in args.deployment] if args.deployment else DEFAULT_DEPLOYMENTS
    )
    behaviour = AIBehaviour(
        deployments,
        api_key=args.api_key,
        seed=args.seed,
        latency=args.latency,
        faults=FaultProfile(
            rate_limit=args.rate_limit,
            retry_after=args.retry_after,
            server_error=args.server_error,
            malformed=args.malformed,
            slow=args.slow,
            slow_seconds=args.slow_seconds,
        ),
    )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)  # connections queue from here on, so the printed URL is usable at once
    port = sock.getsockname()[1]
    url = f"http://{args.host}:{port}"
    print(f"AI stand-in listening on {url}", flush=True)
    for d in behaviour.deployments.values():
        line = f"  {d.name}: {url}/{d.name}"
        print(line + (f"   ({d.setting})" if d.setting else ""), flush=True)
    print(f"  shared endpoint: {url}/models   calls: {url}/_standin/calls", flush=True)
    config = uvicorn.Config(create_app(behaviour), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
