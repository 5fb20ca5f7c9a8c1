"""The Service Bus half of a stack: an in-process emulator, or any namespace by connection string.

The topology file (the official emulator's `Config.json`) is the single source of truth. The
in-process emulator loads it directly; for an external namespace it is applied through the
SDK's `ServiceBusAdministrationClient`, creating what is missing and leaving what exists (a
shared namespace may carry state another run depends on). One exception: when the file lists
rules for a subscription and not `$Default`, a `$Default` rule is removed, because it would
route every message to that subscription and defeat the file's filters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.servicebus.config import load_config
from emulator.servicebus.topology import (
    DEFAULT_RULE_NAME,
    ROOT_POLICY_NAME,
    CorrelationFilterSpec,
    FalseFilterSpec,
    FilterSpec,
    NamespaceTopology,
    QueueDescription,
    RuleDescription,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
)

from .errors import StackError

log = logging.getLogger("harness.stack")

# The project's topology names a Listen+Send policy for the Functions apps and a send-only one
# for the job API (the seed's Vercel routes); other topologies fall back to the root policy.
WORKER_POLICY = "functions-rw"
SENDER_POLICY = "vercel-send"
JOBS_TOPIC = "huntaze-jobs"
EVENTS_TOPIC = "huntaze-events"


def topic_names(topology: NamespaceTopology) -> tuple[str, str]:
    """TOPIC_JOBS and TOPIC_EVENTS for the workers: the project's names if present."""
    names = [t.name for t in topology.topics]
    jobs = JOBS_TOPIC if topology.find_topic(JOBS_TOPIC) or not names else names[0]
    events = EVENTS_TOPIC if topology.find_topic(EVENTS_TOPIC) or len(names) < 2 else names[1]
    return jobs, events


def policy_or_root(topology: NamespaceTopology, name: str) -> str:
    return name if topology.find_policy(name) else ROOT_POLICY_NAME


# -- applying a topology through the administration client ----------------------------------


