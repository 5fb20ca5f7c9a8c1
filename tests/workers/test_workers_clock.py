"""RemoteOffsetClock: the apps' view of a clock they do not own (the emulator's, under the
harness), and the choice between it and the system clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from functions_shared.offset_clock import ClockReadError, OffsetFile, RemoteOffsetClock
from workers.common.clock import SystemClock, clock_from_settings
from workers.common.settings import Role, SettingsError, load_settings

URL = "http://clock.test/control/clock"


class ClockService:
    """A scripted clock service: answers the current offset, or what a test makes it."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.requests = 0
        self.answer: Callable[[httpx.Request], httpx.Response] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.answer is not None:
            return self.answer(request)
        return httpx.Response(200, json={"offset_seconds": self.offset, "now": 0.0})

    def clock(self) -> RemoteOffsetClock:
        return RemoteOffsetClock(URL, client=httpx.Client(transport=httpx.MockTransport(self)))


def _ahead(clock: RemoteOffsetClock) -> float:
    return (clock.now() - datetime.now(UTC)).total_seconds()


def test_workers_remote_clock_reads_the_offset_afresh_on_every_call() -> None:
    service = ClockService(offset=3600)
    clock = service.clock()
    assert 3599 < _ahead(clock) < 3601
    service.offset = 7200  # moved by a test: the very next read must see it
    assert 7199 < _ahead(clock) < 7201
    assert service.requests == 2
    clock.close()


def test_workers_remote_clock_monotonic_jumps_with_the_offset() -> None:
    service = ClockService(offset=0)
    clock = service.clock()
    before = clock.monotonic()
    service.offset = 900  # a run budget measured across this jump has used 900 s
    assert clock.monotonic() - before == pytest.approx(900, abs=1)


def test_workers_remote_clock_monotonic_never_goes_back_when_the_offset_does() -> None:
    service = ClockService(offset=900)
    clock = service.clock()
    high = clock.monotonic()
    service.offset = 0  # e.g. the emulator's clock reset
    assert clock.monotonic() >= high


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(lambda r: httpx.Response(503, text="stopping"), id="http-error"),
        pytest.param(lambda r: httpx.Response(200, text="not json"), id="not-json"),
        pytest.param(lambda r: httpx.Response(200, json={"now": 1}), id="no-offset"),
        pytest.param(lambda r: httpx.Response(200, json={"offset_seconds": "x"}), id="bad-offset"),
        pytest.param(lambda r: httpx.Response(200, json=[1]), id="not-an-object"),
    ],
)
def test_workers_remote_clock_keeps_the_last_offset_when_the_service_fails(
    failure: Callable[[httpx.Request], httpx.Response], caplog: pytest.LogCaptureFixture
) -> None:
    service = ClockService(offset=600)
    clock = service.clock()
    assert 599 < _ahead(clock) < 601
    service.answer = failure
    with caplog.at_level(logging.WARNING, logger="functions_shared.offset_clock"):
        assert 599 < _ahead(clock) < 601
        assert 599 < _ahead(clock) < 601
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per outage, not once per read
    assert URL in warnings[0].getMessage() and "600.000" in warnings[0].getMessage()


def test_workers_remote_clock_survives_an_unreachable_service_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = ClockService(offset=0)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    service.answer = refuse
    clock = service.clock()
    with caplog.at_level(logging.INFO, logger="functions_shared.offset_clock"):
        assert abs(_ahead(clock)) < 1  # never read: wall time, and no exception
        service.answer = None
        service.offset = 120
        assert 119 < _ahead(clock) < 121
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "answers again" in caplog.records[1].getMessage()


def test_workers_remote_clock_read_offset_raises_for_a_strict_caller() -> None:
    service = ClockService()
    service.answer = lambda r: httpx.Response(500)
    with pytest.raises(ClockReadError, match=r"clock\.test"):
        service.clock().read_offset()


def test_workers_remote_clock_times_out_quickly_on_a_silent_service() -> None:
    """A real socket that accepts and never answers: the read gives up within its timeout."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        clock = RemoteOffsetClock(f"http://127.0.0.1:{port}/clock", timeout_seconds=0.2)
        started = time.monotonic()
        assert abs(_ahead(clock)) < 2
        assert time.monotonic() - started < 2
        clock.close()


def test_workers_clock_from_settings_follows_workers_clock_url() -> None:
    env = {
        "SERVICEBUS_CONNECTION_SEND": "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b",
        "TOPIC_JOBS": "jobs",
        "DATABASE_URL": "sqlite://",
        "REDIS_URL": "memory://",
    }
    assert isinstance(clock_from_settings(load_settings(Role.API, env)), SystemClock)
    remote = clock_from_settings(load_settings(Role.API, {**env, "WORKERS_CLOCK_URL": URL}))
    assert isinstance(remote, RemoteOffsetClock) and remote.url == URL
    with pytest.raises(SettingsError, match="WORKERS_CLOCK_URL"):
        load_settings(Role.API, {**env, "WORKERS_CLOCK_URL": "ftp://clock"})


def test_workers_remote_clock_reads_a_published_offset_file_instead_of_the_service(
    tmp_path: Path,
) -> None:
    """One `pread` per call, still afresh: a move written to the file is seen at once."""
    published = OffsetFile(tmp_path / "offset", writable=True)
    published.write(3600)
    service = ClockService(offset=0)
    clock = RemoteOffsetClock(
        URL,
        client=httpx.Client(transport=httpx.MockTransport(service)),
        offset_file=published.path,
    )
    assert 3599 < _ahead(clock) < 3601
    published.write(7200)
    assert 7199 < _ahead(clock) < 7201
    assert service.requests == 0
    clock.close()
    published.close()


def test_workers_remote_clock_falls_back_to_the_service_when_the_file_holds_nothing(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "offset"
    empty.write_bytes(b"")
    service = ClockService(offset=60)
    clock = RemoteOffsetClock(
        URL, client=httpx.Client(transport=httpx.MockTransport(service)), offset_file=empty
    )
    assert 59 < _ahead(clock) < 61
    assert service.requests == 1
    missing = RemoteOffsetClock(
        URL,
        client=httpx.Client(transport=httpx.MockTransport(service)),
        offset_file=tmp_path / "absent",
    )
    assert 59 < _ahead(missing) < 61
    clock.close()
    missing.close()


def test_workers_clock_file_setting_follows_the_clock_url() -> None:
    """WORKERS_CLOCK_FILE alone (no service to fall back to) is ignored: wall time."""
    env = {
        "SERVICEBUS_CONNECTION_SEND": "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b",
        "TOPIC_JOBS": "jobs",
        "DATABASE_URL": "sqlite://",
        "REDIS_URL": "memory://",
        "WORKERS_CLOCK_FILE": "/tmp/offset",
    }
    assert load_settings(Role.API, env).clock_file == ""
    with_url = load_settings(Role.API, {**env, "WORKERS_CLOCK_URL": URL})
    assert with_url.clock_file == "/tmp/offset"
