"""Fault injection: rules that make chosen operations on chosen entities fail or slow down.

A pure model, no I/O: the AMQP layer asks ``check(operation, entity_path)`` before doing an
operation and, when an effect comes back, produces what the real service would (see
:class:`FaultEffect`). Rules fire with a probability, or for the next N matching calls, or
always; the random source is injectable so tests are deterministic. Every ``check`` is also
counted per (operation, entity), which gives the control API its operation counters.

Operations: ``connect``, ``put-token``, ``send``, ``receive``, ``settle``, ``renew-lock``,
``management`` (any ``$management`` request). Effects and how the SDK sees them:

=================  ===========================================  ==============================
effect             the adapter should                           the SDK raises
=================  ===========================================  ==============================
server-busy        refuse with ``com.microsoft:server-busy``    ServiceBusServerBusyError (retried)
connection-drop    close the TCP connection without a Close     ServiceBusConnectionError (retried)
lock-lost          answer ``com.microsoft:message-lock-lost``   MessageLockLostError
timeout            answer ``com.microsoft:timeout``             OperationTimeoutError (retried)
latency            delay the operation by ``latency_ms``        nothing (it is just slower)
=================  ===========================================  ==============================
"""

from __future__ import annotations

import fnmatch
import itertools
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

OPERATIONS = ("connect", "put-token", "send", "receive", "settle", "renew-lock", "management")
EFFECTS = ("server-busy", "connection-drop", "lock-lost", "timeout", "latency")

CONDITIONS = {
    "server-busy": "com.microsoft:server-busy",
    "lock-lost": "com.microsoft:message-lock-lost",
    "timeout": "com.microsoft:timeout",
}

_DESCRIPTIONS = {
    "server-busy": (
        "The request was terminated because the entity is being throttled. Error code : 50002."
        " (fault injected by the emulator)"
    ),
    "connection-drop": "The connection was dropped (fault injected by the emulator).",
    "lock-lost": (
        "The lock supplied is invalid. Either the lock expired, or the message has already "
        "been removed from the queue. (fault injected by the emulator)"
    ),
    "timeout": "The operation did not complete in time (fault injected by the emulator).",
    "latency": "Delayed by the emulator's fault injection.",
}


class FaultRuleError(ValueError):
    """A fault rule that cannot be used; the message names the field."""


@dataclass(frozen=True)
class FaultEffect:
    """What to do to one operation.

    ``effect`` is one of :data:`EFFECTS`; ``condition`` is the AMQP error condition to answer
    with (None for connection-drop and latency); ``latency_ms`` is the delay for ``latency``.
    """

    effect: str
    rule_id: str
    condition: str | None = None
    description: str = ""
    latency_ms: float = 0.0


@dataclass
class FaultRule:
    operation: str
    effect: str
    entity: str = "*"
    """A case-insensitive glob over the entity path (``t/Subscriptions/*``); ``*`` matches all."""
    probability: float | None = None
    next_n: int | None = None
    """Fire for this many more matching calls, then stop (None: no limit)."""
    latency_ms: float = 0.0
    id: str = ""
    fired: int = 0

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise FaultRuleError(
                f"operation: {self.operation!r} is not one of {', '.join(OPERATIONS)}"
            )
        if self.effect not in EFFECTS:
            raise FaultRuleError(f"effect: {self.effect!r} is not one of {', '.join(EFFECTS)}")
        if not isinstance(self.entity, str) or not self.entity:
            raise FaultRuleError("entity: must be a non-empty glob such as '*' or 'jobs/*'")
        if self.probability is not None and not (
            isinstance(self.probability, int | float) and 0.0 <= self.probability <= 1.0
        ):
            raise FaultRuleError("probability: must be a number between 0 and 1")
        if self.next_n is not None and (
            not isinstance(self.next_n, int) or isinstance(self.next_n, bool) or self.next_n < 0
        ):
            raise FaultRuleError("next_n: must be a non-negative integer")
        if self.effect == "latency" and not (
            isinstance(self.latency_ms, int | float) and self.latency_ms > 0
        ):
            raise FaultRuleError("latency_ms: a latency rule needs a positive latency_ms")
        if self.effect == "lock-lost" and self.operation not in ("settle", "renew-lock"):
            raise FaultRuleError("effect: lock-lost only applies to settle and renew-lock")

    @property
    def exhausted(self) -> bool:
        return self.next_n is not None and self.next_n <= 0

    def matches(self, operation: str, entity_path: str) -> bool:
        return operation == self.operation and fnmatch.fnmatchcase(
            entity_path.casefold(), self.entity.casefold()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "entity": self.entity,
            "effect": self.effect,
            "probability": self.probability,
            "next_n": self.next_n,
            "latency_ms": self.latency_ms,
            "fired": self.fired,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from the control API's JSON; unknown keys are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise FaultRuleError("a fault rule must be a JSON object")
        allowed = {"operation", "entity", "effect", "probability", "next_n", "latency_ms"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise FaultRuleError(
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        for required in ("operation", "effect"):
            if required not in data:
                raise FaultRuleError(f"{required}: missing")
        return cls(
            operation=data["operation"],
            effect=data["effect"],
            entity=data.get("entity", "*"),
            probability=data.get("probability"),
            next_n=data.get("next_n"),
            latency_ms=data.get("latency_ms", 0.0),
        )


@dataclass
class FaultInjector:
    """The active rules and the per-entity operation counts; owned by the emulator's loop."""

    random: Callable[[], float] = random.random
    rules: list[FaultRule] = field(default_factory=list)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    """How many times each (operation, entity path) was checked, i.e. attempted."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, rule: FaultRule | Mapping[str, Any]) -> FaultRule:
        if not isinstance(rule, FaultRule):
            rule = FaultRule.from_json(rule)
        rule.id = rule.id or f"f{next(self._ids)}"
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()

    def reset_counts(self) -> None:
        self.calls.clear()

    def check(self, operation: str, entity_path: str = "") -> FaultEffect | None:
        """Count the call; return the effect of the first rule that fires, or None.

        ``entity_path`` is the entity as the client addressed it (``q``,
        ``t/Subscriptions/s``, ``q/$DeadLetterQueue``; ``""`` for connect).
        """
        self.calls[(operation, entity_path)] += 1
        for rule in self.rules:
            if rule.exhausted or not rule.matches(operation, entity_path):
                continue
            if rule.probability is not None and self.random() >= rule.probability:
                continue
            if rule.next_n is not None:
                rule.next_n -= 1
            rule.fired += 1
            return FaultEffect(
                effect=rule.effect,
                rule_id=rule.id,
                condition=CONDITIONS.get(rule.effect),
                description=_DESCRIPTIONS[rule.effect],
                latency_ms=float(rule.latency_ms),
            )
        return None

    def counts_by_entity(self) -> dict[str, dict[str, int]]:
        """``{entity path: {operation: calls}}`` ('' is the namespace, e.g. connect)."""
        out: dict[str, dict[str, int]] = {}
        for (operation, entity), count in sorted(self.calls.items()):
            out.setdefault(entity, {})[operation] = count
        return out
