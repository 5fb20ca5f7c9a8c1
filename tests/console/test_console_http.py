"""The console over HTTP on a running emulator, with the SDK sending and receiving."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.console import PanelTable
from emulator.servicebus.console.web import TOKEN_HEADER
from emulator.servicebus.replay_markers import REPLAY_OF

from .test_console_model import topology


@pytest.fixture
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(topology()) as emu:
        yield emu


@pytest.fixture
def http(emulator: ServiceBusEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.console_url.removesuffix("/console")) as client:
        yield client


@pytest.fixture
def sb(emulator: ServiceBusEmulator) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        yield client


def token_of(page: str) -> str:
    found = re.search(r'"X-Console-Token": "([^"]+)"', page)
    assert found, "the page carries its token for htmx"
    return found.group(1)


def post(http: httpx.Client, path: str, data: dict[str, object]) -> httpx.Response:
    token = token_of(http.get("/console").text)
    return http.post(path, data=data, headers={TOKEN_HEADER: token})


def test_the_page_lists_entities_and_the_root_leads_to_it(
    http: httpx.Client, sb: ServiceBusClient
) -> None:
    with sb.get_queue_sender("q") as sender:
        sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    page = http.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-path="t/Subscriptions/red"' in page.text
    assert "namespace sbemulatorns · " in page.text
    assert "color = &#39;red&#39;" in page.text  # rules as SQL, escaped
    fragment = http.get("/console/entities").text
    assert re.search(r'data-path="q".*?class="count active"><a[^>]*>2<', fragment, re.S)
    root = http.get("/", headers={"Accept": "text/html"})
    assert root.status_code == 303 and root.headers["location"] == "/console"
    assert http.get("/favicon.ico").status_code == 204
    assert http.get("/console/static/htmx.min.js").headers["content-type"] == "text/javascript"
    assert http.get("/console/static/nope.js").status_code == 404


def test_dead_letters_show_their_reason_and_resubmit_through_the_sdk(
    http: httpx.Client, sb: ServiceBusClient
) -> None:
    with sb.get_queue_sender("q") as sender:
        sender.send_messages(ServiceBusMessage('{"jobId": "j1"}', message_id="j1"))
    with sb.get_queue_receiver("q", max_wait_time=5) as receiver:
        (got,) = receiver.receive_messages(1, max_wait_time=5)
        receiver.dead_letter_message(got, reason="RATE_LIMIT", error_description="429 x5")
    listing = http.get("/console/messages", params={"path": "q", "view": "dead-letter"}).text
    assert "RATE_LIMIT (1)" in listing and 'class="reason">RATE_LIMIT<' in listing
    seq = int(re.search(r'data-seq="(\d+)"', listing).group(1))  # type: ignore[union-attr]
    detail = http.get("/console/message", params={"address": "q/$DeadLetterQueue", "seq": seq})
    assert "429 x5" in detail.text and "&#34;jobId&#34;: &#34;j1&#34;" in detail.text

    answer = post(http, "/console/resubmit", {"address": "q/$DeadLetterQueue", "seq": [seq]})
    assert answer.status_code == 200 and "1 of 1 resubmitted" in answer.text
    assert answer.headers["hx-trigger"] == "console-changed"
    with sb.get_queue_receiver("q", max_wait_time=5) as receiver:
        (copy,) = receiver.receive_messages(1, max_wait_time=5)
        assert str(copy) == '{"jobId": "j1"}'
        assert (
            copy.application_properties[REPLAY_OF.encode()] == f"q/$DeadLetterQueue:{seq}".encode()
        )
        assert copy.dead_letter_reason is None
        receiver.complete_message(copy)
    with sb.get_queue_receiver("q", sub_queue="deadletter", max_wait_time=1) as dlq:
        assert dlq.peek_messages(5) == []


def test_advancing_the_clock_makes_a_scheduled_message_active(
    http: httpx.Client, sb: ServiceBusClient, emulator: ServiceBusEmulator
) -> None:
    due = datetime.now(UTC) + timedelta(minutes=5)
    with sb.get_queue_sender("q") as sender:
        sender.schedule_messages(ServiceBusMessage("later"), due)
    scheduled = http.get("/console/messages", params={"path": "q", "view": "scheduled"}).text
    assert 'class="due"' in scheduled
    answer = post(http, "/console/clock/advance", {"amount": "5m 1s"})
    assert answer.status_code == 200 and "moved 5m 1s" in answer.text
    assert emulator.clock.offset == pytest.approx(301)
    assert (
        "later" not in http.get("/console/messages", params={"path": "q", "view": "scheduled"}).text
    )
    with sb.get_queue_receiver("q", max_wait_time=5) as receiver:
        (got,) = receiver.receive_messages(1, max_wait_time=5)
        assert str(got) == "later"


def test_cancel_and_purge(http: httpx.Client, sb: ServiceBusClient) -> None:
    due = datetime.now(UTC) + timedelta(hours=1)
    with sb.get_topic_sender("t") as sender:
        (seq,) = sender.schedule_messages(
            ServiceBusMessage("x", application_properties={"color": "red"}), due
        )
    answer = post(http, "/console/cancel", {"path": "t", "seq": [seq]})
    assert "cancelled 1 scheduled message(s) on t" in answer.text
    with sb.get_queue_sender("q") as sender:
        sender.send_messages([ServiceBusMessage(str(n)) for n in range(3)])
    answer = post(http, "/console/purge", {"path": "q", "view": "active"})
    assert "purged 3 message(s) from q (active)" in answer.text
    with sb.get_queue_receiver("q", max_wait_time=1) as receiver:
        assert receiver.peek_messages(5) == []


def test_faults_are_added_and_cleared(http: httpx.Client, emulator: ServiceBusEmulator) -> None:
    added = post(
        http,
        "/console/faults",
        {"operation": "send", "effect": "server-busy", "entity": "q", "next_n": "2"},
    )
    assert added.status_code == 200 and "added fault f1" in added.text
    assert [(r.operation, r.entity, r.next_n) for r in emulator.faults.rules] == [("send", "q", 2)]
    bad = post(http, "/console/faults", {"operation": "send", "effect": "lock-lost"})
    assert bad.status_code == 400 and "lock-lost only applies to settle" in bad.text
    nan = post(http, "/console/faults", {"operation": "send", "effect": "timeout", "next_n": "x"})
    assert nan.status_code == 400 and "next_n: &#39;x&#39; is not a number" in nan.text
    assert post(http, "/console/faults/remove", {"id": "f9"}).status_code == 404
    assert "removed fault f1" in post(http, "/console/faults/remove", {"id": "f1"}).text
    post(http, "/console/faults", {"operation": "receive", "effect": "timeout"})
    assert "cleared 1 fault rule(s)" in post(http, "/console/faults/clear", {}).text
    assert emulator.faults.rules == []


def test_changes_need_the_page_token(http: httpx.Client, sb: ServiceBusClient) -> None:
    with sb.get_queue_sender("q") as sender:
        sender.send_messages(ServiceBusMessage("keep me"))
    forged = http.post("/console/purge", data={"path": "q", "view": "active"})
    assert forged.status_code == 403 and "page token" in forged.text
    stale = http.post(
        "/console/purge", data={"path": "q", "view": "active"}, headers={TOKEN_HEADER: "old"}
    )
    assert stale.status_code == 403
    with sb.get_queue_receiver("q", max_wait_time=1) as receiver:
        assert len(receiver.peek_messages(5)) == 1


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "says"),
    [
        ("GET", "/console/messages", None, 400, "path: missing"),
        ("GET", "/console/messages?path=q&view=sideways", None, 400, "view: &#39;sideways&#39;"),
        ("GET", "/console/messages?path=nope", None, 404, "no queue, topic or subscription"),
        ("GET", "/console/messages?path=q&from=x", None, 400, "from: &#39;x&#39; is not a whole"),
        ("GET", "/console/message?address=q", None, 400, "address and seq"),
        ("GET", "/console/message?address=q&seq=4", None, 404, "holds no message 4"),
        ("GET", "/console/nowhere", None, 404, "no such page"),
        ("GET", "/console/purge", None, 405, "no such page"),
        ("GET", "/console/panels/none", None, 404, "no panel"),
        ("POST", "/console/clock/advance", {"amount": "soon"}, 400, "not a duration"),
        ("POST", "/console/resubmit", {"address": "q/$DeadLetterQueue"}, 400, "nothing selected"),
        ("POST", "/console/resubmit", {"address": "q", "seq": "1"}, 400, "not a dead-letter"),
        ("POST", "/console/purge", {"path": "q", "view": "up"}, 400, "view: &#39;up&#39;"),
    ],
)
def test_bad_requests_get_a_readable_notice(
    http: httpx.Client,
    method: str,
    path: str,
    data: dict[str, str] | None,
    status: int,
    says: str,
) -> None:
    answer = post(http, path, data or {}) if method == "POST" else http.get(path)
    assert answer.status_code == status, answer.text
    assert says in answer.text and 'class="notice bad"' in answer.text


def test_panels_of_the_embedding_process(http: httpx.Client, emulator: ServiceBusEmulator) -> None:
    emulator.console.add_panel(
        "jobs",
        lambda: PanelTable("Jobs", ("id", "status"), [("j1", "completed")], note="from test"),
    )
    emulator.console.add_panel("broken", lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    assert 'hx-get="/console/panels/jobs"' in http.get("/console").text
    jobs = http.get("/console/panels/jobs").text
    assert "<td>j1</td><td>completed</td>" in jobs and "from test" in jobs
    assert "this panel failed: ZeroDivisionError" in http.get("/console/panels/broken").text
    with pytest.raises(ValueError, match="lower-case"):
        emulator.console.add_panel("Bad Name", lambda: PanelTable("x", (), ()))


def test_read_only_console_shows_and_changes_nothing(sb: ServiceBusClient) -> None:
    with ServiceBusEmulator(topology(), console_writable=False) as emu:
        with httpx.Client(base_url=emu.console_url.removesuffix("/console")) as client:
            page = client.get("/console").text
            assert "read-only" in page and 'hx-post="/console/clock/advance"' not in page
            with ServiceBusClient.from_connection_string(emu.connection_string) as own:
                with own.get_queue_sender("q") as sender:
                    sender.send_messages(ServiceBusMessage("x"))
            listing = client.get("/console/messages", params={"path": "q"}).text
            assert "Purge" not in listing and 'name="seq"' not in listing
            refused = client.post(
                "/console/purge",
                data={"path": "q", "view": "active"},
                headers={TOKEN_HEADER: token_of(page)},
            )
            assert refused.status_code == 403 and "read-only console" in refused.text
            assert emu.broker.queue("q").store.count() == 1


def test_off_loopback_the_console_is_read_only_unless_asked() -> None:
    assert not ServiceBusEmulator(topology(), host="0.0.0.0").console.writable
    assert ServiceBusEmulator(topology(), host="::1").console.writable
    assert ServiceBusEmulator(topology(), host="localhost").console.writable
    assert ServiceBusEmulator(topology(), host="0.0.0.0", console_writable=True).console.writable
    reason = ServiceBusEmulator(topology(), host="10.1.2.3").console.read_only_reason
    assert "bound to 10.1.2.3" in reason and "--console-write" in reason
