"""Security family: each connection string the system hands out can do what its role needs
and nothing more.

- the job API's send-only policy sends jobs but cannot receive (nor peek) them;
- the workers' policy sends and receives but cannot manage entities;
- a connection string with a wrong key is refused, for sending and for receiving.

Runs on the emulator and on any namespace whose policies follow the same split (the stack
names the workers' and the send-only connection strings).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusAuthenticationError, ServiceBusAuthorizationError
from azure.servicebus.management import ServiceBusAdministrationClient

from harness.stack import Stack

REFUSED = (ServiceBusAuthorizationError, ServiceBusAuthenticationError)


def _client(connection_string: str) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(connection_string, retry_total=0)


def _admin_kwargs(stack: Stack) -> dict[str, Any]:
    if stack.emulator is None:
        return {}
    return {"connection_verify": str(stack.emulator.ca_bundle)}


def _with_wrong_key(connection_string: str) -> str:
    wrong = "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmU="
    return re.sub(r"SharedAccessKey=[^;]+", f"SharedAccessKey={wrong}", connection_string)


def _job(tag: str) -> ServiceBusMessage:
    return ServiceBusMessage("{}", message_id=tag, application_properties={"jobType": "x.none"})


def test_the_send_only_policy_sends_but_cannot_receive(stack: Stack) -> None:
    with _client(stack.servicebus_send_connection) as client:
        with client.get_topic_sender(stack.topic_jobs) as sender:
            sender.send_messages(_job(f"send-only-{uuid.uuid4().hex}"))
        with pytest.raises(ServiceBusAuthorizationError):
            with client.get_subscription_receiver(stack.topic_jobs, "chat-suggestions") as r:
                r.receive_messages(max_wait_time=1)
        with pytest.raises(ServiceBusAuthorizationError):
            with client.get_subscription_receiver(stack.topic_jobs, "chat-suggestions") as r:
                r.peek_messages(max_message_count=1)


def test_the_workers_policy_cannot_manage_entities(stack: Stack) -> None:
    with ServiceBusAdministrationClient.from_connection_string(
        stack.servicebus_connection, **_admin_kwargs(stack)
    ) as admin:
        with pytest.raises((ClientAuthenticationError, HttpResponseError)) as refused:
            admin.create_queue(f"not-allowed-{uuid.uuid4().hex[:8]}")
        assert getattr(refused.value, "status_code", 401) in (401, 403)
        with pytest.raises((ClientAuthenticationError, HttpResponseError)):
            props = admin.get_subscription(stack.topic_jobs, "chat-suggestions")
            props.lock_duration = timedelta(seconds=5)
            admin.update_subscription(stack.topic_jobs, props)


def test_the_workers_policy_sends_and_receives(stack: Stack) -> None:
    with _client(stack.servicebus_connection) as client:
        with client.get_topic_sender(stack.topic_jobs) as sender:
            sender.send_messages(_job(f"rw-{uuid.uuid4().hex}"))
        with client.get_subscription_receiver(stack.topic_jobs, "unrouted") as receiver:
            assert isinstance(receiver.peek_messages(max_message_count=1), list)


@pytest.mark.parametrize("role", ["workers", "send-only"])
def test_a_wrong_key_is_refused(stack: Stack, role: str) -> None:
    good = stack.servicebus_connection if role == "workers" else stack.servicebus_send_connection
    with _client(_with_wrong_key(good)) as client:
        with pytest.raises(REFUSED):
            with client.get_topic_sender(stack.topic_jobs) as sender:
                sender.send_messages(_job(f"wrong-key-{uuid.uuid4().hex}"))
        with pytest.raises(REFUSED):
            with client.get_subscription_receiver(stack.topic_jobs, "chat-suggestions") as r:
                r.receive_messages(max_wait_time=1)
