"""The admin port's ``GET /health``, answered like the official emulator.

A minimal HTTP/1.1 responder on asyncio; the management-plane issue will put the Atom API and
the control API on the same port.
"""

from __future__ import annotations

import asyncio
import json
import logging

log = logging.getLogger("emulator.servicebus.admin")

HEALTHY = {"status": "healthy", "message": "Service is healthy."}


def _response(status: str, body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


async def handle_admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request_line = await asyncio.wait_for(reader.readline(), timeout=10)
        while True:  # drain headers
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            if line in (b"\r\n", b"\n", b""):
                break
        parts = request_line.decode("latin-1").split()
        if len(parts) < 2:
            writer.write(_response("400 Bad Request", {"error": "malformed request line"}))
        elif parts[0] == "GET" and parts[1].split("?")[0] == "/health":
            writer.write(_response("200 OK", HEALTHY))
        else:
            writer.write(_response("404 Not Found", {"error": f"no route for {parts[1]}"}))
        await writer.drain()
    except (TimeoutError, ConnectionError) as exc:
        log.debug("admin connection ended: %s", exc)
    finally:
        writer.close()
