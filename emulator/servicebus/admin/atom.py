"""Atom XML of the Service Bus management API: request bodies in, entries and feeds out.

The shapes follow what ``azure.servicebus.management`` serialises and deserialises (and the
service's recorded answers): an Atom ``entry`` whose ``content`` holds one
``QueueDescription`` / ``TopicDescription`` / ``SubscriptionDescription`` /
``RuleDescription`` in the ``.../2010/10/servicebus/connect`` namespace, with the count
details in the ``.../2011/06/servicebus`` namespace. Parsing is strict about values (a bad
duration is a 400 naming the element) and lenient about elements it does not model
(``AuthorizationRules``, ``EnablePartitioning`` ...), which the SDK sends back on every update.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ..config import format_duration, parse_duration
from ..topology import (
    CorrelationFilterSpec,
    FalseFilterSpec,
    QueueDescription,
    RuleDescription,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    TrueFilterSpec,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
COUNTS_NS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"

# .NET TimeSpan.MaxValue: what the service reports for "never" (TTL, AutoDeleteOnIdle).
TIMESPAN_MAX_TEXT = "P10675199DT2H48M5.4775807S"
TIMESPAN_MAX = timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477580)

# What the service gives an entity created without a value (not the emulator's config
# defaults): code written against a real namespace sees the same entity here.
SERVICE_MAX_DELIVERY_COUNT = 10
SERVICE_DUPLICATE_WINDOW = timedelta(minutes=10)
MAX_LOCK_DURATION = timedelta(minutes=5)

DESCRIPTION_KINDS = (
    "QueueDescription",
    "TopicDescription",
    "SubscriptionDescription",
    "RuleDescription",
)


class AtomError(ValueError):
    """A request body the API refuses (answered 400 with this message)."""


# --- parsing -------------------------------------------------------------------------------


def parse_entry(body: bytes) -> tuple[str, ET.Element]:
    """The description element of an Atom entry and its kind (``QueueDescription`` ...)."""
    if not body.strip():
        raise AtomError("The request body is empty; expected an Atom entry.")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise AtomError("Document type declarations are not allowed in the request body.")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise AtomError(f"The request body is not well-formed XML: {exc}.") from None
    if root.tag != f"{{{ATOM_NS}}}entry":
        raise AtomError(f"Expected an Atom <entry> element, got <{_local(root.tag)}>.")
    content = root.find(f"{{{ATOM_NS}}}content")
    if content is None or len(content) != 1:
        raise AtomError("The Atom entry must have a <content> element with one description.")
    description = content[0]
    kind = _local(description.tag)
    if not description.tag.startswith(f"{{{SB_NS}}}") or kind not in DESCRIPTION_KINDS:
        raise AtomError(
            f"Unknown entity description <{kind}>: expected one of {', '.join(DESCRIPTION_KINDS)}"
            f" in namespace {SB_NS}."
        )
    return kind, description


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element) -> dict[str, ET.Element]:
    return {_local(child.tag): child for child in element if child.tag.startswith(f"{{{SB_NS}}}")}


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    text = (element.text or "").strip()
    return text or None


def _bool(name: str, text: str) -> bool:
    folded = text.casefold()
    if folded not in ("true", "false"):
        raise AtomError(f"{name}: '{text}' is not a boolean (true or false).")
    return folded == "true"


def _int(name: str, text: str, minimum: int, maximum: int = 2**31 - 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AtomError(f"{name}: '{text}' is not an integer.") from None
    if not minimum <= value <= maximum:
        raise AtomError(f"{name}: {value} is out of range [{minimum}, {maximum}].")
    return value


def _duration(
    name: str, text: str, minimum: timedelta, maximum: timedelta = TIMESPAN_MAX
) -> timedelta:
    if text == TIMESPAN_MAX_TEXT:
        return TIMESPAN_MAX
    try:
        value = parse_duration(text)
    except ValueError:
        raise AtomError(f"{name}: '{text}' is not an ISO-8601 duration (e.g. PT1M).") from None
    if value < minimum or value > maximum:
        raise AtomError(
            f"{name}: {text} is out of range [{format_duration(minimum)}, "
            f"{format_duration(maximum)}]."
        )
    return min(value, TIMESPAN_MAX)


def _entity_reference(text: str) -> str:
    """``sb://host:port/name`` (what the SDK sends for ForwardTo) or a bare name → ``name``."""
    if "://" in text:
        text = text.split("://", 1)[1].partition("/")[2]
    return text.strip("/")


