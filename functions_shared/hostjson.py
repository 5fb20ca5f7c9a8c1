"""host.json as the Functions host applies it: the file, then `AzureFunctionsJobHost__` app
settings, which override single values without a redeploy.

The apps size their work by these values (a run must end inside the lock-renewal window), so
they must read the same effective values the host does, not the file alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


def parse_timespan(value: str) -> float:
    """host.json `hh:mm:ss[.fff]` (optionally `d.hh:mm:ss`) → seconds."""
    days = 0
    if value.count(".") and value.index(".") < value.index(":"):
        day_part, value = value.split(".", 1)
        days = int(day_part)
    hours, minutes, seconds = value.split(":")
    return days * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def host_json_overrides(settings: Mapping[str, str]) -> dict[str, str]:
    """The app settings that override host.json, by name (matched case-insensitively)."""
    prefix = OVERRIDE_PREFIX.lower()
    return {k: v for k, v in settings.items() if k.lower().startswith(prefix)}


def apply_overrides(data: Mapping[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    """A copy of host.json `data` with every `AzureFunctionsJobHost__a__b` setting applied.

    Keys match case-insensitively, like the host's configuration; missing objects are
    created. Values stay strings, as app settings are. Raises ValueError for a setting
    whose path has an empty segment.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(data))
    for name, value in sorted(host_json_overrides(settings).items()):
        path = name[len(OVERRIDE_PREFIX) :].split("__")
        if not all(path):
            raise ValueError(f"app setting {name}: empty segment in the host.json path")
        node = merged
        for part in path[:-1]:
            key = _existing_key(node, part)
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[_existing_key(node, path[-1])] = value
    return merged


def _existing_key(node: Mapping[str, Any], name: str) -> str:
    return next((key for key in node if key.lower() == name.lower()), name)
