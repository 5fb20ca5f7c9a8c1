"""Atom answers out: entries, feeds and errors in the shapes the SDK deserialises (and the
service's recorded answers), count details in the ``.../2011/06/servicebus`` namespace."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from ...durations import format_duration
from ...topology import (
    CORRELATION_FIELDS,
    CorrelationFilterSpec,
    FalseFilterSpec,
    NamespaceTier,
    QueueDescription,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
)
from .common import (
    ATOM_NS,
    COUNTS_NS,
    SB_NS,
    TIMESPAN_MAX,
    TIMESPAN_MAX_TEXT,
    XSD_NS,
    XSI_NS,
    Dialect,
    Extras,
    ParsedRule,
)


def iso(seconds: float | None) -> str:
    """Epoch seconds as the service writes instants (0/None: .NET's DateTime.MinValue)."""
    if not seconds:
        return "0001-01-01T00:00:00Z"
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def duration(value: timedelta) -> str:
    if value >= TIMESPAN_MAX or math.isinf(value.total_seconds()):
        return TIMESPAN_MAX_TEXT
    return format_duration(value)


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _elements(pairs: list[tuple[str, object]]) -> str:
    out = []
    for name, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            text = _bool_text(value)
        elif isinstance(value, timedelta):
            text = duration(value)
        else:
            text = escape(str(value))
        out.append(f"<{name}>{text}</{name}>")
    return "".join(out)


@dataclass
class Counts:
    """Runtime numbers of one entity, as ``get_*_runtime_properties`` reports them."""

    active: int = 0
    dead_letter: int = 0
    scheduled: int = 0
    transfer: int = 0
    transfer_dead_letter: int = 0
    size: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    accessed_at: float = 0.0
    subscription_count: int = 0
    sql_filter_count: int = 0
    correlation_filter_count: int = 0

    @property
    def total(self) -> int:
        return (
            self.active
            + self.dead_letter
            + self.scheduled
            + self.transfer
            + self.transfer_dead_letter
        )


def _count_details(counts: Counts) -> str:
    items = [
        ("ActiveMessageCount", counts.active),
        ("DeadLetterMessageCount", counts.dead_letter),
        ("ScheduledMessageCount", counts.scheduled),
        ("TransferMessageCount", counts.transfer),
        ("TransferDeadLetterMessageCount", counts.transfer_dead_letter),
    ]
    inner = "".join(f"<d2p1:{name}>{value}</d2p1:{name}>" for name, value in items)
    return f'<CountDetails xmlns:d2p1="{COUNTS_NS}">{inner}</CountDetails>'


def _forward(base: str, target: str | None) -> str | None:
    return f"{base}/{target}" if target else None


def _open(kind: str) -> str:
    return f'<{kind} xmlns="{SB_NS}" xmlns:i="{XSI_NS}">'


def _idle(value: timedelta | None) -> timedelta:
    return TIMESPAN_MAX if value is None else value


def queue_xml(
    queue: QueueDescription, counts: Counts, extras: Extras, sb_base: str, dialect: Dialect
) -> str:
    """``sb_base`` (``sb://host:port``) prefixes ForwardTo, as the service reports it."""
    return (
        _open("QueueDescription")
        + _elements(
            [
                ("LockDuration", queue.lock_duration),
                ("MaxSizeInMegabytes", 1024),
                ("RequiresDuplicateDetection", queue.requires_duplicate_detection),
                ("RequiresSession", queue.requires_session),
                ("DefaultMessageTimeToLive", queue.default_message_time_to_live),
                ("DeadLetteringOnMessageExpiration", queue.dead_lettering_on_message_expiration),
                (
                    "DuplicateDetectionHistoryTimeWindow",
                    queue.duplicate_detection_history_time_window,
                ),
                ("MaxDeliveryCount", queue.max_delivery_count),
                ("EnableBatchedOperations", True),
                ("SizeInBytes", counts.size),
                ("MessageCount", counts.total),
                ("IsAnonymousAccessible", False),
            ]
        )
        + "<AuthorizationRules></AuthorizationRules>"
        + _elements(
            [
                ("Status", "Active"),
                ("ForwardTo", _forward(sb_base, queue.forward_to)),
                ("UserMetadata", extras.user_metadata),
                ("CreatedAt", iso(counts.created_at)),
                ("UpdatedAt", iso(counts.updated_at or counts.created_at)),
                ("AccessedAt", iso(counts.accessed_at)),
                ("SupportOrdering", True),
            ]
        )
        + _count_details(counts)
        + _elements(
            [
                ("AutoDeleteOnIdle", _idle(queue.auto_delete_on_idle)),
                ("EnablePartitioning", False),
                ("EntityAvailabilityStatus", "Available"),
                (
                    "ForwardDeadLetteredMessagesTo",
                    _forward(sb_base, queue.forward_dead_lettered_messages_to),
                ),
                ("EnableExpress", False),
                (
                    "MaxMessageSizeInKilobytes",
                    dialect.reported_message_size(queue.max_message_size_bytes),
                ),
            ]
        )
        + "</QueueDescription>"
    )


def topic_xml(topic: TopicDescription, counts: Counts, extras: Extras, dialect: Dialect) -> str:
    return (
        _open("TopicDescription")
        + _elements(
            [
                ("DefaultMessageTimeToLive", topic.default_message_time_to_live),
                ("MaxSizeInMegabytes", 1024),
                ("RequiresDuplicateDetection", topic.requires_duplicate_detection),
                (
                    "DuplicateDetectionHistoryTimeWindow",
                    topic.duplicate_detection_history_time_window,
                ),
                ("EnableBatchedOperations", True),
                ("SizeInBytes", counts.size),
                ("FilteringMessagesBeforePublishing", False),
                ("IsAnonymousAccessible", False),
            ]
        )
        + "<AuthorizationRules></AuthorizationRules>"
        + _elements(
            [
                ("Status", "Active"),
                ("CreatedAt", iso(counts.created_at)),
                ("UpdatedAt", iso(counts.updated_at or counts.created_at)),
                ("AccessedAt", iso(counts.accessed_at)),
                ("SupportOrdering", True),
            ]
        )
        + _count_details(counts)
        + _elements(
            [
                ("SubscriptionCount", counts.subscription_count),
                ("SqlFilterCount", counts.sql_filter_count),
                ("CorrelationFilterCount", counts.correlation_filter_count),
                ("AutoDeleteOnIdle", _idle(topic.auto_delete_on_idle)),
                ("EnablePartitioning", False),
                ("EntityAvailabilityStatus", "Available"),
                ("EnableSubscriptionPartitioning", False),
                ("EnableExpress", False),
                ("UserMetadata", extras.user_metadata),
                (
                    "MaxMessageSizeInKilobytes",
                    dialect.reported_message_size(topic.max_message_size_bytes),
                ),
            ]
        )
        + "</TopicDescription>"
    )


def subscription_xml(
    subscription: SubscriptionDescription, counts: Counts, extras: Extras, sb_base: str
) -> str:
    return (
        _open("SubscriptionDescription")
        + _elements(
            [
                ("LockDuration", subscription.lock_duration),
                ("RequiresSession", subscription.requires_session),
                ("DefaultMessageTimeToLive", subscription.default_message_time_to_live),
                (
                    "DeadLetteringOnMessageExpiration",
                    subscription.dead_lettering_on_message_expiration,
                ),
                (
                    "DeadLetteringOnFilterEvaluationExceptions",
                    subscription.dead_lettering_on_filter_evaluation_exceptions,
                ),
                ("MessageCount", counts.total),
                ("MaxDeliveryCount", subscription.max_delivery_count),
                ("EnableBatchedOperations", True),
                ("Status", "Active"),
                ("ForwardTo", _forward(sb_base, subscription.forward_to)),
                ("CreatedAt", iso(counts.created_at)),
                ("UpdatedAt", iso(counts.updated_at or counts.created_at)),
                ("AccessedAt", iso(counts.accessed_at)),
            ]
        )
        + _count_details(counts)
        + _elements(
            [
                ("UserMetadata", extras.user_metadata),
                (
                    "ForwardDeadLetteredMessagesTo",
                    _forward(sb_base, subscription.forward_dead_lettered_messages_to),
                ),
                ("AutoDeleteOnIdle", _idle(subscription.auto_delete_on_idle)),
                ("EntityAvailabilityStatus", "Available"),
            ]
        )
        + "</SubscriptionDescription>"
    )


def _value_xml(value: object) -> str:
    if isinstance(value, bool):
        kind, text = "boolean", _bool_text(value)
    elif isinstance(value, int):
        kind, text = ("int" if -(2**31) <= value < 2**31 else "long"), str(value)
    elif isinstance(value, float):
        kind, text = "double", repr(value)
    elif isinstance(value, datetime):
        kind, text = "dateTime", value.isoformat()
    elif isinstance(value, timedelta):
        kind, text = "duration", format_duration(value)
    else:
        kind, text = "string", str(value)
    return f'<Value i:type="d6p1:{kind}" xmlns:d6p1="{XSD_NS}">{escape(text)}</Value>'


def _key_values_xml(tag: str, values: Mapping[str, object]) -> str:
    pairs = "".join(
        f"<KeyValueOfstringanyType><Key>{escape(key)}</Key>{_value_xml(value)}"
        "</KeyValueOfstringanyType>"
        for key, value in values.items()
    )
    return f"<{tag}>{pairs}</{tag}>"


def rule_xml(rule: ParsedRule, created_at: float, *, element: str = "RuleDescription") -> str:
    spec = rule.description.filter
    if isinstance(spec, SqlFilterSpec):
        filter_xml = (
            f'<Filter i:type="SqlFilter"><SqlExpression>{escape(spec.expression)}</SqlExpression>'
            "<CompatibilityLevel>20</CompatibilityLevel>"
            + _key_values_xml("Parameters", rule.filter_parameters)
            + "</Filter>"
        )
    elif isinstance(spec, CorrelationFilterSpec):
        fields = _elements([(tag, getattr(spec, attr)) for tag, attr in CORRELATION_FIELDS.items()])
        filter_xml = (
            f'<Filter i:type="CorrelationFilter">{fields}'
            + _key_values_xml("Properties", spec.properties)
            + "</Filter>"
        )
    else:
        kind, expression = (
            ("FalseFilter", "1=0") if isinstance(spec, FalseFilterSpec) else ("TrueFilter", "1=1")
        )
        filter_xml = (
            f'<Filter i:type="{kind}"><SqlExpression>{expression}</SqlExpression>'
            "<CompatibilityLevel>20</CompatibilityLevel></Filter>"
        )
    if rule.description.action:
        action_xml = (
            '<Action i:type="SqlRuleAction"><SqlExpression>'
            f"{escape(rule.description.action)}</SqlExpression>"
            "<CompatibilityLevel>20</CompatibilityLevel>"
            + _key_values_xml("Parameters", rule.action_parameters)
            + "</Action>"
        )
    else:
        action_xml = '<Action i:type="EmptyRuleAction"/>'
    return (
        _open(element)
        + filter_xml
        + action_xml
        + f"<CreatedAt>{iso(created_at)}</CreatedAt><Name>{escape(rule.description.name)}</Name>"
        + f"</{element}>"
    )


def namespace_xml(name: str, created_at: float, modified_at: float, tier: NamespaceTier) -> str:
    return (
        _open("NamespaceInfo")
        + _elements(
            [
                ("CreatedTime", iso(created_at)),
                ("MessagingSKU", tier.value),
                ("ModifiedTime", iso(modified_at)),
                ("Name", name),
                ("NamespaceType", "Messaging"),
            ]
        )
        + "</NamespaceInfo>"
    )


def entry(url: str, title: str, content: str, *, published: float, updated: float) -> str:
    """One Atom entry around a description (``url`` is its id and self link)."""
    return (
        f'<entry xmlns="{ATOM_NS}"><id>{escape(url)}</id><title type="text">{escape(title)}'
        f"</title><published>{iso(published)}</published><updated>{iso(updated)}</updated>"
        f'<link rel="self" href={quoteattr(url)}/>'
        f'<content type="application/xml">{content}</content></entry>'
    )


def feed(title: str, url: str, entries: list[str], next_url: str | None, now: float) -> str:
    """A feed; a ``next`` link (the SDK pages with it) when more entries remain."""
    links = f'<link rel="self" href={quoteattr(url)}/>'
    if next_url is not None:
        links += f'<link rel="next" href={quoteattr(next_url)}/>'
    body = "".join(re.sub(r'^<entry xmlns="[^"]*">', "<entry>", e) for e in entries)
    return (
        f'<feed xmlns="{ATOM_NS}"><title type="text">{escape(title)}</title>'
        f"<id>{escape(url)}</id><updated>{iso(now)}</updated>{links}{body}</feed>"
    )


def error_xml(code: int, detail: str) -> str:
    return f"<Error><Code>{code}</Code><Detail>{escape(detail)}</Detail></Error>"
