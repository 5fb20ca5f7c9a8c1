"""Redaction for exports that are committed (dead letters kept as regression tests).

`--redact body.creator.email` replaces that field of a JSON body; `--redact prop:email` an
application property; either becomes the string ``"<redacted>"``. A body path that is not
there is left alone (not every dead letter has every field); a path through something that
is not a JSON object, or a body that is not JSON, is refused with a clear error instead of
being exported unredacted."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from .errors import DlqError
from .records import DeadLetterRecord

REDACTED = "<redacted>"


class RedactionError(DlqError):
    """A field that was asked to be redacted cannot be: nothing is written for it."""


@dataclasses.dataclass(frozen=True)
class Redaction:
    body_paths: tuple[tuple[str, ...], ...] = ()
    properties: tuple[str, ...] = ()

    @classmethod
    def parse(cls, specs: Sequence[str]) -> Redaction:
        body: list[tuple[str, ...]] = []
        props: list[str] = []
        for spec in specs:
            if spec.startswith("prop:") and spec[5:]:
                props.append(spec[5:])
            elif spec.startswith("body.") and all(spec[5:].split(".")):
                body.append(tuple(spec[5:].split(".")))
            else:
                raise RedactionError(
                    f"--redact {spec!r}: expected body.<field>[.<field>...] or prop:<name>"
                )
        return cls(tuple(body), tuple(props))

    def __bool__(self) -> bool:
        return bool(self.body_paths or self.properties)

    def apply(self, record: DeadLetterRecord) -> DeadLetterRecord:
        """A copy of ``record`` with the named fields replaced."""
        properties = dict(record.application_properties)
        for name in self.properties:
            if name in properties:
                properties[name] = REDACTED
        body = record.body
        if self.body_paths:
            body = self._redact_body(record)
        return dataclasses.replace(record, body=body, application_properties=properties)

    def _redact_body(self, record: DeadLetterRecord) -> Any:
        where = f"dead letter {record.sequence_number} ({record.message_id})"
        if record.body_type != "data":
            raise RedactionError(f"{where}: body paths need a JSON body, not an AMQP value")
        try:
            document = json.loads(record.body)
        except (UnicodeDecodeError, ValueError):
            raise RedactionError(
                f"{where}: the body is not JSON; cannot redact its fields"
            ) from None
        for path in self.body_paths:
            _replace(document, path, where)
        return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _replace(document: Any, path: tuple[str, ...], where: str) -> None:
    node = document
    for depth, key in enumerate(path):
        if not isinstance(node, dict):
            shown = "body." + ".".join(path[:depth]) if depth else "the body"
            raise RedactionError(f"{where}: {shown} is not a JSON object")
        if key not in node:
            return
        if depth == len(path) - 1:
            node[key] = REDACTED
        else:
            node = node[key]
