"""`list` and `export`: counts from the management API, dead letters by peek only (no lock,
no delivery count), so looking never changes the DLQ."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
)

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusReceiver
    from azure.servicebus.management import ServiceBusAdministrationClient

from .clients import DeadLetterSource
from .errors import _sdk_errors
from .records import _PEEK_BATCH, DeadLetterRecord
from .redact import Redaction


@dataclass(frozen=True)
class DeadLetterCount:
    entity_path: str
    active: int
    dead_letter: int
    transfer_dead_letter: int


def dead_letter_counts(
    admin: ServiceBusAdministrationClient, *, topic: str | None = None
) -> list[DeadLetterCount]:
    """Runtime counts of every queue and subscription (or only ``topic``'s subscriptions)."""
    counts: list[DeadLetterCount] = []
    with _sdk_errors(f"cannot list {'topic ' + repr(topic) if topic else 'the namespace'}"):
        if topic is None:
            for queue in admin.list_queues_runtime_properties():
                counts.append(_count(queue.name, queue))
            topics = [t.name for t in admin.list_topics()]
        else:
            topics = [topic]
        for name in topics:
            for sub in admin.list_subscriptions_runtime_properties(name):
                counts.append(_count(f"{name}/Subscriptions/{sub.name}", sub))
    return counts


def _count(path: str, props: Any) -> DeadLetterCount:
    return DeadLetterCount(
        path,
        props.active_message_count or 0,
        props.dead_letter_message_count or 0,
        props.transfer_dead_letter_message_count or 0,
    )


def peek_dead_letters(
    client: ServiceBusClient, source: DeadLetterSource, *, max_count: int | None = None
) -> Iterator[ServiceBusReceivedMessage]:
    """Every dead letter in sequence order, peeked: no lock, no delivery count, no change."""
    with contextlib.ExitStack() as stack:
        with _sdk_errors(f"cannot read {source.dead_letter_path}"):
            receiver = stack.enter_context(source.receiver(client))
        yield from _peek(receiver, source, max_count)


def _peek(
    receiver: ServiceBusReceiver, source: DeadLetterSource, max_count: int | None = None
) -> Iterator[ServiceBusReceivedMessage]:
    seen = 0
    next_sequence = 1
    while max_count is None or seen < max_count:
        want = _PEEK_BATCH if max_count is None else min(_PEEK_BATCH, max_count - seen)
        # An explicit start: the SDK's default continues from its own cursor.
        with _sdk_errors(f"cannot read {source.dead_letter_path}"):
            batch = receiver.peek_messages(max_message_count=want, sequence_number=next_sequence)
        if not batch:
            return
        yield from batch
        seen += len(batch)
        next_sequence = batch[-1].sequence_number + 1


def export_dead_letters(
    client: ServiceBusClient,
    source: DeadLetterSource,
    out: TextIO,
    *,
    max_count: int | None = None,
    ascii_only: bool = False,
    on_record: Callable[[DeadLetterRecord], None] | None = None,
    redaction: Redaction | None = None,
) -> int:
    """Write one JSON line per dead letter to ``out``; return how many. ``on_record`` is
    told of each one written (the CLI's progress bar); ``redaction`` replaces named fields
    (a record it cannot redact stops the export with `RedactionError`)."""
    written = 0
    for message in peek_dead_letters(client, source, max_count=max_count):
        record = DeadLetterRecord.from_message(message, source.dead_letter_path)
        if redaction:
            record = redaction.apply(record)
        out.write(json.dumps(record.to_json(), ensure_ascii=ascii_only) + "\n")
        written += 1
        if on_record is not None:
            on_record(record)
    return written