@dataclass
class Extras:
    """Settings the broker does not model but the API stores and returns as given."""

    user_metadata: str | None = None


_SECOND = timedelta(seconds=1)

_Setter = Callable[[dict[str, Any], str], None]


def _setters(kind: str) -> dict[str, _Setter]:
    def put(key: str, convert: Callable[[str], Any]) -> _Setter:
        def setter(values: dict[str, Any], text: str) -> None:
            values[key] = convert(text)

        return setter

    common: dict[str, _Setter] = {
        "DefaultMessageTimeToLive": put(
            "default_message_time_to_live",
            lambda t: _duration("DefaultMessageTimeToLive", t, _SECOND),
        ),
        "MaxMessageSizeInKilobytes": put(
            "max_message_size_bytes",
            lambda t: _int("MaxMessageSizeInKilobytes", t, 1, 102400) * 1024,
        ),
        "RequiresDuplicateDetection": put(
            "requires_duplicate_detection", lambda t: _bool("RequiresDuplicateDetection", t)
        ),
        "DuplicateDetectionHistoryTimeWindow": put(
            "duplicate_detection_history_time_window",
            lambda t: _duration(
                "DuplicateDetectionHistoryTimeWindow",
                t,
                timedelta(seconds=20),
                timedelta(days=7),
            ),
        ),
    }
    receiving: dict[str, _Setter] = {
        "DefaultMessageTimeToLive": common["DefaultMessageTimeToLive"],
        "LockDuration": put(
            "lock_duration", lambda t: _duration("LockDuration", t, _SECOND, MAX_LOCK_DURATION)
        ),
        "MaxDeliveryCount": put("max_delivery_count", lambda t: _int("MaxDeliveryCount", t, 1)),
        "DeadLetteringOnMessageExpiration": put(
            "dead_lettering_on_message_expiration",
            lambda t: _bool("DeadLetteringOnMessageExpiration", t),
        ),
        "RequiresSession": put("requires_session", lambda t: _bool("RequiresSession", t)),
        "ForwardTo": put("forward_to", _entity_reference),
        "ForwardDeadLetteredMessagesTo": put(
            "forward_dead_lettered_messages_to", _entity_reference
        ),
    }
    if kind == "QueueDescription":
        return {
            **receiving,
            "RequiresDuplicateDetection": common["RequiresDuplicateDetection"],
            "DuplicateDetectionHistoryTimeWindow": common["DuplicateDetectionHistoryTimeWindow"],
            "MaxMessageSizeInKilobytes": common["MaxMessageSizeInKilobytes"],
        }
    if kind == "TopicDescription":
        return common
    return {
        **receiving,
        "DeadLetteringOnFilterEvaluationExceptions": put(
            "dead_lettering_on_filter_evaluation_exceptions",
            lambda t: _bool("DeadLetteringOnFilterEvaluationExceptions", t),
        ),
    }


def _parse_common(kind: str, element: ET.Element) -> tuple[dict[str, Any], Extras]:
    children = _children(element)
    values: dict[str, Any] = {}
    for name, setter in _setters(kind).items():
        text = _text(children.get(name))
        if text is not None:
            setter(values, text)
    status = _text(children.get("Status"))
    if status is not None and status.casefold() != "active":
        raise AtomError(
            f"Status: '{status}' is not supported by the emulator; entities are always Active."
        )
    metadata = _text(children.get("UserMetadata"))
    if metadata is not None and len(metadata) > 1024:
        raise AtomError("UserMetadata: at most 1024 characters are allowed.")
    return values, Extras(user_metadata=metadata)


