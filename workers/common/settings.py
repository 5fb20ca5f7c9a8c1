"""Settings read from the environment with the seed's names, validated once at startup.

Each app declares a role; a role lists what it cannot run without. A missing or malformed
value fails the import of `function_app.py` with one message naming every problem, so the
Functions host reports the cause instead of the first `KeyError` deep inside a handler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlparse


class Role(StrEnum):
    """Which deployable reads the settings."""

    VIDEO = "video"
    JOBS = "jobs"
    NOTIFY = "notify"
    API = "api"


_COMMON_WORKER = ("SERVICEBUS_CONNECTION", "TOPIC_JOBS", "TOPIC_EVENTS", "DATABASE_URL")

REQUIRED: dict[Role, tuple[str, ...]] = {
    Role.VIDEO: (*_COMMON_WORKER, "REDIS_URL", "AZURE_PHI4_MULTIMODAL_ENDPOINT"),
    Role.JOBS: (*_COMMON_WORKER, "REDIS_URL", "AZURE_DEEPSEEK_V3_ENDPOINT"),
    Role.NOTIFY: _COMMON_WORKER,
    Role.API: ("SERVICEBUS_CONNECTION_SEND", "TOPIC_JOBS", "DATABASE_URL", "REDIS_URL"),
}

# Alternatives: the requirement is met when any of the names is set.
REQUIRED_ANY: dict[Role, tuple[tuple[str, ...], ...]] = {
    Role.JOBS: (("AZURE_PHI4_ENDPOINT", "AZURE_PHI4_MULTIMODAL_ENDPOINT"),),
}


class SettingsError(RuntimeError):
    """Raised at startup when required settings are missing or malformed."""

    def __init__(self, role: Role, missing: list[str], invalid: list[str]) -> None:
        self.role = role
        self.missing = missing
        self.invalid = invalid
        parts = []
        if missing:
            parts.append("missing: " + ", ".join(missing))
        if invalid:
            parts.append("invalid: " + "; ".join(invalid))
        super().__init__(f"{role.value} settings are not usable ({' | '.join(parts)})")


@dataclass(frozen=True)
class Settings:
    """Everything the apps read from the environment. Optional values have defaults."""

    role: Role
    servicebus_connection: str = ""
    servicebus_connection_send: str = ""
    # The administration client (DLQ counts) needs a Manage policy; the triggers' does not
    # have one. Empty: SERVICEBUS_CONNECTION is used.
    servicebus_admin_connection: str = ""
    # CA bundle the administration client (HTTPS) trusts, for an emulator's own certificate.
    servicebus_admin_ca_bundle: str = ""
    topic_jobs: str = "huntaze-jobs"
    topic_events: str = "huntaze-events"
    database_url: str = ""
    redis_url: str = ""
    redis_key_prefix: str = "huntaze:"
    deepseek_v3_endpoint: str = ""
    deepseek_r1_endpoint: str = ""
    phi4_multimodal_endpoint: str = ""
    phi4_endpoint: str = ""
    ai_api_key: str = ""
    ai_api_version: str = "2024-05-01-preview"
    ai_timeout_seconds: float = 60.0
    model_video: str = "phi-4-multimodal"
    model_chat: str = "phi4"
    model_content: str = "deepseek"
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "noreply@huntaze.local"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    webhook_signing_secret: str = ""
    webhook_timeout_seconds: float = 5.0
    dlq_warning_threshold: int = 0
    dlq_critical_threshold: int = 10
    # The job API under overload: its database pool, and how long a request may wait for a
    # pooled connection or sender before it answers 503 with Retry-After (never 30 s, no 500).
    api_db_pool_size: int = 5
    api_db_max_overflow: int = 10
    api_sender_pool_size: int = 4
    api_busy_wait_seconds: float = 2.0
    api_retry_after_seconds: int = 1
    # How long one database step of an API request may take before 503 (a paused or dead
    # database server would otherwise hold the request for ever).
    api_db_timeout_seconds: float = 5.0
    # Operator channels for the DLQ monitor's alert.dlq (empty: not delivered there).
    ops_alert_webhook_url: str = ""
    ops_alert_emails: tuple[str, ...] = ()
    # A service answering {"offset_seconds": N} whose clock the apps follow (the harness
    # points it at the emulator's control API). Empty: wall time, as against Azure.
    clock_url: str = ""
    # The same clock's offset in a file on this machine (the harness publishes it next to an
    # in-process emulator): one read of a file per call instead of an HTTP round trip.
    clock_file: str = ""

    @property
    def chat_endpoint(self) -> str:
        """phi4 chat has no endpoint of its own in the seed; the multimodal one serves it."""
        return self.phi4_endpoint or self.phi4_multimodal_endpoint


def _float(env: Mapping[str, str], name: str, default: float, invalid: list[str]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        invalid.append(f"{name}={raw!r} is not a number")
        return default
    if value <= 0:
        invalid.append(f"{name}={raw!r} must be positive")
    return value


def _int(env: Mapping[str, str], name: str, default: int, invalid: list[str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        invalid.append(f"{name}={raw!r} is not an integer")
        return default


def _check_url(name: str, value: str, schemes: tuple[str, ...], invalid: list[str]) -> None:
    if not value:
        return
    parsed = urlparse(value)
    if parsed.scheme.split("+")[0] not in schemes:
        invalid.append(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}")


def _check_connection_string(name: str, value: str, invalid: list[str]) -> None:
    if value and "endpoint=" not in value.lower():
        invalid.append(f"{name} is not a Service Bus connection string (no Endpoint=)")


def _emails(role: Role, env: Mapping[str, str], invalid: list[str]) -> tuple[str, ...]:
    """`OPS_ALERT_EMAIL`: comma-separated addresses; mailing them needs `SMTP_HOST`."""
    raw = env.get("OPS_ALERT_EMAIL", "").strip()
    addresses = tuple(a.strip() for a in raw.split(",") if a.strip())
    bad = [a for a in addresses if a.count("@") != 1 or " " in a or a.startswith("@")]
    if bad:
        invalid.append(f"OPS_ALERT_EMAIL has invalid addresses: {', '.join(bad)}")
    if addresses and role is Role.NOTIFY and not env.get("SMTP_HOST", "").strip():
        invalid.append("OPS_ALERT_EMAIL needs SMTP_HOST to send the alerts")
    return addresses


def load_settings(role: Role, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings of `role`; raise SettingsError naming every problem."""
    env = os.environ if env is None else env

    def get(name: str) -> str:
        return env.get(name, "").strip()

    missing = [name for name in REQUIRED[role] if not get(name)]
    for names in REQUIRED_ANY.get(role, ()):
        if not any(get(n) for n in names):
            missing.append(" or ".join(names))
    invalid: list[str] = []
    _check_connection_string("SERVICEBUS_CONNECTION", get("SERVICEBUS_CONNECTION"), invalid)
    _check_connection_string(
        "SERVICEBUS_CONNECTION_SEND", get("SERVICEBUS_CONNECTION_SEND"), invalid
    )
    _check_connection_string(
        "SERVICEBUS_ADMIN_CONNECTION", get("SERVICEBUS_ADMIN_CONNECTION"), invalid
    )
    ca_bundle = get("SERVICEBUS_ADMIN_CA_BUNDLE")
    if ca_bundle and not os.path.isfile(ca_bundle):
        invalid.append(f"SERVICEBUS_ADMIN_CA_BUNDLE={ca_bundle!r} is not a file")
    _check_url("DATABASE_URL", get("DATABASE_URL"), ("postgresql", "postgres", "sqlite"), invalid)
    _check_url("REDIS_URL", get("REDIS_URL"), ("redis", "rediss", "memory"), invalid)
    for name in (
        "AZURE_DEEPSEEK_V3_ENDPOINT",
        "AZURE_DEEPSEEK_R1_ENDPOINT",
        "AZURE_PHI4_MULTIMODAL_ENDPOINT",
        "AZURE_PHI4_ENDPOINT",
    ):
        _check_url(name, get(name), ("http", "https"), invalid)
    _check_url("OPS_ALERT_WEBHOOK_URL", get("OPS_ALERT_WEBHOOK_URL"), ("http", "https"), invalid)
    _check_url("WORKERS_CLOCK_URL", get("WORKERS_CLOCK_URL"), ("http", "https"), invalid)

    settings = Settings(
        role=role,
        servicebus_connection=get("SERVICEBUS_CONNECTION"),
        servicebus_connection_send=get("SERVICEBUS_CONNECTION_SEND"),
        servicebus_admin_connection=get("SERVICEBUS_ADMIN_CONNECTION")
        or get("SERVICEBUS_CONNECTION"),
        servicebus_admin_ca_bundle=ca_bundle,
        topic_jobs=get("TOPIC_JOBS") or "huntaze-jobs",
        topic_events=get("TOPIC_EVENTS") or "huntaze-events",
        database_url=get("DATABASE_URL"),
        redis_url=get("REDIS_URL"),
        redis_key_prefix=get("REDIS_KEY_PREFIX") or "huntaze:",
        deepseek_v3_endpoint=get("AZURE_DEEPSEEK_V3_ENDPOINT"),
        deepseek_r1_endpoint=get("AZURE_DEEPSEEK_R1_ENDPOINT"),
        phi4_multimodal_endpoint=get("AZURE_PHI4_MULTIMODAL_ENDPOINT"),
        phi4_endpoint=get("AZURE_PHI4_ENDPOINT"),
        ai_api_key=get("AZURE_AI_API_KEY"),
        ai_api_version=get("AZURE_AI_API_VERSION") or "2024-05-01-preview",
        ai_timeout_seconds=_float(env, "AZURE_AI_TIMEOUT_SECONDS", 60.0, invalid),
        model_video=get("AZURE_AI_MODEL_VIDEO") or "phi-4-multimodal",
        model_chat=get("AZURE_AI_MODEL_CHAT") or "phi4",
        model_content=get("AZURE_AI_MODEL_CONTENT") or "deepseek",
        smtp_host=get("SMTP_HOST"),
        smtp_port=_int(env, "SMTP_PORT", 25, invalid),
        smtp_from=get("SMTP_FROM") or "noreply@huntaze.local",
        smtp_username=get("SMTP_USERNAME"),
        smtp_password=get("SMTP_PASSWORD"),
        smtp_starttls=get("SMTP_STARTTLS").lower() in ("1", "true", "yes"),
        webhook_signing_secret=get("WEBHOOK_SIGNING_SECRET"),
        webhook_timeout_seconds=_float(env, "WEBHOOK_TIMEOUT_SECONDS", 5.0, invalid),
        dlq_warning_threshold=_int(env, "DLQ_WARNING_THRESHOLD", 0, invalid),
        dlq_critical_threshold=_int(env, "DLQ_CRITICAL_THRESHOLD", 10, invalid),
        api_db_pool_size=_int(env, "API_DB_POOL_SIZE", 5, invalid),
        api_db_max_overflow=_int(env, "API_DB_MAX_OVERFLOW", 10, invalid),
        api_sender_pool_size=_int(env, "API_SENDER_POOL_SIZE", 4, invalid),
        api_busy_wait_seconds=_float(env, "API_BUSY_WAIT_SECONDS", 2.0, invalid),
        api_retry_after_seconds=_int(env, "API_RETRY_AFTER_SECONDS", 1, invalid),
        api_db_timeout_seconds=_float(env, "API_DB_TIMEOUT_SECONDS", 5.0, invalid),
        ops_alert_webhook_url=get("OPS_ALERT_WEBHOOK_URL"),
        ops_alert_emails=_emails(role, env, invalid),
        clock_url=get("WORKERS_CLOCK_URL"),
        clock_file=get("WORKERS_CLOCK_FILE") if get("WORKERS_CLOCK_URL") else "",
    )
    if missing or invalid:
        raise SettingsError(role, missing, invalid)
    return settings