@dataclass
class TopologyReport:
    """What `apply_topology` did, one line per entity or rule, for logs and assertions."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.removed)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.existing)} already present, "
            f"{len(self.removed)} removed"
        )


def _sdk_filter(spec: FilterSpec) -> Any:
    from azure.servicebus.management import (
        CorrelationRuleFilter,
        FalseRuleFilter,
        SqlRuleFilter,
        TrueRuleFilter,
    )

    if isinstance(spec, SqlFilterSpec):
        return SqlRuleFilter(spec.expression)
    if isinstance(spec, CorrelationFilterSpec):
        return CorrelationRuleFilter(
            **spec.system_fields(),
            properties=dict(spec.properties) or None,
        )
    if isinstance(spec, FalseFilterSpec):
        return FalseRuleFilter()
    return TrueRuleFilter()


def _queue_kwargs(queue: QueueDescription) -> dict[str, Any]:
    return {
        "lock_duration": queue.lock_duration,
        "max_delivery_count": queue.max_delivery_count,
        "default_message_time_to_live": queue.default_message_time_to_live,
        "dead_lettering_on_message_expiration": queue.dead_lettering_on_message_expiration,
        "requires_session": queue.requires_session,
        "requires_duplicate_detection": queue.requires_duplicate_detection,
        "duplicate_detection_history_time_window": queue.duplicate_detection_history_time_window,
        "forward_to": queue.forward_to or None,
        "forward_dead_lettered_messages_to": queue.forward_dead_lettered_messages_to or None,
    }


def _topic_kwargs(topic: TopicDescription) -> dict[str, Any]:
    return {
        "default_message_time_to_live": topic.default_message_time_to_live,
        "requires_duplicate_detection": topic.requires_duplicate_detection,
        "duplicate_detection_history_time_window": topic.duplicate_detection_history_time_window,
    }


def _subscription_kwargs(sub: SubscriptionDescription) -> dict[str, Any]:
    return {
        "lock_duration": sub.lock_duration,
        "max_delivery_count": sub.max_delivery_count,
        "default_message_time_to_live": sub.default_message_time_to_live,
        "dead_lettering_on_message_expiration": sub.dead_lettering_on_message_expiration,
        "dead_lettering_on_filter_evaluation_exceptions": (
            sub.dead_lettering_on_filter_evaluation_exceptions
        ),
        "requires_session": sub.requires_session,
        "forward_to": sub.forward_to or None,
        "forward_dead_lettered_messages_to": sub.forward_dead_lettered_messages_to or None,
    }


def _forwarding_order(queues: list[QueueDescription]) -> list[QueueDescription]:
    """Queues whose forwarding targets are queues come after those targets (no cycles: the
    config loader rejects them)."""
    by_name = {q.name.casefold(): q for q in queues}
    ordered: list[QueueDescription] = []
    seen: set[str] = set()

    def visit(queue: QueueDescription) -> None:
        key = queue.name.casefold()
        if key in seen:
            return
        seen.add(key)
        for target in (queue.forward_to, queue.forward_dead_lettered_messages_to):
            if target and target.casefold() in by_name:
                visit(by_name[target.casefold()])
        ordered.append(queue)

    for queue in queues:
        visit(queue)
    return ordered


def _ensure(
    report: TopologyReport, label: str, present: set[str], name: str, create: Callable[[], object]
) -> bool:
    """Create unless `name` is among the (case-folded) names listed; True when created."""
    from azure.core.exceptions import ResourceExistsError

    if name.casefold() in present:
        report.existing.append(label)
        return False
    try:
        create()
    except ResourceExistsError:  # created concurrently (another xdist worker): fine
        report.existing.append(label)
        return False
    report.created.append(label)
    return True


def _names(items: Any) -> set[str]:
    return {item.name.casefold() for item in items}


def _apply_rules(
    admin: Any, report: TopologyReport, topic: str, sub: SubscriptionDescription
) -> None:
    present = {r.name.casefold() for r in admin.list_rules(topic, sub.name)}
    wanted: list[RuleDescription] = sub.rules
    for rule in wanted:
        label = f"rule {topic}/{sub.name}/{rule.name}"
        if rule.name.casefold() in present:
            report.existing.append(label)
            continue
        from azure.servicebus.management import SqlRuleAction

        action = SqlRuleAction(rule.action) if rule.action else None
        admin.create_rule(
            topic, sub.name, rule.name, filter=_sdk_filter(rule.filter), action=action
        )
        report.created.append(label)
    wanted_names = {r.name.casefold() for r in wanted}
    default = DEFAULT_RULE_NAME.casefold()
    if default in present and default not in wanted_names:
        admin.delete_rule(topic, sub.name, DEFAULT_RULE_NAME)
        report.removed.append(f"rule {topic}/{sub.name}/{DEFAULT_RULE_NAME}")


def apply_topology(
    connection_string: str,
    topology: NamespaceTopology,
    *,
    admin_client: Any | None = None,
    **client_kwargs: Any,
) -> TopologyReport:
    """Create the topology's missing queues, topics, subscriptions and rules on a namespace.

    `client_kwargs` go to `ServiceBusAdministrationClient.from_connection_string` (e.g.
    `connection_verify=` for an emulator's self-signed certificate). SAS policies cannot be
    created through this API; use the connection string's own policy.
    """
    from azure.servicebus.management import ServiceBusAdministrationClient

    owned = admin_client is None
    admin = admin_client or ServiceBusAdministrationClient.from_connection_string(
        connection_string, **client_kwargs
    )
    report = TopologyReport()
    try:
        # List what exists (one call per collection) rather than probing each name.
        queues = _names(admin.list_queues()) if topology.queues else set()
        for queue in _forwarding_order(topology.queues):
            _ensure(
                report,
                f"queue {queue.name}",
                queues,
                queue.name,
                lambda q=queue: admin.create_queue(q.name, **_queue_kwargs(q)),
            )
        topics = _names(admin.list_topics()) if topology.topics else set()
        for topic in topology.topics:
            created = _ensure(
                report,
                f"topic {topic.name}",
                topics,
                topic.name,
                lambda t=topic: admin.create_topic(t.name, **_topic_kwargs(t)),
            )
            subscriptions = set() if created else _names(admin.list_subscriptions(topic.name))
            for sub in topic.subscriptions:
                _ensure(
                    report,
                    f"subscription {topic.name}/{sub.name}",
                    subscriptions,
                    sub.name,
                    lambda t=topic, s=sub: admin.create_subscription(
                        t.name, s.name, **_subscription_kwargs(s)
                    ),
                )
                _apply_rules(admin, report, topic.name, sub)
    except StackError:
        raise
    except Exception as exc:
        raise StackError(
            f"applying the topology through the administration client failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    finally:
        if owned:
            admin.close()
    log.info("topology applied: %s", report.summary())
    return report


def load_topology(path: str | Path) -> NamespaceTopology:
    """Parse a topology file; a bad one is a StackError naming every problem."""
    from emulator.servicebus.config import ConfigError

    try:
        return load_config(path)
    except (ConfigError, OSError) as exc:
        raise StackError(f"topology {path}: {exc}") from exc
