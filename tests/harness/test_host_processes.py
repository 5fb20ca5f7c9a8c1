"""Worker apps as host processes (`harness up`) and the clock they follow."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emulator.servicebus import ServiceBusEmulator
from emulator.servicebus.topology import NamespaceTopology, QueueDescription
from functions_shared.offset_clock import ClockReadError
from harness.host.__main__ import main as host_main
from harness.host.broker_clock import ControlApiClock
from harness.host.testing import write_app
from harness.processes import HostProcess, HostProcessError, child_environment


@pytest.fixture
def emu() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(NamespaceTopology(queues=[QueueDescription("work")])) as emulator:
        yield emulator


def test_control_api_clock_follows_the_emulator_at_once(emu: ServiceBusEmulator) -> None:
    emu.clock.advance(600)
    clock = ControlApiClock(emu.control_url)
    try:
        ahead = (clock() - datetime.now(UTC)).total_seconds()
        assert 599 < ahead < 601
        emu.clock.advance(60)  # no refresh period: the very next read sees the move
        assert 659 < (clock() - datetime.now(UTC)).total_seconds() < 661
    finally:
        clock.close()


def test_control_api_clock_fails_at_once_when_unreachable() -> None:
    with pytest.raises(ClockReadError, match=r"127\.0\.0\.1:9"):
        ControlApiClock("http://127.0.0.1:9/control")


def test_host_process_refuses_an_unreachable_broker_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = write_app(tmp_path / "app", "")
    assert host_main([str(app), "--broker-clock", "http://127.0.0.1:9/control"]) == 2
    assert "control API unreachable" in capsys.readouterr().err


def test_a_host_process_that_cannot_start_reports_its_output(tmp_path: Path) -> None:
    app = write_app(tmp_path / "broken", "raise RuntimeError('DATABASE_URL is not set')\n")
    out = io.StringIO()
    process = HostProcess("broken", app, child_environment({}), output=out).start()
    try:
        with pytest.raises(HostProcessError, match="exited") as caught:
            process.wait_ready(timeout=60)
    finally:
        process.stop()
    assert "DATABASE_URL is not set" in str(caught.value)
    assert "[broken] " in out.getvalue()  # relayed with the app's prefix


def test_a_host_process_runs_an_app_and_stops_on_request(
    tmp_path: Path, emu: ServiceBusEmulator
) -> None:
    app = write_app(
        tmp_path / "ok",
        """
        @app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="SB")
        def handle(msg: func.ServiceBusMessage) -> None:
            pass
        """,
    )
    out = io.StringIO()
    process = HostProcess(
        "ok",
        app,
        child_environment({"SB": emu.connection_string}),
        broker_clock_url=emu.control_url,
        output=out,
    ).start()
    try:
        process.wait_ready(timeout=60)
    finally:
        code = process.stop()
    assert code == 0
    assert "[ok] host ok running" in out.getvalue()
