"""The Service Bus management REST API (Atom) that ``ServiceBusAdministrationClient`` calls.

Routes (``?api-version=yyyy-mm``; before 2021-05 ``MaxMessageSizeInKilobytes`` is neither
accepted nor reported, as in the service):

* ``GET|PUT|DELETE /{queue-or-topic}``
* ``GET|PUT|DELETE /{topic}/subscriptions/{subscription}``
* ``GET|PUT|DELETE /{topic}/subscriptions/{subscription}/rules/{rule}``
* ``GET /$Resources/queues|topics``, ``/{topic}/subscriptions``, ``.../rules`` (``$skip``/``$top``)
* ``GET /$namespaceinfo``

Every request needs a SAS token with Manage rights in ``Authorization``, as the service
requires. A PUT with ``If-Match`` updates (404 when missing), without it creates (409 when
present). Errors are ``<Error><Code/><Detail/></Error>`` like the service's, so the SDK raises
ResourceNotFoundError / ResourceExistsError / HttpResponseError with a readable message.
Nothing changes state until the whole request has been validated.

One class (about 650 lines) on purpose: `AtomApi` is the service's resource tree, its
sections following the URL (namespace, queues and topics, subscriptions, rules), and every
resource shares the routing, the SAS check, the stored extras and timestamps; the XML
itself is `atom`'s.
"""

from __future__ import annotations

import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote

from ..auth import AuthError, validate_token
from ..core.broker import Broker
from ..core.clock import Clock
from ..core.entities import Queue, Subscription, Topic
from ..core.errors import EntityNotFoundError, InvalidOperationError
from ..core.message import MessageState
from ..core.rules import CompiledRule
from ..sqlfilter import SqlFilterError
from ..topology import (
    AccessRights,
    CorrelationFilterSpec,
    NamespaceTopology,
    QueueDescription,
    SasPolicy,
    TopicDescription,
)
from . import atom
from .atom import AtomError, Counts, Extras, ParsedRule
from .http import HttpRequest, HttpResponse

ATOM_ENTRY = "application/atom+xml;type=entry;charset=utf-8"
ATOM_FEED = "application/atom+xml;type=feed;charset=utf-8"
ERROR_TYPE = "application/xml; charset=utf-8"

_ENTITY_NAME = re.compile(r"[A-Za-z0-9](?:[\w.\-/~]*[A-Za-z0-9_])?", re.ASCII)
_CHILD_NAME = re.compile(r"[A-Za-z0-9$](?:[\w.\-~]*[A-Za-z0-9_])?", re.ASCII)
_T = TypeVar("_T")
_API_VERSION = re.compile(r"\d{4}-\d{2}(?:-preview)?", re.ASCII)
SUPPORTED_API_VERSIONS = ("2017-04", "2021-05", "2024-05")
DEFAULT_API_VERSION = "2017-04"
"""What a request without ``?api-version=`` gets (the SDK always sends one)."""
_RESERVED = {"$resources", "$namespaceinfo", "$management", "$cbs", "control", "health", "console"}


class ApiError(Exception):
    """An answer other than success: HTTP status plus the service-style detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _not_found(path: str) -> ApiError:
    return ApiError(
        404,
        f"The messaging entity '{path}' could not be found. To know more visit "
        "https://aka.ms/sbResourceMgrExceptions.",
    )


def _exists(path: str) -> ApiError:
    return ApiError(
        409,
        f"SubCode=40900. Conflict. The messaging entity '{path}' already exists. To know more "
        "visit https://aka.ms/sbResourceMgrExceptions.",
    )


# --- runtime numbers -----------------------------------------------------------------------


def receiver_counts(entity: Queue | Subscription) -> Counts:
    """Counts of a queue or subscription; deferred and locked messages count as active."""
    main = entity.store
    scheduled = main.count(MessageState.SCHEDULED)
    stores = entity.stores()
    return Counts(
        active=main.count() - scheduled,
        scheduled=scheduled,
        dead_letter=entity.dead_letter.count(),
        transfer_dead_letter=entity.transfer_dead_letter.count(),
        size=sum(store.size_in_bytes for store in stores),
        created_at=entity.created_at,
        updated_at=max(entity.created_at, entity.updated_at),
        accessed_at=max(max(s.accessed_at, s.updated_at) for s in stores),
    )


def topic_counts(topic: Topic) -> Counts:
    """A topic's numbers; TRUE/FALSE filters count as SQL filters (they are ``1=1``/``1=0``)."""
    filters = [rule.description.filter for s in topic.subscriptions.values() for rule in s.rules]
    correlation = sum(isinstance(f, CorrelationFilterSpec) for f in filters)
    return Counts(
        sql_filter_count=len(filters) - correlation,
        correlation_filter_count=correlation,
        scheduled=topic.scheduled_count,
        size=topic.size_in_bytes,
        created_at=topic.created_at,
        updated_at=topic.created_at,
        accessed_at=topic.updated_at,
        subscription_count=len(topic.subscriptions),
    )


