"""Catalogue of the system properties addressable as ``sys.<name>``.

Names and read-only flags follow "Messages, payloads, and serialization" (the broker
properties of BrokeredMessage), which the SQL filter docs point to for the ``sys`` scope.
Referencing a name outside this table is a compile-time error (the docs: "An attempt to
access a non-existent system property is an error").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SysProp:
    """A system property: canonical name, value type tag, and whether actions may SET it."""

    name: str
    type: str  # "str" | "int" | "datetime" | "duration" | "bool" | "any"
    settable: bool


_TABLE = (
    SysProp("MessageId", "str", True),
    SysProp("CorrelationId", "str", True),
    SysProp("To", "str", True),
    SysProp("ReplyTo", "str", True),
    SysProp("Label", "str", True),
    SysProp("SessionId", "str", True),
    SysProp("ReplyToSessionId", "str", True),
    SysProp("ContentType", "str", True),
    SysProp("PartitionKey", "str", True),
    SysProp("ViaPartitionKey", "str", True),
    SysProp("ScheduledEnqueueTimeUtc", "datetime", True),
    SysProp("TimeToLive", "duration", True),
    SysProp("ForcePersistence", "bool", True),
    SysProp("SequenceNumber", "int", False),
    SysProp("EnqueuedSequenceNumber", "int", False),
    SysProp("EnqueuedTimeUtc", "datetime", False),
    SysProp("ExpiresAtUtc", "datetime", False),
    SysProp("LockedUntilUtc", "datetime", False),
    SysProp("DeliveryCount", "int", False),
    SysProp("Size", "int", False),
    SysProp("LockToken", "any", False),
    SysProp("DeadLetterSource", "str", False),
    SysProp("State", "any", False),
)

#: Canonical name -> descriptor.
SYSTEM_PROPERTIES: dict[str, SysProp] = {p.name: p for p in _TABLE}

#: Canonical names a rule action may SET / REMOVE.
SETTABLE_SYSTEM_PROPERTIES: frozenset[str] = frozenset(p.name for p in _TABLE if p.settable)

# Lower-cased lookup (property names are case-insensitive). ``Subject`` is the newer SDKs'
# name for ``Label``; the filter-examples doc tells users to use ServiceBusMessage names.
_BY_LOWER: dict[str, SysProp] = {p.name.lower(): p for p in _TABLE}
_BY_LOWER["subject"] = SYSTEM_PROPERTIES["Label"]


def lookup_system_property(name: str) -> SysProp | None:
    """Resolve a ``sys.`` property name case-insensitively; None when it does not exist."""
    return _BY_LOWER.get(name.lower())
