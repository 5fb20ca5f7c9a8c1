"""Service Bus SQL filters, SQL rule actions and correlation filters.

Expressions are compiled once (at rule creation) into closures; matching a message never
re-parses. Compilation errors are :class:`SqlFilterError` carrying a position. Evaluation
maps every SQL-level problem to unknown and swallows no exception: one that escapes is a
bug, which the broker's rule runner (``core/rules.py``) logs, counts and, in strict mode,
raises. See ``README.md`` in this package for the semantics and documented sources.
"""

from __future__ import annotations

from .actions import SqlRuleAction, compile_action
from .correlation import CorrelationFilter
from .errors import SqlFilterError
from .evaluator import (
    DEFAULT_MAX_LENGTH,
    FALSE_FILTER,
    TRUE_FILTER,
    SqlFilter,
    compile_filter,
)
from .message import Filter, MessageView, RuleAction
from .sysprops import SETTABLE_SYSTEM_PROPERTIES, SYSTEM_PROPERTIES

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "FALSE_FILTER",
    "SETTABLE_SYSTEM_PROPERTIES",
    "SYSTEM_PROPERTIES",
    "TRUE_FILTER",
    "CorrelationFilter",
    "Filter",
    "MessageView",
    "RuleAction",
    "SqlFilter",
    "SqlFilterError",
    "SqlRuleAction",
    "compile_action",
    "compile_filter",
]
