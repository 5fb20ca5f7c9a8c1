"""App settings in this process's `os.environ`, for apps that run in this process.

A Functions app reads its settings from the environment, at import and at call time, as in
Azure, where the app settings are the worker process's environment. The host itself takes
them as data (`FunctionsHost.load(settings=...)`) and never writes `os.environ`: that is the
business of whoever owns the process the app runs in. `python -m harness.host` owns its
process and writes once; an in-process owner (a test, the pytest plugin, `LocalSystem`)
writes through a `ProcessEnvironment` and puts everything back when its apps have stopped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType


class ProcessEnvironment:
    """Writes app settings into `os.environ`; `restore()` (or leaving the `with` block) puts
    back every variable it touched as it was before the first write.

    One instance may serve several apps loaded one after another (their settings are
    process-wide anyway): `apply` may be called again and a later value wins.
    """

    def __init__(self) -> None:
        self._before: dict[str, str | None] = {}

    def apply(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._before.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore(self) -> None:
        before, self._before = self._before, {}
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> ProcessEnvironment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()
