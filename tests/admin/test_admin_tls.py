"""TLS and port sharing: HTTPS on both ports, plain HTTP on the admin port, AMQP untouched."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
from admin_topology import admin_topology
from azure.core.exceptions import ServiceRequestError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.admin.control_api import json_safe


def _context(emulator: ServiceBusEmulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emulator.ca_bundle))


def test_ca_bundle_lives_under_the_port_and_is_removed_at_stop() -> None:
    with ServiceBusEmulator(admin_topology()) as emu:
        bundle = emu.ca_bundle
        assert bundle.parent.name == f"sbemu-{emu.port}"
        assert bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert not bundle.exists()


def test_custom_tls_directory(tmp_path: Path) -> None:
    with ServiceBusEmulator(admin_topology(), tls_dir=tmp_path / "certs") as emu:
        assert emu.ca_bundle == tmp_path / "certs" / "ca.pem"
        response = httpx.get(f"{emu.admin_endpoint}/health", verify=_context(emu))
        assert response.json()["status"] == "healthy"


def test_https_and_plain_http_on_the_admin_port(emulator: ServiceBusEmulator) -> None:
    secure = httpx.get(f"{emulator.admin_endpoint}/health", verify=_context(emulator))
    assert secure.status_code == 200
    assert httpx.get(emulator.health_url).json() == {
        "status": "healthy",
        "message": "Service is healthy.",
    }


def test_https_on_the_amqp_port_while_amqp_keeps_working(emulator: ServiceBusEmulator) -> None:
    url = f"https://{emulator.host}:{emulator.port}/health"
    assert httpx.get(url, verify=_context(emulator)).status_code == 200
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("still amqp"))
        with client.get_queue_receiver("q", max_wait_time=2) as receiver:
            (message,) = receiver.receive_messages(max_wait_time=2)
            assert str(message) == "still amqp"
            receiver.complete_message(message)


def test_plain_http_on_the_amqp_port_is_treated_as_amqp(emulator: ServiceBusEmulator) -> None:
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(64)
    assert not reply.startswith(b"HTTP/")  # the AMQP side answered (its header) or hung up


def test_unverified_certificate_is_rejected_without_the_bundle(
    emulator: ServiceBusEmulator,
) -> None:
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, retry_total=0
    ) as admin:
        with pytest.raises(ServiceRequestError):
            admin.get_queue("q")


def test_a_failed_handshake_does_not_hurt_the_port(emulator: ServiceBusEmulator) -> None:
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello")  # a ClientHello that is not one
        sock.recv(64)
    assert (
        httpx.get(
            f"https://{emulator.host}:{emulator.port}/health", verify=_context(emulator)
        ).status_code
        == 200
    )


def test_json_safe_renders_amqp_values() -> None:
    import uuid
    from datetime import UTC, datetime

    value = {"b": b"\x00\x01", "u": uuid.UUID(int=1), "t": datetime(2024, 1, 1, tzinfo=UTC)}
    assert json_safe(value) == {
        "b": {"$binary": "AAE="},
        "u": "00000000-0000-0000-0000-000000000001",
        "t": "2024-01-01T00:00:00Z",
    }
