"""Stack providers: a Service Bus, PostgreSQL and Redis for the workers, however the machine is.

`StackBuilder().provider("auto").with_topology(path).isolated(worker).start()` returns a
:class:`Stack` (a context manager). Providers: `containers` (testcontainers, when a Docker
engine answers), `local` (DATABASE_URL / REDIS_URL, default this machine's services),
`embedded` (PostgreSQL and Redis binaries from pip wheels), `connection-string` (any
Service Bus namespace, topology applied through the administration client). See docs/stack.md.
"""

from __future__ import annotations

from .docker import EngineStatus, detect_docker_engine
from .errors import StackError
from .servicebus import TopologyReport, apply_topology
from .stack import PROVIDERS, Choice, ProviderName, Stack, StackBuilder, choose_services

__all__ = [
    "PROVIDERS",
    "Choice",
    "EngineStatus",
    "ProviderName",
    "Stack",
    "StackBuilder",
    "StackError",
    "TopologyReport",
    "apply_topology",
    "choose_services",
    "detect_docker_engine",
]