def parse_queue(name: str, element: ET.Element) -> tuple[QueueDescription, Extras]:
    values, extras = _parse_common("QueueDescription", element)
    values.setdefault("max_delivery_count", SERVICE_MAX_DELIVERY_COUNT)
    values.setdefault("default_message_time_to_live", TIMESPAN_MAX)
    values.setdefault("duplicate_detection_history_time_window", SERVICE_DUPLICATE_WINDOW)
    return QueueDescription(name=name, **values), extras


def parse_topic(name: str, element: ET.Element) -> tuple[TopicDescription, Extras]:
    values, extras = _parse_common("TopicDescription", element)
    values.setdefault("default_message_time_to_live", TIMESPAN_MAX)
    values.setdefault("duplicate_detection_history_time_window", SERVICE_DUPLICATE_WINDOW)
    return TopicDescription(name=name, **values), extras


@dataclass
class ParsedRule:
    """A rule from the API with the ``@name`` parameters its filter and action bind."""

    description: RuleDescription
    filter_parameters: dict[str, object] = field(default_factory=dict)
    action_parameters: dict[str, object] = field(default_factory=dict)


def parse_subscription(
    name: str, element: ET.Element
) -> tuple[SubscriptionDescription, Extras, ParsedRule | None]:
    """A subscription, and the ``DefaultRuleDescription`` it asks for (else ``$Default``)."""
    values, extras = _parse_common("SubscriptionDescription", element)
    values.setdefault("max_delivery_count", SERVICE_MAX_DELIVERY_COUNT)
    values.setdefault("default_message_time_to_live", TIMESPAN_MAX)
    default_rule = _children(element).get("DefaultRuleDescription")
    rule = None
    if default_rule is not None and len(default_rule):
        rule_name = _text(_children(default_rule).get("Name")) or "$Default"
        rule = parse_rule(rule_name, default_rule)
    return SubscriptionDescription(name=name, **values), extras, rule


_XSI_TYPE = f"{{{XSI_NS}}}type"


def _xsi_type(element: ET.Element) -> str | None:
    value = element.get(_XSI_TYPE)
    return value.rsplit(":", 1)[-1] if value else None


def _key_values(parent: ET.Element | None, where: str) -> dict[str, object]:
    """``<KeyValueOfstringanyType><Key/><Value i:type="d6p1:int"/>`` pairs, typed."""
    out: dict[str, object] = {}
    if parent is None:
        return out
    for pair in parent:
        if _local(pair.tag) != "KeyValueOfstringanyType":
            raise AtomError(f"{where}: unexpected <{_local(pair.tag)}>.")
        parts = _children(pair)
        key = _text(parts.get("Key"))
        value_element = parts.get("Value")
        if key is None or value_element is None:
            raise AtomError(f"{where}: every entry needs a Key and a Value.")
        out[key] = _typed_value(f"{where}['{key}']", value_element)
    return out


def _typed_value(where: str, element: ET.Element) -> object:
    kind = _xsi_type(element) or "string"
    text = element.text or ""
    try:
        if kind in ("int", "long", "short", "byte", "unsignedInt", "unsignedLong"):
            return int(text)
        if kind in ("double", "float", "decimal"):
            return float(text)
        if kind == "boolean":
            return _bool(where, text.strip())
        if kind == "dateTime":
            return _parse_datetime(text.strip())
        if kind == "duration":
            return parse_duration(text.strip())
    except ValueError as exc:
        raise AtomError(f"{where}: '{text}' is not a valid {kind} ({exc}).") from None
    if kind != "string":
        raise AtomError(f"{where}: unsupported value type '{kind}'.")
    return text


def _parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_CORRELATION_FIELDS = {
    "CorrelationId": "correlation_id",
    "MessageId": "message_id",
    "To": "to",
    "ReplyTo": "reply_to",
    "Label": "label",
    "SessionId": "session_id",
    "ReplyToSessionId": "reply_to_session_id",
    "ContentType": "content_type",
}


