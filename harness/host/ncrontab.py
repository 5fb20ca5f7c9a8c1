"""NCRONTAB schedules as the Functions timer trigger reads them.

Six fields (`sec min hour day month day-of-week`); five-field expressions get second 0.
Like NCrontab (and unlike Vixie cron) a restricted day-of-month and day-of-week must both
match. A TimeSpan (`hh:mm:ss`) schedule means "every interval" (App Service plans).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+):(\d+)$")

# (low, high, names) per field, in NCRONTAB order.
_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
]


class ScheduleError(ValueError):
    """The schedule string is not a valid NCRONTAB expression or TimeSpan."""


def _value(token: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not token.isdigit():
        raise ScheduleError(f"{field}: {token!r} is not a number")
    number = int(token)
    if field == "day-of-week" and number == 7:
        number = 0  # Sunday written as 7
    if not low <= number <= high:
        raise ScheduleError(f"{field}: {number} is outside {low}-{high}")
    return number


def _parse_field(text: str, low: int, high: int, names: dict[str, int], field: str) -> frozenset:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{field}: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, low, high, names, field)
            end = _value(last, low, high, names, field)
            if end < start:
                raise ScheduleError(f"{field}: range {base!r} runs backwards")
        else:
            start = _value(base, low, high, names, field)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed timer schedule; `next_after` gives the next occurrence strictly after a time."""

    expression: str
    seconds: frozenset = frozenset()
    minutes: frozenset = frozenset()
    hours: frozenset = frozenset()
    days: frozenset = frozenset()
    months: frozenset = frozenset()
    weekdays: frozenset = frozenset()
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        span = _TIMESPAN.match(text)
        if span:
            days, hours, minutes, seconds = (int(g or 0) for g in span.groups())
            interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            if interval <= timedelta(0):
                raise ScheduleError(f"{expression!r}: interval must be positive")
            return cls(expression, interval=interval)
        parts = text.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise ScheduleError(
                f"{expression!r}: NCRONTAB needs 6 fields (sec min hour day month day-of-week)"
            )
        sets = [
            _parse_field(part, low, high, names, field)
            for part, (field, low, high, names) in zip(parts, _FIELDS, strict=True)
        ]
        return cls(expression, *sets)

    def next_after(self, when: datetime) -> datetime:
        """The first occurrence strictly after `when` (aware datetimes; UTC if naive)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if self.interval is not None:
            return when + self.interval
        t = when.replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            if t.day not in self.days or (t.isoweekday() % 7) not in self.weekdays:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
                continue
            if t.second not in self.seconds:
                t += timedelta(seconds=1)
                continue
            return t
        raise ScheduleError(f"{self.expression!r} never occurs")
