"""Contracts, retry policy and settings: the pieces every handler relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
from workers_fakes import PAYLOADS, encode, job_body

from workers.common.contracts import (
    EventMessage,
    InvalidMessage,
    JobStatus,
    JobType,
    event_application_properties,
    job_application_properties,
    normalize_properties,
    parse_job_message,
    validate_payload,
)
from workers.common.errors import ErrorCode, ProcessingError
from workers.common.retry import DEFAULT_POLICY, VIDEO_POLICY, policy_for
from workers.common.settings import Role, SettingsError, load_settings

# --- contracts -------------------------------------------------------------------------


@pytest.mark.parametrize("job_type", list(JobType))
def test_workers_job_message_round_trips_the_seed_shape(job_type: JobType) -> None:
    job = parse_job_message(encode(job_body(job_type)))
    wire = job.to_wire()
    assert set(wire) == {
        "jobId",
        "jobType",
        "creatorId",
        "payload",
        "attempt",
        "createdAt",
        "deadlineMs",
    }
    assert wire["jobType"] == job_type.value
    assert validate_payload(job) is not None
    assert job.next_attempt().attempt == 1 and job.attempt == 0


def test_workers_numeric_creator_id_is_accepted_as_string() -> None:
    job = parse_job_message(encode(job_body(creatorId=123)))
    assert job.creator_id == "123"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (encode(job_body(jobType="video.unknown")), "jobType"),
        (encode(job_body(attempt=-1)), "attempt"),
        (encode({k: v for k, v in job_body().items() if k != "jobId"}), "jobId"),
        (encode(job_body(createdAt="2025-01-01T00:00:00")), "timezone"),
        (encode(job_body(deadlineMs=0)), "deadlineMs"),
    ],
)
def test_workers_invalid_envelopes_say_what_is_wrong(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_job_message(body)
    assert fragment in info.value.description


def test_workers_invalid_payload_names_the_field() -> None:
    job = parse_job_message(encode(job_body(JobType.VIDEO_ANALYSIS, payload={"videoId": "x"})))
    with pytest.raises(InvalidMessage) as info:
        validate_payload(job)
    assert "payload.videoUrl" in info.value.description
    assert info.value.job_id == "job_1"


def test_workers_application_properties_match_the_seed() -> None:
    job = parse_job_message(encode(job_body(JobType.VIDEO_ANALYSIS)))
    assert job_application_properties(job) == {
        "jobType": "video.analysis",
        "jobId": "job_1",
        "creatorId": "creator-1",
    }
    event = EventMessage(
        job_id="job_1",
        creator_id="creator-1",
        status=JobStatus.COMPLETED,
        progress=100,
        updated_at=job.created_at,
    )
    props = event_application_properties(event)
    assert {k: props[k] for k in ("jobId", "creatorId", "status")} == {
        "jobId": "job_1",
        "creatorId": "creator-1",
        "status": "completed",
    }
    assert event.to_wire()["updatedAt"].startswith("2025-01-01")


def test_workers_amqp_bytes_properties_are_normalized() -> None:
    assert normalize_properties({b"jobType": b"chat.suggest", "n": 3}) == {
        "jobType": "chat.suggest",
        "n": 3,
    }
    assert normalize_properties(None) == {}


def test_workers_payload_fixtures_cover_every_job_type() -> None:
    assert set(PAYLOADS) == set(JobType)


# --- retry policy (seed defect: backoff index) ----------------------------------------


def test_workers_first_retry_uses_the_first_delay_not_the_last() -> None:
    """Seed: delays[attempt - 1] with attempt 0 → undefined / last delay."""
    assert VIDEO_POLICY.backoff(0) == 15
    assert DEFAULT_POLICY.backoff(0) == 3


def test_workers_backoff_ladders_are_the_seeds() -> None:
    assert [VIDEO_POLICY.backoff(a) for a in range(3)] == [15, 45, 120]
    assert [DEFAULT_POLICY.backoff(a) for a in range(4)] == [3, 10, 30, 120]
    assert policy_for(JobType.VIDEO_ANALYSIS) is VIDEO_POLICY
    for job_type in (JobType.CHAT_SUGGEST, JobType.CONTENT_SUGGEST, JobType.CONTENT_ANALYZE):
        assert policy_for(job_type) is DEFAULT_POLICY
    with pytest.raises(ValueError):
        VIDEO_POLICY.backoff(-1)


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.RATE_LIMIT,
        ErrorCode.TIMEOUT,
        ErrorCode.NETWORK_ERROR,
        ErrorCode.SOFT_TIMEOUT,
        ErrorCode.AI_SERVER_ERROR,
    ],
)
def test_workers_transient_codes_are_retried_until_exhausted(code: ErrorCode) -> None:
    """Seed: SOFT_TIMEOUT had no code so it was never retried."""
    error = ProcessingError(code, "x")
    decisions = [VIDEO_POLICY.decide(error, a) for a in range(4)]
    assert [d.retry for d in decisions] == [True, True, True, False]
    assert [d.delay_seconds for d in decisions[:3]] == [15, 45, 120]
    assert "exhausted" in decisions[3].reason


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.INVALID_PAYLOAD,
        ErrorCode.VIDEO_NOT_FOUND,
        ErrorCode.AI_BAD_OUTPUT,
        ErrorCode.UNKNOWN_ERROR,
    ],
)
def test_workers_permanent_codes_are_never_retried(code: ErrorCode) -> None:
    decision = DEFAULT_POLICY.decide(ProcessingError(code, "x"), 0)
    assert not decision.retry
    assert "permanent" in decision.reason


def test_workers_retry_after_is_a_minimum_delay() -> None:
    slow = ProcessingError(ErrorCode.RATE_LIMIT, "429", retry_after=50)
    fast = ProcessingError(ErrorCode.RATE_LIMIT, "429", retry_after=1)
    assert DEFAULT_POLICY.decide(slow, 0).delay_seconds == 50
    assert DEFAULT_POLICY.decide(fast, 0).delay_seconds == 3


# --- settings ------------------------------------------------------------------------

VALID_ENV = {
    "SERVICEBUS_CONNECTION": "Endpoint=sb://localhost/;SharedAccessKeyName=a;SharedAccessKey=b",
    "SERVICEBUS_CONNECTION_SEND": "Endpoint=sb://localhost/;SharedAccessKeyName=s;SharedAccessKey=c",
    "TOPIC_JOBS": "huntaze-jobs",
    "TOPIC_EVENTS": "huntaze-events",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "AZURE_DEEPSEEK_V3_ENDPOINT": "https://deepseek.example/models",
    "AZURE_DEEPSEEK_R1_ENDPOINT": "https://deepseek-r1.example/models",
    "AZURE_PHI4_MULTIMODAL_ENDPOINT": "https://phi4.example/models",
}


@pytest.mark.parametrize("role", list(Role))
def test_workers_settings_load_with_the_seed_names(role: Role) -> None:
    settings = load_settings(role, VALID_ENV)
    assert settings.topic_jobs == "huntaze-jobs"
    assert settings.role is role


def test_workers_missing_settings_are_all_named_in_one_error() -> None:
    env = {k: v for k, v in VALID_ENV.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    with pytest.raises(SettingsError) as info:
        load_settings(Role.VIDEO, env)
    message = str(info.value)
    assert "DATABASE_URL" in message and "REDIS_URL" in message
    assert info.value.missing == ["DATABASE_URL", "REDIS_URL"]


def test_workers_jobs_role_needs_a_phi4_endpoint() -> None:
    env = {k: v for k, v in VALID_ENV.items() if k != "AZURE_PHI4_MULTIMODAL_ENDPOINT"}
    with pytest.raises(SettingsError, match="AZURE_PHI4_ENDPOINT or AZURE_PHI4_MULTIMODAL"):
        load_settings(Role.JOBS, env)
    settings = load_settings(Role.JOBS, {**env, "AZURE_PHI4_ENDPOINT": "https://p.example"})
    assert settings.chat_endpoint == "https://p.example"


def test_workers_malformed_settings_are_reported() -> None:
    env = {
        **VALID_ENV,
        "SERVICEBUS_CONNECTION": "not-a-connection-string",
        "DATABASE_URL": "mysql://x",
        "WEBHOOK_TIMEOUT_SECONDS": "soon",
    }
    with pytest.raises(SettingsError) as info:
        load_settings(Role.NOTIFY, env)
    text = str(info.value)
    assert "SERVICEBUS_CONNECTION" in text
    assert "DATABASE_URL" in text
    assert "WEBHOOK_TIMEOUT_SECONDS" in text


def test_workers_api_role_requires_the_send_only_connection() -> None:
    env = {k: v for k, v in VALID_ENV.items() if k != "SERVICEBUS_CONNECTION_SEND"}
    with pytest.raises(SettingsError, match="SERVICEBUS_CONNECTION_SEND"):
        load_settings(Role.API, env)


def test_workers_dlq_monitor_admin_connection_and_ca_bundle(tmp_path: Path) -> None:
    """The administration API needs Manage rights and may sit behind an emulator's own
    certificate: both have settings, checked at load."""
    settings = load_settings(Role.NOTIFY, VALID_ENV)
    assert settings.servicebus_admin_connection == VALID_ENV["SERVICEBUS_CONNECTION"]
    assert settings.servicebus_admin_ca_bundle == ""

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    manage = "Endpoint=sb://ns/;SharedAccessKeyName=manage;SharedAccessKey=k"
    env = {
        **VALID_ENV,
        "SERVICEBUS_ADMIN_CONNECTION": manage,
        "SERVICEBUS_ADMIN_CA_BUNDLE": str(ca),
    }
    settings = load_settings(Role.NOTIFY, env)
    assert (settings.servicebus_admin_connection, settings.servicebus_admin_ca_bundle) == (
        manage,
        str(ca),
    )

    bad = {
        **VALID_ENV,
        "SERVICEBUS_ADMIN_CONNECTION": "manage-please",
        "SERVICEBUS_ADMIN_CA_BUNDLE": str(tmp_path / "missing.pem"),
    }
    with pytest.raises(SettingsError) as info:
        load_settings(Role.NOTIFY, bad)
    assert "SERVICEBUS_ADMIN_CONNECTION" in str(info.value)
    assert "missing.pem" in str(info.value)
