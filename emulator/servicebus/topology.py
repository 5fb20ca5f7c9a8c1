"""Plain descriptions of a namespace's entities, rules and SAS policies.

These are inert values: ``config.py`` builds them from ``Config.json``, the broker core and
the admin API consume them. Keeping them free of behaviour lets every layer (and the tests)
construct a topology without a parser, a broker or a socket.

Defaults follow the official emulator (TTL 1 h, MaxDeliveryCount 3), not the cloud, so a
topology behaves the same here and there when a field is left out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Protocol, TypeVar

DEFAULT_RULE_NAME = "$Default"
DEFAULT_NAMESPACE_NAME = "sbemulatorns"
DEFAULT_LOCK_DURATION = timedelta(minutes=1)
DEFAULT_MAX_DELIVERY_COUNT = 3
DEFAULT_MESSAGE_TIME_TO_LIVE = timedelta(hours=1)
DEFAULT_DUPLICATE_DETECTION_WINDOW = timedelta(seconds=20)
DEFAULT_MAX_MESSAGE_SIZE_BYTES = 256 * 1024  # Standard tier
ROOT_POLICY_NAME = "RootManageSharedAccessKey"
ROOT_POLICY_KEY = "SAS_KEY_VALUE"  # the official emulator's well-known key


# --- filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlFilterSpec:
    """A SQL filter, kept as text; the sqlfilter package compiles it."""

    expression: str


@dataclass(frozen=True)
class CorrelationFilterSpec:
    """Equality on system properties and application properties; unset fields are ignored."""

    correlation_id: str | None = None
    message_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    label: str | None = None
    session_id: str | None = None
    reply_to_session_id: str | None = None
    content_type: str | None = None
    properties: Mapping[str, object] = field(default_factory=dict)

    def system_fields(self) -> dict[str, str | None]:
        """The system-property fields by attribute name (the SDK's CorrelationRuleFilter's)."""
        return {attr: getattr(self, attr) for attr in CORRELATION_FIELDS.values()}

    def system_properties(self) -> dict[str, str | None]:
        """The system-property fields by wire name (``sys.*`` in SQL, Config.json, Atom XML)."""
        return {name: getattr(self, attr) for name, attr in CORRELATION_FIELDS.items()}


def _wire_name(attribute: str) -> str:
    return "".join(part.capitalize() for part in attribute.split("_"))


CORRELATION_FIELDS: dict[str, str] = {
    _wire_name(f.name): f.name for f in fields(CorrelationFilterSpec) if f.name != "properties"
}
"""The correlation filter's system fields, wire name → attribute: the one list every reader
and writer of correlation filters (Config.json, Atom XML, the evaluator) iterates. The wire
name is the attribute in PascalCase (``reply_to_session_id`` → ``ReplyToSessionId``), which
is how Config.json, the Atom XML and SQL's ``sys.*`` all spell it."""


@dataclass(frozen=True)
class TrueFilterSpec:
    """Matches every message (the ``$Default`` rule's filter)."""


@dataclass(frozen=True)
class FalseFilterSpec:
    """Matches no message."""


FilterSpec = SqlFilterSpec | CorrelationFilterSpec | TrueFilterSpec | FalseFilterSpec


@dataclass
class RuleDescription:
    """A subscription rule: a filter and an optional SQL action (``SET ...`` text)."""

    name: str
    filter: FilterSpec
    action: str | None = None


def default_rules() -> list[RuleDescription]:
    """The rule set the service gives a subscription created without rules."""
    return [RuleDescription(DEFAULT_RULE_NAME, TrueFilterSpec())]


# --- entities ------------------------------------------------------------------------------


@dataclass
class QueueDescription:
    """A queue's settings (no runtime state)."""

    name: str
    lock_duration: timedelta = DEFAULT_LOCK_DURATION
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    default_message_time_to_live: timedelta = DEFAULT_MESSAGE_TIME_TO_LIVE
    dead_lettering_on_message_expiration: bool = False
    requires_session: bool = False
    requires_duplicate_detection: bool = False
    duplicate_detection_history_time_window: timedelta = DEFAULT_DUPLICATE_DETECTION_WINDOW
    forward_to: str | None = None
    forward_dead_lettered_messages_to: str | None = None
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES
    auto_delete_on_idle: timedelta | None = None
    """Kept and reported as given; None is never. The emulator never deletes idle entities."""
    policies: list[SasPolicy] = field(default_factory=list)
    """Entity-level SAS rules: valid for this entity only, besides the namespace's."""


@dataclass
class SubscriptionDescription:
    """A subscription's settings; ``rules`` defaults to ``$Default`` as the service does."""

    name: str
    lock_duration: timedelta = DEFAULT_LOCK_DURATION
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    default_message_time_to_live: timedelta = DEFAULT_MESSAGE_TIME_TO_LIVE
    dead_lettering_on_message_expiration: bool = False
    dead_lettering_on_filter_evaluation_exceptions: bool = True
    requires_session: bool = False
    forward_to: str | None = None
    forward_dead_lettered_messages_to: str | None = None
    auto_delete_on_idle: timedelta | None = None
    """Kept and reported as given; None is never. The emulator never deletes idle entities."""
    rules: list[RuleDescription] = field(default_factory=default_rules)


