"""Helpers for tests that build throwaway function apps."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

PREAMBLE = """\
import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

app = func.FunctionApp()
"""


def write_app(
    folder: Path,
    code: str,
    *,
    service_bus: dict[str, Any] | None = None,
    function_timeout: str | None = None,
    local_settings: dict[str, str] | None = None,
    preamble: str = PREAMBLE,
) -> Path:
    """Write `function_app.py` (preamble + code) and `host.json` into `folder`; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "function_app.py").write_text(preamble + "\n" + textwrap.dedent(code))
    host: dict[str, Any] = {"version": "2.0", "extensions": {"serviceBus": service_bus or {}}}
    if function_timeout is not None:
        host["functionTimeout"] = function_timeout
    (folder / "host.json").write_text(json.dumps(host, indent=2))
    if local_settings is not None:
        (folder / "local.settings.json").write_text(
            json.dumps({"IsEncrypted": False, "Values": local_settings}, indent=2)
        )
    return folder
