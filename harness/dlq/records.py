"""One dead letter as a JSON line: the export record, reading an export file back, and the
selection (`--where`, `--message-id`) replay applies to records."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from azure.servicebus import (
    ServiceBusReceivedMessage,
)
from azure.servicebus.amqp import (
    AmqpAnnotatedMessage,
    AmqpMessageBodyType,
    AmqpMessageHeader,
    AmqpMessageProperties,
)

# The markers live with the emulator, whose console resubmits dead letters the same way.
from emulator.servicebus.replay_markers import DEAD_LETTER_PROPERTIES as _DEAD_LETTER_PROPERTIES
from emulator.servicebus.replay_markers import ORIGINAL_MESSAGE_ID as ORIGINAL_MESSAGE_ID
from emulator.servicebus.replay_markers import REPLAY_COUNT as REPLAY_COUNT
from emulator.servicebus.replay_markers import REPLAY_OF as REPLAY_OF
from emulator.servicebus.replay_markers import REPLAYED_AT as REPLAYED_AT
from emulator.servicebus.replay_markers import REPLAYED_FROM as REPLAYED_FROM
from emulator.servicebus.replay_markers import replay_id as _replay_id
from emulator.servicebus.replay_markers import replay_properties
from emulator.servicebus.sqlfilter import MessageView, SqlFilterError, compile_filter

if TYPE_CHECKING:
    pass

from .clients import DeadLetterSource
from .errors import BadRecordsError, DlqError
from .values import _iso, _parse_time, _plain, decode_value, encode_value

_PARTITION_KEY = "x-opt-partition-key"
_PEEK_BATCH = 100
_RECEIVE_BATCH = 100
BODY_ENCODINGS = ("text", "base64", "amqp-value", "amqp-sequence")

Selector = Callable[["DeadLetterRecord"], bool]


_TEXT_FIELDS = (
    "message_id",
    "correlation_id",
    "subject",
    "content_type",
    "reply_to",
    "reply_to_session_id",
    "session_id",
    "partition_key",
    "to",
    "dead_letter_reason",
    "dead_letter_error_description",
    "dead_letter_source",
)


@dataclass
class DeadLetterRecord:
    """One dead letter: what a replay sends, plus why and where it died.

    The same record backs export (``to_json``) and replay (``to_message``), so a replay from
    the DLQ and a replay from an exported file send identical copies.
    """

    entity_path: str
    """The dead-letter sub-queue it was read from; becomes ``x-replayed-from``."""
    body: Any
    """``bytes`` for a data body; the decoded AMQP value or list of sequences otherwise."""
    body_type: Literal["data", "value", "sequence"] = "data"
    message_id: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    content_type: str | None = None
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    session_id: str | None = None
    partition_key: str | None = None
    to: str | None = None
    time_to_live: timedelta | None = None
    application_properties: dict[str, Any] = field(default_factory=dict)
    """Without the broker's ``DeadLetterReason`` / ``DeadLetterErrorDescription``."""
    sequence_number: int | None = None
    enqueued_time: datetime | None = None
    delivery_count: int | None = None
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    dead_letter_source: str | None = None

    @property
    def origin(self) -> str:
        """The queue or topic it was dead-lettered from: the default replay target."""
        return DeadLetterSource.from_path(self.entity_path).entity

    @classmethod
    def from_message(cls, message: ServiceBusReceivedMessage, entity_path: str) -> DeadLetterRecord:
        raw = message.raw_amqp_message
        body: Any
        body_type: Literal["data", "value", "sequence"]
        if raw.body_type == AmqpMessageBodyType.DATA:
            body, body_type = b"".join(raw.body), "data"
        elif raw.body_type == AmqpMessageBodyType.SEQUENCE:
            body, body_type = [_plain(section) for section in raw.body], "sequence"
        else:
            body, body_type = _plain(raw.body), "value"
        properties = {
            str(_plain(key)): _plain(value)
            for key, value in (message.application_properties or {}).items()
        }
        for name in _DEAD_LETTER_PROPERTIES:
            properties.pop(name, None)
        return cls(
            entity_path=entity_path,
            body=body,
            body_type=body_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            subject=message.subject,
            content_type=message.content_type,
            reply_to=message.reply_to,
            reply_to_session_id=message.reply_to_session_id,
            session_id=message.session_id,
            partition_key=message.partition_key,
            to=message.to,
            time_to_live=message.time_to_live or None,
            application_properties=properties,
            sequence_number=message.sequence_number,
            enqueued_time=message.enqueued_time_utc,
            delivery_count=message.delivery_count,
            dead_letter_reason=message.dead_letter_reason,
            dead_letter_error_description=message.dead_letter_error_description,
            dead_letter_source=message.dead_letter_source,
        )

    # -- JSON -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """One export line; ``body_encoding`` says how to read ``body``."""
        if self.body_type == "data":
            try:
                body, encoding = self.body.decode("utf-8"), "text"
            except UnicodeDecodeError:
                body, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        else:
            body, encoding = encode_value(self.body), f"amqp-{self.body_type}"
        ttl = self.time_to_live.total_seconds() if self.time_to_live else None
        return {
            "entity_path": self.entity_path,
            "sequence_number": self.sequence_number,
            "enqueued_time": _iso(self.enqueued_time) if self.enqueued_time else None,
            "delivery_count": self.delivery_count,
            "dead_letter_reason": self.dead_letter_reason,
            "dead_letter_error_description": self.dead_letter_error_description,
            "dead_letter_source": self.dead_letter_source,
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "subject": self.subject,
            "content_type": self.content_type,
            "reply_to": self.reply_to,
            "reply_to_session_id": self.reply_to_session_id,
            "session_id": self.session_id,
            "partition_key": self.partition_key,
            "to": self.to,
            "time_to_live_seconds": ttl,
            "application_properties": {
                name: encode_value(value) for name, value in self.application_properties.items()
            },
            "body_encoding": encoding,
            "body": body,
        }

    @classmethod
    def from_json(cls, data: Any) -> DeadLetterRecord:
        """Validate one export line; a ``ValueError`` names the field. Unknown keys are kept
        out (a later version may add fields), wrong types are not guessed at."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        path = data.get("entity_path")
        if not isinstance(path, str):
            raise ValueError("entity_path: missing or not a string")
        try:
            DeadLetterSource.from_path(path)
        except ValueError as exc:
            raise ValueError(f"entity_path: {exc}") from None
        texts: dict[str, str | None] = {}
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}: expected a string or null")
            texts[name] = value
        body, body_type = _body_from_json(data)
        ttl = data.get("time_to_live_seconds")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0
        ):
            raise ValueError("time_to_live_seconds: expected a positive number or null")
        raw_props = data.get("application_properties", {})
        if not isinstance(raw_props, dict):
            raise ValueError("application_properties: expected an object")
        properties: dict[str, Any] = {}
        for name, value in raw_props.items():
            decoded = decode_value(value, f"application_properties.{name}")
            if isinstance(decoded, list | dict):
                raise ValueError(f"application_properties.{name}: must be a single value")
            properties[name] = decoded
        for name in ("sequence_number", "delivery_count"):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name}: expected an integer or null")
        enqueued = data.get("enqueued_time")
        try:
            enqueued_time = _parse_time(enqueued) if enqueued is not None else None
        except ValueError:
            raise ValueError(f"enqueued_time: {enqueued!r} is not an ISO-8601 time") from None
        return cls(
            entity_path=path,
            body=body,
            body_type=body_type,
            time_to_live=timedelta(seconds=ttl) if ttl else None,
            application_properties=properties,
            sequence_number=data.get("sequence_number"),
            enqueued_time=enqueued_time,
            delivery_count=data.get("delivery_count"),
            **texts,
        )

    # -- replay -----------------------------------------------------------------------------

    @property
    def replay_id(self) -> str:
        """One dead letter, named for ``x-replay-of``: its DLQ and sequence number (unique
        there), or its message id when an export lacks the number."""
        return _replay_id(self.entity_path, self.sequence_number, self.message_id)

    def to_message(self, *, new_message_id: bool = False) -> AmqpAnnotatedMessage:
        """The copy a replay sends: same body and properties, plus the replay markers.

        Raises ``ValueError`` for what the SDK cannot send (binary non-UTF-8 properties).
        """
        properties = dict(self.application_properties)
        for name, value in properties.items():
            if isinstance(value, bytes):
                raise ValueError(
                    f"application property {name!r} is binary and not UTF-8; the Python SDK "
                    "can only send binary properties as text"
                )
        properties = replay_properties(
            properties,
            dead_letter_path=self.entity_path,
            replay_of=self.replay_id,
            replayed_at=datetime.now(UTC),
        )
        message_id = self.message_id
        if new_message_id:
            if message_id is not None:
                properties[ORIGINAL_MESSAGE_ID] = message_id
            message_id = str(uuid.uuid4())
        body: dict[str, Any] = {f"{self.body_type}_body": self.body}
        ttl = self.time_to_live
        return AmqpAnnotatedMessage(
            **body,
            properties=AmqpMessageProperties(
                message_id=message_id,
                correlation_id=self.correlation_id,
                subject=self.subject,
                content_type=self.content_type,
                reply_to=self.reply_to,
                to=self.to,
                group_id=self.session_id,
                reply_to_group_id=self.reply_to_session_id,
            ),
            header=AmqpMessageHeader(time_to_live=int(ttl.total_seconds() * 1000)) if ttl else None,
            application_properties=properties,
            annotations={_PARTITION_KEY: self.partition_key} if self.partition_key else None,
        )

    def view(self) -> MessageView:
        """What a ``--where`` filter sees: the SQL filter names of the system properties, and
        the application properties including ``DeadLetterReason`` as the broker stores it."""
        system = {
            "MessageId": self.message_id,
            "CorrelationId": self.correlation_id,
            "Label": self.subject,
            "ContentType": self.content_type,
            "ReplyTo": self.reply_to,
            "ReplyToSessionId": self.reply_to_session_id,
            "SessionId": self.session_id,
            "PartitionKey": self.partition_key,
            "To": self.to,
            "TimeToLive": self.time_to_live,
            "SequenceNumber": self.sequence_number,
            "EnqueuedTimeUtc": self.enqueued_time,
            "DeliveryCount": self.delivery_count,
            "DeadLetterSource": self.dead_letter_source,
        }
        user = dict(self.application_properties)
        reasons = (self.dead_letter_reason, self.dead_letter_error_description)
        for name, value in zip(_DEAD_LETTER_PROPERTIES, reasons, strict=True):
            if value is not None:
                user.setdefault(name, value)
        return MessageView(system={k: v for k, v in system.items() if v is not None}, user=user)


def _body_from_json(data: Mapping[str, Any]) -> tuple[Any, Literal["data", "value", "sequence"]]:
    encoding = data.get("body_encoding")
    if encoding not in BODY_ENCODINGS:
        raise ValueError(f"body_encoding: {encoding!r} is not one of {', '.join(BODY_ENCODINGS)}")
    if "body" not in data:
        raise ValueError("body: missing")
    body = data["body"]
    if encoding == "text":
        if not isinstance(body, str):
            raise ValueError("body: expected a string (body_encoding text)")
        return body.encode("utf-8"), "data"
    if encoding == "base64":
        try:
            return base64.b64decode(body, validate=True), "data"
        except (TypeError, ValueError, binascii.Error):
            raise ValueError("body: not valid base64 (body_encoding base64)") from None
    value = decode_value(body, "body")
    if encoding == "amqp-sequence":
        if not isinstance(value, list) or not all(isinstance(s, list) for s in value):
            raise ValueError("body: expected a list of lists (body_encoding amqp-sequence)")
        return value, "sequence"
    return value, "value"


def read_records(
    lines: Iterable[str | bytes], *, source: str = "<input>", skip_bad: bool = False
) -> tuple[list[DeadLetterRecord], list[str]]:
    """Parse an export file: the records and, with ``skip_bad``, the problems skipped.

    Without ``skip_bad`` any bad line raises :class:`BadRecordsError` listing them all, so a
    replay from a damaged file sends nothing rather than part of it. Blank lines are ignored.
    """
    records: list[DeadLetterRecord] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            if text.strip():
                records.append(DeadLetterRecord.from_json(json.loads(text)))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            problems.append(f"line {number}: {exc}")
    if problems and not skip_bad:
        raise BadRecordsError(source, problems)
    return records, problems


def make_selector(where: str | None = None, message_ids: Iterable[str] = ()) -> Selector | None:
    """A filter over records: ``where`` in Service Bus SQL filter syntax (the emulator's own
    engine, evaluated here, so it works against any namespace) AND one of ``message_ids``."""
    ids = frozenset(message_ids)
    try:
        sql = compile_filter(where) if where else None
    except SqlFilterError as exc:
        raise DlqError(f"--where: {exc}") from exc
    if sql is None and not ids:
        return None

    def select(record: DeadLetterRecord) -> bool:
        if ids and record.message_id not in ids:
            return False
        return sql is None or sql.matches(record.view())

    return select
