"""A local Azure Service Bus emulator that the unmodified azure-servicebus SDK talks to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .emulator import PROJECT_CONFIG, ServiceBusEmulator

__all__ = ["PROJECT_CONFIG", "ServiceBusEmulator"]


def __getattr__(name: str) -> object:
    # Lazy, so the pure core and the filter engine import without the AMQP stack.
    if name in __all__:
        from . import emulator

        return getattr(emulator, name)
    raise AttributeError(name)
