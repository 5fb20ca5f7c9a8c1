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
    """A correlation filter: system properties by their SQL names (``Label`` = Subject) and
    application properties, each compared for equality.

    The system names are those of ``sys.*`` in a SQL filter, so one field list (the topology's
    ``CorrelationFilterSpec``) feeds every API that spells them.
    """

    system: Mapping[str, str | None] = field(default_factory=dict)
    properties: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Precompute the terms once; matching then loops over a short tuple.
        terms = tuple((k, v) for k, v in dict(self.system).items() if v is not None)
        object.__setattr__(self, "_terms", terms)
        object.__setattr__(self, "_props", tuple(dict(self.properties).items()))

    def matches(self, message: MessageView) -> bool:
        """True when every set field equals the message's value.

        Every message value is handled (a type that cannot compare is no match); an
        exception therefore means a malformed view and reaches the caller.
        """
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
