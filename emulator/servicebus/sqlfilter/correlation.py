"""Correlation filters: exact-match on system fields and application properties.

"Topic filters and actions" (docs): a match exists when the message's value for each set
property equals the filter's value; string comparison is case-sensitive; several properties
combine with AND. The filter-examples doc equates one to ``sys.ReplyTo = '...' AND
sys.Label = '...' AND color = 'Red'``, so we use exactly the SQL ``=`` semantics (ids in
string form, application property names case-insensitive, no bool/number equality, NULL
never equal). A filter with nothing set matches every message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .message import MessageView
from .values import compare, id_to_str

_MISSING = object()


@dataclass(frozen=True)
class CorrelationFilter:
    """A correlation filter; field names follow CorrelationRuleFilter (``label`` = Subject)."""

    correlation_id: str | None = None
    message_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    label: str | None = None
    session_id: str | None = None
    reply_to_session_id: str | None = None
    content_type: str | None = None
    properties: Mapping[str, object] = field(default_factory=dict)

    def _system_terms(self) -> tuple[tuple[str, str], ...]:
        pairs = (
            ("CorrelationId", self.correlation_id),
            ("MessageId", self.message_id),
            ("To", self.to),
            ("ReplyTo", self.reply_to),
            ("Label", self.label),
            ("SessionId", self.session_id),
            ("ReplyToSessionId", self.reply_to_session_id),
            ("ContentType", self.content_type),
        )
        return tuple((name, value) for name, value in pairs if value is not None)

    def __post_init__(self) -> None:
        # Precompute the terms once; matching then loops over a short tuple.
        object.__setattr__(self, "_terms", self._system_terms())
        object.__setattr__(self, "_props", tuple(dict(self.properties).items()))

    def matches(self, message: MessageView) -> bool:
        """True when every set field equals the message's value; never raises."""
        try:
            system = message.system
            for name, expected in self._terms:  # type: ignore[attr-defined]
                actual = id_to_str(system.get(name))
                if not isinstance(actual, str) or actual != expected:
                    return False
            user = message.user
            for key, expected in self._props:  # type: ignore[attr-defined]
                actual = user.get(key, _MISSING)
                if actual is _MISSING:
                    lkey = key.lower()
                    actual = next(
                        (v for k, v in user.items() if isinstance(k, str) and k.lower() == lkey),
                        None,
                    )
                if compare("=", actual, expected) is not True:
                    return False
            return True
        except Exception:
            return False