class AtomApi:
    def __init__(
        self,
        broker: Broker,
        topology: NamespaceTopology,
        clock: Clock,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.clock = clock
        self.wall = wall
        self.started_at = clock.now()
        self.extras: dict[str, Extras] = {}
        """UserMetadata of entities, by folded path."""
        self.rules: dict[str, tuple[ParsedRule, float]] = {}
        """Rules created over the API: their parameters and creation time, by folded path."""
        self.requests: Counter[str] = Counter()
        """Management requests per entity path (the control API's counters)."""

    # -- entry point ---------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return self._route(request)
        except ApiError as exc:
            tracking = f"TrackingId:{uuid.uuid4()}, SystemTracker:{self._host(request)}"
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
            detail = f"{exc.detail} {tracking}, Timestamp:{stamp}"
            return HttpResponse(exc.status, atom.error_xml(exc.status, detail).encode(), ERROR_TYPE)

    def _dialect(self, request: HttpRequest) -> atom.Dialect:
        """The tier and the request's api-version (checked in ``_route``)."""
        version = request.query.get("api-version", DEFAULT_API_VERSION)
        return atom.Dialect(self.topology.tier, version)

    def _route(self, request: HttpRequest) -> HttpResponse:
        parts = request.segments
        version = request.query.get("api-version", DEFAULT_API_VERSION)
        if not _API_VERSION.fullmatch(version):
            raise ApiError(
                400,
                f"The api-version '{version}' is invalid. The supported versions are "
                f"{', '.join(SUPPORTED_API_VERSIONS)} (or another yyyy-mm release).",
            )
        folded = [p.casefold() for p in parts]
        if request.method not in ("GET", "PUT", "DELETE"):
            raise ApiError(405, f"The method {request.method} is not allowed on {request.path}.")
        if not parts:
            raise ApiError(400, "The request names no entity.")
        entity_path = self._entity_path(parts, folded)
        self._authorize(request, entity_path)
        self.requests[entity_path.casefold() or "$namespace"] += 1
        if folded == ["$namespaceinfo"]:
            self._only(request, "GET")
            return self._namespace(request)
        if folded[0] == "$resources":
            self._only(request, "GET")
            if len(parts) != 2 or folded[1] not in ("queues", "topics"):
                raise ApiError(
                    400, f"Unknown entity kind in {request.path}: expected queues or topics."
                )
            return self._list_entities(request, folded[1])
        if len(parts) == 1:
            return self._entity(request, parts[0])
        if (
            folded[1] != "subscriptions"
            or len(parts) > 5
            or (len(parts) > 3 and folded[3] != "rules")
        ):
            raise ApiError(
                400,
                f"Unknown resource path {request.path}: expected /{{entity}}, "
                "/{topic}/subscriptions/{subscription} or .../rules/{rule}.",
            )
        topic = parts[0]
        if len(parts) == 2:
            self._only(request, "GET")
            return self._list_subscriptions(request, topic)
        if len(parts) == 3:
            return self._subscription(request, topic, parts[2])
        if len(parts) == 4:
            self._only(request, "GET")
            return self._list_rules(request, topic, parts[2])
        return self._rule(request, topic, parts[2], parts[4])

    @staticmethod
    def _only(request: HttpRequest, method: str) -> None:
        if request.method != method:
            raise ApiError(405, f"The method {request.method} is not allowed on {request.path}.")

    @staticmethod
    def _entity_path(parts: list[str], folded: list[str]) -> str:
        if folded[0] in ("$namespaceinfo", "$resources"):
            return ""
        path = parts[0]
        if len(parts) >= 3:
            path += f"/Subscriptions/{parts[2]}"
        if len(parts) >= 5:
            path += f"/Rules/{parts[4]}"
        return path

    # -- auth ----------------------------------------------------------------------------------

    @staticmethod
    def _host(request: HttpRequest) -> str:
        return request.headers.get("host", "localhost")

    def _authorize(self, request: HttpRequest, entity_path: str) -> None:
        token = request.headers.get("authorization")
        if not token:
            raise ApiError(
                401,
                "MissingToken: The authorization header was not provided. It must be a "
                "SharedAccessSignature token with Manage rights.",
            )
        audience = f"https://{self._host(request)}/{entity_path}"
        policies: list[SasPolicy] = list(self.topology.policies)
        top = entity_path.split("/", 1)[0].casefold()
        owner = self.broker.queues.get(top) or self.broker.topics.get(top)
        if owner is not None:
            policies.extend(owner.description.policies)
        try:
            rights = validate_token(token, audience, policies, self.wall())
        except AuthError as exc:
            raise ApiError(401, f"InvalidSignature: {exc}") from None
        if AccessRights.MANAGE not in rights:
            raise ApiError(
                401, "Unauthorized: Manage,EntityRead claims required for this operation."
            )

    # -- helpers -------------------------------------------------------------------------------

    def _url(self, request: HttpRequest, path: str | None = None) -> str:
        return f"https://{self._host(request)}{path if path is not None else request.target}"

    def _sb_base(self, request: HttpRequest) -> str:
        return f"sb://{self._host(request)}"

    def _parse(self, request: HttpRequest, *kinds: str) -> tuple[str, ET.Element]:
        try:
            kind, element = atom.parse_entry(request.body)
        except AtomError as exc:
            raise ApiError(400, str(exc)) from None
        if kind not in kinds:
            raise ApiError(
                400,
                f"Unknown entity kind <{kind}> for {request.path}: expected "
                + " or ".join(f"<{k}>" for k in kinds)
                + ".",
            )
        return kind, element

    @staticmethod
    def _check_name(name: str, pattern: re.Pattern[str], limit: int, what: str) -> None:
        if len(name) > limit or not pattern.fullmatch(name) or name.casefold() in _RESERVED:
            raise ApiError(
                400,
                f"The {what} name '{name}' is invalid: use letters, digits, '.', '-', '_'"
                f"{', /' if what == 'entity' else ''} (at most {limit} characters), starting "
                "and ending with a letter or digit.",
            )

    def _check_forward(self, source: str, target: str | None, what: str) -> None:
        if not target:
            return
        if target.casefold() == source.casefold():
            raise ApiError(
                400,
                f"{what}: an entity cannot forward to itself ('{target}'). Azure accepts this "
                "and stops the loop at send time; the emulator refuses it on purpose (see "
                "'Differences from Azure' in docs/emulator.md).",
            )
        key = target.casefold()
        if key not in self.broker.queues and key not in self.broker.topics:
            raise ApiError(400, f"{what}: the entity '{target}' does not exist.")

    @staticmethod
    def _paging(request: HttpRequest) -> tuple[int, int]:
        try:
            skip = int(request.query.get("$skip", "0") or 0)
            top = int(request.query.get("$top", "100") or 100)
        except ValueError:
            raise ApiError(400, "$skip and $top must be integers.") from None
        if skip < 0 or top < 1:
            raise ApiError(400, "$skip must be >= 0 and $top >= 1.")
        return skip, top

    def _feed(
        self, request: HttpRequest, title: str, entries: list[str], total: int, skip: int, top: int
    ) -> HttpResponse:
        next_url = None
        if skip + top < total:
            path = request.target.split("?", 1)[0]
            next_url = self._url(
                request, f"{path}?$skip={skip + top}&$top={top}&api-version=2024-05"
            )
        body = atom.feed(title, self._url(request), entries, next_url, self.clock.now())
        return HttpResponse(200, body.encode(), ATOM_FEED)

    def _entry(
        self, request: HttpRequest, status: int, title: str, content: str, counts: Counts
    ) -> HttpResponse:
        body = atom.entry(
            self._url(request),
            title,
            content,
            published=counts.created_at,
            updated=counts.updated_at or counts.created_at,
        )
        return HttpResponse(status, body.encode(), ATOM_ENTRY)

    # -- namespace -----------------------------------------------------------------------------

    def _namespace(self, request: HttpRequest) -> HttpResponse:
        name = self.topology.name
        content = atom.namespace_xml(name, self.started_at, self.started_at, self.topology.tier)
        body = atom.entry(
            self._url(request), name, content, published=self.started_at, updated=self.started_at
        )
        return HttpResponse(200, body.encode(), ATOM_ENTRY)

    # -- queues and topics ---------------------------------------------------------------------

    def _entity_content(self, request: HttpRequest, entity: Queue | Topic) -> tuple[str, Counts]:
        extras = self.extras.get(entity.name.casefold(), Extras())
        if isinstance(entity, Queue):
            counts = receiver_counts(entity)
            content = atom.queue_xml(
                entity.description, counts, extras, self._sb_base(request), self._dialect(request)
            )
        else:
            counts = topic_counts(entity)
            content = atom.topic_xml(entity.description, counts, extras, self._dialect(request))
        return content, counts

    def _find_entity(self, name: str) -> Queue | Topic | None:
        key = name.casefold()
        return self.broker.queues.get(key) or self.broker.topics.get(key)

    def _entity(self, request: HttpRequest, name: str) -> HttpResponse:
        existing = self._find_entity(name)
        if request.method == "GET":
            found = _found(existing, name)
            content, counts = self._entity_content(request, found)
            return self._entry(request, 200, found.name, content, counts)
        if request.method == "DELETE":
            if isinstance(_found(existing, name), Queue):
                self.broker.delete_queue(name)
            else:
                self.broker.delete_topic(name)
            self._forget(name)
            return HttpResponse(200, b"", ERROR_TYPE)
        kind, element = self._parse(request, "QueueDescription", "TopicDescription")
        self._check_name(name, _ENTITY_NAME, 260, "entity")
        update = _put_updates(request, name, existing is not None)
        try:
            if kind == "QueueDescription":
                queue, extras = atom.parse_queue(name, element, self._dialect(request))
                entity = self._put_queue(queue, existing)
            else:
                topic, extras = atom.parse_topic(name, element, self._dialect(request))
                entity = self._put_topic(topic, existing)
        except AtomError as exc:
            raise ApiError(400, str(exc)) from None
        self.extras[entity.name.casefold()] = extras
        content, counts = self._entity_content(request, entity)
        return self._entry(request, 200 if update else 201, entity.name, content, counts)

    def _put_queue(self, queue: QueueDescription, existing: Queue | Topic | None) -> Queue:
        self._check_forward(queue.name, queue.forward_to, "ForwardTo")
        self._check_forward(
            queue.name, queue.forward_dead_lettered_messages_to, "ForwardDeadLetteredMessagesTo"
        )
        try:
            if existing is None:
                return self.broker.create_queue(queue)
            if not isinstance(existing, Queue):
                raise ApiError(400, f"'{queue.name}' is a topic: send a <TopicDescription>.")
            self._immutable(existing.description, queue, "RequiresSession", "requires_session")
            self._immutable(
                existing.description,
                queue,
                "RequiresDuplicateDetection",
                "requires_duplicate_detection",
            )
            queue = replace(queue, name=existing.name)
            return self.broker.update_queue(queue)
        except InvalidOperationError as exc:
            raise ApiError(400, str(exc)) from None

    def _put_topic(self, topic: TopicDescription, existing: Queue | Topic | None) -> Topic:
        if existing is None:
            return self.broker.create_topic(topic)
        if not isinstance(existing, Topic):
            raise ApiError(400, f"'{topic.name}' is a queue: send a <QueueDescription>.")
        self._immutable(
            existing.description,
            topic,
            "RequiresDuplicateDetection",
            "requires_duplicate_detection",
        )
        return self.broker.update_topic(replace(topic, name=existing.name))

    @staticmethod
    def _immutable(old: object, new: object, label: str, attr: str) -> None:
        if getattr(old, attr) != getattr(new, attr):
            raise ApiError(400, f"The value of {label} of an existing entity cannot be changed.")

    def _forget(self, prefix: str) -> None:
        folded = prefix.casefold()
        for table in (self.extras, self.rules):
            for key in [k for k in table if k == folded or k.startswith(folded + "/")]:
                del table[key]

    def _list_entities(self, request: HttpRequest, kind: str) -> HttpResponse:
        skip, top = self._paging(request)
        pool: list[Queue | Topic] = list(
            self.broker.queues.values() if kind == "queues" else self.broker.topics.values()
        )
        pool.sort(key=lambda e: e.name.casefold())
        entries = []
        for entity in pool[skip : skip + top]:
            content, counts = self._entity_content(request, entity)
            url = self._url(request, "/" + quote(entity.name, safe=""))
            entries.append(
                atom.entry(
                    url,
                    entity.name,
                    content,
                    published=counts.created_at,
                    updated=counts.updated_at or counts.created_at,
                )
            )
        title = "Queues" if kind == "queues" else "Topics"
        return self._feed(request, title, entries, len(pool), skip, top)

    # -- subscriptions -------------------------------------------------------------------------

    def _topic(self, name: str) -> Topic:
        topic = self.broker.topics.get(name.casefold())
        if topic is None:
            raise _not_found(name)
        return topic

    def _subscription_content(self, request: HttpRequest, sub: Subscription) -> tuple[str, Counts]:
        extras = self.extras.get(sub.path.casefold(), Extras())
        counts = receiver_counts(sub)
        content = atom.subscription_xml(sub.description, counts, extras, self._sb_base(request))
        return content, counts

    def _subscription(self, request: HttpRequest, topic_name: str, name: str) -> HttpResponse:
        topic = self._topic(topic_name)
        existing = topic.subscription(name)
        path = f"{topic.name}/Subscriptions/{name}"
        if request.method == "GET":
            found = _found(existing, path)
            content, counts = self._subscription_content(request, found)
            return self._entry(request, 200, found.name, content, counts)
        if request.method == "DELETE":
            found = _found(existing, path)
            self.broker.delete_subscription(topic.name, name)
            self._forget(found.path)
            return HttpResponse(200, b"", ERROR_TYPE)
        _, element = self._parse(request, "SubscriptionDescription")
        self._check_name(name, _CHILD_NAME, 50, "subscription")
        update = _put_updates(request, path, existing is not None)
        try:
            description, extras, default_rule = atom.parse_subscription(name, element)
        except AtomError as exc:
            raise ApiError(400, str(exc)) from None
        self._check_forward(path, description.forward_to, "ForwardTo")
        self._check_forward(
            path, description.forward_dead_lettered_messages_to, "ForwardDeadLetteredMessagesTo"
        )
        try:
            if existing is None:
                compiled = self._compile(default_rule) if default_rule is not None else None
                if compiled is not None:
                    description.rules = [compiled.description]
                subscription = self.broker.create_subscription(topic.name, description)
                if compiled is not None and default_rule is not None:
                    subscription.rules = [compiled]
                    self._remember_rule(subscription, default_rule)
            else:
                self._immutable(
                    existing.description, description, "RequiresSession", "requires_session"
                )
                subscription = self.broker.update_subscription(
                    topic.name, replace(description, name=existing.name)
                )
        except InvalidOperationError as exc:
            raise ApiError(400, str(exc)) from None
        self.extras[subscription.path.casefold()] = extras
        content, counts = self._subscription_content(request, subscription)
        return self._entry(request, 200 if update else 201, subscription.name, content, counts)

    def _list_subscriptions(self, request: HttpRequest, topic_name: str) -> HttpResponse:
        topic = self._topic(topic_name)
        skip, top = self._paging(request)
        subs = sorted(topic.subscriptions.values(), key=lambda s: s.name.casefold())
        entries = []
        for sub in subs[skip : skip + top]:
            content, counts = self._subscription_content(request, sub)
            url = self._url(
                request, f"/{quote(topic.name, safe='')}/subscriptions/{quote(sub.name, safe='')}"
            )
            entries.append(
                atom.entry(
                    url, sub.name, content, published=counts.created_at, updated=counts.updated_at
                )
            )
        return self._feed(request, "Subscriptions", entries, len(subs), skip, top)

    # -- rules ---------------------------------------------------------------------------------

    def _find_subscription(self, topic_name: str, name: str) -> Subscription:
        topic = self._topic(topic_name)
        sub = topic.subscription(name)
        if sub is None:
            raise _not_found(f"{topic.name}/Subscriptions/{name}")
        return sub

    @staticmethod
    def _compile(rule: ParsedRule) -> CompiledRule:
        try:
            return CompiledRule.compile(
                rule.description, rule.filter_parameters, rule.action_parameters
            )
        except SqlFilterError as exc:
            which = "filter" if _is_filter_error(rule, exc) else "action"
            raise ApiError(
                400,
                f"The SQL {which} of rule '{rule.description.name}' is invalid: {exc}.",
            ) from None

    def _remember_rule(self, sub: Subscription, rule: ParsedRule) -> None:
        key = f"{sub.path}/Rules/{rule.description.name}".casefold()
        self.rules[key] = (rule, self.clock.now())

    def _rule_view(self, sub: Subscription, compiled: CompiledRule) -> tuple[ParsedRule, float]:
        key = f"{sub.path}/Rules/{compiled.description.name}".casefold()
        known = self.rules.get(key)
        if known is not None and known[0].description is compiled.description:
            return known
        return ParsedRule(compiled.description), sub.created_at

    def _rule(
        self, request: HttpRequest, topic_name: str, sub_name: str, name: str
    ) -> HttpResponse:
        sub = self._find_subscription(topic_name, sub_name)
        existing = next(
            (r for r in sub.rules if r.description.name.casefold() == name.casefold()), None
        )
        path = f"{sub.path}/Rules/{name}"
        if request.method == "GET":
            return self._rule_entry(request, 200, sub, _found(existing, path))
        if request.method == "DELETE":
            _found(existing, path)
            self.broker.delete_rule(sub.topic.name, sub.name, name)
            self._forget(path)
            return HttpResponse(200, b"", ERROR_TYPE)
        _, element = self._parse(request, "RuleDescription")
        self._check_name(name, _CHILD_NAME, 50, "rule")
        update = _put_updates(request, path, existing is not None)
        try:
            parsed = atom.parse_rule(
                name if existing is None else existing.description.name, element
            )
        except AtomError as exc:
            raise ApiError(400, str(exc)) from None
        compiled = self._compile(parsed)
        self.broker.put_rule(sub.topic.name, sub.name, compiled)
        self._remember_rule(sub, parsed)
        return self._rule_entry(request, 200 if update else 201, sub, compiled)

    def _rule_entry(
        self, request: HttpRequest, status: int, sub: Subscription, compiled: CompiledRule
    ) -> HttpResponse:
        parsed, created = self._rule_view(sub, compiled)
        content = atom.rule_xml(parsed, created)
        body = atom.entry(
            self._url(request),
            compiled.description.name,
            content,
            published=created,
            updated=created,
        )
        return HttpResponse(status, body.encode(), ATOM_ENTRY)

    def _list_rules(self, request: HttpRequest, topic_name: str, sub_name: str) -> HttpResponse:
        sub = self._find_subscription(topic_name, sub_name)
        skip, top = self._paging(request)
        entries = []
        base = f"/{quote(sub.topic.name, safe='')}/subscriptions/{quote(sub.name, safe='')}/rules/"
        for compiled in sub.rules[skip : skip + top]:
            parsed, created = self._rule_view(sub, compiled)
            url = self._url(request, base + quote(compiled.description.name, safe=""))
            entries.append(
                atom.entry(
                    url,
                    compiled.description.name,
                    atom.rule_xml(parsed, created),
                    published=created,
                    updated=created,
                )
            )
        return self._feed(request, "Rules", entries, len(sub.rules), skip, top)


def _found(existing: _T | None, path: str) -> _T:
    """What a GET or DELETE names, or 404."""
    if existing is None:
        raise _not_found(path)
    return existing


def _put_updates(request: HttpRequest, path: str, exists: bool) -> bool:
    """A PUT's precondition: with ``If-Match`` it updates (404 when missing), without it
    creates (409 when present). True for an update."""
    update = "if-match" in request.headers
    if update and not exists:
        raise _not_found(path)
    if not update and exists:
        raise _exists(path)
    return update


def _is_filter_error(rule: ParsedRule, exc: SqlFilterError) -> bool:
    """Which half of a rule a compile error is about (the error carries its expression)."""
    action = rule.description.action
    return not (action and exc.expression == action)


__all__ = ["AtomApi", "EntityNotFoundError", "receiver_counts", "topic_counts"]
