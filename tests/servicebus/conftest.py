"""Fixtures for driving the emulator through the real azure-servicebus SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sb_topology import sample_topology

from emulator.servicebus import ServiceBusEmulator


@pytest.fixture
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(sample_topology()) as emu:
        yield emu


@pytest.fixture
def conn_str(emulator: ServiceBusEmulator) -> str:
    return emulator.connection_string
