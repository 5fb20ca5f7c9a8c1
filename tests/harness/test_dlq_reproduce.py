"""`harness dlq reproduce`: dead letters run through the real handler on a local stack, with
the AI stand-in answering normally or with a fault, each attempt of a retry ladder followed on
the emulator's clock."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.cli import main
from harness.dlq import DeadLetterRecord, DlqError
from harness.dlq.progress import print_reproduction, reproduce_table
from harness.dlq.reproduce import (
    AI_TIMEOUT_SECONDS,
    AIFaultPlan,
    Attempt,
    Reproducer,
    Reproduction,
    capturing_logs,
)
from harness.system import LocalSystem, SystemPorts
from standins.ai import AIBehaviour

CHAT_DLQ = "huntaze-jobs/Subscriptions/chat-suggestions/$DeadLetterQueue"
CHAT_LADDER = 5  # attempt 0 and four retries (3/10/30/120 s)


EVENT_WORKERS = ["MetricsWorker", "NotifyEmailWorker", "NotifySignalRWorker", "NotifyWebhookWorker"]
"""What a chat job's status events run besides the chat function, sorted."""


def chat_record(payload: dict[str, Any], *, reason: str = "MaxRetriesExceeded") -> DeadLetterRecord:
    """A chat job's dead letter as an export holds it, with a job id of its own."""
    job_id = f"job_{uuid.uuid4().hex[:12]}"
    body = {
        "jobId": job_id,
        "jobType": "chat.suggest",
        "creatorId": "creator-repro",
        "payload": payload,
        "attempt": 0,
        "createdAt": "2026-12-07T08:00:00Z",
        "deadlineMs": 90000,
    }
    return DeadLetterRecord.from_json(
        {
            "entity_path": CHAT_DLQ,
            "sequence_number": 1,
            "message_id": f"{job_id}:0",
            "dead_letter_reason": reason,
            "content_type": "application/json",
            "application_properties": {
                "jobType": "chat.suggest",
                "jobId": job_id,
                "creatorId": "creator-repro",
            },
            "body_encoding": "text",
            "body": json.dumps(body),
        }
    )


GOOD = {"fanMessage": "Do you ship to Lyon?", "context": "fan since 2024"}


# -- the AI fault plan ------------------------------------------------------------------------


def test_fault_plans_parse_and_bad_ones_say_what_is_allowed() -> None:
    assert AIFaultPlan.parse("ok") == AIFaultPlan("ok")
    assert AIFaultPlan.parse("429:2") == AIFaultPlan("429", 2)
    assert AIFaultPlan.parse("timeout").app_settings() == {
        "AZURE_AI_TIMEOUT_SECONDS": str(AI_TIMEOUT_SECONDS)
    }
    assert AIFaultPlan.parse("503").app_settings() == {}
    for bad, says in [
        ("teapot", "choose from ok, 429, 500, 503, timeout, malformed"),
        ("429:0", ":N takes a fault kind and a whole number >= 1"),
        ("429:x", ":N takes"),
        ("ok:3", ":N takes"),
    ]:
        with pytest.raises(DlqError, match=says):
            AIFaultPlan.parse(bad)


def test_a_plan_arms_the_stand_in_for_every_call_or_the_first_n() -> None:
    ai = AIBehaviour(require_api_version=False)
    ai.enqueue(*[AIFaultPlan("500")._fault()] * 3)  # left from an earlier dead letter
    AIFaultPlan.parse("429").apply(ai)
    assert ai.faults.rate_limit == 1.0 and not ai._scripted
    AIFaultPlan.parse("503:2").apply(ai)
    assert ai.faults.rate_limit == 0.0
    assert [f.status for _, f in ai._scripted] == [503, 503]
    AIFaultPlan.parse("ok").apply(ai)
    assert not ai._scripted and ai.faults.server_error == 0.0


# -- what is printed --------------------------------------------------------------------------


