"""Entity descriptions (``topology``) as JSON, for the ``entities`` table.

JSON rather than pickle: the file stays readable with ``sqlite3`` and a code change cannot
silently change what loads. Every dataclass carries its type name, every value that JSON has
no type for (durations, instants, SAS rights) a tag, so a description reads back equal to the
one written. Anything unknown (a type, a field) raises :class:`DescriptionError`, which the
journal reports as an incompatible state database instead of guessing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ..topology import (
    AccessRights,
    CorrelationFilterSpec,
    FalseFilterSpec,
    QueueDescription,
    RuleDescription,
    SasPolicy,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    TrueFilterSpec,
)

_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        QueueDescription,
        TopicDescription,
        SubscriptionDescription,
        RuleDescription,
        SasPolicy,
        SqlFilterSpec,
        CorrelationFilterSpec,
        TrueFilterSpec,
        FalseFilterSpec,
    )
}
_TAG = "$t"


class DescriptionError(ValueError):
    """A stored description this version cannot read."""


def _encode(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, AccessRights):
        return {_TAG: "AccessRights", "v": value.value}
    if isinstance(value, timedelta):
        return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in _CLASSES:
            raise DescriptionError(f"cannot store a {name}")
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {_TAG: name, **fields}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {_TAG: "map", "v": [[str(k), _encode(v)] for k, v in value.items()]}
    raise DescriptionError(f"cannot store a {type(value).__name__} value")


def _decode(value: object) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    raw = value.get("v")
    if tag == "AccessRights":
        return AccessRights(raw)
    if tag == "timedelta":
        days, seconds, micros = raw  # type: ignore[misc]
        return timedelta(days=days, seconds=seconds, microseconds=micros)
    if tag == "datetime":
        return datetime.fromisoformat(str(raw))
    if tag == "uuid":
        return uuid.UUID(str(raw))
    if tag == "bytes":
        return base64.b64decode(str(raw))
    if tag == "map":
        return {str(k): _decode(v) for k, v in raw}  # type: ignore[union-attr]
    cls = _CLASSES.get(str(tag))
    if cls is None:
        raise DescriptionError(f"unknown stored type {tag!r}")
    fields = {k: _decode(v) for k, v in value.items() if k != _TAG}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise DescriptionError(f"stored {tag} does not fit this version: {exc}") from None


def dumps(description: object) -> str:
    """One description (with nested rules/policies) as JSON text."""
    return json.dumps(_encode(description), separators=(",", ":"))


def loads(text: str) -> Any:
    """The description ``dumps`` wrote; DescriptionError if this version cannot read it."""
    try:
        return _decode(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, DescriptionError):
            raise
        raise DescriptionError(f"unreadable stored description: {exc}") from None


def dump_parameters(parameters: Mapping[str, object] | None) -> object:
    """A rule's ``@name`` parameters as JSON-ready data (None when there are none)."""
    return None if not parameters else _encode(dict(parameters))


def load_parameters(data: object) -> dict[str, object] | None:
    return None if data is None else dict(_decode(data))
