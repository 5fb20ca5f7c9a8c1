"""Injected faults surface through the SDK as the exceptions the real service causes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusServerBusyError,
)
from sb_topology import SDK_HEARS_SETTLEMENT_ERRORS

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.faults import FaultRule


def inject(emulator: ServiceBusEmulator, **rule: Any) -> FaultRule:
    faults = emulator._server.faults
    return emulator.call(lambda: faults.add(FaultRule(**rule)))


def fast_retries(conn: str, total: int = 3) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(
        conn, retry_total=total, retry_backoff_factor=0.01, retry_backoff_max=0.05
    )


def test_server_busy_on_send_is_retried_by_the_sdk_until_it_clears(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    rule = inject(emulator, operation="send", entity="q", effect="server-busy", next_n=2)
    with fast_retries(conn_str) as client, client.get_queue_sender("q") as sender:
        sender.send_messages(ServiceBusMessage("eventually"))
    assert rule.fired == 2
    with client.get_queue_receiver("q") as receiver:
        assert [str(m) for m in receiver.peek_messages(max_message_count=5)] == ["eventually"]


def test_persistent_server_busy_raises_server_busy_error(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    inject(emulator, operation="send", entity="q", effect="server-busy")
    with fast_retries(conn_str, total=1) as client, client.get_queue_sender("q") as sender:
        with pytest.raises(ServiceBusServerBusyError):
            sender.send_messages(ServiceBusMessage("never"))
    with client.get_queue_receiver("q") as receiver:
        assert receiver.peek_messages(max_message_count=5) == []


@pytest.mark.skipif(not SDK_HEARS_SETTLEMENT_ERRORS, reason="7.14 settles blindly")
def test_lock_lost_on_settle(emulator: ServiceBusEmulator, conn_str: str) -> None:
    inject(emulator, operation="settle", entity="q", effect="lock-lost", next_n=1)
    with fast_retries(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("x"))
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(msg)


def test_timeout_on_lock_renewal(emulator: ServiceBusEmulator, conn_str: str) -> None:
    inject(emulator, operation="renew-lock", entity="q", effect="timeout")
    with fast_retries(conn_str, total=0) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("x"))
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            with pytest.raises(OperationTimeoutError):
                receiver.renew_message_lock(msg)
            receiver.complete_message(msg)


def test_dropped_connection_is_reopened_by_the_sdk(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    rule = inject(emulator, operation="connect", effect="connection-drop", next_n=1)
    with fast_retries(conn_str) as client, client.get_queue_sender("q") as sender:
        sender.send_messages(ServiceBusMessage("after reconnect"))
    assert rule.fired == 1


def test_server_busy_on_receive_detaches_the_link(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    # The SDK keeps a link detached with server-busy (ServiceBusServerBusyError does not shut
    # the handler down), so a throttled receiver is recreated by the application.
    with fast_retries(conn_str) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("x"))
        rule = inject(emulator, operation="receive", entity="q", effect="server-busy", next_n=1)
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            with pytest.raises(ServiceBusServerBusyError):
                receiver.receive_messages(max_wait_time=2)
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (msg,) = receiver.receive_messages(max_wait_time=2)
            receiver.complete_message(msg)
    assert rule.fired == 1


def test_latency_slows_the_operation_down(emulator: ServiceBusEmulator, conn_str: str) -> None:
    with fast_retries(conn_str) as client, client.get_queue_sender("q") as sender:
        sender.send_messages(ServiceBusMessage("warm"))
        inject(emulator, operation="send", entity="q", effect="latency", latency_ms=400)
        started = time.perf_counter()
        sender.send_messages(ServiceBusMessage("slow"))
        assert time.perf_counter() - started >= 0.4
