"""An idle sender with a long ``socket_timeout`` sends promptly (issue 15, point 1).

The SDK's keep-alive thread wakes every ``keep_alive`` seconds (30 by default) and reads the
socket for up to ``socket_timeout`` while holding the lock every send needs. On a connection
the emulator left silent, the next send waited for that read to time out (~60 s with
``socket_timeout=60``). The emulator now sends an empty frame whenever it has been quiet for
a quarter second, which lets the reader give the lock back.

Real time is the subject here (the SDK's keep-alive timer reads the wall clock, not the
emulator's), so these tests sleep for short gaps: ``keep_alive=1`` stands in for the default
30 s and ``socket_timeout=10`` for 60, so a stall would show as ~9 s instead of a minute.
"""

from __future__ import annotations

import asyncio
import time

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from emulator.servicebus import ServiceBusEmulator

SOCKET_TIMEOUT = 10.0
KEEP_ALIVE = 1
GAP = 1.5
"""Longer than ``KEEP_ALIVE``: each send starts while the keep-alive thread is reading."""
PROMPT = 3.0
"""A send that waited for the keep-alive read to time out would take ~SOCKET_TIMEOUT."""


def test_idle_topic_sender_with_long_socket_timeout_sends_promptly(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    with ServiceBusClient.from_connection_string(conn_str) as client:
        sender = client.get_topic_sender("t", socket_timeout=SOCKET_TIMEOUT, keep_alive=KEEP_ALIVE)
        with sender:
            took = []
            for i in range(3):
                time.sleep(GAP)  # the idle gap is the subject (see the module docstring)
                started = time.monotonic()
                sender.send_messages(ServiceBusMessage(f"idle {i}"))
                took.append(time.monotonic() - started)
    assert max(took) < PROMPT, took


async def test_async_idle_topic_sender_with_long_socket_timeout_sends_promptly(
    emulator: ServiceBusEmulator, conn_str: str
) -> None:
    async with AsyncServiceBusClient.from_connection_string(conn_str) as client:
        sender = client.get_topic_sender("t", socket_timeout=SOCKET_TIMEOUT, keep_alive=KEEP_ALIVE)
        async with sender:
            took = []
            for i in range(3):
                await asyncio.sleep(GAP)  # the idle gap is the subject (see the docstring)
                started = time.monotonic()
                await sender.send_messages(ServiceBusMessage(f"idle {i}"))
                took.append(time.monotonic() - started)
    assert max(took) < PROMPT, took
