"""Typed JSON for AMQP values (uuids, binaries, timestamps, non-finite floats) so an export
file reads back exactly what the SDK exposed."""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


def encode_value(value: Any) -> Any:
    """An AMQP value as JSON; :func:`decode_value` gives the same Python value back.

    JSON scalars stay themselves; other types become ``{"$type": ..., "value": ...}``
    (``binary``, ``uuid``, ``timestamp``, ``double`` for NaN/infinities, ``map``), which no
    plain application property can be mistaken for (maps are not allowed there).
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$type": "double", "value": repr(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$type": "binary", "value": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, uuid.UUID):
        return {"$type": "uuid", "value": str(value)}
    if isinstance(value, datetime):
        return {"$type": "timestamp", "value": _iso(value)}
    if isinstance(value, list | tuple):
        return [encode_value(item) for item in value]
    if isinstance(value, Mapping):
        pairs = [[encode_value(k), encode_value(v)] for k, v in value.items()]
        return {"$type": "map", "value": pairs}
    raise TypeError(f"cannot export a {type(value).__name__} value")


def decode_value(data: Any, where: str = "value") -> Any:
    """Inverse of :func:`encode_value`; a ``ValueError`` names ``where`` the problem is."""
    if data is None or isinstance(data, bool | str | int | float):
        return data
    if isinstance(data, list):
        return [decode_value(item, f"{where}[{i}]") for i, item in enumerate(data)]
    if not isinstance(data, dict) or set(data) != {"$type", "value"}:
        raise ValueError(f'{where}: expected a JSON scalar, a list or {{"$type", "value"}}')
    kind, value = data["$type"], data["value"]
    try:
        if kind == "binary":
            return base64.b64decode(value, validate=True)
        if kind == "uuid":
            return uuid.UUID(value)
        if kind == "timestamp":
            return _parse_time(value)
        if kind == "double" and value in ("nan", "inf", "-inf"):
            return float(value)
        if kind == "map":
            return {
                decode_value(k, f"{where} key"): decode_value(v, f"{where}[{k!r}]")
                for k, v in value
            }
    except (TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"{where}: invalid {kind} value {value!r}") from exc
    raise ValueError(f"{where}: unknown $type {kind!r} (binary, uuid, timestamp, double, map)")


def _plain(value: Any) -> Any:
    """The SDK's decoded AMQP value with UTF-8 bytes as text (it returns strings as bytes)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError("not a string")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
