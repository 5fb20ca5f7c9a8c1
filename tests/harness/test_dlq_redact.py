"""Redaction of exports (harness/dlq/redact.py): the named fields are replaced, nothing else
changes, and what cannot be redacted is refused rather than written as it is."""

from __future__ import annotations

import json

import pytest

from harness.dlq.records import DeadLetterRecord
from harness.dlq.redact import REDACTED, Redaction, RedactionError

DLQ = "huntaze-jobs/Subscriptions/chat-suggestions/$DeadLetterQueue"


def _record(body: object, **props: object) -> DeadLetterRecord:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return DeadLetterRecord(DLQ, data, message_id="m1", application_properties=dict(props))


def test_body_paths_and_properties_are_replaced_and_nothing_else() -> None:
    record = _record(
        {"jobId": "j1", "creator": {"email": "ada@example.com", "id": "c1"}, "n": 3},
        email="ada@example.com",
        jobType="chat.suggest",
    )
    out = Redaction.parse(["body.creator.email", "prop:email", "body.missing.deeper"]).apply(record)
    assert json.loads(out.body) == {
        "jobId": "j1",
        "creator": {"email": REDACTED, "id": "c1"},
        "n": 3,
    }
    assert out.application_properties == {"email": REDACTED, "jobType": "chat.suggest"}
    assert record.application_properties["email"] == "ada@example.com"  # the original is kept


def test_no_redaction_is_falsy_and_changes_nothing() -> None:
    assert not Redaction.parse([])
    record = _record({"a": 1})
    assert Redaction.parse([]).apply(record) == record


@pytest.mark.parametrize("spec", ["creatorId", "body.", "body.a..b", "prop:", "props:x"])
def test_a_malformed_spec_is_refused_with_the_forms_it_takes(spec: str) -> None:
    with pytest.raises(RedactionError, match=r"expected body\.<field>"):
        Redaction.parse([spec])


def test_a_body_that_is_not_json_is_refused_not_written_unredacted() -> None:
    with pytest.raises(RedactionError, match="not JSON"):
        Redaction.parse(["body.email"]).apply(_record(b"plain text"))


def test_a_path_through_a_non_object_is_refused() -> None:
    with pytest.raises(RedactionError, match=r"body\.tags is not a JSON object"):
        Redaction.parse(["body.tags.first"]).apply(_record({"tags": ["a", "b"]}))
