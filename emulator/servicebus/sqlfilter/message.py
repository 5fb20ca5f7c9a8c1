"""The message view that filters read and actions mutate, and the two rule protocols.

The broker core builds a :class:`MessageView` per (message, subscription) copy so that an
action only changes the copy that enters that subscription.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class MessageView:
    """System properties (canonical names, only those present) and application properties."""

    system: dict[str, object] = field(default_factory=dict)
    user: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Filter(Protocol):
    """A compiled subscription filter."""

    def matches(self, message: MessageView) -> bool:
        """Return True when the message is selected (unknown means no match).

        Raises only on a bug or a malformed view, never because of a message's values.
        """
        ...


@runtime_checkable
class RuleAction(Protocol):
    """A compiled rule action."""

    def apply(self, message: MessageView) -> None:
        """Mutate ``message.system`` / ``message.user`` in place; raises only on a bug."""
        ...
