"""The ``$management`` node: lock renewal, scheduling, peek, deferred receive, settlement.

Each operation is a small function of (broker, entity path, request body) returning a status
and a map; the connection only routes the request and sends the reply back on the link whose
address equals the request's reply-to.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..core.broker import Broker
from ..core.errors import (
    BrokerError,
    EntityNotFoundError,
    InvalidOperationError,
    MessageLockLostError,
    MessageNotFoundError,
    NotSupportedError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from ..core.store import ReceiveMode
from ..topology import AccessRights
from . import conditions
from .codec import DecodeError
from .convert import encode_for_delivery, to_broker_message
from .requests import Request, encode_response, map_get, parse_request
from .types import Array, Int, Symbol, long_array, string_array, timestamp_array

if TYPE_CHECKING:
    from .connection import AmqpConnection
    from .links import Link
    from .server import AmqpServer

log = logging.getLogger("emulator.servicebus.management")

VENDOR = "com.microsoft:"


_FAULT_STATUS = {"server-busy": 503, "timeout": 408, "lock-lost": 410}


class ManagementError(Exception):
    def __init__(self, status: int, condition: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.condition = condition
        self.description = description


Result = tuple[int, dict[str, object] | None]
Operation = Callable[[Broker, str, object], Result]


def _ints(value: object, name: str) -> list[int]:
    if not isinstance(value, list):
        raise ManagementError(400, conditions.ARGUMENT_ERROR, f"'{name}' must be an array")
    return [int(v) for v in value]


def _uuids(value: object) -> list[uuid.UUID]:
    if not isinstance(value, list):
        raise ManagementError(400, conditions.ARGUMENT_ERROR, "'lock-tokens' must be an array")
    tokens = []
    for v in value:
        if isinstance(v, uuid.UUID):
            tokens.append(v)
        else:
            try:
                tokens.append(uuid.UUID(str(v)))
            except ValueError as exc:
                raise ManagementError(
                    400, conditions.ARGUMENT_ERROR, f"invalid lock token {v!r}"
                ) from exc
    return tokens


def renew_lock(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    now = broker.clock.now()
    expirations = [
        datetime.fromtimestamp(store.renew_lock(t, now), UTC)
        for t in _uuids(map_get(body, "lock-tokens"))
    ]
    return 200, {"expirations": timestamp_array(expirations)}


def schedule_message(broker: Broker, path: str, body: object) -> Result:
    entries = map_get(body, "messages")
    if not isinstance(entries, list):
        raise ManagementError(400, conditions.ARGUMENT_ERROR, "'messages' must be a list")
    messages = []
    for entry in entries:
        raw = map_get(entry, "message")
        if not isinstance(raw, bytes | bytearray):
            raise ManagementError(400, conditions.ARGUMENT_ERROR, "each entry needs 'message'")
        messages.append(to_broker_message(bytes(raw)))
    for message in messages:
        if message.scheduled_enqueue_time is None:
            raise ManagementError(
                400, conditions.ARGUMENT_ERROR, "a scheduled message needs a scheduled enqueue time"
            )
    numbers = broker.schedule(path, messages)
    return 200, {"sequence-numbers": long_array(numbers)}


def cancel_scheduled(broker: Broker, path: str, body: object) -> Result:
    broker.cancel_scheduled(path, _ints(map_get(body, "sequence-numbers"), "sequence-numbers"))
    return 200, {}


def _session_id(body: object) -> str | None:
    value = map_get(body, "session-id")
    return None if value is None else str(value)


def _required_session_id(body: object) -> str:
    session_id = _session_id(body)
    if session_id is None:
        raise ManagementError(400, conditions.ARGUMENT_ERROR, "'session-id' is required")
    return session_id


def peek(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    start = int(map_get(body, "from-sequence-number") or 0)  # type: ignore[call-overload]
    count = int(map_get(body, "message-count") or 1)  # type: ignore[call-overload]
    found = store.peek(start, count, _session_id(body))
    if not found:
        return 204, {}
    return 200, {"messages": [{"message": encode_for_delivery(m, locked=False)} for m in found]}


def receive_by_sequence_number(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    numbers = _ints(map_get(body, "sequence-numbers"), "sequence-numbers")
    settle_mode = int(map_get(body, "receiver-settle-mode") or 0)  # type: ignore[call-overload]
    mode = ReceiveMode.RECEIVE_AND_DELETE if settle_mode == 0 else ReceiveMode.PEEK_LOCK
    session_id = _session_id(body)
    if session_id is not None:
        for seq in numbers:
            message = store.messages.get(seq)
            if message is not None and str(message.session_id) != session_id:
                raise ManagementError(
                    404,
                    conditions.MESSAGE_NOT_FOUND,
                    f"The message with sequence number {seq} is not in session '{session_id}'.",
                )
    messages = store.receive_deferred(numbers, broker.clock.now(), mode)
    out = []
    for message in messages:
        encoded = encode_for_delivery(message, locked=True)
        entry: dict[str, object] = {"message": encoded}
        if message.lock_token is not None:
            entry["lock-token"] = message.lock_token
        out.append(entry)
    return 200, {"messages": out}


def update_disposition(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    status = str(map_get(body, "disposition-status") or "")
    tokens = _uuids(map_get(body, "lock-tokens"))
    raw_props = map_get(body, "properties-to-modify")
    properties = {str(k): v for k, v in raw_props.items()} if isinstance(raw_props, dict) else {}
    now = broker.clock.now()
    for token in tokens:
        if status == "completed":
            store.complete(token, now)
        elif status == "abandoned":
            store.abandon(token, now, properties)
        elif status == "defered":
            store.defer(token, now, properties)
        elif status == "suspended":
            reason = map_get(body, "deadletter-reason")
            description = map_get(body, "deadletter-description")
            store.dead_letter(
                token,
                now,
                str(reason) if reason is not None else None,
                str(description) if description is not None else None,
                properties,
            )
        else:
            raise ManagementError(
                400, conditions.ARGUMENT_ERROR, f"unknown disposition-status {status!r}"
            )
    return 200, {}


def renew_session_lock(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    until = store.renew_session_lock(_required_session_id(body), broker.clock.now())
    return 200, {"expiration": datetime.fromtimestamp(until, UTC)}


def get_session_state(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    state = store.session_state(_required_session_id(body), broker.clock.now())
    return 200, {"session-state": state}


def set_session_state(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    state = map_get(body, "session-state")
    if state is not None and not isinstance(state, bytes | bytearray):
        raise ManagementError(400, conditions.ARGUMENT_ERROR, "'session-state' must be binary")
    store.set_session_state(
        _required_session_id(body),
        None if state is None else bytes(state),
        broker.clock.now(),
    )
    return 200, {}


def get_message_sessions(broker: Broker, path: str, body: object) -> Result:
    store = broker.receive_store(path)
    since = map_get(body, "last-updated-time")
    skip = int(map_get(body, "skip") or 0)  # type: ignore[call-overload]
    top = int(map_get(body, "top") or 100)  # type: ignore[call-overload]
    updated_since = since.timestamp() if isinstance(since, datetime) else None
    ids = store.session_ids(updated_since)[skip : skip + top]
    if not ids:
        return 204, {}
    return 200, {"skip": Int(skip + len(ids)), "sessions-ids": string_array(ids)}


OPERATIONS: dict[str, tuple[Operation, AccessRights]] = {
    VENDOR + "renew-lock": (renew_lock, AccessRights.LISTEN),
    VENDOR + "schedule-message": (schedule_message, AccessRights.SEND),
    VENDOR + "cancel-scheduled-message": (cancel_scheduled, AccessRights.SEND),
    VENDOR + "peek-message": (peek, AccessRights.LISTEN),
    VENDOR + "receive-by-sequence-number": (receive_by_sequence_number, AccessRights.LISTEN),
    VENDOR + "update-disposition": (update_disposition, AccessRights.LISTEN),
    VENDOR + "renew-session-lock": (renew_session_lock, AccessRights.LISTEN),
    VENDOR + "get-session-state": (get_session_state, AccessRights.LISTEN),
    VENDOR + "set-session-state": (set_session_state, AccessRights.LISTEN),
    VENDOR + "get-message-sessions": (get_message_sessions, AccessRights.LISTEN),
}

_STATUS_FOR_ERROR: dict[type[BrokerError], tuple[int, str]] = {
    MessageLockLostError: (410, conditions.MESSAGE_LOCK_LOST),
    MessageNotFoundError: (404, conditions.MESSAGE_NOT_FOUND),
    EntityNotFoundError: (404, conditions.NOT_FOUND),
    NotSupportedError: (501, "amqp:not-implemented"),
    SessionLockLostError: (410, conditions.SESSION_LOCK_LOST),
    SessionCannotBeLockedError: (409, conditions.SESSION_CANNOT_BE_LOCKED),
    InvalidOperationError: (400, conditions.NOT_ALLOWED),
}


class ManagementNode:
    def __init__(self, server: AmqpServer) -> None:
        self.server = server

    def handle(self, connection: AmqpConnection, link: Link, raw: bytes) -> None:
        try:
            request = parse_request(raw)
        except DecodeError as exc:
            log.warning("malformed $management request on %s: %s", link.entity_path, exc)
            return
        operation = str(request.prop("operation") or "")
        fault_operation = "renew-lock" if operation == VENDOR + "renew-lock" else "management"
        effect = connection.fault(fault_operation, link.entity_path)
        if connection.closed:
            return
        if effect is not None and effect.condition is not None:
            status, condition, description, body = (
                _FAULT_STATUS.get(effect.effect, 503),
                effect.condition,
                effect.description,
                None,
            )
        else:
            status, condition, description, body = self.execute(
                connection, link.entity_path, request
            )
        reply_to = request.properties.reply_to
        reply_link = connection.find_link(link.session, str(reply_to or link.address))
        if reply_link is None:
            log.warning("no reply link for $management request on %s", link.entity_path)
            return
        extra = {"errorCondition": Symbol(condition)} if condition else None
        reply = encode_response(
            request,
            status,
            description,
            body if body is not None else {},
            status_code_key="statusCode",
            status_description_key="statusDescription",
            extra_properties=extra,
        )
        connection.after_fault(effect, lambda: connection.send_reply(reply_link, reply))

    def execute(
        self, connection: AmqpConnection, path: str, request: Request
    ) -> tuple[int, str | None, str, dict[str, object] | None]:
        operation = str(request.prop("operation") or "")
        entry = OPERATIONS.get(operation)
        if entry is None:
            return 501, "amqp:not-implemented", f"operation {operation!r} is not supported", None
        handler, needed = entry
        rights = connection.tokens.rights_for(path)
        if rights is None or not rights & needed:
            return 401, conditions.UNAUTHORIZED, f"Unauthorized access for {operation}.", None
        try:
            status, body = handler(self.server.broker, path, request.body)
        except ManagementError as exc:
            return exc.status, exc.condition, exc.description, None
        except DecodeError as exc:
            return 400, conditions.ARGUMENT_ERROR, f"malformed message: {exc}", None
        except BrokerError as exc:
            code, condition = _STATUS_FOR_ERROR.get(type(exc), (400, conditions.ARGUMENT_ERROR))
            return code, condition, str(exc), None
        except (TypeError, ValueError) as exc:
            return 400, conditions.ARGUMENT_ERROR, f"bad request: {exc}", None
        return status, None, "OK" if status == 200 else "No Content", body


__all__ = ["OPERATIONS", "Array", "ManagementNode"]
