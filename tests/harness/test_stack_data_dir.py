"""``StackBuilder().with_emulator_options(data_dir=...)``: a stack's emulator keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from harness.stack import StackBuilder
from harness.stack import services as stack_services

LOCAL_PROBLEMS = stack_services.probe_local(
    *stack_services.local_urls(
        os.environ.get("SBH_TEST_DATABASE_URL"), os.environ.get("SBH_TEST_REDIS_URL")
    )
)


@pytest.mark.skipif(bool(LOCAL_PROBLEMS), reason="; ".join(LOCAL_PROBLEMS))
def test_a_message_sent_in_one_stack_is_there_in_the_next(tmp_path: Path) -> None:
    state = tmp_path / "servicebus-state"
    builder = StackBuilder().provider("local").with_emulator_options(data_dir=state)
    with builder.start() as stack:
        assert stack.emulator is not None and stack.emulator.data_dir == state
        with (
            ServiceBusClient.from_connection_string(stack.servicebus_send_connection) as client,
            client.get_topic_sender(stack.topic_jobs) as sender,
        ):
            sender.send_messages(
                ServiceBusMessage("kept", application_properties={"jobType": "chat.suggest"})
            )
    with builder.start() as stack:
        assert stack.emulator is not None and stack.emulator.load_report is not None
        assert not stack.emulator.load_report.fresh
        with (
            ServiceBusClient.from_connection_string(stack.servicebus_connection) as client,
            client.get_subscription_receiver(stack.topic_jobs, "chat-suggestions") as receiver,
        ):
            (message,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert str(message) == "kept"
            receiver.complete_message(message)
