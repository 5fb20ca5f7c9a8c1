"""Management-plane behaviour that must match Azure, through the SDK's administration clients.

Issue 15, points 6-11: AutoDeleteOnIdle round-trips, the tier's limits, naive datetimes in
rule parameters, per-topic filter counts, api-version 2017-04, and the self-forward refusal
(a documented difference). Each has a sync test and, where the SDK has one, an async one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from admin_topology import admin_topology
from azure.core.exceptions import HttpResponseError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import (
    ApiVersion,
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
)

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import NamespaceTier

pytest.importorskip("aiohttp", reason="the async administration client's transport is aiohttp")
from azure.servicebus.aio.management import (
    ServiceBusAdministrationClient as AsyncAdministrationClient,
)

TEN_MINUTES = timedelta(minutes=10)
WHEN = datetime(2024, 5, 1, 12, 30, 15)  # naive, as most callers write it


def _client(emu: ServiceBusEmulator, **kwargs: object) -> ServiceBusAdministrationClient:
    return ServiceBusAdministrationClient.from_connection_string(
        emu.connection_string, connection_verify=str(emu.ca_bundle), retry_total=0, **kwargs
    )


def _async_client(emu: ServiceBusEmulator, **kwargs: object) -> AsyncAdministrationClient:
    return AsyncAdministrationClient.from_connection_string(
        emu.connection_string, connection_verify=False, retry_total=0, **kwargs
    )


@pytest.fixture
def premium() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(replace(admin_topology(), tier=NamespaceTier.PREMIUM)) as emu:
        yield emu


# --- 6: AutoDeleteOnIdle ---------------------------------------------------------------------


def test_auto_delete_on_idle_round_trips_and_never_fires(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    assert admin.create_queue("idle", auto_delete_on_idle=TEN_MINUTES).auto_delete_on_idle == (
        TEN_MINUTES
    )
    assert admin.create_topic("idle-t", auto_delete_on_idle=TEN_MINUTES).auto_delete_on_idle == (
        TEN_MINUTES
    )
    sub = admin.create_subscription("idle-t", "s", auto_delete_on_idle=TEN_MINUTES)
    assert sub.auto_delete_on_idle == TEN_MINUTES
    queue = admin.get_queue("idle")
    assert queue.auto_delete_on_idle == TEN_MINUTES
    queue.auto_delete_on_idle = timedelta(minutes=15)
    admin.update_queue(queue)
    assert admin.get_queue("idle").auto_delete_on_idle == timedelta(minutes=15)
    assert admin.get_topic("idle-t").auto_delete_on_idle == TEN_MINUTES
    assert admin.get_subscription("idle-t", "s").auto_delete_on_idle == TEN_MINUTES
    never = admin.get_queue("q").auto_delete_on_idle  # unset: TimeSpan.MaxValue, as Azure
    assert never is not None and never > timedelta(days=10_000)

    emulator.clock.advance(timedelta(hours=2).total_seconds())
    assert admin.get_queue("idle").name == "idle"  # documented: idle deletion never fires
    assert admin.get_subscription("idle-t", "s").name == "s"


def test_auto_delete_on_idle_below_five_minutes_is_refused(
    admin: ServiceBusAdministrationClient,
) -> None:
    with pytest.raises(HttpResponseError, match="AutoDeleteOnIdle"):
        admin.create_queue("too-soon", auto_delete_on_idle=timedelta(minutes=1))


async def test_auto_delete_on_idle_round_trips_async(emulator: ServiceBusEmulator) -> None:
    async with _async_client(emulator) as admin:
        await admin.create_queue("idle", auto_delete_on_idle=TEN_MINUTES)
        queue = await admin.get_queue("idle")
        assert queue.auto_delete_on_idle == TEN_MINUTES
        await admin.update_queue(queue, auto_delete_on_idle=timedelta(hours=1))
        assert (await admin.get_queue("idle")).auto_delete_on_idle == timedelta(hours=1)


# --- 7: tier --------------------------------------------------------------------------------


def test_standard_tier_refuses_premium_message_sizes(
    admin: ServiceBusAdministrationClient,
) -> None:
    with pytest.raises(HttpResponseError, match="'Premium' tier") as caught:
        admin.create_queue("big", max_message_size_in_kilobytes=1024)
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError, match="'Premium' tier"):
        admin.create_topic("big-t", max_message_size_in_kilobytes=1024)
    queue = admin.create_queue("fits", max_message_size_in_kilobytes=256)  # Standard's own
    assert queue.max_message_size_in_kilobytes == 256
    queue.max_delivery_count = 7
    admin.update_queue(queue)  # get-then-update sends 256 back: accepted
    with pytest.raises(HttpResponseError, match="'Premium' tier"):
        admin.update_queue(queue, max_message_size_in_kilobytes=2048)
    assert admin.get_queue("fits").max_message_size_in_kilobytes == 256
    assert admin.get_namespace_properties().messaging_sku == "Standard"


def test_premium_tier_defaults_to_one_megabyte_and_allows_up_to_a_hundred(
    premium: ServiceBusEmulator,
) -> None:
    with _client(premium) as admin:
        assert admin.get_namespace_properties().messaging_sku == "Premium"
        assert admin.create_queue("p").max_message_size_in_kilobytes == 1024
        assert (
            admin.create_topic(
                "pt", max_message_size_in_kilobytes=102400
            ).max_message_size_in_kilobytes
            == 102400
        )
        with pytest.raises(HttpResponseError, match=r"out of range \[1024, 102400\]"):
            admin.create_queue("small", max_message_size_in_kilobytes=512)
    with ServiceBusClient.from_connection_string(premium.connection_string) as client:
        with client.get_queue_sender("p") as sender:
            sender.send_messages(ServiceBusMessage(b"x" * 600 * 1024))  # over Standard's 256


async def test_standard_tier_refuses_premium_message_sizes_async(
    emulator: ServiceBusEmulator,
) -> None:
    async with _async_client(emulator) as admin:
        with pytest.raises(HttpResponseError, match="'Premium' tier"):
            await admin.create_queue("big", max_message_size_in_kilobytes=1024)


# --- 8: datetimes in rules -------------------------------------------------------------------


def test_naive_datetimes_in_rules_read_back_as_sent_and_still_match(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    admin.create_rule("t", "red", "corr", filter=CorrelationRuleFilter(properties={"when": WHEN}))
    admin.create_rule(
        "t",
        "red",
        "sql",
        filter=SqlRuleFilter("when = @w", parameters={"@w": WHEN}),
        action=SqlRuleAction("SET seen = @s", parameters={"@s": WHEN}),
    )
    assert admin.get_rule("t", "red", "corr").filter.properties == {"when": WHEN}
    sql = admin.get_rule("t", "red", "sql")
    assert sql.filter.parameters == {"@w": WHEN}
    assert sql.action.parameters == {"@s": WHEN}

    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender("t") as sender:
            aware = WHEN.replace(tzinfo=UTC)  # AMQP timestamps are UTC instants
            sender.send_messages(ServiceBusMessage("x", application_properties={"when": aware}))
    # one copy for the plain rules (the correlation one matched), one for the action rule
    assert admin.get_subscription_runtime_properties("t", "red").active_message_count == 2


async def test_naive_datetimes_in_rules_read_back_as_sent_async(
    emulator: ServiceBusEmulator,
) -> None:
    async with _async_client(emulator) as admin:
        await admin.create_rule(
            "t", "red", "corr", filter=CorrelationRuleFilter(properties={"when": WHEN})
        )
        assert (await admin.get_rule("t", "red", "corr")).filter.properties == {"when": WHEN}


# --- 9: filter counts -------------------------------------------------------------------------


def test_topic_runtime_properties_count_sql_and_correlation_filters(
    admin: ServiceBusAdministrationClient,
) -> None:
    before = admin.get_topic_runtime_properties("t")
    assert (before.sql_filter_count, before.correlation_filter_count) == (2, 0)
    admin.create_rule("t", "all", "c", filter=CorrelationRuleFilter(label="x"))
    after = admin.get_topic_runtime_properties("t")
    assert (after.sql_filter_count, after.correlation_filter_count) == (2, 1)


async def test_topic_runtime_properties_count_filters_async(emulator: ServiceBusEmulator) -> None:
    async with _async_client(emulator) as admin:
        props = await admin.get_topic_runtime_properties("t")
        assert (props.sql_filter_count, props.correlation_filter_count) == (2, 0)


# --- 10: api-version 2017-04 ------------------------------------------------------------------


def test_api_version_2017_04_refuses_what_it_does_not_know(emulator: ServiceBusEmulator) -> None:
    with _client(emulator, api_version=ApiVersion.V2017_04) as old:
        with pytest.raises(HttpResponseError, match="api-version 2017-04") as caught:
            old.create_queue("sized", max_message_size_in_kilobytes=256)
        assert caught.value.status_code == 400
        with pytest.raises(HttpResponseError, match="api-version 2017-04"):
            old.create_topic("sized-t", max_message_size_in_kilobytes=256)
        created = old.create_queue("plain")
        assert created.max_message_size_in_kilobytes is None  # not in that version's answers
        assert old.get_topic("t").max_message_size_in_kilobytes is None
        queue = old.get_queue("plain")
        queue.max_delivery_count = 4
        old.update_queue(queue)
    with _client(emulator) as current:
        assert current.get_queue("plain").max_message_size_in_kilobytes == 256


async def test_api_version_2017_04_refuses_message_size_async(
    emulator: ServiceBusEmulator,
) -> None:
    async with _async_client(emulator, api_version=ApiVersion.V2017_04) as old:
        with pytest.raises(HttpResponseError, match="api-version 2017-04"):
            await old.create_queue("sized", max_message_size_in_kilobytes=256)
        assert (await old.create_queue("plain")).max_message_size_in_kilobytes is None


# --- 11: self-forwarding (a documented difference) ---------------------------------------------


def test_forwarding_to_itself_is_refused_and_says_it_is_a_deliberate_difference(
    admin: ServiceBusAdministrationClient,
) -> None:
    queue = admin.get_queue("q")
    queue.forward_to = "q"
    with pytest.raises(HttpResponseError, match="Differences from Azure") as caught:
        admin.update_queue(queue)
    assert caught.value.status_code == 400
    assert admin.get_queue("q").forward_to is None


async def test_forwarding_to_itself_is_refused_async(emulator: ServiceBusEmulator) -> None:
    async with _async_client(emulator) as admin:
        queue = await admin.get_queue("q")
        queue.forward_to = "q"
        with pytest.raises(HttpResponseError, match="Differences from Azure"):
            await admin.update_queue(queue)
