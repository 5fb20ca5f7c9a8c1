"""Atom request bodies in: an entry's description element to a topology description.

Strict about values (a bad duration is a 400 naming the element), lenient about elements
it does not model (``AuthorizationRules``, ``EnablePartitioning`` ...), which the SDK sends
back on every update.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ...durations import format_duration, parse_duration
from ...topology import (
    CORRELATION_FIELDS,
    CorrelationFilterSpec,
    FalseFilterSpec,
    QueueDescription,
    RuleDescription,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    TrueFilterSpec,
)
from .common import (
    ATOM_NS,
    DESCRIPTION_KINDS,
    MAX_LOCK_DURATION,
    MIN_AUTO_DELETE_ON_IDLE,
    SB_NS,
    SERVICE_DUPLICATE_WINDOW,
    SERVICE_MAX_DELIVERY_COUNT,
    TIMESPAN_MAX,
    TIMESPAN_MAX_TEXT,
    XSI_NS,
    AtomError,
    Dialect,
    Extras,
    ParsedRule,
    parse_int,
)


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


_SECOND = timedelta(seconds=1)

_Setter = Callable[[dict[str, Any], str], None]


def _never_if_max(value: timedelta) -> timedelta | None:
    return None if value >= TIMESPAN_MAX else value


def _setters(kind: str, dialect: Dialect) -> dict[str, _Setter]:
    def put(key: str, convert: Callable[[str], Any]) -> _Setter:
        def setter(values: dict[str, Any], text: str) -> None:
            values[key] = convert(text)

        return setter

    common: dict[str, _Setter] = {
        "DefaultMessageTimeToLive": put(
            "default_message_time_to_live",
            lambda t: _duration("DefaultMessageTimeToLive", t, _SECOND),
        ),
        "MaxMessageSizeInKilobytes": put("max_message_size_bytes", dialect.message_size),
        "AutoDeleteOnIdle": put(
            "auto_delete_on_idle",
            lambda t: _never_if_max(_duration("AutoDeleteOnIdle", t, MIN_AUTO_DELETE_ON_IDLE)),
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
        "AutoDeleteOnIdle": common["AutoDeleteOnIdle"],
        "LockDuration": put(
            "lock_duration", lambda t: _duration("LockDuration", t, _SECOND, MAX_LOCK_DURATION)
        ),
        "MaxDeliveryCount": put(
            "max_delivery_count", lambda t: parse_int("MaxDeliveryCount", t, 1)
        ),
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


def _parse_common(
    kind: str, element: ET.Element, dialect: Dialect
) -> tuple[dict[str, Any], Extras]:
    children = _children(element)
    values: dict[str, Any] = {}
    for name, setter in _setters(kind, dialect).items():
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


def parse_queue(
    name: str, element: ET.Element, dialect: Dialect
) -> tuple[QueueDescription, Extras]:
    values, extras = _parse_common("QueueDescription", element, dialect)
    values.setdefault("max_message_size_bytes", dialect.tier.default_max_message_size_bytes)
    values.setdefault("max_delivery_count", SERVICE_MAX_DELIVERY_COUNT)
    values.setdefault("default_message_time_to_live", TIMESPAN_MAX)
    values.setdefault("duplicate_detection_history_time_window", SERVICE_DUPLICATE_WINDOW)
    return QueueDescription(name=name, **values), extras


def parse_topic(
    name: str, element: ET.Element, dialect: Dialect
) -> tuple[TopicDescription, Extras]:
    values, extras = _parse_common("TopicDescription", element, dialect)
    values.setdefault("max_message_size_bytes", dialect.tier.default_max_message_size_bytes)
    values.setdefault("default_message_time_to_live", TIMESPAN_MAX)
    values.setdefault("duplicate_detection_history_time_window", SERVICE_DUPLICATE_WINDOW)
    return TopicDescription(name=name, **values), extras


def parse_subscription(
    name: str, element: ET.Element
) -> tuple[SubscriptionDescription, Extras, ParsedRule | None]:
    """A subscription, and the ``DefaultRuleDescription`` it asks for (else ``$Default``)."""
    values, extras = _parse_common("SubscriptionDescription", element, Dialect())
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
    """As sent: a value without an offset stays naive, so it reads back as it was written
    (the evaluator takes a naive instant as UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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
                for tag, attr in CORRELATION_FIELDS.items()
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