def test_the_report_shows_attempts_ai_calls_and_the_end_of_a_long_traceback() -> None:
    trace = "Traceback (most recent call last):\n" + "".join(
        f'  File "x.py", line {n}, in f\n' for n in range(40)
    )
    attempt = Attempt(
        "j:0",
        1,
        "failed",
        "abandoned",
        None,
        "ValueError: boom",
        trace + "ValueError: boom",
        0.5,
        "2026-12-07T08:00:00Z",
        ai_calls=[
            {
                "method": "POST",
                "deployment": "phi4",
                "path": "/x",
                "status": 429,
                "outcome": "rate_limited",
                "promptTokens": 0,
                "completionTokens": 0,
            }
        ],
    )
    record = chat_record(GOOD)
    result = Reproduction(record, "ChatSuggestionsWorker", "abandoned", attempts=[attempt])
    out = io.StringIO()
    print_reproduction(result, Console(file=out, width=200))
    text = out.getvalue()
    assert "abandoned after 1 attempt(s)  (died as MaxRetriesExceeded)" in text
    assert "attempt 1: msg=j:0 dc=1 failed -> abandoned in 0.50s" in text
    assert "error: ValueError: boom" in text
    assert "AI POST phi4 -> 429 rate_limited" in text
    assert "| Traceback (most recent call last):" in text  # what it was
    assert "| ValueError: boom" in text  # and where it ended
    assert "line 0, in f" not in text and "... (" in text

    table = io.StringIO()
    Console(file=table, width=200).print(reproduce_table([result]))
    assert "MaxRetriesExceeded" in table.getvalue() and "abandoned" in table.getvalue()


# -- on a real local system -------------------------------------------------------------------


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(provider="local", ports=SystemPorts(0, 0, 0), run_timers=False) as running:
        yield running


@pytest.fixture(scope="module")
def reproducer(system: LocalSystem) -> Iterator[Reproducer]:
    from emulator.servicebus.admin.control_client import ControlClient
    from harness.dlq import client

    assert system.stack is not None and system.stack.emulator is not None
    assert system.ai is not None
    with (
        capturing_logs() as capture,
        ControlClient(system.stack.emulator.control_url) as control,
        client(system.stack.servicebus_connection) as sb,
    ):
        yield Reproducer(
            system.hosts.values(),
            sb,
            control=control,
            ai=system.ai.behaviour,
            timeout=30,
            capture=capture,
        )


def test_an_ai_outage_is_reproduced_over_the_whole_ladder_then_the_fix_shown(
    reproducer: Reproducer,
) -> None:
    record = chat_record(GOOD)
    reproducer.ai_plan = AIFaultPlan.parse("429")
    died = reproducer.reproduce(record)
    assert (died.result, died.reason) == ("dead-lettered", "RATE_LIMIT"), died.headline()
    assert [a.message_id for a in died.attempts] == [
        f"{record.message_id[:-2]}:{n}" for n in range(CHAT_LADDER)
    ]
    assert all(len(a.ai_calls) == 1 and a.ai_calls[0]["status"] == 429 for a in died.attempts)
    # the retries ran on the emulator's clock: 3 + 10 + 30 + 120 s apart, in moments of wall time
    times = [a.broker_time for a in died.attempts]
    assert times == sorted(times)
    first_log = "\n".join(died.attempts[0].logs)
    assert "ProcessingError: RATE_LIMIT" in first_log  # the handled error's traceback
    assert "retry 1 in 3 s" in first_log
    assert died.also_ran == EVENT_WORKERS

    reproducer.ai_plan = AIFaultPlan.parse("ok")
    fixed = reproducer.reproduce(record)  # the failed job runs again: the replay marker
    assert (fixed.result, fixed.reason) == ("completed", None), fixed.headline()
    assert len(fixed.attempts) == 1 and fixed.attempts[0].ai_calls[0]["status"] == 200


def test_a_fault_on_the_first_call_only_retries_once_and_completes(
    reproducer: Reproducer,
) -> None:
    reproducer.ai_plan = AIFaultPlan.parse("503:1")
    result = reproducer.reproduce(chat_record(GOOD))
    assert result.result == "completed" and len(result.attempts) == 2, result.headline()
    assert [a.ai_calls[0]["status"] for a in result.attempts] == [503, 200]


def test_a_dead_letter_reproduced_again_is_followed_on_its_new_runs(
    reproducer: Reproducer,
) -> None:
    """The same message id ran before: those runs are history, not this reproduction's."""
    record = chat_record(GOOD)
    reproducer.ai_plan = AIFaultPlan.parse("malformed")
    died = reproducer.reproduce(record)
    assert (died.result, died.reason) == ("dead-lettered", "AI_BAD_OUTPUT"), died.headline()
    reproducer.ai_plan = AIFaultPlan.parse("503:1")
    again = reproducer.reproduce(record)
    assert again.result == "completed" and len(again.attempts) == 2, again.headline()
    assert [a.ai_calls[0]["status"] for a in again.attempts] == [503, 200]
    assert again.also_ran == EVENT_WORKERS


