"""Extra tables the process that embeds the emulator can show on the console.

The emulator knows nothing of the workers; `harness up` adds the jobs table and the workers'
recent invocations this way. A panel's source is called on the emulator's loop thread for
every refresh, so it must only read a snapshot kept elsewhere (never query a database).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PanelTable:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    note: str = ""
    """One line under the title: where the rows come from, how fresh, why there are none."""
    updated_at: datetime | None = None
    row_status: Sequence[str] = field(default_factory=tuple)
    """Optional per-row tone (``ok``, ``warn``, ``bad``) for the row's colour."""


PanelSource = Callable[[], PanelTable]


@dataclass(frozen=True)
class Panel:
    name: str
    """Its id in the page and in ``/console/panels/<name>``: letters, digits, ``-``."""
    source: PanelSource
