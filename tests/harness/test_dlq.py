"""DLQ export and replay (`harness/dlq/`, `harness dlq ...`) through the real SDK, against the
emulator loaded with the project's Config.json. Dead letters are made the way workers make them:
receive, then `dead_letter_message(reason=...)`."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType
from azure.servicebus.management import ServiceBusAdministrationClient

from emulator.servicebus import PROJECT_CONFIG, ServiceBusEmulator
from emulator.servicebus.admin.control_client import ControlClient
from emulator.servicebus.faults import FaultRule
from harness import dlq
from harness.cli import main

TOPIC = "huntaze-jobs"
CHAT = "chat-suggestions"
CHAT_DLQ = f"{TOPIC}/Subscriptions/{CHAT}/$DeadLetterQueue"
SOURCE = dlq.DeadLetterSource(TOPIC, CHAT)
CHAT_ARGS = ("--topic", TOPIC, "--subscription", CHAT)
EVENT_SUBSCRIPTIONS = ["notify-signalr", "notify-email", "notify-webhook", "metrics"]


class Bus:
    """SDK actions and control-API inspection of the module's emulator.

    Senders are kept for the whole module and state is read through the control API, because
    each SDK link costs about a second (the sync SDK polls while it attaches and joins its
    keep-alive thread when it closes)."""

    def __init__(self, emu: ServiceBusEmulator) -> None:
        self.emu = emu
        self.client = ServiceBusClient.from_connection_string(emu.connection_string)
        self.control = ControlClient(emu.control_url)
        self._senders: dict[str, ServiceBusSender] = {}

    def send(
        self, topic: str, messages: Sequence[ServiceBusMessage | AmqpAnnotatedMessage]
    ) -> None:
        if topic not in self._senders:
            self._senders[topic] = self.client.get_topic_sender(topic).__enter__()
        self._senders[topic].send_messages(list(messages))

    def dead_letter(
        self,
        messages: Sequence[ServiceBusMessage | AmqpAnnotatedMessage],
        subscription: str = CHAT,
        topic: str = TOPIC,
    ) -> None:
        """Send, receive and dead-letter, as a worker that rejects a job does."""
        self.send(topic, messages)
        with self.client.get_subscription_receiver(topic, subscription) as receiver:
            for message in receive(receiver, len(messages)):
                receiver.dead_letter_message(
                    message,
                    reason="ValidationFailed",
                    error_description=f"bad {message.message_id}",
                )

    def receive(
        self, count: int, subscription: str = CHAT, topic: str = TOPIC
    ) -> list[ServiceBusReceivedMessage]:
        """``count`` messages from the live subscription, completed."""
        with self.client.get_subscription_receiver(topic, subscription) as receiver:
            got = receive(receiver, count)
            for message in got:
                receiver.complete_message(message)
        return got

    def dead(self, subscription: str = CHAT, topic: str = TOPIC) -> list[tuple[Any, ...]]:
        """(sequence number, delivery count, locked, message id) of each dead letter."""
        return self.state(f"{topic}/Subscriptions/{subscription}/$DeadLetterQueue")

    def live(self, subscription: str = CHAT, topic: str = TOPIC) -> list[tuple[Any, ...]]:
        return self.state(f"{topic}/Subscriptions/{subscription}")

    def state(self, path: str) -> list[tuple[Any, ...]]:
        return [
            (
                m["sequence_number"],
                m["delivery_count"],
                m["locked"],
                m["system_properties"].get("MessageId"),
            )
            for m in self.control.peek(path)
        ]

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self.client.close()
        self.control.close()


@pytest.fixture(scope="module")
def module_bus() -> Iterator[Bus]:
    with ServiceBusEmulator.from_config(PROJECT_CONFIG) as emu:
        bus = Bus(emu)
        yield bus
        bus.close()


@pytest.fixture
def bus(module_bus: Bus) -> Iterator[Bus]:
    """The module's emulator, emptied and without faults after each test."""
    yield module_bus
    emu = module_bus.emu
    emu.call(emu.faults.clear)
    module_bus.control.reset()


