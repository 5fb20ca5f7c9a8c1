"""The official emulator's ``Config.json`` → :class:`NamespaceTopology`.

The same file must work here, on the official emulator and (through the harness) on a real
namespace, so the schema is the official one. Validation is stricter than the official
emulator's on mistakes and looser on limits:

* every error names its JSON path, e.g.
  ``UserConfig.Namespaces[0].Topics[1].Subscriptions[2].Properties.LockDuration: 'PT2X' is
  not an ISO-8601 duration``; all errors are collected and raised as one :class:`ConfigError`,
  so the emulator never starts half-configured;
* unknown keys (``LockDurration``), wrong types, duplicate JSON keys, duplicate entity names
  (case-insensitive, queues and topics share one name space), missing forwarding targets and
  SQL that does not compile are errors;
* the official caps (TTL <= 1 h, LockDuration <= 5 min, MaxDeliveryCount <= 10, 50 entities)
  are not enforced: durations only have to be positive and MaxDeliveryCount >= 1.

Defaults are the official emulator's (TTL PT1H, LockDuration PT1M, MaxDeliveryCount 3,
duplicate window PT20S). ``Queues``, ``Topics``, ``Subscriptions`` and ``Logging`` may be left
out. A subscription with no ``Rules`` (absent or empty) gets the ``$Default`` rule (TRUE
filter), as the service does; listing rules replaces it. ``ForwardTo: ""`` means no forwarding,
as in the official sample.

Extensions (the official emulator has neither):

* ``"SharedAccessPolicies"`` on a queue or topic (next to ``Properties``): entity-level SAS
  rules, valid for that entity (and a topic's subscriptions) only;
* namespace-level ``"SharedAccessPolicies": [{"Name": "...", "Key": "...",
  "Rights": ["Send", "Listen", "Manage"]}]``. ``RootManageSharedAccessKey`` / ``SAS_KEY_VALUE``
  with Manage is always present unless a policy with that name overrides it. Manage implies
  Send and Listen.
* ``Properties.MaxMessageSizeInKilobytes`` on queues and topics (default 256 KB, 1024 KB on
  Premium), any positive size on either tier so that tests can exercise limits;
* namespace-level ``"Tier": "Standard" | "Premium"`` (default Standard): what the management
  API accepts (Premium-only settings are refused with 400 on Standard, as the service does).

One module (about 700 lines) on purpose: it is the format's reference (this docstring) and
one walk of it, `_Parser`, a method per level of the JSON (namespace, queue, topic,
subscription, rule, policy) sharing one error list and the JSON path, so that every
mistake is reported at once. ISO-8601 durations are `durations`' (re-exported here).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from .durations import format_duration, parse_duration
from .topology import (
    CORRELATION_FIELDS,
    DEFAULT_RULE_NAME,
    AccessRights,
    CorrelationFilterSpec,
    FilterSpec,
    NamespaceTier,
    NamespaceTopology,
    QueueDescription,
    RuleDescription,
    SasPolicy,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    default_policies,
    default_rules,
    forwarding_cycle,
)

__all__ = ["ConfigError", "format_duration", "load_config", "parse_config", "parse_duration"]


class ConfigError(ValueError):
    """An invalid configuration; ``errors`` lists every problem, each prefixed by its path."""

    def __init__(self, errors: Sequence[str], source: str | None = None) -> None:
        self.errors: list[str] = list(errors)
        self.source = source
        where = f"{source}: " if source else ""
        count = len(self.errors)
        header = f"{where}invalid configuration ({count} error{'s' if count != 1 else ''})"
        super().__init__("\n  - ".join([header + ":", *self.errors]))


# --- names ---------------------------------------------------------------------------------

# The official schema's pattern: alphanumeric at both ends, word characters, `-`, `.`, `/`.
_ENTITY_NAME_RE = re.compile(r"[A-Za-z0-9](?:[\w.\-/]*[A-Za-z0-9])?", re.ASCII)
_SIMPLE_NAME_RE = re.compile(r"[A-Za-z0-9](?:[\w.\-]*[A-Za-z0-9])?", re.ASCII)
_MAX_ENTITY_NAME = 260
_MAX_SUBSCRIPTION_NAME = 50
_MAX_RULE_NAME = 50
_MAX_NAMESPACE_NAME = 50
_MAX_POLICY_NAME = 256
_MAX_POLICY_KEY = 256

# --- schema --------------------------------------------------------------------------------

_ROOT_KEYS = ("UserConfig", "$schema")
_USER_CONFIG_KEYS = ("Namespaces", "Logging")
_LOGGING_KEYS = ("Type",)
_LOGGING_TYPES = ("File", "Console", "File,Console", "Console,File")
_NAMESPACE_KEYS = ("Name", "Tier", "Queues", "Topics", "SharedAccessPolicies")
_TIERS = {tier.value: tier for tier in NamespaceTier}
_QUEUE_KEYS = ("Name", "Properties", "SharedAccessPolicies")
_TOPIC_KEYS = ("Name", "Properties", "Subscriptions", "SharedAccessPolicies")
_SUBSCRIPTION_KEYS = ("Name", "Properties", "Rules")
_RULE_KEYS = ("Name", "Properties")
_RULE_PROPERTY_KEYS = ("FilterType", "SqlFilter", "CorrelationFilter", "Action")
_SQL_KEYS = ("SqlExpression",)
_POLICY_KEYS = ("Name", "Key", "Rights")
_RIGHTS = {"send": AccessRights.SEND, "listen": AccessRights.LISTEN, "manage": AccessRights.MANAGE}


# Property JSON key → (kind, attribute). Kinds: duration, bool, count, target, kilobytes.
_QUEUE_PROPERTIES = {
    "DeadLetteringOnMessageExpiration": ("bool", "dead_lettering_on_message_expiration"),
    "DefaultMessageTimeToLive": ("duration", "default_message_time_to_live"),
    "DuplicateDetectionHistoryTimeWindow": (
        "duration",
        "duplicate_detection_history_time_window",
    ),
    "ForwardDeadLetteredMessagesTo": ("target", "forward_dead_lettered_messages_to"),
    "ForwardTo": ("target", "forward_to"),
    "LockDuration": ("duration", "lock_duration"),
    "MaxDeliveryCount": ("count", "max_delivery_count"),
    "RequiresDuplicateDetection": ("bool", "requires_duplicate_detection"),
    "RequiresSession": ("bool", "requires_session"),
    "MaxMessageSizeInKilobytes": ("kilobytes", "max_message_size_bytes"),
}
_TOPIC_PROPERTIES = {
    "DefaultMessageTimeToLive": ("duration", "default_message_time_to_live"),
    "DuplicateDetectionHistoryTimeWindow": (
        "duration",
        "duplicate_detection_history_time_window",
    ),
    "RequiresDuplicateDetection": ("bool", "requires_duplicate_detection"),
    "MaxMessageSizeInKilobytes": ("kilobytes", "max_message_size_bytes"),
}
_SUBSCRIPTION_PROPERTIES = {
    "DeadLetteringOnMessageExpiration": ("bool", "dead_lettering_on_message_expiration"),
    "DeadLetteringOnFilterEvaluationExceptions": (
        "bool",
        "dead_lettering_on_filter_evaluation_exceptions",
    ),
    "DefaultMessageTimeToLive": ("duration", "default_message_time_to_live"),
    "LockDuration": ("duration", "lock_duration"),
    "MaxDeliveryCount": ("count", "max_delivery_count"),
    "ForwardDeadLetteredMessagesTo": ("target", "forward_dead_lettered_messages_to"),
    "ForwardTo": ("target", "forward_to"),
    "RequiresSession": ("bool", "requires_session"),
}

_MISSING = object()


# --- public API ----------------------------------------------------------------------------


def load_config(path: str | Path) -> NamespaceTopology:
    """Read and validate a Config.json file; raises ConfigError (also for unreadable files)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror or exc}"], source) from exc
    try:
        data = json.loads(text, object_pairs_hook=_JsonObject.from_pairs)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise ConfigError([msg], source) from exc
    return _Parser(source).parse(data)


