"""The admin port's ``GET /health`` answer, as the official emulator gives it.

Served by :mod:`emulator.servicebus.admin` together with the Atom management API and the
control API (plain HTTP and HTTPS on the admin port, HTTPS on the AMQP port).
"""

from __future__ import annotations

HEALTHY = {"status": "healthy", "message": "Service is healthy."}