@pytest.fixture
def cs(bus: Bus) -> str:
    return bus.emu.connection_string


@pytest.fixture
def sb(bus: Bus) -> ServiceBusClient:
    return bus.client


def job(job_type: str = "chat.suggest", **props: object) -> ServiceBusMessage:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    return ServiceBusMessage(
        json.dumps({"jobId": job_id, "creatorId": "c1"}),
        message_id=f"{job_id}:0",
        content_type="application/json",
        subject="job",
        correlation_id=job_id,
        application_properties={"jobType": job_type, **props},
    )


def receive(receiver: Any, count: int) -> list[ServiceBusReceivedMessage]:
    got: list[ServiceBusReceivedMessage] = []
    while len(got) < count:
        batch = receiver.receive_messages(max_message_count=count - len(got), max_wait_time=5)
        assert batch, f"expected {count} messages, got {len(got)}"
        got.extend(batch)
    return got


def ids(messages: Sequence[ServiceBusMessage | tuple[Any, ...]]) -> list[str | None]:
    return [m[3] if isinstance(m, tuple) else m.message_id for m in messages]


def props(message: ServiceBusReceivedMessage) -> dict[str, object]:
    """Application properties as sent (the SDK hands back strings as bytes)."""
    return {
        k.decode(): v.decode() if isinstance(v, bytes) else v
        for k, v in (message.application_properties or {}).items()
    }


def cli(command: str, connection_string: str, *argv: str) -> int:
    return main(["dlq", command, "--connection-string", connection_string, *argv])


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """stderr of a CLI call that must fail with status 1."""
    capsys.readouterr()
    assert cli(*argv) == 1
    return capsys.readouterr().err


# -- export -----------------------------------------------------------------------------------


def test_export_only_peeks_and_the_file_round_trips(bus: Bus, cs: str, tmp_path: Path) -> None:
    trace = uuid.uuid4()
    rich = job(attempt=0, score=0.5, urgent=True, nothing=None, trace=trace)
    rich.time_to_live = timedelta(minutes=5)
    binary = ServiceBusMessage(b"\x00\xff\xfe", application_properties={"jobType": "chat.suggest"})
    bus.dead_letter([rich, binary])
    before = bus.dead()
    out = tmp_path / "dlq.jsonl"

    assert cli("export", cs, *CHAT_ARGS, "--out", str(out)) == 0
    assert cli("export", cs, *CHAT_ARGS, "--out", str(tmp_path / "again.jsonl")) == 0

    # Nothing locked, no delivery counted: the SDK peeks the same as before, twice over.
    assert bus.dead() == before and [row[2] for row in before] == [False, False]
    peeked = list(dlq.peek_dead_letters(bus.client, SOURCE))
    assert [(m.sequence_number, m.delivery_count) for m in peeked] == [r[:2] for r in before]
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert first["entity_path"] == second["entity_path"] == CHAT_DLQ
    assert (first["sequence_number"], first["delivery_count"]) == before[0][:2]
    assert json.loads(first["body"])["creatorId"] == "c1" and first["body_encoding"] == "text"
    assert first["message_id"] == rich.message_id
    assert first["correlation_id"] == rich.correlation_id
    assert (first["subject"], first["content_type"]) == ("job", "application/json")
    assert first["time_to_live_seconds"] == 300
    assert first["dead_letter_reason"] == "ValidationFailed"
    assert first["dead_letter_error_description"] == f"bad {rich.message_id}"
    assert datetime.fromisoformat(first["enqueued_time"]).tzinfo is not None
    assert first["application_properties"] == {
        "jobType": "chat.suggest",
        "attempt": 0,
        "score": 0.5,
        "urgent": True,
        "nothing": None,
        "trace": {"$type": "uuid", "value": str(trace)},
    }
    assert second["body_encoding"] == "base64"
    assert base64.b64decode(second["body"]) == b"\x00\xff\xfe"
    for line in (first, second):
        assert dlq.DeadLetterRecord.from_json(line).to_json() == line
    assert dlq.DeadLetterRecord.from_json(first).application_properties["trace"] == trace


