"""The uvicorn-in-a-thread runner, interruptible holds and the waiting recorder."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time

import httpx
import pytest
from fastapi import FastAPI

from standins._http_runner import Holds, ServerThread
from standins._recorder import Recorder


def _app(holds: Holds) -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.get("/hold")
    async def hold() -> dict[str, bool]:
        return {"released": await holds.wait(60)}

    return app


def test_standin_runner_serves_on_a_free_port_and_stops_without_leaks(
    no_leaked_threads: None,
) -> None:
    holds = Holds()
    runner = ServerThread(_app(holds), name="probe")
    runner.before_stop.append(holds.release_all)
    with runner:
        assert runner.port > 0 and runner.url == f"http://127.0.0.1:{runner.port}"
        assert httpx.get(runner.url + "/ping").json() == {"pong": "yes"}
        assert runner.running
    assert not runner.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = runner.url


def test_standin_runner_stop_releases_a_held_request(no_leaked_threads: None) -> None:
    holds = Holds()
    runner = ServerThread(_app(holds), name="probe")
    runner.before_stop.append(holds.release_all)
    runner.start()
    results: list[int] = []
    client = threading.Thread(
        target=lambda: results.append(httpx.get(runner.url + "/hold", timeout=30).status_code)
    )
    client.start()
    holds.wait_held(1)
    runner.stop()  # would take 60 s if the hold were not released
    client.join(10)
    assert results == [200]


def test_standin_runner_refuses_a_busy_port() -> None:
    with ServerThread(FastAPI(), name="a") as first:
        with pytest.raises(OSError):
            ServerThread(FastAPI(), name="b", port=first.port).start()


def test_standin_runner_start_twice_is_an_error() -> None:
    with ServerThread(FastAPI(), name="a") as runner:
        with pytest.raises(RuntimeError, match="already started"):
            runner.start()


async def test_standin_holds_time_out_and_release() -> None:
    holds = Holds()
    assert await holds.wait(0.01) is False
    waiter = asyncio.ensure_future(holds.wait(30))
    await asyncio.to_thread(holds.wait_held, 1)
    assert holds.held == 1
    holds.release_all()
    assert await waiter is True


def test_standin_recorder_wait_for_reports_what_arrived() -> None:
    rec: Recorder[str] = Recorder("greetings")
    threading.Thread(target=rec.append, args=("hello",)).start()
    assert rec.wait_for(lambda s: s == "hello", timeout=5) == ["hello"]
    with pytest.raises(AssertionError, match=r"1 matching greetings[\s\S]*'hello'"):
        rec.wait_for(lambda s: s == "bye", timeout=0.05)


def _idle_seconds_until_closed(runner: ServerThread, wait: float) -> float | None:
    """One keep-alive request on a raw socket, then how long the idle connection lasts
    (None: still open after `wait`)."""
    connection = http.client.HTTPConnection("127.0.0.1", runner.port)
    connection.request("GET", "/ping")
    assert connection.getresponse().read() == b'{"pong":"yes"}'
    with connection.sock as sock:
        sock.settimeout(wait)
        answered = time.monotonic()
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            return None
        return time.monotonic() - answered if closed else None


def test_idle_keep_alive_connections_outlast_a_creators_think_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn's 5 s closed connections that load users reused after 3-9 s of thinking:
    the request raced the close and failed with a reset (issue 14, stress run)."""
    import standins._http_runner as runner_module

    assert runner_module.KEEP_ALIVE_S > 9  # the busy pace thinks 3-9 s (load/locustfile.py)
    monkeypatch.setattr(runner_module, "KEEP_ALIVE_S", 0.3)
    with ServerThread(_app(Holds()), name="probe") as runner:
        lasted = _idle_seconds_until_closed(runner, wait=5)
    assert lasted is not None and 0.25 <= lasted < 3, lasted
