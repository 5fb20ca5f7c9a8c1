"""Link authorisation: what the tokens a connection put on ``$cbs`` allow it to attach.

Service Bus checks claims per link, at attach time: a receiver needs ``Listen`` and a sender
``Send`` on a token whose audience covers the entity; ``$management`` needs only a valid
token (each operation then checks its own claim). The connection asks here and only turns
the answer into frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.broker import Broker
from ..core.entities import Queue, Topic
from ..core.errors import EntityNotFoundError
from ..core.store import MessageStore
from ..topology import AccessRights
from . import conditions
from .links import LinkKind


class TokenRights:
    """The rights one connection holds: per token audience (scope), until the token expires.

    Token expiry is wall-clock time (``se`` in the SAS token), not the emulator's clock,
    because the SDK signs and refreshes its tokens by the wall clock.
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._by_scope: dict[str, tuple[AccessRights, float]] = {}

    def grant(self, scope: str, rights: AccessRights, expires: float) -> None:
        """A put-token was accepted: ``scope`` (an entity path, or "" for the namespace)."""
        self._by_scope[scope.casefold().strip("/")] = (rights, expires)

    def rights_for(self, entity_path: str) -> AccessRights | None:
        """The union of unexpired rights whose scope covers ``entity_path``; None if none."""
        now = self._now()
        granted: AccessRights | None = None
        wanted = entity_path.casefold().strip("/")
        for scope, (rights, expires) in self._by_scope.items():
            if expires <= now:
                continue
            if not scope or wanted == scope or wanted.startswith(scope + "/"):
                granted = rights if granted is None else granted | rights
        return granted


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attach is refused: the AMQP condition and the text the SDK shows."""

    condition: str
    description: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """The attach may proceed; an entity receiver reads from ``store``."""

    store: MessageStore | None = None


def authorise_link(
    broker: Broker,
    tokens: TokenRights,
    kind: LinkKind,
    entity_path: str,
    *,
    emulator_sends: bool,
) -> Admitted | Refusal:
    """Decide one attach. ``emulator_sends`` is True for a client receiver."""
    if kind is LinkKind.CBS:
        return Admitted()
    try:
        resolved = broker.resolve(entity_path)
    except EntityNotFoundError as exc:
        return Refusal(conditions.NOT_FOUND, str(exc))
    rights = tokens.rights_for(entity_path)
    if rights is None:
        return Refusal(
            conditions.UNAUTHORIZED,
            f"Unauthorized access. No valid token for '{entity_path}' was put on $cbs.",
        )
    if kind is LinkKind.MANAGEMENT:
        return Admitted()
    needed = AccessRights.LISTEN if emulator_sends else AccessRights.SEND
    if not rights & needed:
        claim = "Listen" if needed is AccessRights.LISTEN else "Send"
        return Refusal(
            conditions.UNAUTHORIZED,
            f"Unauthorized access. '{claim}' claim(s) are required to perform this operation. "
            f"Resource: '{entity_path}'.",
        )
    if emulator_sends:
        if resolved.store is None:
            return Refusal(conditions.NOT_ALLOWED, f"Cannot receive from topic '{entity_path}'.")
        return Admitted(resolved.store)
    if not isinstance(resolved.entity, Queue | Topic) or resolved.sub_queue:
        return Refusal(conditions.NOT_ALLOWED, f"Cannot send to '{entity_path}'.")
    return Admitted()
