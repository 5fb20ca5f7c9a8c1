"""What the SignalR stand-in received: messages per hub and target (user, group, all).

Scenario tests ask "did creator X get a jobUpdate for job Y?"; `for_user` answers that,
counting messages sent to the user directly, to a group the user was in at the time, and
broadcasts to the hub — what a client connected as that user would have received.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from standins._recorder import Recorder

Audience = Literal["user", "group", "all", "connection"]


@dataclass(frozen=True)
class SignalRMessage:
    hub: str
    audience: Audience
    target: str
    arguments: list[Any]
    user_id: str | None = None
    group: str | None = None
    connection_id: str | None = None
    excluded: tuple[str, ...] = ()
    group_members: frozenset[str] = frozenset()
    api_version: str = "v1"
    received_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "audience": self.audience,
            "target": self.target,
            "arguments": self.arguments,
            "userId": self.user_id,
            "group": self.group,
            "connectionId": self.connection_id,
            "excluded": list(self.excluded),
            "apiVersion": self.api_version,
            "receivedAt": self.received_at,
        }


class SignalRStore:
    """Thread-safe record of messages and group membership."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.messages: Recorder[SignalRMessage] = Recorder("SignalR messages")
        self._groups: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def add_to_group(self, hub: str, group: str, user: str) -> None:
        with self._lock:
            self._groups.setdefault((hub, group), set()).add(user)

    def remove_from_group(self, hub: str, group: str, user: str) -> None:
        with self._lock:
            self._groups.get((hub, group), set()).discard(user)

    def group_members(self, hub: str, group: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._groups.get((hub, group), ()))

    def record(self, message: SignalRMessage) -> None:
        self.messages.append(message)

    def reset(self) -> None:
        with self._lock:
            self._groups.clear()
        self.messages.clear()

    # -- queries --------------------------------------------------------------------------

    def all(self, hub: str | None = None) -> list[SignalRMessage]:
        return [m for m in self.messages if hub is None or m.hub == hub.lower()]

    def for_user(
        self, user: str, hub: str | None = None, *, target: str | None = None, direct: bool = False
    ) -> list[SignalRMessage]:
        """Messages that reached `user` (direct only when `direct=True`)."""
        return [m for m in self.all(hub) if _reaches(m, user, direct, target)]

    def wait_for_user(
        self,
        user: str,
        hub: str | None = None,
        *,
        target: str | None = None,
        predicate: Callable[[SignalRMessage], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[SignalRMessage]:
        """Block until `count` messages reached `user` (and match `predicate`)."""
        hub_name = hub.lower() if hub else None

        def match(m: SignalRMessage) -> bool:
            return (
                (hub_name is None or m.hub == hub_name)
                and _reaches(m, user, False, target)
                and (predicate is None or predicate(m))
            )

        return self.messages.wait_for(match, count=count, timeout=timeout)

    def users(self, hub: str | None = None) -> set[str]:
        return {m.user_id for m in self.all(hub) if m.user_id is not None}


def _reaches(m: SignalRMessage, user: str, direct: bool, target: str | None) -> bool:
    if target is not None and m.target != target:
        return False
    if m.audience == "user":
        return m.user_id == user
    if direct:
        return False
    if m.audience == "group":
        return user in m.group_members
    return m.audience == "all"
