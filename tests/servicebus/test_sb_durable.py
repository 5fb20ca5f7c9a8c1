"""A durable emulator (``data_dir``) through the real SDK: what it keeps over a clean restart.

Crashes are ``test_crash_recovery``'s; the layer itself is ``tests/persistence``'.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import (
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
)
from sb_topology import SDK_HEARS_SETTLEMENT_ERRORS, sample_topology

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.persistence import DataDirError


def _admin(emu: ServiceBusEmulator) -> ServiceBusAdministrationClient:
    return ServiceBusAdministrationClient.from_connection_string(
        emu.connection_string, connection_verify=str(emu.ca_bundle), retry_total=0
    )


@pytest.mark.skipif(
    not SDK_HEARS_SETTLEMENT_ERRORS,
    reason="with SDK 7.14 (and the azure-core it brings) the administration client fails TLS "
    "verification against the emulator's CA (seen in CI); 7.15 runs this test",
)
def test_admin_changes_messages_and_the_clock_survive_a_restart(tmp_path: Path) -> None:
    """Entities made over HTTPS (a rule with ``@`` parameters too), a message they routed,
    and the clock's offset: all there after a restart."""
    state = tmp_path / "state"
    with ServiceBusEmulator(sample_topology(), data_dir=state) as emu:
        with _admin(emu) as admin:
            admin.create_queue("made", max_delivery_count=7)
            admin.delete_queue("small")
            admin.create_topic("news")
            admin.create_subscription("news", "reader")
            admin.create_rule(
                "news",
                "reader",
                "big",
                filter=SqlRuleFilter("size > @min", parameters={"@min": 10}),
                action=SqlRuleAction("SET tag = @tag", parameters={"@tag": "big"}),
            )
            admin.delete_rule("news", "reader", "$Default")
        with (
            ServiceBusClient.from_connection_string(emu.connection_string) as client,
            client.get_topic_sender("news") as sender,
        ):
            sender.send_messages(
                [
                    ServiceBusMessage("small", application_properties={"size": 5}),
                    ServiceBusMessage("large", application_properties={"size": 50}),
                ]
            )
        emu.clock.advance(90)

    with ServiceBusEmulator(sample_topology(), data_dir=state) as emu:
        assert emu.clock.offset == 90
        assert emu.load_report is not None and not emu.load_report.fresh
        with _admin(emu) as admin:
            queues = {q.name for q in admin.list_queues()}
            assert "made" in queues and "small" not in queues
            assert admin.get_queue("made").max_delivery_count == 7
            rule = admin.get_rule("news", "reader", "big")
            assert isinstance(rule.filter, SqlRuleFilter)
            assert rule.filter.parameters == {"@min": 10}
        with (
            ServiceBusClient.from_connection_string(emu.connection_string) as client,
            client.get_subscription_receiver("news", "reader", max_wait_time=5) as receiver,
        ):
            (routed,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert str(routed) == "large" and routed.application_properties[b"tag"] == b"big"
            receiver.complete_message(routed)


def test_an_unusable_data_dir_is_refused_before_anything_starts(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataDirError, match="cannot create data dir"):
        ServiceBusEmulator(sample_topology(), data_dir=blocker / "state")
    with ServiceBusEmulator(sample_topology(), data_dir=tmp_path / "state"):
        with pytest.raises(DataDirError, match="in use by another emulator"):
            ServiceBusEmulator(sample_topology(), data_dir=tmp_path / "state")
