"""SignalR REST stand-in: auth, the three send targets, records per hub and user."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from standins.signalr import (
    ConnectionString,
    SignalRRestClient,
    SignalRRestError,
    SignalRServer,
    TokenError,
    make_token,
    verify_token,
)
from workers.common.contracts import EventMessage, JobStatus, event_application_properties
from workers.common.notifications import FailureCounter, signalr_output


@pytest.fixture
def signalr() -> Iterator[SignalRServer]:
    with SignalRServer() as server:
        yield server


@pytest.fixture
async def client(signalr: SignalRServer) -> AsyncIterator[SignalRRestClient]:
    async with SignalRRestClient(signalr.connection_string) as c:
        yield c


async def test_standin_signalr_records_the_notify_workers_output_for_the_creator(
    signalr: SignalRServer, client: SignalRRestClient
) -> None:
    event = EventMessage(
        job_id="job-7",
        creator_id="creator-1",
        status=JobStatus.COMPLETED,
        progress=100,
        result={"engagement": 42},
        updated_at=datetime.now(UTC),
    )
    body = json.dumps(event.to_wire()).encode()
    output = signalr_output(body, event_application_properties(event), FailureCounter())
    assert output is not None
    # what the host's SignalR output binding does with the function's output (hub "huntaze")
    assert await client.send_binding_message("huntaze", output) == 202
    (message,) = signalr.wait_for_user("creator-1", "huntaze", target="jobUpdate")
    assert message.audience == "user" and message.hub == "huntaze"
    assert message.arguments[0]["jobId"] == "job-7"
    assert message.arguments[0]["status"] == "completed"
    assert message.arguments[0]["result"] == {"engagement": 42}
    assert signalr.for_user("someone-else") == []


async def test_standin_signalr_user_group_and_broadcast_reach_the_right_users(
    signalr: SignalRServer, client: SignalRRestClient
) -> None:
    await client.add_user_to_group("Huntaze", "vip", "u1")
    await client.send_to_group("huntaze", "vip", "promo", ["vip only"])
    await client.send_to_all("huntaze", "notice", ["all"])
    await client.send_to_user("huntaze", "u2", "direct", [1, 2])
    await client.send_to_user("other_hub", "u1", "elsewhere", [])
    await client.remove_user_from_group("huntaze", "vip", "u1")
    await client.send_to_group("huntaze", "vip", "promo", ["after leaving"])

    def targets(user: str, **kw: object) -> list[str]:
        return [m.target for m in signalr.for_user(user, "huntaze", **kw)]  # type: ignore[arg-type]

    assert targets("u1") == ["promo", "notice"]
    assert targets("u2") == ["notice", "direct"]
    assert targets("u2", direct=True) == ["direct"]
    assert [m.target for m in signalr.for_user("u1")] == ["promo", "notice", "elsewhere"]
    assert signalr.store.users() == {"u1", "u2"}


@pytest.mark.parametrize(
    ("path", "audience"),
    [
        ("/api/hubs/huntaze/:send", "all"),
        ("/api/hubs/huntaze/users/u9/:send", "user"),
        ("/api/hubs/huntaze/groups/g1/:send", "group"),
    ],
)
def test_standin_signalr_accepts_the_2022_06_01_paths(
    signalr: SignalRServer, path: str, audience: str
) -> None:
    url = signalr.url + path + "?api-version=2022-06-01"
    key = ConnectionString.parse(signalr.connection_string).access_key
    response = httpx.post(
        url,
        json={"target": "t", "arguments": []},
        headers={"Authorization": "Bearer " + make_token(key, url)},
    )
    assert response.status_code == 202
    (message,) = signalr.messages
    assert message.audience == audience and message.api_version == "2022-06-01"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        (lambda key, url: make_token("wrong-key", url), "signature"),
        (lambda key, url: make_token(key, url.replace("/u1", "/u2")), "audience"),
        (lambda key, url: make_token(key, url, lifetime=-60), "expired"),
        (lambda key, url: "not.a.jwt", "not a JWT"),
    ],
)
def test_standin_signalr_refuses_bad_tokens(signalr: SignalRServer, token, reason: str) -> None:
    url = signalr.url + "/api/v1/hubs/huntaze/users/u1"
    key = ConnectionString.parse(signalr.connection_string).access_key
    headers = {} if token is None else {"Authorization": "Bearer " + token(key, url)}
    response = httpx.post(url, json={"target": "t", "arguments": []}, headers=headers)
    assert response.status_code == 401
    assert reason in response.json()["message"]
    assert signalr.messages == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/hubs/huntaze", {"arguments": []}, 400),
        ("/api/v1/hubs/huntaze", {"target": "", "arguments": []}, 400),
        ("/api/v1/hubs/huntaze", {"target": "t", "arguments": {"no": "list"}}, 400),
        ("/api/v1/hubs/9bad-hub", {"target": "t"}, 400),
        ("/api/v1/hubs/huntaze/weird/x", {"target": "t"}, 404),
        ("/api/v1/nothing", {"target": "t"}, 404),
    ],
)
def test_standin_signalr_validates_requests(
    path: str, body: dict[str, object], status: int
) -> None:
    with SignalRServer(access_key=None) as open_server:
        assert httpx.post(open_server.url + path, json=body).status_code == status
        assert httpx.get(open_server.url + "/api/v1/health").status_code == 200
        assert open_server.messages == []


async def test_standin_signalr_injected_failures_and_query_api(
    signalr: SignalRServer, client: SignalRRestClient
) -> None:
    signalr.fail_next(1, 503)
    with pytest.raises(SignalRRestError) as caught:
        await client.send_to_user("huntaze", "u1", "t", [])
    assert caught.value.status == 503
    await client.send_to_user("huntaze", "u1", "t", ["ok"])
    listed = httpx.get(signalr.url + "/_standin/messages", params={"user": "u1"}).json()
    assert [m["arguments"] for m in listed] == [["ok"]]
    httpx.post(signalr.url + "/_standin/reset")
    assert signalr.messages == []


def test_standin_signalr_wait_times_out_with_what_arrived(signalr: SignalRServer) -> None:
    with pytest.raises(AssertionError, match="SignalR messages"):
        signalr.wait_for_user("nobody", timeout=0.05)


def test_standin_signalr_tokens_and_connection_strings() -> None:
    cs = ConnectionString.parse("Endpoint=https://x.service.signalr.net;AccessKey=abc;Version=1.0;")
    assert (cs.endpoint, cs.access_key, cs.version) == (
        "https://x.service.signalr.net",
        "abc",
        "1.0",
    )
    with_port = ConnectionString.parse("Endpoint=http://localhost;Port=8888;AccessKey=k;")
    assert with_port.endpoint == "http://localhost:8888"
    with pytest.raises(ValueError):
        ConnectionString.parse("Endpoint=http://x")
    token = make_token("k", "http://h/api/v1/hubs/a", now=1000, lifetime=60)
    assert verify_token(token, "k", {"http://h/api/v1/hubs/a/"}, now=1059)["exp"] == 1060
    with pytest.raises(TokenError, match="expired"):
        verify_token(token, "k", {"http://h/api/v1/hubs/a"}, now=1061)
