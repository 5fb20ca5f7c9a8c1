"""The namespace the SDK tests run against."""

from __future__ import annotations

from datetime import timedelta

from emulator.servicebus.topology import (
    AccessRights,
    NamespaceTopology,
    QueueDescription,
    RuleDescription,
    SasPolicy,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    TrueFilterSpec,
    default_rules,
)

SEND_KEY = "send-key-for-tests"
LISTEN_KEY = "listen-key-for-tests"


def sample_topology() -> NamespaceTopology:
    """A small namespace: a plain queue, a queue that dead-letters on expiry, a routed topic."""
    return NamespaceTopology(
        queues=[
            QueueDescription(name="q", lock_duration=timedelta(seconds=30), max_delivery_count=3),
            QueueDescription(
                name="expiring",
                default_message_time_to_live=timedelta(minutes=5),
                dead_lettering_on_message_expiration=True,
            ),
            QueueDescription(name="small", max_message_size_bytes=1024),
        ],
        topics=[
            TopicDescription(
                name="t",
                subscriptions=[
                    SubscriptionDescription(name="all", rules=default_rules()),
                    SubscriptionDescription(
                        name="red",
                        rules=[RuleDescription("red", SqlFilterSpec("color = 'red'"))],
                    ),
                    SubscriptionDescription(
                        name="none",
                        rules=[RuleDescription("nothing", SqlFilterSpec("1 = 0"))],
                    ),
                ],
            ),
            TopicDescription(
                name="quiet",
                subscriptions=[
                    SubscriptionDescription(
                        name="blue",
                        rules=[RuleDescription("blue", SqlFilterSpec("color = 'blue'"))],
                    ),
                    SubscriptionDescription(
                        name="everything", rules=[RuleDescription("$Default", TrueFilterSpec())]
                    ),
                ],
            ),
        ],
        policies=[
            SasPolicy("RootManageSharedAccessKey", "SAS_KEY_VALUE", AccessRights.MANAGE),
            SasPolicy("sender", SEND_KEY, AccessRights.SEND),
            SasPolicy("listener", LISTEN_KEY, AccessRights.LISTEN),
        ],
    )


def _sdk_version() -> tuple[int, ...]:
    import azure.servicebus

    return tuple(int(part) for part in azure.servicebus.__version__.split(".")[:2])


# 7.15 waits for the broker's answer to each settlement; 7.14 settles blindly and only notices a
# lost lock through its own wall-clock check, which cannot see the emulator clock move.
SDK_HEARS_SETTLEMENT_ERRORS = _sdk_version() >= (7, 15)
