"""ISO-8601 durations as the service reads and writes them (``PT1M``, ``P1DT2H30M``).

Config.json and the management API's Atom bodies both carry them; the service is .NET, so
years and months count as .NET's ``XmlConvert.ToTimeSpan`` counts them.
"""

from __future__ import annotations

import re
from datetime import timedelta

_NUM = r"(\d+)"
_DURATION_RE = re.compile(
    rf"(?P<sign>-)?P(?!$)(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?"
    rf"(?:T(?=\d)(?:{_NUM}H)?(?:{_NUM}M)?(?:(\d+(?:[.,]\d+)?)S)?)?"
)
# Years and months as .NET's XmlConvert.ToTimeSpan counts them (the service is .NET).
_UNIT_SECONDS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO-8601 duration (``PT1M``, ``P1D``, ``P1DT2H30M``, ``PT0.5S``).

    Raises ValueError for anything else; a leading ``-`` gives a negative duration so that
    the caller can report "must be positive" rather than "malformed".
    """
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO-8601 duration")
    parts = match.groups()[1:]
    seconds = sum(
        float(part.replace(",", ".")) * unit
        for part, unit in zip(parts, _UNIT_SECONDS, strict=True)
        if part is not None
    )
    try:
        duration = timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None
    return -duration if match.group("sign") else duration


def format_duration(duration: timedelta) -> str:
    """Render a timedelta as an ISO-8601 duration (the inverse of :func:`parse_duration`)."""
    total_us = round(duration.total_seconds() * 1_000_000)
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    days, rem = divmod(total_us, 86_400_000_000)
    hours, rem = divmod(rem, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds, micros = divmod(rem, 1_000_000)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or micros:
        frac = f".{micros:06d}".rstrip("0") if micros else ""
        time += f"{seconds}{frac}S"
    if time:
        out += "T" + time
    return out if out not in ("P", "-P") else "PT0S"
