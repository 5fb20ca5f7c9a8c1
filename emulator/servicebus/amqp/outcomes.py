"""Delivery outcomes: what a transfer or a disposition does to the broker, as AMQP states.

A sent message is ``accepted`` or ``rejected`` with the service's condition; a received
message settled ``accepted`` completes, ``released`` releases, ``modified`` abandons or
(``undeliverable-here``) defers, ``rejected`` dead-letters with the reason carried in the
error's info map. Broker failures become the error conditions the SDK maps to its exceptions.
"""

from __future__ import annotations

import uuid

from ..core.broker import Broker
from ..core.errors import (
    BrokerError,
    EntityNotFoundError,
    InvalidOperationError,
    MessageLockLostError,
    MessageNotFoundError,
    MessageSizeExceededError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from ..core.store import MessageStore
from . import conditions
from .codec import DecodeError
from .convert import to_broker_message
from .message import batch_messages
from .performatives import Accepted, Error, Modified, Rejected, Released
from .types import Symbol

BATCH_MESSAGE_FORMAT = 0x80013700
_DEAD_LETTER_KEYS = ("DeadLetterReason", "DeadLetterErrorDescription")


def error_for(exc: BrokerError) -> Error:
    """The AMQP error the service sends for each broker failure."""
    condition = {
        MessageLockLostError: conditions.MESSAGE_LOCK_LOST,
        MessageNotFoundError: conditions.MESSAGE_NOT_FOUND,
        EntityNotFoundError: conditions.NOT_FOUND,
        MessageSizeExceededError: conditions.SIZE_EXCEEDED,
        InvalidOperationError: conditions.NOT_ALLOWED,
        SessionLockLostError: conditions.SESSION_LOCK_LOST,
        SessionCannotBeLockedError: conditions.SESSION_CANNOT_BE_LOCKED,
    }.get(type(exc), conditions.INTERNAL)
    condition = getattr(exc, "condition", None) or condition
    return Error(condition=Symbol(condition), description=str(exc))


def rejected(condition: str, description: str | None) -> Rejected:
    return Rejected(error=Error(condition=Symbol(condition), description=description))


def accept_messages(broker: Broker, entity_path: str, body: bytes, message_format: int) -> object:
    """Send one transfer (a message or a batch) to an entity; the outcome for its sender."""
    try:
        broker.check_size(entity_path, len(body))
        raws = batch_messages(body) if message_format == BATCH_MESSAGE_FORMAT else [body]
        messages = [to_broker_message(raw) for raw in raws]
        broker.send(entity_path, messages)
    except MessageSizeExceededError as exc:
        return rejected(conditions.SIZE_EXCEEDED, str(exc))
    except DecodeError as exc:
        return rejected(conditions.DECODE_ERROR, str(exc))
    except EntityNotFoundError as exc:
        return rejected(conditions.NOT_FOUND, str(exc))
    except BrokerError as exc:
        return Rejected(error=error_for(exc))
    return Accepted()


def settle(store: MessageStore, token: uuid.UUID, state: object, now: float) -> object:
    """Apply the client's outcome; answer it back, or a rejection saying why it failed."""
    try:
        if isinstance(state, Accepted):
            store.complete(token, now)
        elif isinstance(state, Released):
            store.release(token, now)
        elif isinstance(state, Modified):
            properties = {str(k): v for k, v in (state.message_annotations or {}).items()}
            if state.undeliverable_here:
                store.defer(token, now, properties)
            elif state.delivery_failed:
                store.abandon(token, now, properties)
            else:
                store.release(token, now)
        elif isinstance(state, Rejected):
            info = dict(state.error.info or {}) if state.error is not None else {}
            reason = _info(info, "DeadLetterReason")
            description = _info(info, "DeadLetterErrorDescription")
            extra = {str(k): v for k, v in info.items() if str(k) not in _DEAD_LETTER_KEYS}
            store.dead_letter(token, now, reason, description, extra)
            return Rejected(error=None)
        else:
            return state
    except BrokerError as exc:
        return Rejected(error=error_for(exc))
    return state


def _info(info: dict[object, object], key: str) -> str | None:
    for k, v in info.items():
        if str(k) == key:
            return None if v is None else str(v)
    return None
