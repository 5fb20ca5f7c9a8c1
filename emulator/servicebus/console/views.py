"""What the console shows, read from the broker without changing it: plain data, no HTML.

The templates render these; the browser tests and the unit tests read them. Everything here
runs on the emulator's loop thread (the admin server's), so it reads the broker directly.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..admin.atom.render import Counts
from ..admin.atom_api import receiver_counts, topic_counts
from ..admin.control_api import message_json
from ..core.broker import Broker
from ..core.entities import DEAD_LETTER_SUFFIX, TRANSFER_DEAD_LETTER_SUFFIX, Topic
from ..core.errors import BrokerError
from ..core.message import DEAD_LETTER_REASON, BrokerMessage, MessageState
from ..topology import (
    CorrelationFilterSpec,
    FalseFilterSpec,
    FilterSpec,
    RuleDescription,
    SqlFilterSpec,
    TrueFilterSpec,
)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
View = Literal["active", "dead-letter", "transfer-dead-letter", "scheduled"]
VIEWS: tuple[View, ...] = ("active", "dead-letter", "transfer-dead-letter", "scheduled")
_SUFFIX: dict[View, str] = {
    "dead-letter": DEAD_LETTER_SUFFIX,
    "transfer-dead-letter": TRANSFER_DEAD_LETTER_SUFFIX,
}
NO_REASON = "(none)"
"""How a dead letter without a ``DeadLetterReason`` is listed and filtered."""


class ViewError(Exception):
    """A request for something that is not there; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- entities ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleView:
    name: str
    sql: str
    """The filter as a SQL expression, whatever kind it was declared as."""
    action: str | None


@dataclass(frozen=True)
class EntityRow:
    kind: Literal["queue", "topic", "subscription"]
    path: str
    name: str
    counts: Counts
    rules: list[RuleView] = field(default_factory=list)
    requires_session: bool = False

    @property
    def receivable(self) -> bool:
        return self.kind != "topic"


def _sql_literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _sql_name(name: str) -> str:
    return name if name.isidentifier() else "[" + name.replace("]", "]]") + "]"


def filter_sql(spec: FilterSpec) -> str:
    """Any filter written as the SQL filter that matches the same messages."""
    if isinstance(spec, SqlFilterSpec):
        return spec.expression
    if isinstance(spec, TrueFilterSpec):
        return "1=1"
    if isinstance(spec, FalseFilterSpec):
        return "1=0"
    assert isinstance(spec, CorrelationFilterSpec)
    terms = [
        f"sys.{name} = {_sql_literal(value)}"
        for name, value in spec.system_properties().items()
        if value is not None
    ]
    terms += [f"{_sql_name(k)} = {_sql_literal(v)}" for k, v in spec.properties.items()]
    return " AND ".join(terms) or "1=1"


def rule_view(rule: RuleDescription) -> RuleView:
    return RuleView(rule.name, filter_sql(rule.filter), rule.action)


def namespace_rows(broker: Broker) -> list[EntityRow]:
    """Queues, then each topic followed by its subscriptions, in name order."""
    rows = [
        EntityRow(
            "queue",
            q.name,
            q.name,
            receiver_counts(q),
            requires_session=q.store.policy.requires_session,
        )
        for q in sorted(broker.queues.values(), key=lambda q: q.name.casefold())
    ]
    for topic in sorted(broker.topics.values(), key=lambda t: t.name.casefold()):
        rows.append(EntityRow("topic", topic.name, topic.name, topic_counts(topic)))
        for sub in sorted(topic.subscriptions.values(), key=lambda s: s.name.casefold()):
            rows.append(
                EntityRow(
                    "subscription",
                    sub.path,
                    sub.name,
                    receiver_counts(sub),
                    [rule_view(r.description) for r in sub.rules],
                    requires_session=sub.store.policy.requires_session,
                )
            )
    return rows


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessagePage:
    """One page of one entity's view, with what a pager and a reason filter need."""

    entity: EntityRow
    view: View
    views: tuple[View, ...]
    """The views this entity has (a topic has only scheduled messages)."""
    address: str
    """The link address of what is listed (``q/$DeadLetterQueue``)."""
    messages: list[dict[str, Any]]
    total: int
    """Messages in this view that pass the filter (all pages)."""
    first_index: int
    """Position of the first listed message among ``total`` (0-based)."""
    previous_from: int | None
    next_from: int | None
    page_size: int
    reason: str | None
    reasons: list[tuple[str, int]]
    """Dead-letter reasons in this view with their counts, most frequent first."""

    @property
    def dead_letters(self) -> bool:
        return self.view in ("dead-letter", "transfer-dead-letter")

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.messages)


def reason_of(message: BrokerMessage) -> str:
    reason = message.user.get(DEAD_LETTER_REASON)
    return NO_REASON if reason is None else str(reason)


