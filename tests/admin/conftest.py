"""Fixtures for driving the management plane through the real administration client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from admin_topology import admin_topology
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.admin.control_client import ControlClient


@pytest.fixture
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(admin_topology()) as emu:
        yield emu


@pytest.fixture
def admin(emulator: ServiceBusEmulator) -> Iterator[ServiceBusAdministrationClient]:
    """The SDK's client on the connection string, verifying TLS with the emulator's CA."""
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, connection_verify=str(emulator.ca_bundle), retry_total=0
    ) as client:
        yield client


@pytest.fixture
def control(emulator: ServiceBusEmulator) -> Iterator[ControlClient]:
    with ControlClient(emulator.control_url) as client:
        yield client
