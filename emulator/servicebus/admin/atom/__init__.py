"""Atom XML of the Service Bus management API: request bodies in, entries and feeds out.

The shapes follow what ``azure.servicebus.management`` serialises and deserialises (and the
service's recorded answers): an Atom ``entry`` whose ``content`` holds one
``QueueDescription`` / ``TopicDescription`` / ``SubscriptionDescription`` /
``RuleDescription`` in the ``.../2010/10/servicebus/connect`` namespace, with the count
details in the ``.../2011/06/servicebus`` namespace. `parse` reads request bodies, `render`
writes answers; `common` holds what both share (namespaces, the service's defaults, the
request's `Dialect`, `AtomError`, the parsed forms the API stores).
"""

from .common import AtomError, Dialect, Extras, ParsedRule
from .parse import parse_entry, parse_queue, parse_rule, parse_subscription, parse_topic
from .render import (
    Counts,
    entry,
    error_xml,
    feed,
    namespace_xml,
    queue_xml,
    rule_xml,
    subscription_xml,
    topic_xml,
)

__all__ = [
    "AtomError",
    "Counts",
    "Dialect",
    "Extras",
    "ParsedRule",
    "entry",
    "error_xml",
    "feed",
    "namespace_xml",
    "parse_entry",
    "parse_queue",
    "parse_rule",
    "parse_subscription",
    "parse_topic",
    "queue_xml",
    "rule_xml",
    "subscription_xml",
    "topic_xml",
]