def parse_config(data: Mapping[str, Any]) -> NamespaceTopology:
    """Validate an already-decoded Config.json document; raises ConfigError."""
    return _Parser(None).parse(data)


# --- implementation ------------------------------------------------------------------------


class _JsonObject(dict[str, Any]):
    """A decoded JSON object that remembers keys it saw twice (json keeps the last silently)."""

    duplicates: list[str]

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _JsonObject:
        obj = cls()
        obj.duplicates = []
        for key, value in pairs:
            if key in obj and key not in obj.duplicates:
                obj.duplicates.append(key)
            obj[key] = value
        return obj


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


class _Parser:
    """One validation run; accumulates errors instead of stopping at the first."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.errors: list[str] = []
        # (entity, path of its Properties, own name if a queue): checked once all are known.
        self.forwarders: list[tuple[QueueDescription | SubscriptionDescription, str, str | None]]
        self.forwarders = []
        self.tier = NamespaceTier.STANDARD

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    # generic helpers ---------------------------------------------------------------------

    def obj(self, value: object, path: str, allowed: Sequence[str]) -> Mapping[str, Any] | None:
        """Check that value is an object with only ``allowed`` keys."""
        if not isinstance(value, Mapping):
            self.error(path, f"expected an object, got {_type_name(value)}")
            return None
        for key in getattr(value, "duplicates", ()):
            self.error(_join(path, key), "duplicate key (JSON keeps only the last value)")
        for key in value:
            if key not in allowed:
                self.error(_join(path, str(key)), f"unknown key{_suggest(str(key), allowed)}")
        return value

    def array(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            self.error(_join(path, key), f"expected an array, got {_type_name(value)}")
            return []
        return value

    def string(
        self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.error(_join(path, key), "is required")
            return None
        if not isinstance(value, str):
            self.error(_join(path, key), f"expected a string, got {_type_name(value)}")
            return None
        return value

    def name(
        self,
        obj: Mapping[str, Any],
        path: str,
        pattern: re.Pattern[str],
        max_length: int,
        what: str,
        extra_ok: Callable[[str], bool] = lambda _: False,
    ) -> str | None:
        value = self.string(obj, "Name", path, required=True)
        if value is None:
            return None
        where = _join(path, "Name")
        if extra_ok(value):
            return value
        if not pattern.fullmatch(value):
            chars = "letters, digits, '.', '-', '_'" + (", '/'" if "/" in pattern.pattern else "")
            self.error(
                where,
                f"{value!r} is not a valid {what} name (use {chars}; "
                "start and end with a letter or digit)",
            )
            return None
        if len(value) > max_length:
            self.error(where, f"{what} name is longer than {max_length} characters")
            return None
        return value

    def unique(self, names: list[tuple[str, str]], what: str) -> None:
        """Report case-insensitive duplicates; ``names`` holds (name, path of its Name)."""
        seen: dict[str, str] = {}
        for name, path in names:
            first = seen.setdefault(name.casefold(), path)
            if first != path:
                self.error(path, f"duplicate {what} name {name!r} (names are case-insensitive)")

    def properties(
        self, raw: Mapping[str, Any], path: str, schema: Mapping[str, tuple[str, str]]
    ) -> dict[str, Any]:
        """Validate a ``Properties`` object into dataclass keyword arguments."""
        props = self.obj(raw.get("Properties", {}), _join(path, "Properties"), tuple(schema))
        if props is None:
            return {}
        out: dict[str, Any] = {}
        for key, value in props.items():
            if key not in schema:
                continue
            kind, attr = schema[key]
            where = _join(path, "Properties", key)
            converted = self.convert(kind, value, where)
            if converted is not _MISSING:
                out[attr] = converted
        return out

    def convert(self, kind: str, value: object, where: str) -> Any:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            self.error(where, f"expected true or false, got {_type_name(value)}")
        elif kind in ("count", "kilobytes"):
            if not isinstance(value, int) or isinstance(value, bool):
                self.error(where, f"expected an integer, got {_type_name(value)}")
            elif value < 1:
                self.error(where, f"must be at least 1, got {value}")
            else:
                return value * 1024 if kind == "kilobytes" else value
        elif kind == "duration":
            if not isinstance(value, str):
                self.error(where, f"expected an ISO-8601 duration string, got {_type_name(value)}")
                return _MISSING
            try:
                duration = parse_duration(value)
            except ValueError as exc:
                self.error(where, str(exc))
                return _MISSING
            if duration <= timedelta(0):
                self.error(where, f"{value!r} must be a positive duration")
                return _MISSING
            return duration
        elif kind == "target":
            if not isinstance(value, str):
                self.error(where, f"expected an entity name, got {_type_name(value)}")
            elif value == "":
                return None  # the official sample's way of saying "no forwarding"
            else:
                return value  # existence is checked once every entity is known
        return _MISSING

    # document structure ------------------------------------------------------------------

    def parse(self, data: object) -> NamespaceTopology:
        topology = self.document(data)
        if self.errors or topology is None:
            raise ConfigError(self.errors or ["no namespace defined"], self.source)
        return topology

    def document(self, data: object) -> NamespaceTopology | None:
        root = self.obj(data, "$", _ROOT_KEYS)
        if root is None:
            return None
        if "UserConfig" not in root:
            self.error("UserConfig", "is required")
            return None
        user = self.obj(root["UserConfig"], "UserConfig", _USER_CONFIG_KEYS)
        if user is None:
            return None
        if "Logging" in user:
            self.logging(user["Logging"], "UserConfig.Logging")
        if "Namespaces" not in user:
            self.error("UserConfig.Namespaces", "is required")
            return None
        namespaces = self.array(user, "Namespaces", "UserConfig")
        if len(namespaces) != 1 and isinstance(user["Namespaces"], list):
            self.error(
                "UserConfig.Namespaces",
                f"exactly one namespace is supported, got {len(namespaces)}",
            )
        if not namespaces:
            return None
        return self.namespace(namespaces[0], "UserConfig.Namespaces[0]")

    def logging(self, value: object, path: str) -> None:
        logging = self.obj(value, path, _LOGGING_KEYS)
        if logging is None:
            return
        kind = self.string(logging, "Type", path)
        if kind is not None and kind not in _LOGGING_TYPES:
            self.error(_join(path, "Type"), f"{kind!r} is not one of {', '.join(_LOGGING_TYPES)}")

    def namespace(self, value: object, path: str) -> NamespaceTopology | None:
        raw = self.obj(value, path, _NAMESPACE_KEYS)
        if raw is None:
            return None
        name = self.name(raw, path, _ENTITY_NAME_RE, _MAX_NAMESPACE_NAME, "namespace")
        tier = self.string(raw, "Tier", path)
        if tier is not None and tier not in _TIERS:
            self.error(_join(path, "Tier"), f"{tier!r} is not one of {', '.join(_TIERS)}")
        self.tier = _TIERS.get(tier or "", NamespaceTier.STANDARD)
        queues = [
            queue
            for i, item in enumerate(self.array(raw, "Queues", path))
            if (queue := self.queue(item, f"{path}.Queues[{i}]")) is not None
        ]
        topics = [
            topic
            for i, item in enumerate(self.array(raw, "Topics", path))
            if (topic := self.topic(item, f"{path}.Topics[{i}]")) is not None
        ]
        policies = self.policies(raw, path)
        self.entity_names(raw, path)
        topology = NamespaceTopology(
            name=name or "", tier=self.tier, queues=queues, topics=topics, policies=policies
        )
        self.forwarding(topology)
        return topology

    def entity_names(self, raw: Mapping[str, Any], path: str) -> None:
        """Queues and topics share one name space: report collisions across both."""
        names: list[tuple[str, str]] = []
        for key in ("Queues", "Topics"):
            items = raw.get(key)
            if not isinstance(items, list):
                continue
            for i, item in enumerate(items):
                if isinstance(item, Mapping) and isinstance(item.get("Name"), str):
                    names.append((item["Name"], f"{path}.{key}[{i}].Name"))
        self.unique(names, "queue/topic")

    def queue(self, value: object, path: str) -> QueueDescription | None:
        raw = self.obj(value, path, _QUEUE_KEYS)
        if raw is None:
            return None
        name = self.name(raw, path, _ENTITY_NAME_RE, _MAX_ENTITY_NAME, "queue")
        props = self.properties(raw, path, _QUEUE_PROPERTIES)
        props.setdefault("max_message_size_bytes", self.tier.default_max_message_size_bytes)
        policies = self.entity_policies(raw, path)
        if name is None:
            return None
        queue = QueueDescription(name=name, policies=policies, **props)
        self.forwarders.append((queue, _join(path, "Properties"), name))
        return queue

    def topic(self, value: object, path: str) -> TopicDescription | None:
        raw = self.obj(value, path, _TOPIC_KEYS)
        if raw is None:
            return None
        name = self.name(raw, path, _ENTITY_NAME_RE, _MAX_ENTITY_NAME, "topic")
        props = self.properties(raw, path, _TOPIC_PROPERTIES)
        props.setdefault("max_message_size_bytes", self.tier.default_max_message_size_bytes)
        items = self.array(raw, "Subscriptions", path)
        subscriptions = [
            sub
            for i, item in enumerate(items)
            if (sub := self.subscription(item, f"{path}.Subscriptions[{i}]")) is not None
        ]
        self.unique(_names_with_paths(items, f"{path}.Subscriptions"), "subscription")
        policies = self.entity_policies(raw, path)
        if name is None:
            return None
        return TopicDescription(name=name, subscriptions=subscriptions, policies=policies, **props)

    def subscription(self, value: object, path: str) -> SubscriptionDescription | None:
        raw = self.obj(value, path, _SUBSCRIPTION_KEYS)
        if raw is None:
            return None
        name = self.name(raw, path, _SIMPLE_NAME_RE, _MAX_SUBSCRIPTION_NAME, "subscription")
        props = self.properties(raw, path, _SUBSCRIPTION_PROPERTIES)
        items = self.array(raw, "Rules", path)
        rules = [
            rule
            for i, item in enumerate(items)
            if (rule := self.rule(item, f"{path}.Rules[{i}]")) is not None
        ]
        self.unique(_names_with_paths(items, f"{path}.Rules"), "rule")
        if name is None:
            return None
        sub = SubscriptionDescription(name=name, rules=rules or default_rules(), **props)
        self.forwarders.append((sub, _join(path, "Properties"), None))
        return sub

    def rule(self, value: object, path: str) -> RuleDescription | None:
        raw = self.obj(value, path, _RULE_KEYS)
        if raw is None:
            return None
        name = self.name(
            raw,
            path,
            _SIMPLE_NAME_RE,
            _MAX_RULE_NAME,
            "rule",
            extra_ok=lambda n: n == DEFAULT_RULE_NAME,
        )
        ppath = _join(path, "Properties")
        if "Properties" not in raw:
            self.error(ppath, "is required (it holds FilterType and the filter)")
            return None
        props = self.obj(raw["Properties"], ppath, _RULE_PROPERTY_KEYS)
        if props is None:
            return None
        rule_filter = self.rule_filter(props, ppath, name)
        action = self.action(props, ppath, name)
        if name is None or rule_filter is None or action is _MISSING:
            return None
        return RuleDescription(name=name, filter=rule_filter, action=action)

    def rule_filter(
        self, props: Mapping[str, Any], path: str, rule_name: str | None
    ) -> FilterSpec | None:
        filter_type = self.string(props, "FilterType", path, required=True)
        if filter_type is None:
            return None
        if filter_type == "Sql":
            if "CorrelationFilter" in props:
                self.error(_join(path, "CorrelationFilter"), "not allowed when FilterType is Sql")
            return self.sql_filter(props, path, rule_name)
        if filter_type == "Correlation":
            if "SqlFilter" in props:
                self.error(_join(path, "SqlFilter"), "not allowed when FilterType is Correlation")
            return self.correlation_filter(props, path)
        self.error(_join(path, "FilterType"), f"{filter_type!r} is not one of Sql, Correlation")
        return None

    def sql_text(
        self,
        props: Mapping[str, Any],
        key: str,
        path: str,
        compile_kind: str,
        rule_name: str | None,
    ) -> str | None:
        """The ``{"SqlExpression": ...}`` object under ``key``, compiled to catch errors early.

        The error names the rule as well as its path: a person finds a rule by its Name.
        """
        where = _join(path, key)
        if key not in props:
            self.error(where, "is required")
            return None
        obj = self.obj(props[key], where, _SQL_KEYS)
        if obj is None:
            return None
        expression = self.string(obj, "SqlExpression", where, required=True)
        if expression is None:
            return None
        if not expression.strip():
            self.error(_join(where, "SqlExpression"), "must not be empty")
            return None
        from emulator.servicebus.sqlfilter import SqlFilterError, compile_action, compile_filter

        compile_fn = compile_filter if compile_kind == "filter" else compile_action
        try:
            compile_fn(expression)
        except SqlFilterError as exc:
            message = getattr(exc, "message", str(exc))
            position = getattr(exc, "position", None)
            at = f" at position {position}" if position is not None else ""
            of_rule = f" of rule {rule_name!r}" if rule_name is not None else ""
            self.error(
                _join(where, "SqlExpression"),
                f"invalid SQL {compile_kind}{of_rule}{at}: {message} in {expression!r}",
            )
            return None
        return expression

    def sql_filter(
        self, props: Mapping[str, Any], path: str, rule_name: str | None
    ) -> SqlFilterSpec | None:
        expression = self.sql_text(props, "SqlFilter", path, "filter", rule_name)
        return SqlFilterSpec(expression) if expression is not None else None

    def action(self, props: Mapping[str, Any], path: str, rule_name: str | None) -> Any:
        """The rule's action text, None when absent, or _MISSING when invalid."""
        if "Action" not in props:
            return None
        expression = self.sql_text(props, "Action", path, "action", rule_name)
        return expression if expression is not None else _MISSING

    def correlation_filter(
        self, props: Mapping[str, Any], path: str
    ) -> CorrelationFilterSpec | None:
        where = _join(path, "CorrelationFilter")
        if "CorrelationFilter" not in props:
            self.error(where, "is required when FilterType is Correlation")
            return None
        allowed = (*CORRELATION_FIELDS, "Properties")
        errors_before = len(self.errors)
        raw = self.obj(props["CorrelationFilter"], where, allowed)
        if raw is None:
            return None
        kwargs: dict[str, Any] = {}
        for key, attr in CORRELATION_FIELDS.items():
            if key in raw:
                kwargs[attr] = self.string(raw, key, where)
        if "Properties" in raw:
            user = self.correlation_properties(raw["Properties"], _join(where, "Properties"))
            kwargs["properties"] = user or {}
        if len(self.errors) > errors_before:
            return None
        if not any(kwargs.values()):
            self.error(where, "must set at least one property to match on")
            return None
        return CorrelationFilterSpec(**kwargs)

    def correlation_properties(self, value: object, path: str) -> dict[str, object] | None:
        if not isinstance(value, Mapping):
            self.error(path, f"expected an object, got {_type_name(value)}")
            return None
        for key in getattr(value, "duplicates", ()):
            self.error(_join(path, key), "duplicate key (JSON keeps only the last value)")
        ok = True
        for key, item in value.items():
            if item is None or not isinstance(item, str | int | float | bool):
                self.error(
                    _join(path, key),
                    f"expected a string, number or boolean, got {_type_name(item)}",
                )
                ok = False
        return dict(value) if ok else None

    def entity_policies(self, raw: Mapping[str, Any], path: str) -> list[SasPolicy]:
        """SAS rules that grant access to one queue or topic only (the service's entity rules)."""
        items = self.array(raw, "SharedAccessPolicies", path)
        configured: list[SasPolicy] = []
        for i, item in enumerate(items):
            policy = self.policy(item, f"{path}.SharedAccessPolicies[{i}]")
            if policy is not None:
                configured.append(policy)
        self.unique(_names_with_paths(items, f"{path}.SharedAccessPolicies"), "policy")
        return configured

    def policies(self, raw: Mapping[str, Any], path: str) -> list[SasPolicy]:
        configured = self.entity_policies(raw, path)
        overridden = {p.name.casefold() for p in configured}
        defaults = [p for p in default_policies() if p.name.casefold() not in overridden]
        return defaults + configured

    def policy(self, value: object, path: str) -> SasPolicy | None:
        raw = self.obj(value, path, _POLICY_KEYS)
        if raw is None:
            return None
        name = self.name(raw, path, _SIMPLE_NAME_RE, _MAX_POLICY_NAME, "policy")
        key = self.string(raw, "Key", path, required=True)
        if key is not None and not key:
            self.error(_join(path, "Key"), "must not be empty")
            key = None
        elif key is not None and len(key) > _MAX_POLICY_KEY:
            self.error(_join(path, "Key"), f"is longer than {_MAX_POLICY_KEY} characters")
            key = None
        rights = self.rights(raw, path)
        if name is None or key is None or rights is None:
            return None
        return SasPolicy(name, key, rights)

    def rights(self, raw: Mapping[str, Any], path: str) -> AccessRights | None:
        where = _join(path, "Rights")
        value = raw.get("Rights", _MISSING)
        if value is _MISSING:
            self.error(where, "is required (a list of Send, Listen, Manage)")
            return None
        if not isinstance(value, list):
            self.error(where, f"expected an array, got {_type_name(value)}")
            return None
        if not value:
            self.error(where, "must grant at least one of Send, Listen, Manage")
            return None
        rights = AccessRights.NONE
        ok = True
        for i, item in enumerate(value):
            right = _RIGHTS.get(item.casefold()) if isinstance(item, str) else None
            if right is None:
                self.error(f"{where}[{i}]", f"{item!r} is not one of Send, Listen, Manage")
                ok = False
            else:
                rights |= right
        return rights if ok else None

    def forwarding(self, topology: NamespaceTopology) -> None:
        """Forwarding targets must name a declared queue or topic (stored in declared case)."""
        for entity, ppath, own_name in self.forwarders:
            for attr, key in (
                ("forward_to", "ForwardTo"),
                ("forward_dead_lettered_messages_to", "ForwardDeadLetteredMessagesTo"),
            ):
                target = getattr(entity, attr)
                if target is None:
                    continue
                found = topology.find_entity(target)
                if found is None:
                    self.error(_join(ppath, key), f"no queue or topic named {target!r}")
                elif own_name is not None and found.name.casefold() == own_name.casefold():
                    self.error(_join(ppath, key), "a queue cannot forward to itself")
                else:
                    setattr(entity, attr, found.name)
        cycle = forwarding_cycle(topology) if not self.errors else None
        if cycle:
            self.error(
                "UserConfig.Namespaces[0]",
                "ForwardTo makes a loop: " + " -> ".join(cycle),
            )


def _names_with_paths(items: list[Any], path: str) -> list[tuple[str, str]]:
    return [
        (item["Name"], f"{path}[{i}].Name")
        for i, item in enumerate(items)
        if isinstance(item, Mapping) and isinstance(item.get("Name"), str)
    ]


def _join(path: str, *keys: str) -> str:
    return ".".join([path, *keys]) if path != "$" else ".".join(keys)


def _suggest(key: str, allowed: Sequence[str]) -> str:
    folded = {a.casefold(): a for a in allowed}
    if key.casefold() in folded:
        return f" (did you mean {folded[key.casefold()]!r}? keys are case-sensitive)"
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.7)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of {', '.join(allowed)})"
