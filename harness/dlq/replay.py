"""`replay`: a copy is sent first and the dead letter completed only after that send
succeeded; a failed send abandons it. From the DLQ or from an export file."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from azure.core.exceptions import (
    AzureError,
    ResourceNotFoundError,
)
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus.amqp import (
    AmqpAnnotatedMessage,
)
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusError

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusReceiver, ServiceBusSender
    from azure.servicebus.management import ServiceBusAdministrationClient

from .clients import DeadLetterSource
from .errors import _fatal, _sdk_errors, describe_error
from .export import _peek
from .records import (
    _RECEIVE_BATCH,
    DeadLetterRecord,
    Selector,
)

Outcome = Literal["replayed", "would-replay", "skipped", "failed", "untouched"]
NOT_SELECTED = "not selected"


@dataclass(frozen=True)
class ReplayOutcome:
    outcome: Outcome
    target: str
    sequence_number: int | None
    message_id: str | None
    detail: str = ""


@dataclass
class ReplayReport:
    """What happened to each dead letter looked at, and warnings about the run."""

    dry_run: bool = False
    outcomes: list[ReplayOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    on_outcome: Callable[[ReplayOutcome], None] | None = None
    """Told of each outcome as it is decided (the CLI's progress bar)."""

    def add(
        self, outcome: Outcome, record: DeadLetterRecord, target: str, detail: str = ""
    ) -> None:
        decided = ReplayOutcome(outcome, target, record.sequence_number, record.message_id, detail)
        self.outcomes.append(decided)
        if self.on_outcome is not None:
            self.on_outcome(decided)

    def by_target(self) -> dict[str, Counter[Outcome]]:
        """Outcome counts per target, in the order targets were first seen."""
        counts: dict[str, Counter[Outcome]] = {}
        for o in self.outcomes:
            counts.setdefault(o.target, Counter())[o.outcome] += 1
        return counts

    def count(self, *outcomes: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome in outcomes)

    @property
    def replayed(self) -> int:
        return self.count("replayed", "would-replay")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def untouched(self) -> int:
        """Selected but not attempted, because an earlier send failed for good."""
        return self.count("untouched")

    @property
    def ok(self) -> bool:
        return not self.failed and not self.untouched

    def summary(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        text = f"{verb} {self.replayed}, skipped {self.skipped}, failed {self.failed}"
        if self.untouched:
            text += f", not attempted {self.untouched}"
        return text


class _DuplicateWindows:
    """Duplicate-detection windows of replay targets, looked up once each."""

    def __init__(self, admin: ServiceBusAdministrationClient | None, report: ReplayReport) -> None:
        self.admin = admin
        self.report = report
        self.known: dict[str, timedelta | None] = {}

    def __call__(self, target: str) -> timedelta | None:
        key = target.casefold()
        if self.admin is None:
            return None
        if key not in self.known:
            self.known[key] = self._lookup(target)
        return self.known[key]

    def _lookup(self, target: str) -> timedelta | None:
        assert self.admin is not None
        try:
            try:
                entity: Any = self.admin.get_topic(target)
            except ResourceNotFoundError:
                entity = self.admin.get_queue(target)
        except AzureError as exc:
            self.report.warnings.append(
                f"could not check whether {target} requires duplicate detection "
                f"({describe_error(exc)}); copies keep their message ids, and if it does, "
                "those sent within its window are dropped (use --new-message-id)"
            )
            return None
        if not entity.requires_duplicate_detection:
            return None
        return entity.duplicate_detection_history_time_window or timedelta(minutes=10)


def _plan(
    record: DeadLetterRecord,
    target: str,
    report: ReplayReport,
    *,
    select: Selector | None,
    windows: _DuplicateWindows,
    new_message_id: bool,
) -> AmqpAnnotatedMessage | None:
    """The copy to send, or None after recording why not (before anything is locked)."""
    if select is not None and not select(record):
        report.add("skipped", record, target, NOT_SELECTED)
        return None
    window = None if new_message_id or record.message_id is None else windows(target)
    if window is not None:
        sent = record.enqueued_time
        if sent is None or datetime.now(UTC) - sent < window:
            report.add(
                "skipped",
                record,
                target,
                f"{target} requires duplicate detection and this message id was sent less "
                f"than {window} ago: a copy with it would be dropped; use --new-message-id",
            )
            return None
    try:
        return record.to_message(new_message_id=new_message_id)
    except (TypeError, ValueError) as exc:
        report.add("failed", record, target, str(exc))
        return None


def replay_dead_letters(
    client: ServiceBusClient,
    source: DeadLetterSource,
    *,
    to: str | None = None,
    select: Selector | None = None,
    max_count: int | None = None,
    dry_run: bool = False,
    new_message_id: bool = False,
    admin: ServiceBusAdministrationClient | None = None,
    receive_wait: float = 5.0,
    on_outcome: Callable[[ReplayOutcome], None] | None = None,
) -> ReplayReport:
    """Send copies of selected dead letters to ``to`` (default: the queue or topic they died
    in), completing each dead letter only after its copy was sent.

    ``admin`` lets the replay check whether the target drops duplicates (see module doc).
    Dead letters that are not selected but come before a selected one have to be locked to
    get past them; they are abandoned at the end (their delivery count goes up by one).
    """
    target = to or source.entity
    report = ReplayReport(dry_run=dry_run, on_outcome=on_outcome)
    windows = _DuplicateWindows(admin, report)
    snapshot: list[int] = []
    chosen: dict[int, DeadLetterRecord] = {}
    with contextlib.ExitStack() as stack:
        # One peek-lock receiver peeks and later locks: opening an SDK link is not free, and
        # with no prefetch it locks nothing until asked to receive.
        with _sdk_errors(f"cannot read {source.dead_letter_path}"):
            receiver = stack.enter_context(
                source.receiver(client, receive_mode=ServiceBusReceiveMode.PEEK_LOCK)
            )
        for message in _peek(receiver, source):
            record = DeadLetterRecord.from_message(message, source.dead_letter_path)
            copy = _plan(
                record,
                target,
                report,
                select=select,
                windows=windows,
                new_message_id=new_message_id,
            )
            snapshot.append(message.sequence_number)
            if copy is not None:
                chosen[message.sequence_number] = record
                if dry_run:
                    report.add("would-replay", record, target)
                if max_count is not None and len(chosen) >= max_count:
                    break
        if dry_run or not chosen:
            return report
        # A queue sender addresses topics too: the link target is just the entity name.
        with _sdk_errors(f"cannot send to {target}; nothing was changed"):
            sender = stack.enter_context(client.get_queue_sender(target))
        # Lock no further than the last chosen dead letter.
        to_lock = sum(1 for seq in snapshot if seq <= max(chosen))
        _move(receiver, sender, chosen, to_lock, target, report, new_message_id, receive_wait)
    for record in chosen.values():
        report.add("untouched", record, target, "no longer in the dead-letter queue")
    return report


def _move(
    receiver: ServiceBusReceiver,
    sender: ServiceBusSender,
    chosen: dict[int, DeadLetterRecord],
    to_lock: int,
    target: str,
    report: ReplayReport,
    new_message_id: bool,
    receive_wait: float,
) -> None:
    """Lock, send, complete. Pops what it handled from ``chosen``."""
    held: list[ServiceBusReceivedMessage] = []  # locked to get past them, abandoned at the end
    try:
        while chosen and to_lock > 0:
            try:
                batch = receiver.receive_messages(
                    max_message_count=min(to_lock, _RECEIVE_BATCH), max_wait_time=receive_wait
                )
            except AzureError as exc:
                _stop(chosen, target, report, f"receiving failed: {describe_error(exc)}")
                return
            if not batch:
                return
            to_lock -= len(batch)
            for index, message in enumerate(batch):
                if chosen.pop(message.sequence_number, None) is None:
                    held.append(message)
                    continue
                # What was peeked may have changed since: send what is locked now.
                record = DeadLetterRecord.from_message(message, receiver.entity_path)
                if not _move_one(receiver, sender, message, record, target, report, new_message_id):
                    _stop(chosen, target, report, "stopped: the receiver or target failed for good")
                    held.extend(batch[index + 1 :])
                    return
    finally:
        for message in held:
            _abandon_quietly(receiver, message)


def _abandon_quietly(receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
    """Give a lock back if the receiver still can; if not (lock lost, link or connection
    gone: the SDK then raises ValueError), the lock lapses and frees it just the same."""
    with contextlib.suppress(ServiceBusError, ValueError):
        receiver.abandon_message(message)


def _stop(chosen: dict[int, DeadLetterRecord], target: str, report: ReplayReport, why: str) -> None:
    for record in chosen.values():
        report.add("untouched", record, target, why)
    chosen.clear()


def _move_one(
    receiver: ServiceBusReceiver,
    sender: ServiceBusSender,
    message: ServiceBusReceivedMessage,
    record: DeadLetterRecord,
    target: str,
    report: ReplayReport,
    new_message_id: bool,
) -> bool:
    """Replay one locked dead letter; False when further sends are pointless."""
    try:
        sender.send_messages(record.to_message(new_message_id=new_message_id))
    except (AzureError, TypeError, ValueError) as exc:
        _abandon_quietly(receiver, message)
        report.add("failed", record, target, f"send failed, left in the DLQ: {describe_error(exc)}")
        return not _fatal(exc)
    try:
        receiver.complete_message(message)
    except (ServiceBusError, ValueError) as exc:
        report.add(
            "failed",
            record,
            target,
            f"the copy WAS sent but the dead letter could not be completed "
            f"({describe_error(exc)}); it is still in the DLQ and a later replay sends it again",
        )
        # One lost lock says nothing about the rest; a receiver that is gone cannot complete
        # any of them, so sending more copies would only make more duplicates.
        return isinstance(exc, MessageLockLostError)
    report.add("replayed", record, target)
    return True


def replay_records(
    client: ServiceBusClient,
    records: Iterable[DeadLetterRecord],
    *,
    to: str | None = None,
    select: Selector | None = None,
    max_count: int | None = None,
    dry_run: bool = False,
    new_message_id: bool = False,
    admin: ServiceBusAdministrationClient | None = None,
    on_outcome: Callable[[ReplayOutcome], None] | None = None,
) -> ReplayReport:
    """Send copies of exported records to ``to`` (default: each record's origin entity).

    The dead-letter queue is not touched: the originals, if still there, stay there.
    """
    report = ReplayReport(dry_run=dry_run, on_outcome=on_outcome)
    windows = _DuplicateWindows(admin, report)
    plan: list[tuple[DeadLetterRecord, str, AmqpAnnotatedMessage]] = []
    for record in records:
        target = to or record.origin
        copy = _plan(
            record, target, report, select=select, windows=windows, new_message_id=new_message_id
        )
        if copy is not None:
            plan.append((record, target, copy))
            if dry_run:
                report.add("would-replay", record, target)
            if max_count is not None and len(plan) >= max_count:
                break
    if dry_run or not plan:
        return report
    with contextlib.ExitStack() as stack:
        senders: dict[str, ServiceBusSender] = {}
        for _, target, _ in plan:  # open every target first: a bad one fails before any send
            if target not in senders:
                with _sdk_errors(f"cannot send to {target}; nothing was sent"):
                    senders[target] = stack.enter_context(client.get_queue_sender(target))
        for index, (record, target, copy) in enumerate(plan):
            try:
                senders[target].send_messages(copy)
            except (AzureError, TypeError, ValueError) as exc:
                report.add("failed", record, target, f"send failed: {describe_error(exc)}")
                if _fatal(exc):
                    for rest, rest_target, _ in plan[index + 1 :]:
                        report.add("untouched", rest, rest_target, "stopped after a failed send")
                    break
            else:
                report.add("replayed", record, target)
    return report
