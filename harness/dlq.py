"""Dead-letter export and replay through the real SDK (``harness dlq list|export|replay``).

Why a tool: the seed's DLQ monitor *received* dead letters to look at them, which locks them
and bumps their delivery counts, and re-sending them by hand drops properties. Here:

* export only peeks (no lock, no delivery count) and writes one JSON object per dead letter,
  lossless for everything the SDK exposes (typed values are tagged, binary bodies base64);
* replay sends a copy first and completes the dead letter only after that send succeeded; a
  failed send abandons it. An interrupted replay can at worst send a message twice, never lose
  one;
* replay works on a peeked snapshot: it locks only up to the last selected dead letter, and
  dead letters that arrive meanwhile (a replayed job that fails again) wait for the next run.

Replaying to a topic re-applies its subscriptions' rules: the copy reaches *every* subscription
whose filter matches, not only the one it died in. Copies keep their message id (re-runs stay
idempotent where duplicate detection is on); a target that requires duplicate detection drops,
silently, a copy whose id it saw within its window, so such dead letters are skipped unless
``new_message_id`` is set.

SDK limits worth knowing: it decodes AMQP strings and binaries both as bytes and timestamps as
integers (milliseconds), so an exported property is a string when its bytes are UTF-8 and a
timestamp property comes back as an integer; it can only send binary application properties
that are UTF-8 (as strings), so a dead letter with another binary property fails to replay and
stays where it is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
    parse_connection_string,
)
from azure.servicebus.amqp import (
    AmqpAnnotatedMessage,
    AmqpMessageBodyType,
    AmqpMessageHeader,
    AmqpMessageProperties,
)
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError

from emulator.servicebus.sqlfilter import MessageView, SqlFilterError, compile_filter

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusReceiver, ServiceBusSender
    from azure.servicebus.management import ServiceBusAdministrationClient

__all__ = [
    "ORIGINAL_MESSAGE_ID",
    "REPLAYED_FROM",
    "REPLAY_COUNT",
    "BadRecordsError",
    "DeadLetterCount",
    "DeadLetterRecord",
    "DeadLetterSource",
    "DlqError",
    "ReplayOutcome",
    "ReplayReport",
    "admin_client",
    "client",
    "dead_letter_counts",
    "decode_value",
    "describe_error",
    "emulator_ca_bundle",
    "encode_value",
    "export_dead_letters",
    "make_selector",
    "peek_dead_letters",
    "read_records",
    "replay_dead_letters",
    "replay_records",
]

DEAD_LETTER_QUEUE = "$DeadLetterQueue"
REPLAYED_FROM = "x-replayed-from"
REPLAY_COUNT = "x-replay-count"
ORIGINAL_MESSAGE_ID = "x-original-message-id"
"""Set only with ``new_message_id``, so a copy can still be traced to the original."""
# The broker stores why a message died as application properties; a replayed copy is alive.
_DEAD_LETTER_PROPERTIES = ("DeadLetterReason", "DeadLetterErrorDescription")
_PARTITION_KEY = "x-opt-partition-key"
_PEEK_BATCH = 100
_RECEIVE_BATCH = 100
BODY_ENCODINGS = ("text", "base64", "amqp-value", "amqp-sequence")

Selector = Callable[["DeadLetterRecord"], bool]


class DlqError(Exception):
    """A failure the CLI reports as one line (no traceback); nothing was lost."""


class BadRecordsError(DlqError):
    """Unreadable lines in an export file; ``problems`` holds one ``line N: why`` each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"{source}: {count} bad line{'s' if count != 1 else ''}, nothing sent "
            "(--skip-bad sends the good ones):\n  " + "\n  ".join(self.problems)
        )


# -- entities ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterSource:
    """A queue, or a topic subscription, whose dead-letter sub-queue is read."""

    entity: str
    """The queue or topic name; also where replayed copies go unless told otherwise."""
    subscription: str | None = None

    @property
    def path(self) -> str:
        if self.subscription is None:
            return self.entity
        return f"{self.entity}/Subscriptions/{self.subscription}"

    @property
    def dead_letter_path(self) -> str:
        return f"{self.path}/{DEAD_LETTER_QUEUE}"

    @classmethod
    def from_path(cls, path: str) -> DeadLetterSource:
        """``q``, ``t/Subscriptions/s``, either with ``/$DeadLetterQueue``."""
        parts = path.split("/")
        if parts[-1].casefold() == DEAD_LETTER_QUEUE.casefold():
            parts = parts[:-1]
        if len(parts) == 1 and parts[0]:
            return cls(parts[0])
        if len(parts) == 3 and parts[1].casefold() == "subscriptions" and parts[0] and parts[2]:
            return cls(parts[0], parts[2])
        raise ValueError(f"{path!r} is not a queue or topic-subscription path")

    def receiver(self, client: ServiceBusClient, **kwargs: Any) -> ServiceBusReceiver:
        """A receiver on the dead-letter sub-queue (peek-lock unless ``receive_mode`` says)."""
        if self.subscription is None:
            return client.get_queue_receiver(
                self.entity, sub_queue=ServiceBusSubQueue.DEAD_LETTER, **kwargs
            )
        return client.get_subscription_receiver(
            self.entity, self.subscription, sub_queue=ServiceBusSubQueue.DEAD_LETTER, **kwargs
        )


