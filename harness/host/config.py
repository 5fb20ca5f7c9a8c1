"""host.json, local.settings.json and `%SETTING%` resolution.

Kept apart from the runtime so the profile a host will apply can be read (and asserted on)
without starting anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One reading of AzureFunctionsJobHost__ overrides, shared by the host and the apps it runs.
from functions_shared.hostjson import apply_overrides

_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)$")
_SETTING = re.compile(r"%([^%]+)%")

# Premium/Dedicated default; Core Tools apply the same when host.json says nothing.
DEFAULT_FUNCTION_TIMEOUT = 30 * 60.0


class HostConfigError(ValueError):
    """host.json or local.settings.json cannot be used as written."""


class MissingSettingsError(RuntimeError):
    """Binding settings the host needs are not set; names every one of them at once."""

    def __init__(self, app: str, missing: Mapping[str, list[str]]) -> None:
        self.app = app
        self.missing = dict(missing)
        names = sorted({name for names in self.missing.values() for name in names})
        detail = "; ".join(f"{fn}: {', '.join(n)}" for fn, n in sorted(self.missing.items()))
        super().__init__(f"{app}: missing app settings {', '.join(names)} ({detail})")

    @property
    def names(self) -> list[str]:
        return sorted({name for names in self.missing.values() for name in names})


def parse_timespan(value: str | float | int | None) -> float | None:
    """A .NET TimeSpan (`[d.]hh:mm:ss[.fff]`) in seconds; `-1` means unbounded (None)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return None if value < 0 else float(value)
    text = value.strip()
    if text == "-1":
        return None
    match = _TIMESPAN.match(text)
    if not match:
        raise HostConfigError(f"not a TimeSpan: {value!r} (expected [d.]hh:mm:ss[.fff])")
    days = int(match["days"] or 0)
    return days * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + float(match["s"])


def _as_bool(value: Any) -> bool:
    """host.json booleans; app-setting overrides arrive as the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class HostOptions:
    """The host.json settings this host applies (extension 5.x defaults when absent)."""

    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT
    prefetch_count: int = 0
    auto_complete_messages: bool = True
    max_auto_lock_renewal_duration: float = 300.0
    max_concurrent_calls: int = 16
    client_retry: Mapping[str, Any] = field(default_factory=dict)  # SDK client kwargs

    def sdk_retry_kwargs(self) -> dict[str, Any]:
        """`clientRetryOptions` as azure-servicebus client keyword arguments."""
        retry = self.client_retry
        out: dict[str, Any] = {}
        if "maxRetries" in retry:
            out["retry_total"] = int(retry["maxRetries"])
        if "delay" in retry:
            out["retry_backoff_factor"] = parse_timespan(retry["delay"])
        if "maxDelay" in retry:
            out["retry_backoff_max"] = parse_timespan(retry["maxDelay"])
        if str(retry.get("mode", "")).lower() in ("exponential", "fixed"):
            out["retry_mode"] = str(retry["mode"]).lower()
        return out

    @classmethod
    def from_host_json(cls, data: Mapping[str, Any]) -> HostOptions:
        extensions = data.get("extensions", {}) or {}
        sb = extensions.get("serviceBus", {}) if isinstance(extensions, dict) else None
        sb = sb or {}
        # Older (3.x) host.json nests the processor settings under messageHandlerOptions.
        handler = sb.get("messageHandlerOptions", {}) if isinstance(sb, dict) else None
        handler = handler or {}
        if not isinstance(sb, dict) or not isinstance(handler, dict):
            raise HostConfigError("host.json: extensions.serviceBus must be an object")
        try:
            timeout = (
                parse_timespan(data["functionTimeout"])
                if "functionTimeout" in data
                else DEFAULT_FUNCTION_TIMEOUT
            )
            renewal = parse_timespan(
                sb.get(
                    "maxAutoLockRenewalDuration",
                    handler.get("maxAutoRenewDuration", "00:05:00"),
                )
            )
            options = cls(
                function_timeout=timeout,
                prefetch_count=int(sb.get("prefetchCount", 0)),
                auto_complete_messages=_as_bool(
                    sb.get("autoCompleteMessages", handler.get("autoComplete", True))
                ),
                max_auto_lock_renewal_duration=0.0 if renewal is None else renewal,
                max_concurrent_calls=int(
                    sb.get("maxConcurrentCalls", handler.get("maxConcurrentCalls", 16))
                ),
                client_retry=dict(sb.get("clientRetryOptions", {}) or {}),
            )
        except (TypeError, ValueError) as exc:
            raise HostConfigError(f"host.json: {exc}") from exc
        if options.max_concurrent_calls < 1:
            raise HostConfigError("host.json: maxConcurrentCalls must be at least 1")
        if options.prefetch_count < 0:
            raise HostConfigError("host.json: prefetchCount must not be negative")
        return options

    @classmethod
    def load(cls, path: Path, settings: Mapping[str, str] | None = None) -> HostOptions:
        """host.json (defaults when absent) with the `AzureFunctionsJobHost__` overrides
        found in `settings` applied."""
        data: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise HostConfigError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise HostConfigError(f"{path}: the top level must be a JSON object")
        try:
            effective = apply_overrides(data, settings or {})
        except ValueError as exc:
            raise HostConfigError(str(exc)) from exc
        return cls.from_host_json(effective)


def load_local_settings(path: Path) -> dict[str, str]:
    """`Values` of local.settings.json as strings (empty when the file is absent)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path}: {exc}") from exc
    if data.get("IsEncrypted"):
        raise HostConfigError(f"{path}: encrypted settings are not supported locally")
    values = data.get("Values", {}) or {}
    return {str(key): "" if value is None else str(value) for key, value in values.items()}


def resolve_setting_refs(value: str, settings: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace each `%NAME%` with its app setting; returns the text and the names not set."""
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in settings and settings[name] != "":
            return settings[name]
        missing.append(name)
        return match.group(0)

    return _SETTING.sub(substitute, value), missing