def find_entity(broker: Broker, path: str) -> EntityRow:
    for row in namespace_rows(broker):
        if row.path.casefold() == path.strip("/").casefold():
            return row
    raise ViewError(404, f"no queue, topic or subscription {path!r}")


def view_messages(broker: Broker, row: EntityRow, view: View) -> tuple[str, list[BrokerMessage]]:
    """The address and the messages of one view, unsorted."""
    if row.kind == "topic":
        if view != "scheduled":
            raise ViewError(404, f"a topic holds only scheduled messages, not {view}")
        topic = broker.topics[row.path.casefold()]
        return row.path, topic.scheduled_messages()
    suffix = _SUFFIX.get(view)
    address = f"{row.path}/{suffix}" if suffix else row.path
    try:
        resolved = broker.resolve(address)
    except BrokerError as exc:  # an entity deleted between two requests
        raise ViewError(404, str(exc)) from None
    assert resolved.store is not None
    held = resolved.store.messages.values()
    if view == "scheduled":
        if row.kind == "subscription":
            raise ViewError(404, "scheduled messages wait on their topic, not a subscription")
        return address, [m for m in held if m.state is MessageState.SCHEDULED]
    if view == "active":
        return address, [m for m in held if m.state is not MessageState.SCHEDULED]
    return address, list(held)


def views_of(row: EntityRow) -> tuple[View, ...]:
    if row.kind == "topic":
        return ("scheduled",)
    if row.kind == "subscription":
        return ("active", "dead-letter", "transfer-dead-letter")
    return VIEWS


def message_page(
    broker: Broker,
    path: str,
    view: View = "active",
    *,
    from_sequence: int = 0,
    page_size: int = PAGE_SIZE,
    reason: str | None = None,
) -> MessagePage:
    """Up to ``page_size`` messages from ``from_sequence`` on, in sequence order.

    Paged by sequence number rather than by offset, so a page stays put while messages
    arrive and leave (what a person reading a busy DLQ wants).
    """
    if view not in VIEWS:
        raise ViewError(400, f"view: {view!r} is not one of {', '.join(VIEWS)}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ViewError(400, f"size: must be between 1 and {MAX_PAGE_SIZE}")
    row = find_entity(broker, path)
    address, held = view_messages(broker, row, view)
    dead_letters = view in ("dead-letter", "transfer-dead-letter")
    reasons = Counter(reason_of(m) for m in held) if dead_letters else Counter[str]()
    if reason and dead_letters:
        held = [m for m in held if reason_of(m) == reason]
    numbers = sorted(m.sequence_number for m in held)
    by_number = {m.sequence_number: m for m in held}
    start = bisect.bisect_left(numbers, from_sequence)
    chosen = numbers[start : start + page_size]
    previous_start = max(0, start - page_size)
    sub_queue = _SUFFIX.get(view)
    return MessagePage(
        entity=row,
        view=view,
        views=views_of(row),
        address=address,
        messages=[message_json(by_number[n], sub_queue) for n in chosen],
        total=len(numbers),
        first_index=start,
        previous_from=numbers[previous_start] if start > 0 else None,
        next_from=numbers[start + page_size] if start + page_size < len(numbers) else None,
        page_size=page_size,
        reason=reason if dead_letters else None,
        reasons=sorted(reasons.items(), key=lambda item: (-item[1], item[0])),
    )


def message_detail(broker: Broker, address: str, sequence_number: int) -> dict[str, Any]:
    """Everything about one message (by link address and number), as the control API has it."""
    try:
        resolved = broker.resolve(address)
    except BrokerError as exc:
        raise ViewError(404, str(exc)) from None
    if resolved.store is None:
        assert isinstance(resolved.entity, Topic)
        found = {m.sequence_number: m for m in resolved.entity.scheduled_messages()}
        message = found.get(sequence_number)
    else:
        message = resolved.store.messages.get(sequence_number)
    if message is None:
        raise ViewError(404, f"{address} holds no message {sequence_number} (any more)")
    return message_json(message, resolved.sub_queue)


# -- clock ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockView:
    now: datetime
    offset_seconds: float

    @property
    def offset_text(self) -> str:
        return describe_seconds(self.offset_seconds)


def clock_view(now: float, offset: float) -> ClockView:
    return ClockView(datetime.fromtimestamp(now, UTC), offset)


def describe_seconds(seconds: float) -> str:
    """``3725`` → ``1h 2m 5s``: an offset or a wait a person reads at a glance."""
    if not math.isfinite(seconds):
        return str(seconds)
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            amount, rest = divmod(rest, size)
            parts.append(f"{int(amount)}{unit}")
    if rest or not parts:
        parts.append(f"{rest:g}s" if rest != int(rest) else f"{int(rest)}s")
    return sign + " ".join(parts)
