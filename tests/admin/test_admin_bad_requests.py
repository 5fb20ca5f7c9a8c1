"""Bad management requests get clear 4xx answers and never change state."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from xml.etree import ElementTree

import httpx
import pytest
from admin_topology import LISTEN_KEY, SEND_KEY, token
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import ServiceBusEmulator

QUEUE_BODY = (
    b'<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
    b'<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/'
    b'connect"><MaxDeliveryCount>3</MaxDeliveryCount></QueueDescription></content></entry>'
)


@pytest.fixture
def https(emulator: ServiceBusEmulator) -> Iterator[httpx.Client]:
    """Raw HTTPS to the AMQP port (where the connection string points), CA-verified."""
    host = f"{emulator.host}:{emulator.port}"
    with httpx.Client(
        base_url=f"https://{host}",
        verify=ssl.create_default_context(cafile=str(emulator.ca_bundle)),
        headers={"Authorization": token(host)},
    ) as client:
        yield client


def _detail(response: httpx.Response) -> str:
    """The service-style error's Detail text (unescaped)."""
    root = ElementTree.fromstring(response.text)
    assert root.tag == "Error" and root.findtext("Code") == str(response.status_code)
    return root.findtext("Detail") or ""


def _queue_names(https: httpx.Client) -> list[str]:
    feed = https.get("/$Resources/queues").text
    return sorted(part.split("<", 1)[0] for part in feed.split('<title type="text">')[2:])


def test_a_well_formed_create_works_over_raw_https(https: httpx.Client) -> None:
    response = https.put("/raw", content=QUEUE_BODY)
    assert response.status_code == 201
    assert "<MaxDeliveryCount>3</MaxDeliveryCount>" in response.text
    assert _queue_names(https) == ["q", "raw"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<entry", "not well-formed XML"),
        (b"", "empty"),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "Atom <entry>"),
        (
            b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><entry xmlns='http://www.w3.org/2005/Atom'/>",
            "Document type",
        ),
        (
            QUEUE_BODY.replace(b"QueueDescription", b"WidgetDescription"),
            "Unknown entity description <WidgetDescription>",
        ),
        (
            QUEUE_BODY.replace(b"QueueDescription", b"SubscriptionDescription"),
            "Unknown entity kind <SubscriptionDescription>",
        ),
        (QUEUE_BODY.replace(b">3<", b">many<"), "MaxDeliveryCount: 'many' is not an integer"),
        (QUEUE_BODY.replace(b">3<", b">0<"), "MaxDeliveryCount: 0 is out of range"),
    ],
)
def test_malformed_bodies_are_400_and_create_nothing(
    https: httpx.Client, body: bytes, message: str
) -> None:
    response = https.put("/broken", content=body)
    assert response.status_code == 400, response.text
    assert message in _detail(response)
    assert _queue_names(https) == ["q"]


def test_unknown_entity_kinds_and_paths(https: httpx.Client) -> None:
    assert https.get("/$Resources/widgets").status_code == 400
    assert "expected queues or topics" in _detail(https.get("/$Resources/widgets"))
    assert https.put("/t/widgets/x", content=QUEUE_BODY).status_code == 400
    assert https.post("/q", content=QUEUE_BODY).status_code == 405
    assert https.get("/t/subscriptions/red/rules/red").status_code == 200
    assert https.put("/t/subscriptions/red/rules/x", content=QUEUE_BODY).status_code == 400
    assert https.put("/bad name!", content=QUEUE_BODY).status_code == 400
    assert _queue_names(https) == ["q"]


def test_missing_or_wrong_auth_is_401(emulator: ServiceBusEmulator, https: httpx.Client) -> None:
    host = f"{emulator.host}:{emulator.port}"
    bare = https.put("/sneaky", content=QUEUE_BODY, headers={"Authorization": ""})
    assert bare.status_code == 401
    assert "MissingToken" in _detail(bare)
    wrong = https.put(
        "/sneaky",
        content=QUEUE_BODY,
        headers={"Authorization": token(host, "RootManageSharedAccessKey", "not-the-key")},
    )
    assert wrong.status_code == 401
    assert "InvalidSignature" in _detail(wrong)
    garbage = https.get("/q", headers={"Authorization": "Bearer abc"})
    assert garbage.status_code == 401
    assert _queue_names(https) == ["q"]


@pytest.mark.parametrize(("policy", "key"), [("listener", LISTEN_KEY), ("sender", SEND_KEY)])
def test_keys_without_manage_are_refused_by_the_sdk(
    emulator: ServiceBusEmulator, policy: str, key: str
) -> None:
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string_for(policy, key),
        connection_verify=str(emulator.ca_bundle),
        retry_total=0,
    ) as admin:
        with pytest.raises(ClientAuthenticationError, match="Manage"):
            admin.create_queue("not-allowed")
        with pytest.raises(ClientAuthenticationError):
            admin.get_queue_runtime_properties("q")
        with pytest.raises(ClientAuthenticationError):
            admin.delete_queue("q")
    assert emulator.call(lambda: sorted(emulator.broker.queues)) == ["q"]


def test_malformed_http_gets_400_and_the_port_keeps_serving(emulator: ServiceBusEmulator) -> None:
    import socket

    with socket.create_connection((emulator.host, emulator.admin_port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")
    assert httpx.get(emulator.health_url).status_code == 200


def test_a_malformed_api_version_is_refused_with_the_supported_ones(https: httpx.Client) -> None:
    response = https.get("/q?api-version=latest")
    assert response.status_code == 400
    assert "api-version 'latest' is invalid" in _detail(response)
    assert "2021-05" in _detail(response)
    assert https.get("/q?api-version=2021-05").status_code == 200
