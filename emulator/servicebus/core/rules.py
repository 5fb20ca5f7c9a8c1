"""Subscription rules as the broker runs them, and what happens when evaluating one raises.

The sqlfilter evaluator maps every SQL-level problem (a type mismatch, a missing property,
division by zero) to *unknown*, so an exception out of a filter or an action is an evaluator
bug or a message the emulator built wrongly. It must not vanish silently, so a failing rule is

- logged once (with the subscription and the rule's name) on ``emulator.servicebus.rules``,
- counted on the rule (``CompiledRule.evaluation_errors``; the control API's
  ``filter_evaluation_errors``),
- raised as :class:`FilterEvaluationError` to the subscription, which re-raises it in strict
  mode (tests turn it on) and otherwise does what Azure does with a filter evaluation
  exception: dead-letter the message in that subscription when
  ``dead_lettering_on_filter_evaluation_exceptions`` is on (the default), else drop it there.

Strict mode is ``SERVICEBUS_EMULATOR_STRICT_FILTERS=1`` in the environment (read when an error
happens, so child processes and late changes see it) or :func:`strict_filters` in code, which
wins over the environment while it is active. It is process-wide, not per thread, because the
broker evaluates rules on the emulator's loop thread, not the caller's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..sqlfilter import (
    FALSE_FILTER,
    TRUE_FILTER,
    CorrelationFilter,
    Filter,
    MessageView,
    RuleAction,
    compile_action,
    compile_filter,
)
from ..topology import (
    CorrelationFilterSpec,
    FalseFilterSpec,
    FilterSpec,
    RuleDescription,
    SqlFilterSpec,
    TrueFilterSpec,
)

STRICT_FILTERS_ENV = "SERVICEBUS_EMULATOR_STRICT_FILTERS"
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

_log = logging.getLogger("emulator.servicebus.rules")
_strict_override: bool | None = None


def strict_filters_enabled() -> bool:
    """Whether a rule evaluation error is raised instead of handled as Azure would."""
    if _strict_override is not None:
        return _strict_override
    return os.environ.get(STRICT_FILTERS_ENV, "").strip().lower() in _TRUE_WORDS


@contextmanager
def strict_filters(enabled: bool = True) -> Iterator[None]:
    """Turn strict rule evaluation on (or off) for the duration, whatever the environment says."""
    global _strict_override
    previous = _strict_override
    _strict_override = enabled
    try:
        yield
    finally:
        _strict_override = previous


class FilterEvaluationError(RuntimeError):
    """A rule's filter or action raised while the broker evaluated it for a message."""

    def __init__(self, where: str, rule_name: str, stage: str, cause: Exception) -> None:
        self.where = where
        self.rule_name = rule_name
        self.stage = stage
        self.cause = cause
        super().__init__(
            f"{where}, rule {rule_name!r}: the {stage} raised {type(cause).__name__}: {cause}"
        )


def compile_rule_filter(spec: FilterSpec, parameters: dict[str, object] | None = None) -> Filter:
    """The evaluator for a filter specification; ``parameters`` fill a SQL filter's ``@name``."""
    if isinstance(spec, SqlFilterSpec):
        return compile_filter(spec.expression, parameters=parameters)
    if isinstance(spec, CorrelationFilterSpec):
        return CorrelationFilter(spec.system_properties(), dict(spec.properties))
    if isinstance(spec, TrueFilterSpec):
        return TRUE_FILTER
    if isinstance(spec, FalseFilterSpec):
        return FALSE_FILTER
    raise TypeError(f"unknown filter specification {spec!r}")


@dataclass(slots=True)
class CompiledRule:
    """A rule ready to run: its description, compiled filter and action, and its error count."""

    description: RuleDescription
    filter: Filter
    action: RuleAction | None
    evaluation_errors: int = 0
    filter_parameters: dict[str, object] | None = None
    """The ``@name`` values the filter was compiled with (kept so durable state can recompile)."""
    action_parameters: dict[str, object] | None = None

    @classmethod
    def compile(
        cls,
        description: RuleDescription,
        filter_parameters: dict[str, object] | None = None,
        action_parameters: dict[str, object] | None = None,
    ) -> CompiledRule:
        """Compile a rule; raise SqlFilterError naming the problem when it is invalid.

        The parameters are the admin API's ``SqlFilter.Parameters`` / ``SqlRuleAction.Parameters``.
        """
        action = (
            compile_action(description.action, parameters=action_parameters)
            if description.action
            else None
        )
        return cls(
            description,
            compile_rule_filter(description.filter, filter_parameters),
            action,
            filter_parameters=dict(filter_parameters) if filter_parameters else None,
            action_parameters=dict(action_parameters) if action_parameters else None,
        )

    @property
    def name(self) -> str:
        return self.description.name

    def matches(self, view: MessageView, where: str) -> bool:
        """The filter's verdict; FilterEvaluationError (counted, logged once) if it raised."""
        try:
            return self.filter.matches(view)
        except Exception as exc:
            raise self._failed(where, "filter", exc) from exc

    def apply(self, view: MessageView, where: str) -> None:
        """Run the action on a copy's view; FilterEvaluationError if it raised."""
        if self.action is None:
            return
        try:
            self.action.apply(view)
        except Exception as exc:
            raise self._failed(where, "action", exc) from exc

    def _failed(self, where: str, stage: str, cause: Exception) -> FilterEvaluationError:
        self.evaluation_errors += 1
        error = FilterEvaluationError(where, self.name, stage, cause)
        if self.evaluation_errors == 1:
            _log.error(
                "%s (logged once per rule; see filter_evaluation_errors in the control API's "
                "counters)",
                error,
                exc_info=cause,
            )
        return error


__all__ = [
    "STRICT_FILTERS_ENV",
    "CompiledRule",
    "FilterEvaluationError",
    "compile_rule_filter",
    "strict_filters",
    "strict_filters_enabled",
]
