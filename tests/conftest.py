"""Project-wide test settings."""

from __future__ import annotations

import pytest

from emulator.servicebus.core.rules import STRICT_FILTERS_ENV


@pytest.fixture(autouse=True)
def _strict_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule that raises fails the test instead of dead-lettering quietly (``core/rules.py``).

    Set in the environment so emulators the test starts in child processes are strict too;
    a test of the lenient path uses ``strict_filters(False)``, which wins.
    """
    monkeypatch.setenv(STRICT_FILTERS_ENV, "1")
