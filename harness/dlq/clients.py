"""Where dead letters live (a queue's or a subscription's DLQ) and the SDK clients that reach
them, trusting the local emulator's certificate when it is one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusSubQueue,
    parse_connection_string,
)

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusReceiver
    from azure.servicebus.management import ServiceBusAdministrationClient

from .errors import DlqError

DEAD_LETTER_QUEUE = "$DeadLetterQueue"


@dataclass(frozen=True)
class DeadLetterSource:
    """A queue, or a topic subscription, whose dead-letter sub-queue is read."""

    entity: str
    """The queue or topic name; also where replayed copies go unless told otherwise."""
    subscription: str | None = None

    @property
    def path(self) -> str:
        if self.subscription is None:
            return self.entity
        return f"{self.entity}/Subscriptions/{self.subscription}"

    @property
    def dead_letter_path(self) -> str:
        return f"{self.path}/{DEAD_LETTER_QUEUE}"

    @classmethod
    def from_path(cls, path: str) -> DeadLetterSource:
        """``q``, ``t/Subscriptions/s``, either with ``/$DeadLetterQueue``."""
        parts = path.split("/")
        if parts[-1].casefold() == DEAD_LETTER_QUEUE.casefold():
            parts = parts[:-1]
        if len(parts) == 1 and parts[0]:
            return cls(parts[0])
        if len(parts) == 3 and parts[1].casefold() == "subscriptions" and parts[0] and parts[2]:
            return cls(parts[0], parts[2])
        raise ValueError(f"{path!r} is not a queue or topic-subscription path")

    def receiver(self, client: ServiceBusClient, **kwargs: Any) -> ServiceBusReceiver:
        """A receiver on the dead-letter sub-queue (peek-lock unless ``receive_mode`` says)."""
        if self.subscription is None:
            return client.get_queue_receiver(
                self.entity, sub_queue=ServiceBusSubQueue.DEAD_LETTER, **kwargs
            )
        return client.get_subscription_receiver(
            self.entity, self.subscription, sub_queue=ServiceBusSubQueue.DEAD_LETTER, **kwargs
        )


def _check_connection_string(connection_string: str) -> None:
    try:
        parse_connection_string(connection_string)
    except ValueError as exc:
        raise DlqError(
            f"malformed connection string ({exc}); expected "
            "Endpoint=sb://HOST;SharedAccessKeyName=NAME;SharedAccessKey=KEY"
        ) from None


def client(connection_string: str, *, retries: int | None = None) -> ServiceBusClient:
    """A sync client; a malformed connection string is a :class:`DlqError` (key not shown)."""
    _check_connection_string(connection_string)
    kwargs: dict[str, Any] = {} if retries is None else {"retry_total": retries}
    return ServiceBusClient.from_connection_string(connection_string, **kwargs)


def emulator_ca_bundle(connection_string: str) -> Path | None:
    """The local emulator's CA (``<tmp>/sbemu-<port>/ca.pem``) when the connection string
    points at one and the file exists: its management API uses a self-signed certificate."""
    if not re.search(r"(?i)(^|;)\s*UseDevelopmentEmulator\s*=\s*true\s*(;|$)", connection_string):
        return None
    host = parse_connection_string(connection_string).fully_qualified_namespace
    port = host.rpartition(":")[2] if ":" in host else "5672"
    if not port.isdigit():
        return None
    from emulator.servicebus.admin.tls import default_directory

    bundle = default_directory(int(port)) / "ca.pem"
    return bundle if bundle.is_file() else None


def admin_client(
    connection_string: str, *, ca_bundle: str | Path | None = None, retries: int | None = None
) -> ServiceBusAdministrationClient:
    """A management client; trusts ``ca_bundle`` or the local emulator's CA if found."""
    from azure.servicebus.management import ServiceBusAdministrationClient

    _check_connection_string(connection_string)
    kwargs: dict[str, Any] = {} if retries is None else {"retry_total": retries}
    bundle = ca_bundle or emulator_ca_bundle(connection_string)
    if bundle is not None:
        kwargs["connection_verify"] = str(bundle)
    return ServiceBusAdministrationClient.from_connection_string(connection_string, **kwargs)