def test_export_to_stdout_honours_max(
    bus: Bus, cs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bus.dead_letter([job(), job(), job()])

    assert cli("export", cs, *CHAT_ARGS, "--max", "2") == 0

    out, err = capsys.readouterr()
    assert [json.loads(line)["message_id"] for line in out.splitlines()] == ids(bus.dead())[:2]
    assert f"exported 2 dead letter(s) from {CHAT_DLQ}" in err


def test_typed_values_survive_json() -> None:
    values = [
        None,
        True,
        7,
        -(2**63),
        1.25,
        "text",
        b"\x00\xff",
        uuid.uuid4(),
        datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        [1, "a", [b"b"]],
        {"k": 1, 2: "v"},
    ]
    for value in values:
        encoded = json.loads(json.dumps(dlq.encode_value(value)))
        assert dlq.decode_value(encoded) == value
    assert math.isnan(dlq.decode_value(json.loads(json.dumps(dlq.encode_value(math.nan)))))
    with pytest.raises(ValueError, match=r"props\.x: unknown \$type 'bogus'"):
        dlq.decode_value({"$type": "bogus", "value": 1}, "props.x")
    with pytest.raises(ValueError, match="invalid uuid value"):
        dlq.decode_value({"$type": "uuid", "value": "nope"})


# -- replay from the dead-letter queue --------------------------------------------------------


def test_replay_moves_dead_letters_back_and_empties_the_dlq(
    bus: Bus, cs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    originals = [job(attempt=2, trace=uuid.uuid4()), job()]
    originals[0].time_to_live = timedelta(minutes=7)
    bus.dead_letter(originals)

    report = dlq.replay_dead_letters(bus.client, SOURCE)

    assert (report.replayed, report.skipped, report.failed, report.ok) == (2, 0, 0, True)
    assert bus.dead() == []
    # The topic's rules route them again: back to chat-suggestions and nowhere else.
    assert [bus.live(sub) for sub in ("video-analysis", "content-analysis")] == [[], []]
    replayed = bus.receive(2)
    for original, copy in zip(originals, replayed, strict=True):
        assert str(copy) == str(original)
        assert copy.message_id == original.message_id
        assert copy.correlation_id == original.correlation_id
        assert (copy.subject, copy.content_type) == ("job", "application/json")
        stamped = props(copy)
        replayed_at = datetime.fromisoformat(stamped.pop("x-replayed-at"))
        assert replayed_at.tzinfo is not None
        replay_of = stamped.pop("x-replay-of")
        assert replay_of.startswith(f"{CHAT_DLQ}:") and int(replay_of.rsplit(":", 1)[1]) > 0
        assert stamped == {
            **(original.application_properties or {}),
            "x-replayed-from": CHAT_DLQ,
            "x-replay-count": 1,
        }
    assert replayed[0].application_properties != replayed[1].application_properties
    assert replayed[0].time_to_live == timedelta(minutes=7)

    # A second death and a second replay (through the CLI) count up.
    bus.dead_letter([replayed[0]])
    assert cli("replay", cs, *CHAT_ARGS) == 0
    assert "replayed 1, skipped 0, failed 0" in capsys.readouterr().out
    [again] = bus.receive(1)
    assert props(again)["x-replay-count"] == 2 and "DeadLetterReason" not in props(again)


def test_where_and_message_id_select_and_lock_no_further_than_needed(
    bus: Bus, cs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = [job(priority=p) for p in ("high", "low", "high", "low")]
    bus.dead_letter(jobs)
    before = {row[3]: row[1] for row in bus.dead()}

    assert (
        cli(
            "replay",
            cs,
            *CHAT_ARGS,
            "--where",
            "priority = 'high' AND DeadLetterReason = 'ValidationFailed'",
        )
        == 0
    )

    out = capsys.readouterr().out
    assert "replayed 2, skipped 2, failed 0" in out
    [row] = [line for line in out.splitlines() if line.count("│") == 6 and "2" in line]
    assert [cell.strip() for cell in row.split("│")[2:6]] == ["2", "2", "0", "0"]  # the table
    left = {row[3]: row[1] for row in bus.dead()}
    assert list(left) == ids([jobs[1], jobs[3]])
    # jobs[1] had to be locked to get past it (then abandoned); jobs[3] was never touched.
    assert left[jobs[1].message_id] == before[jobs[1].message_id] + 1
    assert left[jobs[3].message_id] == before[jobs[3].message_id]
    assert ids(bus.live()) == ids([jobs[0], jobs[2]])

    assert cli("replay", cs, *CHAT_ARGS, "--message-id", str(jobs[3].message_id)) == 0
    assert ids(bus.dead()) == ids([jobs[1]])
    assert "--where: " in _cli_error(
        capsys,
        "replay",
        cs,
        *CHAT_ARGS,
        "--where",
        "priority = ",
    )


def test_dry_run_changes_nothing(bus: Bus, cs: str, capsys: pytest.CaptureFixture[str]) -> None:
    bus.dead_letter([job(), job()])
    before = bus.dead()

    assert cli("replay", cs, *CHAT_ARGS, "--dry-run") == 0

    out = capsys.readouterr().out
    assert out.count("would-replay") == 2 and "would replay 2, skipped 0, failed 0" in out
    assert bus.dead() == before
    assert bus.live() == []


def test_replay_to_a_missing_entity_fails_before_touching_anything(
    bus: Bus, cs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bus.dead_letter([job(), job()])
    before = bus.dead()

    err = _cli_error(
        capsys,
        "replay",
        cs,
        *CHAT_ARGS,
        "--to",
        "no-such-topic",
        "--retries",
        "0",
    )

    assert "cannot send to no-such-topic; nothing was changed: not found (404)" in err
    assert bus.dead() == before


def test_export_redacts_named_fields_and_refuses_what_it_cannot(
    bus: Bus, cs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bus.dead_letter([job(email="ada@example.com")])
    out = tmp_path / "redacted.jsonl"
    argv = ("--out", str(out), "--redact", "body.creatorId", "--redact", "prop:email")
    assert cli("export", cs, *CHAT_ARGS, *argv) == 0
    [line] = [json.loads(text) for text in out.read_text().splitlines()]
    assert json.loads(line["body"])["creatorId"] == "<redacted>"
    assert line["application_properties"]["email"] == "<redacted>"
    assert line["application_properties"]["jobType"] == "chat.suggest"
    assert "ada@example.com" not in out.read_text()

    bus.dead_letter(
        [ServiceBusMessage("not json", application_properties={"jobType": "chat.suggest"})]
    )
    refused = tmp_path / "refused.jsonl"
    err = _cli_error(capsys, "export", cs, *CHAT_ARGS, "--out", str(refused), "--redact", "body.a")
    assert "the body is not JSON; cannot redact its fields" in err
    assert not refused.exists() and not list(tmp_path.glob(".refused*"))  # nothing half-written
    assert len(bus.dead()) == 2  # and export never changes the DLQ


def test_a_failing_send_abandons_and_loses_nothing(bus: Bus, cs: str) -> None:
    jobs = [job(), job(), job()]
    bus.dead_letter(jobs)
    emu = bus.emu
    emu.call(lambda: emu.faults.add(FaultRule("send", "server-busy", entity=TOPIC)))
    with dlq.client(cs, retries=0) as sb:
        report = dlq.replay_dead_letters(sb, SOURCE)

        assert (report.replayed, report.failed, report.untouched, report.ok) == (0, 1, 2, False)
        assert "send failed, left in the DLQ" in report.outcomes[0].detail
        assert "ServiceBusServerBusyError" in report.outcomes[0].detail
        dead = bus.dead()
        assert ids(dead) == ids(jobs) and not any(row[2] for row in dead)  # all unlocked again
        assert bus.live() == []

        emu.call(emu.faults.clear)
        report = dlq.replay_dead_letters(sb, SOURCE)
    assert (report.replayed, report.ok) == (3, True)
    assert bus.dead() == []
    assert ids(bus.live()) == ids(jobs)


def test_faults_mid_replay_then_a_rerun_lose_nothing_and_resend_only_what_was_unsettled(
    bus: Bus, cs: str
) -> None:
    """Issue 12, point 4. Sends answer server-busy and completes lose their lock or drop the
    connection at random (seeded) in the middle of a replay; after the faults stop and the
    locks they stranded lapse, a rerun finishes. No dead letter is lost; a dead letter is
    sent twice only where the report said its copy went out but it could not be completed,
    and every copy of one dead letter carries the same replay marker, so the processor runs
    the job once (it restarts a job once per marker: workers/common/processor.py)."""
    jobs = [job() for _ in range(16)]
    bus.dead_letter(jobs)
    emu = bus.emu
    rules = [
        FaultRule("send", "server-busy", entity=TOPIC, probability=0.15),
        FaultRule("settle", "lock-lost", entity=CHAT_DLQ, probability=0.2),
        FaultRule("settle", "connection-drop", entity=CHAT_DLQ, probability=0.1),
    ]

    def arm() -> None:
        emu.faults.random = random.Random(12).random
        for rule in rules:
            emu.faults.add(rule)

    emu.call(arm)
    sent_unsettled: list[str | None] = []
    reports = []
    with dlq.client(cs, retries=0) as sb:
        for attempt in range(8):
            report = dlq.replay_dead_letters(sb, SOURCE, receive_wait=1)
            reports.append(report)
            sent_unsettled += [
                o.message_id for o in report.outcomes if "the copy WAS sent" in o.detail
            ]
            if attempt == 1:
                emu.call(emu.faults.clear)
            emu.clock.advance(61)  # past the 1-minute lock a dropped link stranded
            if not bus.dead():
                break
    assert not reports[0].ok, "the faults did not hit the first replay: the test proves nothing"
    assert bus.dead() == []  # every dead letter was replayed in the end

    copies = bus.receive(len(jobs) + len(sent_unsettled))
    per_id: dict[str | None, list[object]] = {}
    for copy in copies:
        per_id.setdefault(copy.message_id, []).append(props(copy)["x-replay-of"])
    assert sorted(per_id, key=str) == sorted(ids(jobs), key=str)  # none lost, none invented
    for message_id, markers in per_id.items():
        assert len(markers) == 1 + sent_unsettled.count(message_id), message_id
        assert len(set(markers)) == 1, markers  # one marker per dead letter: runs once
    assert bus.live() == []  # and nothing beyond those copies
    assert all(rule.fired for rule in rules), [(r.effect, r.fired) for r in rules]


def test_a_deduplicating_target_is_skipped_unless_ids_are_renewed(
    bus: Bus, cs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ServiceBusAdministrationClient.from_connection_string(
        cs, connection_verify=str(bus.emu.ca_bundle)
    ) as admin:
        admin.create_topic(
            "dedup-jobs",
            requires_duplicate_detection=True,
            duplicate_detection_history_time_window=timedelta(minutes=10),
        )
        admin.create_subscription("dedup-jobs", "all")
        try:
            original = job()
            bus.dead_letter([original], topic="dedup-jobs", subscription="all")
            args = [cs, "--topic", "dedup-jobs", "--subscription", "all"]

            assert cli("replay", *args) == 0
            out = capsys.readouterr().out
            assert "requires duplicate detection" in out and "--new-message-id" in out
            assert "replayed 0, skipped 1, failed 0" in out
            assert ids(bus.dead("all", "dedup-jobs")) == ids([original])

            assert cli("replay", *args, "--new-message-id") == 0
            assert bus.dead("all", "dedup-jobs") == []
            [copy] = bus.receive(1, "all", "dedup-jobs")
            assert copy.message_id != original.message_id
            assert props(copy)["x-original-message-id"] == original.message_id
        finally:
            admin.delete_topic("dedup-jobs")


async def test_async_clients_see_replayed_jobs(cs: str) -> None:
    analysis = "content-analysis"
    async with AsyncServiceBusClient.from_connection_string(cs) as client:
        async with client.get_topic_sender(TOPIC) as sender:
            await sender.send_messages([job("content.analyze", n=i) for i in range(2)])
        async with client.get_subscription_receiver(TOPIC, analysis) as receiver:
            got: list[ServiceBusReceivedMessage] = []
            while len(got) < 2:
                got += await receiver.receive_messages(max_message_count=2, max_wait_time=5)
            for message in got:
                await receiver.dead_letter_message(message, reason="AiTimeout")

        argv = ["replay", cs, "--topic", TOPIC, "--subscription", analysis]
        assert await asyncio.to_thread(cli, *argv) == 0

        async with client.get_subscription_receiver(
            TOPIC, analysis, sub_queue=ServiceBusSubQueue.DEAD_LETTER
        ) as receiver:
            assert await receiver.peek_messages(max_message_count=10) == []
        async with client.get_subscription_receiver(TOPIC, analysis) as receiver:
            copies: list[ServiceBusReceivedMessage] = []
            while len(copies) < 2:
                copies += await receiver.receive_messages(max_message_count=2, max_wait_time=5)
            for copy in copies:
                await receiver.complete_message(copy)
    assert sorted(props(c)["n"] for c in copies) == [0, 1]  # type: ignore[type-var]
    assert {props(c)["x-replayed-from"] for c in copies} == {
        f"{TOPIC}/Subscriptions/{analysis}/$DeadLetterQueue"
    }


def test_value_bodies_replay_as_value_bodies(bus: Bus) -> None:
    message = AmqpAnnotatedMessage(
        value_body={"kind": "legacy", "n": 3},
        application_properties={"jobType": "chat.suggest"},
    )
    bus.dead_letter([message])
    [peeked] = dlq.peek_dead_letters(bus.client, SOURCE)
    assert dlq.DeadLetterRecord.from_message(peeked, CHAT_DLQ).to_json()["body"] == {
        "$type": "map",
        "value": [["kind", "legacy"], ["n", 3]],
    }

    assert dlq.replay_dead_letters(bus.client, SOURCE).replayed == 1

    [copy] = bus.receive(1)
    assert copy.body_type == AmqpMessageBodyType.VALUE
    assert copy.body == {b"kind": b"legacy", b"n": 3}  # the SDK decodes strings as bytes


# -- replay from a file -----------------------------------------------------------------------


def test_replay_from_an_export_file(
    bus: Bus, cs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = [job(), job()]
    bus.dead_letter(jobs)
    out = tmp_path / "dlq.jsonl"
    assert cli("export", cs, *CHAT_ARGS, "--out", str(out)) == 0

    assert cli("replay", cs, "--from", str(out)) == 0

    assert f"replayed 2, skipped 0, failed 0 (from {out})" in capsys.readouterr().out
    assert ids(bus.dead()) == ids(jobs)  # a file replay leaves the dead-letter queue alone
    copies = bus.receive(2)
    assert ids(copies) == ids(jobs)
    assert all(props(c)["x-replayed-from"] == CHAT_DLQ for c in copies)

    # Another topic re-applies *its* rules: the events topic fans out to all four subscribers.
    assert cli("replay", cs, "--from", str(out), "--to", "huntaze-events", "--max", "1") == 0
    for subscription in EVENT_SUBSCRIPTIONS:
        assert ids(bus.live(subscription, "huntaze-events")) == ids(jobs[:1])


def test_a_file_with_bad_lines_sends_nothing_unless_told(
    bus: Bus, cs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bus.dead_letter([job(), job()])
    out = tmp_path / "dlq.jsonl"
    assert cli("export", cs, *CHAT_ARGS, "--out", str(out)) == 0
    bad_encoding = json.dumps({"entity_path": CHAT_DLQ, "body_encoding": "rot13", "body": "x"})
    out.write_text(out.read_text() + "{not json\n" + bad_encoding + "\n")

    err = _cli_error(capsys, "replay", cs, "--from", str(out))

    assert "2 bad lines, nothing sent" in err
    assert "line 3: Expecting property name" in err
    assert "line 4: body_encoding: 'rot13' is not one of" in err
    assert bus.live() == []

    assert cli("replay", cs, "--from", str(out), "--skip-bad") == 0
    captured = capsys.readouterr()
    assert "replayed 2, skipped 0, failed 0" in captured.out
    assert "skipped line 3" in captured.err
    assert len(bus.live()) == 2
    assert "cannot read" in _cli_error(
        capsys, "replay", cs, "--from", str(tmp_path / "missing.jsonl")
    )


# -- list and error paths ---------------------------------------------------------------------


def test_list_counts_dead_letters_per_subscription(
    bus: Bus, cs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bus.dead_letter([job(), job()])
    bus.dead_letter([job("video.analysis")], subscription="video-analysis")

    assert cli("list", cs) == 0  # finds the emulator's CA itself

    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert rows[f"{TOPIC}/Subscriptions/{CHAT}"] == ["0", "2", "0"]
    assert rows[f"{TOPIC}/Subscriptions/video-analysis"] == ["0", "1", "0"]
    assert rows["huntaze-events/Subscriptions/metrics"] == ["0", "0", "0"]

    assert cli("list", cs, "--topic", TOPIC, "--json", "--ca-bundle", str(bus.emu.ca_bundle)) == 0
    counts = {c["entity_path"]: c["dead_letter"] for c in json.loads(capsys.readouterr().out)}
    assert counts == {
        f"{TOPIC}/Subscriptions/{CHAT}": 2,
        f"{TOPIC}/Subscriptions/content-analysis": 0,
        f"{TOPIC}/Subscriptions/content-suggestions": 0,
        f"{TOPIC}/Subscriptions/video-analysis": 1,
        f"{TOPIC}/Subscriptions/unrouted": 0,
    }


def test_error_paths_say_what_is_wrong(cs: str, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "Endpoint=sb://127.0.0.1;SharedAccessKey=TOP-SECRET"
    err = _cli_error(capsys, "list", secret)
    assert "malformed connection string" in err and "TOP-SECRET" not in err

    err = _cli_error(capsys, "list", cs, "--topic", "nope")
    assert "cannot list topic 'nope': not found (404)" in err

    err = _cli_error(
        capsys,
        "export",
        cs,
        "--topic",
        TOPIC,
        "--subscription",
        "nope",
        "--retries",
        "0",
    )
    assert f"cannot read {TOPIC}/Subscriptions/nope/$DeadLetterQueue: not found (404)" in err

    wrong_key = cs.replace("SAS_KEY_VALUE", "not-the-key")
    err = _cli_error(
        capsys,
        "export",
        wrong_key,
        "--topic",
        TOPIC,
        "--subscription",
        CHAT,
        "--retries",
        "0",
    )
    assert "unauthorized (401)" in err

    with pytest.raises(SystemExit) as usage:
        cli("export", cs, "--topic", TOPIC)
    assert usage.value.code == 2
    assert "--topic T --subscription S, or --queue Q" in capsys.readouterr().err