def parse_rule(name: str, element: ET.Element) -> ParsedRule:
    children = _children(element)
    filter_element = children.get("Filter")
    filter_parameters: dict[str, object] = {}
    spec: SqlFilterSpec | CorrelationFilterSpec | TrueFilterSpec | FalseFilterSpec
    if filter_element is None:
        spec = TrueFilterSpec()
    else:
        kind = _xsi_type(filter_element)
        parts = _children(filter_element)
        if kind == "TrueFilter":
            spec = TrueFilterSpec()
        elif kind == "FalseFilter":
            spec = FalseFilterSpec()
        elif kind == "SqlFilter":
            expression = _text(parts.get("SqlExpression"))
            if expression is None:
                raise AtomError("Filter: a SqlFilter needs a SqlExpression.")
            spec = SqlFilterSpec(expression)
            filter_parameters = _key_values(parts.get("Parameters"), "Filter.Parameters")
        elif kind == "CorrelationFilter":
            fields = {
                attr: _text(parts.get(tag))
                for tag, attr in _CORRELATION_FIELDS.items()
                if _text(parts.get(tag)) is not None
            }
            properties = _key_values(parts.get("Properties"), "Filter.Properties")
            spec = CorrelationFilterSpec(**fields, properties=properties)  # type: ignore[arg-type]
        else:
            raise AtomError(
                f"Filter: unknown filter type '{kind}'; expected SqlFilter, CorrelationFilter, "
                "TrueFilter or FalseFilter."
            )
    action: str | None = None
    action_parameters: dict[str, object] = {}
    action_element = children.get("Action")
    if action_element is not None:
        kind = _xsi_type(action_element)
        if kind == "SqlRuleAction":
            action = _text(_children(action_element).get("SqlExpression"))
            if action is None:
                raise AtomError("Action: a SqlRuleAction needs a SqlExpression.")
            action_parameters = _key_values(
                _children(action_element).get("Parameters"), "Action.Parameters"
            )
        elif kind not in (None, "EmptyRuleAction"):
            raise AtomError(
                f"Action: unknown action type '{kind}'; expected SqlRuleAction or EmptyRuleAction."
            )
    return ParsedRule(RuleDescription(name, spec, action), filter_parameters, action_parameters)


# --- rendering -----------------------------------------------------------------------------


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


def queue_xml(queue: QueueDescription, counts: Counts, extras: Extras, sb_base: str) -> str:
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
                ("AutoDeleteOnIdle", TIMESPAN_MAX),
                ("EnablePartitioning", False),
                ("EntityAvailabilityStatus", "Available"),
                (
                    "ForwardDeadLetteredMessagesTo",
                    _forward(sb_base, queue.forward_dead_lettered_messages_to),
                ),
                ("EnableExpress", False),
                ("MaxMessageSizeInKilobytes", queue.max_message_size_bytes // 1024),
            ]
        )
        + "</QueueDescription>"
    )


def topic_xml(topic: TopicDescription, counts: Counts, extras: Extras) -> str:
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
                ("AutoDeleteOnIdle", TIMESPAN_MAX),
                ("EnablePartitioning", False),
                ("EntityAvailabilityStatus", "Available"),
                ("EnableSubscriptionPartitioning", False),
                ("EnableExpress", False),
                ("UserMetadata", extras.user_metadata),
                ("MaxMessageSizeInKilobytes", topic.max_message_size_bytes // 1024),
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
                ("AutoDeleteOnIdle", TIMESPAN_MAX),
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
        fields = _elements(
            [(tag, getattr(spec, attr)) for tag, attr in _CORRELATION_FIELDS.items()]
        )
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


def namespace_xml(name: str, created_at: float, modified_at: float) -> str:
    return (
        _open("NamespaceInfo")
        + _elements(
            [
                ("CreatedTime", iso(created_at)),
                ("MessagingSKU", "Standard"),
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
