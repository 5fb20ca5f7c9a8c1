"""Dead letters kept as regression tests: export files under `scenarios/replays/` (or given
with `--replays PATH`) and the outcome each message is expected to have.

An export (`harness dlq export --out NAME.jsonl [--redact ...]`) sits beside
`NAME.expected.json`, which maps each dead letter's sequence number to what the real handler
must do with it on the local stack: `{"settlement": "completed"}`, or
`{"settlement": "dead-lettered", "reason": "INVALID_PAYLOAD"}`. `--replays-update` writes
what a run saw into that file instead of comparing (review the diff before committing)."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.dlq import DeadLetterRecord, DeadLetterSource
from harness.dlq.records import read_records

REPLAYS_DIR = Path(__file__).parent / "replays"
SUFFIX = ".jsonl"


@dataclass(frozen=True)
class KeptDeadLetter:
    """One dead letter of an export file, and where its expectation is kept."""

    export: Path
    record: DeadLetterRecord

    @property
    def key(self) -> str:
        return str(self.record.sequence_number)

    @property
    def test_id(self) -> str:
        return f"{self.export.name}:{self.key}"

    @property
    def expectations_file(self) -> Path:
        return expectations_path(self.export)

    @property
    def source(self) -> DeadLetterSource:
        return DeadLetterSource.from_path(self.record.entity_path)

    def expected(self) -> dict[str, Any] | None:
        return read_expectations(self.expectations_file).get(self.key)

    def store(self, seen: dict[str, Any]) -> None:
        """Write what was seen for this dead letter (a lock: xdist workers share the file).

        The lock file stays (git ignores it): removing it would let a waiting worker and a
        new one each lock a different file."""
        path = self.expectations_file
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = read_expectations(path)
            current[self.key] = seen
            ordered = dict(sorted(current.items(), key=lambda item: int(item[0])))
            path.write_text(json.dumps(ordered, indent=2) + "\n")


def expectations_path(export: Path) -> Path:
    return export.with_name(export.name.removesuffix(SUFFIX) + ".expected.json")


def read_expectations(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of sequence number -> outcome")
    return data


def export_files(paths: Iterable[Path]) -> list[Path]:
    """The export files among ``paths`` (directories are searched for `*.jsonl`)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.glob(f"*{SUFFIX}"))
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"--replays {path}: no such file or directory")
    return found


def kept_dead_letters(paths: Iterable[Path]) -> Iterator[KeptDeadLetter]:
    for export in export_files(paths):
        records, _ = read_records(export.read_bytes().splitlines(), source=str(export))
        for record in records:
            yield KeptDeadLetter(export, record)
