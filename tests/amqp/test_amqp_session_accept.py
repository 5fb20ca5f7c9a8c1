"""How long a session accept waits: the client's timeout, at most the service's 65 s."""

from __future__ import annotations

import pytest

from emulator.servicebus.amqp.session_accept import OPERATION_TIMEOUT_SECONDS, accept_wait_seconds


@pytest.mark.parametrize(
    ("timeout_ms", "seconds"),
    [
        (None, 65.0),
        (0, 65.0),
        (10_000, 10.0),
        (64_980, 64.98),
        (69_980, 65.0),
        (3_600_000, 65.0),
    ],
)
def test_wait_is_the_clients_timeout_capped_by_the_operation_timeout(
    timeout_ms: int | None, seconds: float
) -> None:
    assert OPERATION_TIMEOUT_SECONDS == 65.0
    assert accept_wait_seconds(timeout_ms) == pytest.approx(seconds)
