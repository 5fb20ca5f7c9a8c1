"""The control API: JSON endpoints for time, inspection, reset, faults and counters.

Not part of Service Bus: it is how tests and the harness drive what a real namespace cannot
be driven to do. It never goes through the SDK's data path, and reading never changes state
(peeking here does not lock, count deliveries or touch AccessedAt).

=======  ===============================  ================================================
GET      /control                         this list
GET      /control/clock                   ``{"now", "utc", "offset_seconds"}``
POST     /control/clock/advance           ``{"seconds": N}``: everything due fires before the
                                          answer
GET      /control/entities                queues, topics, subscriptions, rules with counts
GET      /control/messages?entity=PATH    peek (``&max=100&from=1``); PATH is a link address:
                                          ``q``, ``t/Subscriptions/s``, ``q/$DeadLetterQueue``,
                                          ``.../$Transfer/$DeadLetterQueue``, or a topic (its
                                          scheduled messages)
POST     /control/reset                   ``{"reload": false}``: empty every entity; with
                                          reload, re-create entities from the config
GET      /control/faults                  fault rules
POST     /control/faults                  add ``{"operation", "effect", "entity", ...}``
DELETE   /control/faults[/ID]             remove one / all rules
GET      /control/counters                operation counters per entity (and rule errors)
=======  ===============================  ================================================
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..amqp.codec import DecodeError, decode
from ..amqp.convert import WirePayload
from ..amqp.types import Described
from ..core.broker import Broker
from ..core.clock import EmulatorClock
from ..core.entities import Queue, Subscription, Topic
from ..core.errors import BrokerError
from ..core.message import BrokerMessage, MessageState
from ..core.store import MessageStore
from ..faults import FaultInjector, FaultRuleError
from ..topology import NamespaceTopology
from .atom import Counts
from .atom_api import AtomApi, receiver_counts, topic_counts
from .http import HttpRequest, HttpResponse

MAX_PEEK = 1000


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(status: int, value: object) -> HttpResponse:
    return HttpResponse(status, json.dumps(value, indent=None).encode())


def json_safe(value: object) -> object:
    """A JSON-encodable rendering of an AMQP / broker value (bytes become base64)."""
    if value is None or isinstance(value, bool | str):
        return str(value) if isinstance(value, str) else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$binary": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Described):
        return {"descriptor": json_safe(value.descriptor), "value": json_safe(value.value)}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)


def _when(seconds: float | None) -> str | None:
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


_BODY_KINDS = {0x75: "data", 0x76: "sequence", 0x77: "value"}


def body_json(payload: object) -> dict[str, Any]:
    """The body as sent: data (text when UTF-8, always base64), an AMQP value or sequences."""
    if not isinstance(payload, WirePayload):
        return {"kind": "unknown"}
    raw = payload.body_raw
    sections: list[tuple[str, Any]] = []
    pos = 0
    try:
        while pos < len(raw):
            value, pos = decode(raw, pos)
            if isinstance(value, Described):
                descriptor = value.descriptor
                kind = _BODY_KINDS.get(descriptor) if isinstance(descriptor, int) else None
                sections.append((kind or str(descriptor), value.value))
    except DecodeError as exc:
        return {"kind": "undecodable", "error": str(exc)}
    if not sections:
        return {"kind": "empty"}
    kind = sections[0][0]
    if kind == "data":
        data = b"".join(bytes(v) for _, v in sections if isinstance(v, bytes | bytearray))
        try:
            text: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {"kind": "data", "text": text, "base64": base64.b64encode(data).decode("ascii")}
    if kind == "sequence":
        return {"kind": "sequence", "value": [json_safe(v) for _, v in sections]}
    return {"kind": kind, "value": json_safe(sections[0][1])}


def message_json(message: BrokerMessage, sub_queue: str | None) -> dict[str, Any]:
    """Everything known about one message, without changing it."""
    payload = message.payload
    properties = payload.properties if isinstance(payload, WirePayload) else None
    header = payload.header if isinstance(payload, WirePayload) else None
    user = message.user
    return {
        "sequence_number": message.sequence_number,
        "state": message.state.name.lower(),
        "sub_queue": sub_queue,
        "enqueued_time": _when(message.enqueued_time),
        "scheduled_enqueue_time": _when(message.scheduled_enqueue_time),
        "expires_at": _when(message.expires_at),
        "delivery_count": message.delivery_count,
        "locked": message.lock_token is not None,
        "locked_until": _when(message.locked_until) if message.lock_token is not None else None,
        "lock_token": str(message.lock_token) if message.lock_token is not None else None,
        "dead_letter_source": message.dead_letter_source,
        "dead_letter_reason": json_safe(user.get("DeadLetterReason")),
        "dead_letter_error_description": json_safe(user.get("DeadLetterErrorDescription")),
        "size": message.size,
        "time_to_live": message.time_to_live,
        "system_properties": json_safe(message.system),
        "application_properties": json_safe(user),
        "amqp_properties": {
            "user_id": json_safe(properties.user_id) if properties else None,
            "content_encoding": json_safe(properties.content_encoding) if properties else None,
            "creation_time": json_safe(properties.creation_time) if properties else None,
            "absolute_expiry_time": (
                json_safe(properties.absolute_expiry_time) if properties else None
            ),
            "group_sequence": json_safe(properties.group_sequence) if properties else None,
        },
        "header": {
            "durable": header.durable if header else None,
            "priority": header.priority if header else None,
        },
        "message_annotations": json_safe(message.annotations),
        "body": body_json(payload),
    }


def _counts_json(counts: Counts) -> dict[str, Any]:
    return {
        "active": counts.active,
        "dead_letter": counts.dead_letter,
        "scheduled": counts.scheduled,
        "transfer": counts.transfer,
        "transfer_dead_letter": counts.transfer_dead_letter,
        "total": counts.total,
        "size_in_bytes": counts.size,
        "created_at": _when(counts.created_at),
        "updated_at": _when(counts.updated_at),
        "accessed_at": _when(counts.accessed_at),
    }


def _store_counters(store: MessageStore) -> dict[str, int]:
    c = store.counters
    return {
        "enqueued": c.enqueued,
        "delivered": c.delivered,
        "completed": c.completed,
        "abandoned": c.abandoned,
        "dead_lettered": c.dead_lettered,
        "expired": c.expired,
        "lock_expirations": c.lock_expirations,
    }


class ControlApi:
    def __init__(
        self,
        broker: Broker,
        topology: NamespaceTopology,
        clock: EmulatorClock,
        faults: FaultInjector,
        atom_api: AtomApi,
        *,
        reload: Callable[[], NamespaceTopology] | None = None,
        after_reload: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.clock = clock
        self.faults = faults
        self.atom = atom_api
        self.reload = reload
        self.after_reload = after_reload

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return self._route(request)
        except ControlError as exc:
            return _json(exc.status, {"error": exc.message})

    def _route(self, request: HttpRequest) -> HttpResponse:
        parts = request.segments[1:]
        method = request.method
        routes: dict[tuple[str, ...], dict[str, Callable[[HttpRequest], HttpResponse]]] = {
            (): {"GET": self._index},
            ("clock",): {"GET": self._clock},
            ("clock", "advance"): {"POST": self._advance},
            ("entities",): {"GET": self._entities},
            ("messages",): {"GET": self._messages},
            ("reset",): {"POST": self._reset},
            ("faults",): {
                "GET": self._faults,
                "POST": self._add_fault,
                "DELETE": self._clear_faults,
            },
            ("counters",): {"GET": self._counters},
        }
        key = tuple(parts)
        if len(parts) == 2 and parts[0] == "faults":
            if method != "DELETE":
                raise ControlError(405, f"{method} is not allowed on {request.path}")
            return self._remove_fault(parts[1])
        if key not in routes:
            raise ControlError(404, f"no control endpoint {request.path}; GET /control lists them")
        handler = routes[key].get(method)
        if handler is None:
            allowed = ", ".join(routes[key])
            raise ControlError(405, f"{method} is not allowed on {request.path} (use {allowed})")
        return handler(request)

    @staticmethod
    def _body(request: HttpRequest) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        try:
            value = json.loads(request.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ControlError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ControlError(400, "the body must be a JSON object")
        return value

    def _index(self, request: HttpRequest) -> HttpResponse:
        return _json(
            200,
            {
                "endpoints": [
                    "GET /control/clock",
                    "POST /control/clock/advance {seconds}",
                    "GET /control/entities",
                    "GET /control/messages?entity=PATH&max=N&from=SEQ",
                    "POST /control/reset {reload}",
                    "GET|POST|DELETE /control/faults",
                    "DELETE /control/faults/ID",
                    "GET /control/counters",
                ]
            },
        )

    # -- clock ---------------------------------------------------------------------------------

    def _clock_json(self) -> dict[str, Any]:
        now = self.clock.now()
        return {"now": now, "utc": _when(now), "offset_seconds": self.clock.offset}

    def _clock(self, request: HttpRequest) -> HttpResponse:
        return _json(200, self._clock_json())

    def _advance(self, request: HttpRequest) -> HttpResponse:
        seconds = self._body(request).get("seconds")
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ControlError(400, "seconds: must be a non-negative number")
        # On the loop thread the advance listeners run inline: due work is done on return.
        self.clock.advance(float(seconds))
        return _json(200, self._clock_json())

    # -- inspection ----------------------------------------------------------------------------

    def _receiver_json(self, entity: Queue | Subscription, path: str) -> dict[str, Any]:
        return {
            "name": entity.name,
            "path": path,
            "counts": _counts_json(receiver_counts(entity)),
            "sessions": sorted(entity.store.sessions),
        }

    def _entities(self, request: HttpRequest) -> HttpResponse:
        queues = [
            {"kind": "queue", **self._receiver_json(q, q.name)}
            for q in sorted(self.broker.queues.values(), key=lambda q: q.name.casefold())
        ]
        topics = []
        for topic in sorted(self.broker.topics.values(), key=lambda t: t.name.casefold()):
            subs = []
            for sub in topic.subscriptions.values():
                item = self._receiver_json(sub, sub.path)
                item["rules"] = [r.description.name for r in sub.rules]
                subs.append(item)
            topics.append(
                {
                    "kind": "topic",
                    "name": topic.name,
                    "path": topic.name,
                    "counts": _counts_json(topic_counts(topic)),
                    "subscriptions": subs,
                }
            )
        return _json(200, {"queues": queues, "topics": topics})

    @staticmethod
    def _int_param(request: HttpRequest, name: str, default: int, minimum: int) -> int:
        text = request.query.get(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise ControlError(400, f"{name}: {text!r} is not an integer") from None
        if value < minimum:
            raise ControlError(400, f"{name}: must be >= {minimum}")
        return value

    def _messages(self, request: HttpRequest) -> HttpResponse:
        path = request.query.get("entity")
        if not path:
            raise ControlError(400, "entity: missing (e.g. ?entity=q/$DeadLetterQueue)")
        count = min(self._int_param(request, "max", 100, 1), MAX_PEEK)
        start = self._int_param(request, "from", 0, 0)
        try:
            resolved = self.broker.resolve(path)
        except BrokerError as exc:
            raise ControlError(404, str(exc)) from None
        if resolved.store is None:
            assert isinstance(resolved.entity, Topic)
            pending = resolved.entity.scheduled_messages()
            found = [m for m in pending if m.sequence_number >= start][:count]
        else:
            found = resolved.store.peek(start, count)
        return _json(
            200,
            {
                "entity": path,
                "messages": [message_json(m, resolved.sub_queue) for m in found],
            },
        )

    # -- reset ---------------------------------------------------------------------------------

    def _reset(self, request: HttpRequest) -> HttpResponse:
        body = self._body(request)
        reload = body.get("reload", False)
        if not isinstance(reload, bool):
            raise ControlError(400, "reload: must be true or false")
        if reload:
            if self.reload is None:
                raise ControlError(400, "reload: this emulator has no configuration to reload")
            try:
                fresh = self.reload()
            except Exception as exc:
                raise ControlError(400, f"reload failed; nothing changed: {exc}") from None
            self._replace_entities(fresh)
        self.broker.reset()
        self.faults.reset_counts()
        self.atom.requests.clear()
        if reload and self.after_reload is not None:
            self.after_reload()
        return _json(200, {"reset": True, "reloaded": reload})

    def _replace_entities(self, fresh: NamespaceTopology) -> None:
        self.topology.tier = fresh.tier
        for name in list(self.broker.queues):
            self.broker.delete_queue(name)
        for name in list(self.broker.topics):
            self.broker.delete_topic(name)
        for queue in fresh.queues:
            self.broker.create_queue(queue)
        for topic in fresh.topics:
            self.broker.create_topic(topic)
        self.atom.extras.clear()
        self.atom.rules.clear()

    # -- faults --------------------------------------------------------------------------------

    def _faults(self, request: HttpRequest) -> HttpResponse:
        return _json(200, {"rules": [r.to_json() for r in self.faults.rules]})

    def _add_fault(self, request: HttpRequest) -> HttpResponse:
        try:
            rule = self.faults.add(self._body(request))
        except FaultRuleError as exc:
            raise ControlError(400, str(exc)) from None
        return _json(201, {"rule": rule.to_json()})

    def _clear_faults(self, request: HttpRequest) -> HttpResponse:
        removed = len(self.faults.rules)
        self.faults.clear()
        return _json(200, {"removed": removed})

    def _remove_fault(self, rule_id: str) -> HttpResponse:
        if not self.faults.remove(rule_id):
            raise ControlError(404, f"no fault rule {rule_id!r}")
        return _json(200, {"removed": 1})

    # -- counters ------------------------------------------------------------------------------

    def _counters(self, request: HttpRequest) -> HttpResponse:
        calls = self.faults.counts_by_entity()
        admin = self.atom.requests

        def operations(path: str) -> dict[str, int]:
            folded = path.casefold()
            merged: dict[str, int] = {}
            for entity, ops in calls.items():
                base = entity.casefold()
                for suffix in ("/$deadletterqueue", "/$transfer/$deadletterqueue"):
                    base = base.removesuffix(suffix)
                if base == folded:
                    for op, n in ops.items():
                        merged[op] = merged.get(op, 0) + n
            return merged

        def receiver(entity: Queue | Subscription, path: str) -> dict[str, Any]:
            main = _store_counters(entity.store)
            ops = operations(path)
            return {
                "sends": main["enqueued"] if isinstance(entity, Queue) else 0,
                "receives": main["delivered"] + entity.dead_letter.counters.delivered,
                "settlements": main["completed"] + main["abandoned"] + main["dead_lettered"],
                "management": ops.get("management", 0) + admin.get(path.casefold(), 0),
                "store": main,
                "dead_letter_store": _store_counters(entity.dead_letter),
                "operations": ops,
            }

        entities: dict[str, Any] = {}
        filter_errors = 0
        for queue in self.broker.queues.values():
            entities[queue.name] = receiver(queue, queue.name)
        for topic in self.broker.topics.values():
            ops = operations(topic.name)
            entities[topic.name] = {
                "sends": topic.counters.accepted,
                "unrouted": topic.counters.unrouted,
                "management": ops.get("management", 0) + admin.get(topic.name.casefold(), 0),
                "operations": ops,
            }
            for sub in topic.subscriptions.values():
                entities[sub.path] = receiver(sub, sub.path)
                errors = {rule.name: rule.evaluation_errors for rule in sub.rules}
                entities[sub.path]["filter_evaluation_errors"] = errors
                filter_errors += sum(errors.values())
        namespace = calls.get("", {})
        return _json(
            200,
            {
                "entities": entities,
                "namespace": {
                    "operations": namespace,
                    "admin_requests": admin.get("$namespace", 0),
                    "filter_evaluation_errors": filter_errors,
                },
                "state_counts": {
                    "scheduled": sum(s.count(MessageState.SCHEDULED) for s in self.broker.stores()),
                },
            },
        )
