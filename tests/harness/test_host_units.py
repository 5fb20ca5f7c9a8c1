"""Pure pieces of the local Functions host: host.json, settings, NCRONTAB, indexing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from functions_shared.hostjson import apply_overrides
from harness.host import (
    AppLoadError,
    FunctionsHost,
    HostConfigError,
    HostOptions,
    MissingSettingsError,
    ProcessEnvironment,
    Schedule,
    ScheduleError,
    parse_timespan,
)
from harness.host.config import resolve_setting_refs
from harness.host.outputs import parse_connection_string, signalr_token
from harness.host.testing import write_app

WORKERS = Path(__file__).resolve().parents[2] / "workers"


def test_host_timespans() -> None:
    assert parse_timespan("00:10:00") == 600
    assert parse_timespan("00:00:00.80") == pytest.approx(0.8)
    assert parse_timespan("1.02:00:00") == 93600
    assert parse_timespan("-1") is None
    with pytest.raises(HostConfigError):
        parse_timespan("ten minutes")


@pytest.mark.parametrize(
    ("app", "timeout", "prefetch", "auto", "renewal", "calls"),
    [
        ("video", 600, 0, False, 300, 2),
        ("jobs", 90, 20, False, 120, 8),
        ("notify", 30, 200, True, 300, 50),
    ],
)
def test_host_reads_the_worker_profiles(
    app: str, timeout: float, prefetch: int, auto: bool, renewal: float, calls: int
) -> None:
    options = HostOptions.load(WORKERS / app / "host.json")
    assert options.function_timeout == timeout
    assert options.prefetch_count == prefetch
    assert options.auto_complete_messages is auto
    assert options.max_auto_lock_renewal_duration == renewal
    assert options.max_concurrent_calls == calls


def test_host_options_defaults_and_retry_mapping(tmp_path: Path) -> None:
    assert HostOptions.load(tmp_path / "absent.json") == HostOptions()
    options = HostOptions.load(WORKERS / "video" / "host.json")
    assert options.sdk_retry_kwargs() == {
        "retry_total": 3,
        "retry_backoff_factor": pytest.approx(0.8),
        "retry_backoff_max": 60,
        "retry_mode": "exponential",
    }
    bad = tmp_path / "host.json"
    bad.write_text(json.dumps({"extensions": {"serviceBus": {"maxConcurrentCalls": 0}}}))
    with pytest.raises(HostConfigError, match="maxConcurrentCalls"):
        HostOptions.load(bad)


def test_app_settings_override_host_json_as_in_azure() -> None:
    """`AzureFunctionsJobHost__path__to__key` settings win over the file, matched
    case-insensitively; strings are parsed as the host.json value would be."""
    options = HostOptions.load(
        WORKERS / "video" / "host.json",
        {
            "AzureFunctionsJobHost__functionTimeout": "00:00:02",
            "azurefunctionsjobhost__Extensions__SERVICEBUS__maxAutoLockRenewalDuration": "00:00:03",
            "AzureFunctionsJobHost__extensions__serviceBus__autoCompleteMessages": "true",
            "AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls": "5",
            "UNRELATED": "x",
        },
    )
    assert options.function_timeout == 2
    assert options.max_auto_lock_renewal_duration == 3
    assert options.auto_complete_messages is True
    assert options.max_concurrent_calls == 5
    assert options.prefetch_count == 0  # untouched values stay the file's


def test_override_creates_missing_sections_and_leaves_the_data_alone() -> None:
    data = {"version": "2.0"}
    merged = apply_overrides(
        data, {"AzureFunctionsJobHost__extensions__serviceBus__prefetchCount": "7"}
    )
    assert merged == {"version": "2.0", "extensions": {"serviceBus": {"prefetchCount": "7"}}}
    assert data == {"version": "2.0"}
    assert HostOptions.from_host_json(merged).prefetch_count == 7


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"AzureFunctionsJobHost__functionTimeout": "soon"}, "TimeSpan"),
        ({"AzureFunctionsJobHost__extensions__serviceBus__autoCompleteMessages": "yes"}, "boolean"),
        ({"AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls": "0"}, "at least 1"),
        ({"AzureFunctionsJobHost__extensions____x": "1"}, "empty segment"),
        ({"AzureFunctionsJobHost__extensions__serviceBus": "on"}, "must be an object"),
    ],
)
def test_bad_overrides_are_named(settings: dict[str, str], message: str) -> None:
    with pytest.raises(HostConfigError, match=message):
        HostOptions.load(WORKERS / "jobs" / "host.json", settings)


def test_loaded_host_applies_overrides_from_its_settings(tmp_path: Path) -> None:
    code = """
    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
    def tick(timer: func.TimerRequest) -> None:
        pass
    """
    app = write_app(tmp_path / "app", code, function_timeout="00:01:00")
    setting = "AzureFunctionsJobHost__functionTimeout"
    host = FunctionsHost.load(app, settings={setting: "00:00:05"})
    host.stop()
    assert host.options.function_timeout == 5
    assert setting not in os.environ  # the override was the host's data, not the process's
    again = FunctionsHost.load(app)
    again.stop()
    assert again.options.function_timeout == 60


ENV_READING_APP = """
import os

SEEN_AT_IMPORT = {name: os.environ.get(name) for name in ("FROM_FILE", "FROM_CALLER")}