def test_a_retry_not_followed_is_reported_and_cancelled(reproducer: Reproducer) -> None:
    reproducer.ai_plan, reproducer.follow = AIFaultPlan.parse("429"), 1
    try:
        result = reproducer.reproduce(chat_record(GOOD))
    finally:
        reproducer.follow = 8
    assert result.result == "retried" and "scheduled for" in (result.reason or ""), result
    assert reproducer._scheduled("huntaze-jobs") == set(), "the unfollowed retry was left"


def test_a_permanent_failure_dies_again_with_its_reason_and_no_ai_call(
    reproducer: Reproducer,
) -> None:
    reproducer.ai_plan = AIFaultPlan.parse("ok")
    result = reproducer.reproduce(chat_record({"context": "no message"}, reason="INVALID_PAYLOAD"))
    assert (result.result, result.reason) == ("dead-lettered", "INVALID_PAYLOAD")
    [attempt] = result.attempts
    assert attempt.ai_calls == []
    assert "InvalidMessage: invalid payload for chat.suggest" in "\n".join(attempt.logs)


def test_what_cannot_run_says_why(reproducer: Reproducer) -> None:
    record = chat_record(GOOD)
    elsewhere = DeadLetterRecord.from_json(
        {**record.to_json(), "entity_path": "orders/Subscriptions/audit/$DeadLetterQueue"}
    )
    result = reproducer.reproduce(elsewhere)
    assert result.result == "no-run" and "no function reads orders/audit" in (result.reason or "")
    assert "huntaze-jobs/chat-suggestions" in (result.reason or "")

    binary = DeadLetterRecord.from_json(
        {
            **record.to_json(),
            "application_properties": {"blob": {"$type": "binary", "value": "/w=="}},
        }
    )
    result = reproducer.reproduce(binary)
    assert result.result == "not-sent" and "binary and not UTF-8" in (result.reason or "")


def test_the_command_reads_a_live_dlq_by_peek_only_and_writes_json(
    system: LocalSystem, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The running system stands for a remote namespace: its dead letter is reproduced on a
    second, local one, and stays where it was."""
    from harness.dlq import DeadLetterSource, client, peek_dead_letters

    assert system.stack is not None
    remote = system.stack.servicebus_connection
    source = DeadLetterSource("huntaze-jobs", "chat-suggestions")
    bad = chat_record({"context": "lost"}, reason="INVALID_PAYLOAD")
    with client(remote) as sb:
        before = len(list(peek_dead_letters(sb, source)))
        with sb.get_queue_sender("huntaze-jobs") as sender:
            sender.send_messages(bad.to_message())
        system.hosts["jobs"].wait_for_invocations(
            1, where=lambda i: i.message_id == bad.message_id, timeout=30
        )
        assert len(list(peek_dead_letters(sb, source))) == before + 1

    out = tmp_path / "results.json"
    argv = ["dlq", "reproduce", "--connection-string", remote, "--stack", "local"]
    argv += ["--topic", source.entity, "--subscription", "chat-suggestions"]
    argv += ["--message-id", bad.message_id, "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"id={bad.message_id}: dead-lettered (INVALID_PAYLOAD) after 1 attempt(s)" in printed
    assert "reproduced dead letters" in printed
    [saved] = json.loads(out.read_text())
    assert saved["result"] == "dead-lettered" and saved["attempts"][0]["settlement"] == (
        "dead-lettered"
    )
    with client(remote) as sb:
        assert len(list(peek_dead_letters(sb, source))) == before + 1, "the source changed"


def test_command_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["dlq", "reproduce", "--topic", "t", "--subscription", "s"])
    assert usage.value.code == 2 and "--connection-string is required" in capsys.readouterr().err

    export = tmp_path / "x.jsonl"
    export.write_text(json.dumps(chat_record(GOOD).to_json()) + "\n")
    with pytest.raises(SystemExit):
        main(["dlq", "reproduce", "--from", str(export), "--queue", "q"])
    assert "does not take --topic/--subscription/--queue" in capsys.readouterr().err

    assert main(["dlq", "reproduce", "--from", str(export), "--ai", "teapot"]) == 1
    assert "harness dlq reproduce: --ai 'teapot': choose from" in capsys.readouterr().err

    assert main(["dlq", "reproduce", "--from", str(tmp_path / "missing.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err

    assert main(["dlq", "reproduce", "--from", str(export), "--message-id", "other"]) == 0
    assert "no dead letters to reproduce" in capsys.readouterr().err
