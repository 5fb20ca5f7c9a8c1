"""The async administration client (azure.servicebus.aio.management) against the emulator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.management import SqlRuleAction, SqlRuleFilter

# The async administration client's transport is aiohttp (azure-core imports it eagerly).
pytest.importorskip("aiohttp")
from azure.servicebus.aio.management import ServiceBusAdministrationClient

from emulator.servicebus import ServiceBusEmulator


async def test_async_client_covers_every_operation(emulator: ServiceBusEmulator) -> None:
    async with ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, connection_verify=False, retry_total=0
    ) as admin:
        queue = await admin.create_queue("aq", lock_duration=timedelta(seconds=10))
        assert queue.lock_duration == timedelta(seconds=10)
        queue.max_delivery_count = 6
        await admin.update_queue(queue)
        assert (await admin.get_queue("aq")).max_delivery_count == 6
        assert [q.name async for q in admin.list_queues()] == ["aq", "q"]
        with pytest.raises(ResourceExistsError):
            await admin.create_queue("aq")

        await admin.create_topic("at")
        topic = await admin.get_topic("at")
        await admin.update_topic(topic, default_message_time_to_live=timedelta(hours=1))
        await admin.create_subscription("at", "s1")
        await admin.delete_rule("at", "s1", "$Default")
        await admin.create_rule(
            "at",
            "s1",
            "hot",
            filter=SqlRuleFilter("temp > 30"),
            action=SqlRuleAction("SET alert = true"),
        )
        rules = [r.name async for r in admin.list_rules("at", "s1")]
        assert rules == ["hot"]
        with pytest.raises(HttpResponseError, match="invalid"):
            await admin.create_rule("at", "s1", "bad", filter=SqlRuleFilter("temp >"))

        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            async with client.get_topic_sender("at") as sender:
                await sender.send_messages(
                    [
                        ServiceBusMessage("hot", application_properties={"temp": 35}),
                        ServiceBusMessage("cold", application_properties={"temp": 5}),
                    ]
                )
        sub = await admin.get_subscription_runtime_properties("at", "s1")
        assert sub.active_message_count == 1
        assert (await admin.get_topic_runtime_properties("at")).subscription_count == 1
        assert [s.name async for s in admin.list_subscriptions_runtime_properties("at")] == ["s1"]
        assert (await admin.get_queue_runtime_properties("aq")).total_message_count == 0
        assert (await admin.get_namespace_properties()).name == "sbemulatorns"

        await admin.delete_subscription("at", "s1")
        await admin.delete_topic("at")
        await admin.delete_queue("aq")
        with pytest.raises(ResourceNotFoundError):
            await admin.get_queue("aq")
        assert [t.name async for t in admin.list_topics()] == ["t"]
