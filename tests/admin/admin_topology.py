"""The namespace the management-plane tests start from."""

from __future__ import annotations

import time
from datetime import timedelta

from emulator.servicebus.auth import generate_sas_token
from emulator.servicebus.topology import (
    AccessRights,
    NamespaceTopology,
    QueueDescription,
    RuleDescription,
    SasPolicy,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    default_rules,
)

LISTEN_KEY = "listen-key-for-admin-tests"
SEND_KEY = "send-key-for-admin-tests"


def admin_topology() -> NamespaceTopology:
    return NamespaceTopology(
        queues=[
            QueueDescription(name="q", lock_duration=timedelta(seconds=30), max_delivery_count=2),
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
                ],
            ),
        ],
        policies=[
            SasPolicy("RootManageSharedAccessKey", "SAS_KEY_VALUE", AccessRights.MANAGE),
            SasPolicy("listener", LISTEN_KEY, AccessRights.LISTEN),
            SasPolicy("sender", SEND_KEY, AccessRights.SEND),
        ],
    )


def token(host: str, policy: str = "RootManageSharedAccessKey", key: str = "SAS_KEY_VALUE") -> str:
    """A SAS token as the administration client sends it (``sr`` is the https endpoint)."""
    return generate_sas_token(f"https://{host}", policy, key, int(time.time()) + 3600)
