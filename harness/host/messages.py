"""Turning a message the SDK received into what the function's trigger parameter expects.

SDK-type parameters get exactly what the Azure host sends the Python worker: a model-binding
Datum whose content is the lock token (`uuid.bytes_le`), `x-opt-lock-token`, then the AMQP
encoding of the message, decoded by the binding package's own converter. The SDK keeps only
the decoded message, so it is re-encoded with the SDK's AMQP encoder; map values that lost
their AMQP type in decoding (timestamps, longs) are typed again first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from azure.functions.servicebus import ServiceBusMessage as ClassicServiceBusMessage
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings.servicebus import ServiceBusConverter

X_OPT_LOCK_TOKEN = b"x-opt-lock-token"
_TIMESTAMP_ANNOTATIONS = {
    b"x-opt-enqueued-time",
    b"x-opt-locked-until",
    b"x-opt-scheduled-enqueue-time",
}
_INT32 = range(-(2**31), 2**31)


@dataclass
class ModelBindingData:
    """The fields of the worker protocol's ModelBindingData the converter reads."""

    version: str
    source: str
    content_type: str
    content: bytes


def _retype(values: dict | None, timestamps: set[bytes]) -> dict | None:
    if not values:
        return values
    out: dict = {}
    for key, value in values.items():
        if key in timestamps and isinstance(value, int):
            value = {TYPE: AMQPTypes.timestamp, VALUE: value}
        elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT32:
            value = {TYPE: AMQPTypes.long, VALUE: value}
        out[key] = value
    return out


def amqp_bytes(message: ServiceBusReceivedMessage) -> bytes:
    """The AMQP 1.0 encoding of a received message (header, annotations, properties, body)."""
    raw = message._message  # the SDK's decoded pyamqp Message
    raw = raw._replace(
        delivery_annotations=None,
        message_annotations=_retype(raw.message_annotations, _TIMESTAMP_ANNOTATIONS),
        application_properties=_retype(raw.application_properties, set()),
        footer=None,
    )
    return bytes(encode_payload(bytearray(), raw))


def binding_content(message: ServiceBusReceivedMessage) -> bytes:
    token = uuid.UUID(str(message.lock_token))
    return token.bytes_le + X_OPT_LOCK_TOKEN + amqp_bytes(message)


def sdk_type_message(message: ServiceBusReceivedMessage, pytype: type) -> Any:
    """The binding package's `ServiceBusReceivedMessage`, decoded by its own converter."""
    data = ModelBindingData(
        version="1.0",
        source="AzureServiceBusReceivedMessage",
        content_type="application/octet-stream",
        content=binding_content(message),
    )
    return ServiceBusConverter.decode(
        Datum(data, "model_binding_data"), trigger_metadata=None, pytype=pytype
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _properties(values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (values or {}).items():
        out[_text(key) or ""] = value.decode() if isinstance(value, bytes) else value
    return out


def body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    try:
        return b"".join(bytes(part) for part in body)
    except TypeError:
        return str(message).encode()


def classic_message(message: ServiceBusReceivedMessage) -> ClassicServiceBusMessage:
    """`azure.functions.ServiceBusMessage` with the metadata the host's trigger carries."""
    props = _properties(message.application_properties)
    ttl = message.time_to_live
    return ClassicServiceBusMessage(
        body=body_bytes(message),
        trigger_metadata=None,
        application_properties=props,
        user_properties=dict(props),
        content_type=message.content_type,
        correlation_id=_text(message.correlation_id),
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=message.dead_letter_source,
        delivery_count=message.delivery_count,
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=message.enqueued_time_utc,
        expires_at_utc=message.expires_at_utc,
        label=message.subject,
        subject=message.subject,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token) if message.lock_token else None,
        message_id=_text(message.message_id) or "",
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        state=int(message.state) if message.state is not None else None,
        time_to_live=ttl if isinstance(ttl, dt.timedelta) else None,
        to=message.to,
        transaction_partition_key=None,
    )