# -- typed JSON values ------------------------------------------------------------------------


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


# -- the record -------------------------------------------------------------------------------

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
        previous = properties.get(REPLAY_COUNT)
        replays = previous if isinstance(previous, int) and not isinstance(previous, bool) else 0
        properties[REPLAY_COUNT] = replays + 1
        properties[REPLAYED_FROM] = self.entity_path
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


# -- errors -----------------------------------------------------------------------------------

_STATUS_LABELS = {401: "unauthorized", 403: "forbidden", 404: "not found"}


def describe_error(exc: BaseException) -> str:
    """One line about an SDK failure, with the broker's own words where the SDK hides them
    (a put-token refusal surfaces as an "authentication" error with a generic message)."""
    inner = getattr(exc, "inner_exception", None)
    status = getattr(inner, "status_code", None)
    if isinstance(status, int) and status in _STATUS_LABELS:
        detail = getattr(inner, "status_description", "") or ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"{_STATUS_LABELS[status]} ({status}): {detail}".rstrip(": ")
    if isinstance(exc, ResourceNotFoundError | ClientAuthenticationError):
        found = re.search(r"<Detail>(.*?)</Detail>", str(exc), re.S)
        detail = found.group(1).split(" To know more")[0] if found else ""
        code = exc.status_code or 404
        label = _STATUS_LABELS.get(code, "refused")
        if code == 401:
            detail = f"the management API needs a Manage policy. {detail}"
        return f"{label} ({code}): {detail}".strip()
    if isinstance(exc, ServiceRequestError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "the management endpoint's TLS certificate is not trusted (pass --ca-bundle)"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


@contextlib.contextmanager
def _sdk_errors(what: str) -> Iterator[None]:
    try:
        yield
    except AzureError as exc:  # ServiceBusError included
        raise DlqError(f"{what}: {describe_error(exc)}") from exc


def _fatal(exc: BaseException) -> bool:
    """A send error that every further send would hit too (the target, the connection)."""
    return isinstance(exc, AzureError) and not isinstance(exc, MessageSizeExceededError)


# -- clients ----------------------------------------------------------------------------------


def _check_connection_string(connection_string: str) -> None:
    try:
        parse_connection_string(connection_string)
    except ValueError as exc:
        raise DlqError(
            f"malformed connection string ({exc}); expected "
            "Endpoint=sb://HOST;SharedAccessKeyName=NAME;SharedAccessKey=KEY"
        ) from None


def client(connection_string: str, *, retries: int | None = None) -> ServiceBusClient:
    """A sync client; a malformed connection string is a :class:`DlqError` (key not shown)."""
    _check_connection_string(connection_string)
    kwargs: dict[str, Any] = {} if retries is None else {"retry_total": retries}
    return ServiceBusClient.from_connection_string(connection_string, **kwargs)


def emulator_ca_bundle(connection_string: str) -> Path | None:
    """The local emulator's CA (``<tmp>/sbemu-<port>/ca.pem``) when the connection string
    points at one and the file exists: its management API uses a self-signed certificate."""
    if not re.search(r"(?i)(^|;)\s*UseDevelopmentEmulator\s*=\s*true\s*(;|$)", connection_string):
        return None
    host = parse_connection_string(connection_string).fully_qualified_namespace
    port = host.rpartition(":")[2] if ":" in host else "5672"
    if not port.isdigit():
        return None
    from emulator.servicebus.admin.tls import default_directory

    bundle = default_directory(int(port)) / "ca.pem"
    return bundle if bundle.is_file() else None


def admin_client(
    connection_string: str, *, ca_bundle: str | Path | None = None, retries: int | None = None
) -> ServiceBusAdministrationClient:
    """A management client; trusts ``ca_bundle`` or the local emulator's CA if found."""
    from azure.servicebus.management import ServiceBusAdministrationClient

    _check_connection_string(connection_string)
    kwargs: dict[str, Any] = {} if retries is None else {"retry_total": retries}
    bundle = ca_bundle or emulator_ca_bundle(connection_string)
    if bundle is not None:
        kwargs["connection_verify"] = str(bundle)
    return ServiceBusAdministrationClient.from_connection_string(connection_string, **kwargs)


# -- list -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterCount:
    entity_path: str
    active: int
    dead_letter: int
    transfer_dead_letter: int


def dead_letter_counts(
    admin: ServiceBusAdministrationClient, *, topic: str | None = None
) -> list[DeadLetterCount]:
    """Runtime counts of every queue and subscription (or only ``topic``'s subscriptions)."""
    counts: list[DeadLetterCount] = []
    with _sdk_errors(f"cannot list {'topic ' + repr(topic) if topic else 'the namespace'}"):
        if topic is None:
            for queue in admin.list_queues_runtime_properties():
                counts.append(_count(queue.name, queue))
            topics = [t.name for t in admin.list_topics()]
        else:
            topics = [topic]
        for name in topics:
            for sub in admin.list_subscriptions_runtime_properties(name):
                counts.append(_count(f"{name}/Subscriptions/{sub.name}", sub))
    return counts


def _count(path: str, props: Any) -> DeadLetterCount:
    return DeadLetterCount(
        path,
        props.active_message_count or 0,
        props.dead_letter_message_count or 0,
        props.transfer_dead_letter_message_count or 0,
    )


# -- export -----------------------------------------------------------------------------------


def peek_dead_letters(
    client: ServiceBusClient, source: DeadLetterSource, *, max_count: int | None = None
) -> Iterator[ServiceBusReceivedMessage]:
    """Every dead letter in sequence order, peeked: no lock, no delivery count, no change."""
    with contextlib.ExitStack() as stack:
        with _sdk_errors(f"cannot read {source.dead_letter_path}"):
            receiver = stack.enter_context(source.receiver(client))
        yield from _peek(receiver, source, max_count)


def _peek(
    receiver: ServiceBusReceiver, source: DeadLetterSource, max_count: int | None = None
) -> Iterator[ServiceBusReceivedMessage]:
    seen = 0
    next_sequence = 1
    while max_count is None or seen < max_count:
        want = _PEEK_BATCH if max_count is None else min(_PEEK_BATCH, max_count - seen)
        # An explicit start: the SDK's default continues from its own cursor.
        with _sdk_errors(f"cannot read {source.dead_letter_path}"):
            batch = receiver.peek_messages(max_message_count=want, sequence_number=next_sequence)
        if not batch:
            return
        yield from batch
        seen += len(batch)
        next_sequence = batch[-1].sequence_number + 1


def export_dead_letters(
    client: ServiceBusClient,
    source: DeadLetterSource,
    out: TextIO,
    *,
    max_count: int | None = None,
    ascii_only: bool = False,
) -> int:
    """Write one JSON line per dead letter to ``out``; return how many."""
    written = 0
    for message in peek_dead_letters(client, source, max_count=max_count):
        record = DeadLetterRecord.from_message(message, source.dead_letter_path)
        out.write(json.dumps(record.to_json(), ensure_ascii=ascii_only) + "\n")
        written += 1
    return written


# -- replay -----------------------------------------------------------------------------------

Outcome = Literal["replayed", "would-replay", "skipped", "failed", "untouched"]
NOT_SELECTED = "not selected"


@dataclass(frozen=True)
class ReplayOutcome:
    outcome: Outcome
    target: str
    sequence_number: int | None
    message_id: str | None
    detail: str = ""


@dataclass
class ReplayReport:
    """What happened to each dead letter looked at, and warnings about the run."""

    dry_run: bool = False
    outcomes: list[ReplayOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(
        self, outcome: Outcome, record: DeadLetterRecord, target: str, detail: str = ""
    ) -> None:
        self.outcomes.append(
            ReplayOutcome(outcome, target, record.sequence_number, record.message_id, detail)
        )

    def count(self, *outcomes: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome in outcomes)

    @property
    def replayed(self) -> int:
        return self.count("replayed", "would-replay")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def untouched(self) -> int:
        """Selected but not attempted, because an earlier send failed for good."""
        return self.count("untouched")

    @property
    def ok(self) -> bool:
        return not self.failed and not self.untouched

    def summary(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        text = f"{verb} {self.replayed}, skipped {self.skipped}, failed {self.failed}"
        if self.untouched:
            text += f", not attempted {self.untouched}"
        return text


class _DuplicateWindows:
    """Duplicate-detection windows of replay targets, looked up once each."""

    def __init__(self, admin: ServiceBusAdministrationClient | None, report: ReplayReport) -> None:
        self.admin = admin
        self.report = report
        self.known: dict[str, timedelta | None] = {}

    def __call__(self, target: str) -> timedelta | None:
        key = target.casefold()
        if self.admin is None:
            return None
        if key not in self.known:
            self.known[key] = self._lookup(target)
        return self.known[key]

    def _lookup(self, target: str) -> timedelta | None:
        assert self.admin is not None
        try:
            try:
                entity: Any = self.admin.get_topic(target)
            except ResourceNotFoundError:
                entity = self.admin.get_queue(target)
        except AzureError as exc:
            self.report.warnings.append(
                f"could not check whether {target} requires duplicate detection "
                f"({describe_error(exc)}); copies keep their message ids, and if it does, "
                "those sent within its window are dropped (use --new-message-id)"
            )
            return None
        if not entity.requires_duplicate_detection:
            return None
        return entity.duplicate_detection_history_time_window or timedelta(minutes=10)


def _plan(
    record: DeadLetterRecord,
    target: str,
    report: ReplayReport,
    *,
    select: Selector | None,
    windows: _DuplicateWindows,
    new_message_id: bool,
) -> AmqpAnnotatedMessage | None:
    """The copy to send, or None after recording why not (before anything is locked)."""
    if select is not None and not select(record):
        report.add("skipped", record, target, NOT_SELECTED)
        return None
    window = None if new_message_id or record.message_id is None else windows(target)
    if window is not None:
        sent = record.enqueued_time
        if sent is None or datetime.now(UTC) - sent < window:
            report.add(
                "skipped",
                record,
                target,
                f"{target} requires duplicate detection and this message id was sent less "
                f"than {window} ago: a copy with it would be dropped; use --new-message-id",
            )
            return None
    try:
        return record.to_message(new_message_id=new_message_id)
    except (TypeError, ValueError) as exc:
        report.add("failed", record, target, str(exc))
        return None


def replay_dead_letters(
    client: ServiceBusClient,
    source: DeadLetterSource,
    *,
    to: str | None = None,
    select: Selector | None = None,
    max_count: int | None = None,
    dry_run: bool = False,
    new_message_id: bool = False,
    admin: ServiceBusAdministrationClient | None = None,
    receive_wait: float = 5.0,
) -> ReplayReport:
    """Send copies of selected dead letters to ``to`` (default: the queue or topic they died
    in), completing each dead letter only after its copy was sent.

    ``admin`` lets the replay check whether the target drops duplicates (see module doc).
    Dead letters that are not selected but come before a selected one have to be locked to
    get past them; they are abandoned at the end (their delivery count goes up by one).
    """
    target = to or source.entity
    report = ReplayReport(dry_run=dry_run)
    windows = _DuplicateWindows(admin, report)
    snapshot: list[int] = []
    chosen: dict[int, DeadLetterRecord] = {}
    with contextlib.ExitStack() as stack:
        # One peek-lock receiver peeks and later locks: opening an SDK link is not free, and
        # with no prefetch it locks nothing until asked to receive.
        with _sdk_errors(f"cannot read {source.dead_letter_path}"):
            receiver = stack.enter_context(
                source.receiver(client, receive_mode=ServiceBusReceiveMode.PEEK_LOCK)
            )
        for message in _peek(receiver, source):
            record = DeadLetterRecord.from_message(message, source.dead_letter_path)
            copy = _plan(
                record,
                target,
                report,
                select=select,
                windows=windows,
                new_message_id=new_message_id,
            )
            snapshot.append(message.sequence_number)
            if copy is not None:
                chosen[message.sequence_number] = record
                if dry_run:
                    report.add("would-replay", record, target)
                if max_count is not None and len(chosen) >= max_count:
                    break
        if dry_run or not chosen:
            return report
        # A queue sender addresses topics too: the link target is just the entity name.
        with _sdk_errors(f"cannot send to {target}; nothing was changed"):
            sender = stack.enter_context(client.get_queue_sender(target))
        # Lock no further than the last chosen dead letter.
        to_lock = sum(1 for seq in snapshot if seq <= max(chosen))
        _move(receiver, sender, chosen, to_lock, target, report, new_message_id, receive_wait)
    for record in chosen.values():
        report.add("untouched", record, target, "no longer in the dead-letter queue")
    return report


def _move(
    receiver: ServiceBusReceiver,
    sender: ServiceBusSender,
    chosen: dict[int, DeadLetterRecord],
    to_lock: int,
    target: str,
    report: ReplayReport,
    new_message_id: bool,
    receive_wait: float,
) -> None:
    """Lock, send, complete. Pops what it handled from ``chosen``."""
    held: list[ServiceBusReceivedMessage] = []  # locked to get past them, abandoned at the end
    try:
        while chosen and to_lock > 0:
            try:
                batch = receiver.receive_messages(
                    max_message_count=min(to_lock, _RECEIVE_BATCH), max_wait_time=receive_wait
                )
            except AzureError as exc:
                _stop(chosen, target, report, f"receiving failed: {describe_error(exc)}")
                return
            if not batch:
                return
            to_lock -= len(batch)
            for index, message in enumerate(batch):
                if chosen.pop(message.sequence_number, None) is None:
                    held.append(message)
                    continue
                # What was peeked may have changed since: send what is locked now.
                record = DeadLetterRecord.from_message(message, receiver.entity_path)
                if not _move_one(receiver, sender, message, record, target, report, new_message_id):
                    _stop(chosen, target, report, "stopped after a failed send")
                    held.extend(batch[index + 1 :])
                    return
    finally:
        for message in held:
            with contextlib.suppress(ServiceBusError):  # a lapsed lock frees it just the same
                receiver.abandon_message(message)


def _stop(chosen: dict[int, DeadLetterRecord], target: str, report: ReplayReport, why: str) -> None:
    for record in chosen.values():
        report.add("untouched", record, target, why)
    chosen.clear()


def _move_one(
    receiver: ServiceBusReceiver,
    sender: ServiceBusSender,
    message: ServiceBusReceivedMessage,
    record: DeadLetterRecord,
    target: str,
    report: ReplayReport,
    new_message_id: bool,
) -> bool:
    """Replay one locked dead letter; False when further sends are pointless."""
    try:
        sender.send_messages(record.to_message(new_message_id=new_message_id))
    except (AzureError, TypeError, ValueError) as exc:
        with contextlib.suppress(ServiceBusError):
            receiver.abandon_message(message)
        report.add("failed", record, target, f"send failed, left in the DLQ: {describe_error(exc)}")
        return not _fatal(exc)
    try:
        receiver.complete_message(message)
    except ServiceBusError as exc:
        report.add(
            "failed",
            record,
            target,
            f"the copy WAS sent but the dead letter could not be completed "
            f"({describe_error(exc)}); it is still in the DLQ and a later replay sends it again",
        )
        return True
    report.add("replayed", record, target)
    return True


def replay_records(
    client: ServiceBusClient,
    records: Iterable[DeadLetterRecord],
    *,
    to: str | None = None,
    select: Selector | None = None,
    max_count: int | None = None,
    dry_run: bool = False,
    new_message_id: bool = False,
    admin: ServiceBusAdministrationClient | None = None,
) -> ReplayReport:
    """Send copies of exported records to ``to`` (default: each record's origin entity).

    The dead-letter queue is not touched: the originals, if still there, stay there.
    """
    report = ReplayReport(dry_run=dry_run)
    windows = _DuplicateWindows(admin, report)
    plan: list[tuple[DeadLetterRecord, str, AmqpAnnotatedMessage]] = []
    for record in records:
        target = to or record.origin
        copy = _plan(
            record, target, report, select=select, windows=windows, new_message_id=new_message_id
        )
        if copy is not None:
            plan.append((record, target, copy))
            if dry_run:
                report.add("would-replay", record, target)
            if max_count is not None and len(plan) >= max_count:
                break
    if dry_run or not plan:
        return report
    with contextlib.ExitStack() as stack:
        senders: dict[str, ServiceBusSender] = {}
        for _, target, _ in plan:  # open every target first: a bad one fails before any send
            if target not in senders:
                with _sdk_errors(f"cannot send to {target}; nothing was sent"):
                    senders[target] = stack.enter_context(client.get_queue_sender(target))
        for index, (record, target, copy) in enumerate(plan):
            try:
                senders[target].send_messages(copy)
            except (AzureError, TypeError, ValueError) as exc:
                report.add("failed", record, target, f"send failed: {describe_error(exc)}")
                if _fatal(exc):
                    for rest, rest_target, _ in plan[index + 1 :]:
                        report.add("untouched", rest, rest_target, "stopped after a failed send")
                    break
            else:
                report.add("replayed", record, target)
    return report