@app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    pass
"""


def test_host_takes_settings_as_data_and_leaves_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FROM_FILE", raising=False)
    monkeypatch.delenv("FROM_CALLER", raising=False)
    app = write_app(tmp_path / "app", ENV_READING_APP, local_settings={"FROM_FILE": "file"})
    before = dict(os.environ)
    host = FunctionsHost.load(app, settings={"FROM_CALLER": "caller"})
    host.stop()
    assert (host.settings["FROM_FILE"], host.settings["FROM_CALLER"]) == ("file", "caller")
    assert host.module.SEEN_AT_IMPORT == {"FROM_FILE": None, "FROM_CALLER": None}
    assert dict(os.environ) == before


def test_an_in_process_app_reads_its_settings_from_the_environment_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FROM_FILE", raising=False)
    monkeypatch.setenv("FROM_CALLER", "was here before")
    app = write_app(tmp_path / "app", ENV_READING_APP, local_settings={"FROM_FILE": "file"})
    with ProcessEnvironment() as environment:
        host = FunctionsHost.load(app, settings={"FROM_CALLER": "caller"}, environment=environment)
        assert host.module.SEEN_AT_IMPORT == {"FROM_FILE": "file", "FROM_CALLER": "caller"}
        host.stop()
        assert os.environ["FROM_CALLER"] == "caller"  # the owner of the process restores
    assert "FROM_FILE" not in os.environ
    assert os.environ["FROM_CALLER"] == "was here before"


def test_one_process_environment_serves_several_apps_and_restores_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHARED", "original")
    monkeypatch.delenv("ONLY_SECOND", raising=False)
    environment = ProcessEnvironment()
    environment.apply({"SHARED": "first"})
    environment.apply({"SHARED": "second", "ONLY_SECOND": "x"})
    assert (os.environ["SHARED"], os.environ["ONLY_SECOND"]) == ("second", "x")
    environment.restore()
    assert os.environ["SHARED"] == "original" and "ONLY_SECOND" not in os.environ
    environment.restore()  # a second restore changes nothing
    assert os.environ["SHARED"] == "original"


def test_host_setting_references() -> None:
    assert resolve_setting_refs("%A%-%B%", {"A": "x", "B": "y"}) == ("x-y", [])
    assert resolve_setting_refs("%A%/%C%", {"A": "x"}) == ("x/%C%", ["C"])
    assert resolve_setting_refs("plain", {}) == ("plain", [])


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */15 * * * *", "2024-05-01T10:07:13", "2024-05-01T10:15:00"),
        ("*/5 * * * * *", "2024-05-01T10:07:13", "2024-05-01T10:07:15"),
        ("0 0 9 * * Mon-Fri", "2024-05-03T09:00:00", "2024-05-06T09:00:00"),  # Fri → Mon
        ("0 30 1 29 2 *", "2024-03-01T00:00:00", "2028-02-29T01:30:00"),
        ("0 0 0 1 Jan,Jul *", "2024-02-01T00:00:00", "2024-07-01T00:00:00"),
        ("15 10 * * *", "2024-05-01T10:15:00", "2024-05-02T10:15:00"),  # five fields: sec 0
        ("0 0 12 13 * 5", "2024-01-01T00:00:00", "2024-09-13T12:00:00"),  # day AND weekday
        ("00:05:00", "2024-05-01T10:07:13", "2024-05-01T10:12:13"),  # TimeSpan interval
    ],
)
def test_host_ncrontab_next_occurrence(expression: str, after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Schedule.parse(expression).next_after(start) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize(
    "expression", ["* * * *", "61 * * * * *", "0 0 25 * * *", "*/0 * * * * *", "5-1 * * * * *"]
)
def test_host_ncrontab_rejects(expression: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(expression)


def test_host_signalr_token_and_connection_string() -> None:
    parsed = parse_connection_string("Endpoint=https://x:8088;AccessKey=k;Version=1.0;")
    assert parsed == {"endpoint": "https://x:8088", "accesskey": "k", "version": "1.0"}
    header, claims, signature = signalr_token("https://x/api", "k").split(".")
    assert header and claims and signature


def test_host_indexes_without_starting_and_names_missing_settings(tmp_path: Path) -> None:
    app = write_app(
        tmp_path / "app",
        """
        @app.service_bus_topic_trigger(
            arg_name="msg", topic_name="%TOPIC%", subscription_name="s", connection="SB_CONN"
        )
        def on_message(msg: func.ServiceBusMessage) -> None:
            pass

        @app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
        def hourly(timer: func.TimerRequest) -> None:
            pass
        """,
    )
    host = FunctionsHost.load(app)
    try:
        assert set(host.functions) == {"on_message", "hourly"}
        assert host.functions["on_message"].trigger_kind == "classic"
        assert host.functions["hourly"].trigger_type == "timerTrigger"
        assert host.missing_settings() == {"on_message": ["TOPIC", "SB_CONN"]}
        with pytest.raises(MissingSettingsError) as info:
            host.start()
        assert info.value.names == ["SB_CONN", "TOPIC"]
        assert "SB_CONN" in str(info.value) and "TOPIC" in str(info.value)
    finally:
        host.stop()


def test_host_refuses_apps_it_cannot_feed(tmp_path: Path) -> None:
    two = write_app(tmp_path / "two", "other = func.FunctionApp()\n")
    with pytest.raises(AppLoadError, match="exactly one"):
        FunctionsHost.load(two)
    unbound = write_app(
        tmp_path / "unbound",
        """
        @app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
        def tick(timer: func.TimerRequest, extra: int) -> None:
            pass
        """,
    )
    with pytest.raises(AppLoadError, match="extra"):
        FunctionsHost.load(unbound)
    broken = write_app(tmp_path / "broken", "raise RuntimeError('no DATABASE_URL')\n")
    with pytest.raises(AppLoadError, match="no DATABASE_URL"):
        FunctionsHost.load(broken)