@dataclass
class TopicDescription:
    """A topic's settings and its subscriptions."""

    name: str
    default_message_time_to_live: timedelta = DEFAULT_MESSAGE_TIME_TO_LIVE
    requires_duplicate_detection: bool = False
    duplicate_detection_history_time_window: timedelta = DEFAULT_DUPLICATE_DETECTION_WINDOW
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES
    auto_delete_on_idle: timedelta | None = None
    """Kept and reported as given; None is never. The emulator never deletes idle entities."""
    policies: list[SasPolicy] = field(default_factory=list)
    """Entity-level SAS rules: valid for this entity only, besides the namespace's."""
    subscriptions: list[SubscriptionDescription] = field(default_factory=list)


# --- security ------------------------------------------------------------------------------


class AccessRights(enum.Flag):
    """SAS claims. A policy's rights are normalised so that MANAGE includes SEND and LISTEN."""

    NONE = 0
    SEND = enum.auto()
    LISTEN = enum.auto()
    MANAGE = enum.auto()

    def effective(self) -> AccessRights:
        """These rights with MANAGE expanded, as the service grants them."""
        if AccessRights.MANAGE in self:
            return self | AccessRights.SEND | AccessRights.LISTEN
        return self


@dataclass(frozen=True)
class SasPolicy:
    """A shared access policy. ``key`` is used as UTF-8 bytes, never base64-decoded."""

    name: str
    key: str
    rights: AccessRights

    def __post_init__(self) -> None:
        # Normalise once so callers can test `AccessRights.SEND in policy.rights` directly.
        object.__setattr__(self, "rights", self.rights.effective())


def default_policies() -> list[SasPolicy]:
    """The policy that makes the official emulator's connection string work unchanged."""
    return [SasPolicy(ROOT_POLICY_NAME, ROOT_POLICY_KEY, AccessRights.MANAGE)]


# --- namespace -----------------------------------------------------------------------------


class NamespaceTier(enum.Enum):
    """The namespace's pricing tier, as far as it changes what the management API accepts.

    Standard (the default, like the official emulator) has a fixed 256 KB message limit and
    refuses ``MaxMessageSizeInKilobytes`` other than that; Premium defaults entities to 1 MB and
    allows 1 MB to 100 MB.
    """

    STANDARD = "Standard"
    PREMIUM = "Premium"

    @property
    def default_max_message_size_bytes(self) -> int:
        return DEFAULT_MAX_MESSAGE_SIZE_BYTES if self is NamespaceTier.STANDARD else 1024 * 1024


@dataclass
class NamespaceTopology:
    """Everything a namespace is configured with: tier, entities and SAS policies."""

    name: str = DEFAULT_NAMESPACE_NAME
    tier: NamespaceTier = NamespaceTier.STANDARD
    queues: list[QueueDescription] = field(default_factory=list)
    topics: list[TopicDescription] = field(default_factory=list)
    policies: list[SasPolicy] = field(default_factory=default_policies)

    def find_queue(self, name: str) -> QueueDescription | None:
        """Queue by name, case-insensitively."""
        return _find(self.queues, name)

    def find_topic(self, name: str) -> TopicDescription | None:
        """Topic by name, case-insensitively."""
        return _find(self.topics, name)

    def find_entity(self, name: str) -> QueueDescription | TopicDescription | None:
        """Queue or topic by name; they share one name space in Service Bus."""
        return self.find_queue(name) or self.find_topic(name)

    def find_policy(self, name: str) -> SasPolicy | None:
        """SAS policy by name, case-insensitively."""
        return _find(self.policies, name)


class _Named(Protocol):
    name: str


_T = TypeVar("_T", bound=_Named)


def _find(items: list[_T], name: str) -> _T | None:
    folded = name.casefold()
    return next((item for item in items if item.name.casefold() == folded), None)


def forwarding_cycle(topology: NamespaceTopology) -> list[str] | None:
    """A ``ForwardTo`` loop as a list of entity paths, or None.

    A topic feeds each of its subscriptions, so a subscription forwarding to its own topic
    (directly or through queues) is a loop too. The service rejects such topologies.
    """
    edges: dict[str, list[str]] = {}

    def node(name: str) -> str:
        return name.casefold()

    for queue in topology.queues:
        edges[node(queue.name)] = [node(queue.forward_to)] if queue.forward_to else []
    for topic in topology.topics:
        subs = []
        for sub in topic.subscriptions:
            key = node(f"{topic.name}/Subscriptions/{sub.name}")
            subs.append(key)
            edges[key] = [node(sub.forward_to)] if sub.forward_to else []
        edges[node(topic.name)] = subs
    names = {node(q.name): q.name for q in topology.queues}
    names.update({node(t.name): t.name for t in topology.topics})
    for topic in topology.topics:
        for sub in topic.subscriptions:
            path = f"{topic.name}/Subscriptions/{sub.name}"
            names[node(path)] = path

    visiting: list[str] = []
    done: set[str] = set()

    def visit(current: str) -> list[str] | None:
        if current in visiting:
            return [names.get(n, n) for n in visiting[visiting.index(current) :]] + [
                names.get(current, current)
            ]
        if current in done or current not in edges:
            return None
        visiting.append(current)
        for nxt in edges[current]:
            found = visit(nxt)
            if found:
                return found
        visiting.pop()
        done.add(current)
        return None

    for start in edges:
        cycle = visit(start)
        if cycle:
            return cycle
    return None
