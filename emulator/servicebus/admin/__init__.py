"""The emulator's management plane: the Service Bus Atom API (HTTPS), /health and a JSON
control API (clock, inspection, reset, faults, counters), served on the emulator's loop."""

from __future__ import annotations

from .atom_api import AtomApi
from .control_api import ControlApi
from .server import AdminServer

__all__ = ["AdminServer", "AtomApi", "ControlApi"]
