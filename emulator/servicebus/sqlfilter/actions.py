"""Compile parsed SQL rule actions (``SET`` / ``REMOVE`` statements) into closures.

The values a statement assigns are expressions compiled by the filter evaluator; what is
the action's own is assignment: "SET performs implicit conversion if possible", and a value
that cannot be converted leaves its target as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import ast as A
from .evaluator import DEFAULT_MAX_LENGTH, _check_text, _ci_find, _compile
from .message import MessageView
from .parser import parse_action
from .sysprops import SYSTEM_PROPERTIES
from .values import BOOL, BYTES, DEC, DT, FLOAT, INT, NULL, STR, TD, UUID, as_aware, kind_of

_SKIP: Any = object()


def _plain(value: Any, existing: Any) -> Any:
    """Convert a computed value to a plain Python value for an application property.

    Mirrors "SET performs implicit conversion if possible": a long assigned over an existing
    double stays a double. UUIDs (newid()) become strings; durations become float seconds.
    """
    k = kind_of(value)
    if k == NULL:
        return None
    if k == BOOL:
        return bool(value)
    if k == INT:
        return float(value) if kind_of(existing) == FLOAT else int(value)
    if k in (FLOAT, DEC):
        return float(value)
    if k in (STR, UUID):
        return str(value)
    if k == DT:
        return as_aware(value)
    if k == TD:
        return value.total_seconds()
    if k == BYTES:
        return bytes(value)
    return _SKIP


def _coerce_sys(ptype: str, value: Any) -> Any:
    """Convert a value for a typed system property; _SKIP when C# could not convert it."""
    k = kind_of(value)
    if k == NULL:
        return None
    if ptype == "str":
        return str(value) if k in (STR, UUID) else _SKIP
    if ptype == "datetime":
        return as_aware(value) if k == DT else _SKIP
    if ptype == "duration":
        if k == TD:
            return value.total_seconds()
        return float(value) if k in (INT, FLOAT, DEC) else _SKIP
    if ptype == "bool":
        return bool(value) if k == BOOL else _SKIP
    return _SKIP  # pragma: no cover - only settable properties reach here


Stmt = Callable[[MessageView], None]


def _compile_statement(node: A.Node) -> Stmt:
    if isinstance(node, A.SetStmt):
        value_fn = _compile(node.value).fn
        target = node.target
        name = target.name
        if target.scope == "sys":
            ptype = SYSTEM_PROPERTIES[name].type

            def set_sys(m: MessageView) -> None:
                v = _coerce_sys(ptype, value_fn(m))
                if v is _SKIP:
                    return
                if v is None:
                    m.system.pop(name, None)
                else:
                    m.system[name] = v

            return set_sys
        lname = name.lower()

        def set_user(m: MessageView) -> None:
            v = value_fn(m)
            user = m.user
            key: str | None = name if name in user else _ci_find(user, lname)[0]
            key = name if key is None else key
            pv = _plain(v, user.get(key))
            if pv is not _SKIP:
                user[key] = pv

        return set_user
    assert isinstance(node, A.RemoveStmt)
    target = node.target
    name = target.name
    if target.scope == "sys":

        def remove_sys(m: MessageView) -> None:
            m.system.pop(name, None)

        return remove_sys
    lname = name.lower()

    def remove_user(m: MessageView) -> None:
        for key in [k for k in m.user if isinstance(k, str) and k.lower() == lname]:
            del m.user[key]

    return remove_user


class SqlRuleAction:
    """A compiled SQL rule action: statements applied in order, each seeing earlier ones."""

    __slots__ = ("_statements", "expression")

    def __init__(self, expression: str, statements: list[Stmt]) -> None:
        self.expression = expression
        self._statements = tuple(statements)

    def apply(self, message: MessageView) -> None:
        """Mutate the message copy; a value that cannot be assigned leaves its target as it was.

        Like ``SqlFilter.matches`` this raises only on an evaluator bug or a malformed view.
        """
        for statement in self._statements:
            statement(message)

    def __repr__(self) -> str:
        return f"SqlRuleAction({self.expression!r})"


def compile_action(
    expression: str,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    parameters: Mapping[str, object] | None = None,
) -> SqlRuleAction:
    """Compile a SQL rule action once; raise SqlFilterError (with position) if invalid."""
    text = _check_text(expression, max_length, "rule action expression")
    statements = parse_action(text, parameters)
    return SqlRuleAction(text, [_compile_statement(s) for s in statements])


__all__ = ["SqlRuleAction", "compile_action"]
