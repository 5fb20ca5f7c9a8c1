"""Compile parsed filter expressions into closures, and the public filter entry points.

Each AST node becomes one Python closure, built once at rule creation; constant subtrees are
folded, and the hot shape ``property = 'constant'`` gets a specialised closure, so matching a
message is a handful of dict lookups and comparisons with no parsing or tree walking.

Truth values inside the evaluator are ``True`` / ``False`` / ``None`` (unknown); a filter
matches only when its condition is exactly ``True``.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import ast as A
from .errors import SqlFilterError
from .message import Filter, MessageView
from .parser import parse_filter
from .sysprops import SYSTEM_PROPERTIES
from .values import (
    FLOAT,
    INT,
    INT64_MAX,
    INT64_MIN,
    NO_ESCAPE,
    NULL,
    STR,
    TD,
    arith,
    compare,
    id_to_str,
    kind_of,
    like,
    like_to_regex,
    negate,
)

Fn = Callable[[MessageView], Any]

DEFAULT_MAX_LENGTH = 1024

_MISSING: Any = object()
_PY_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_INT_FAST: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}
_MIRROR = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A compiled node: its closure, and its value when it is a compile-time constant."""

    fn: Fn
    const: bool = False
    value: Any = None


def _constant(value: Any) -> _Compiled:
    return _Compiled(lambda _m: value, True, value)


# ---------------------------------------------------------------------- property access
def _ci_find(bag: Mapping[str, Any], lname: str) -> tuple[str | None, Any]:
    """Case-insensitive key search (the docs: "Property names are case-insensitive")."""
    for key, value in bag.items():
        if isinstance(key, str) and key.lower() == lname:
            return key, value
    return None, None


def _user_getter(name: str) -> Fn:
    lname = name.lower()

    def get(m: MessageView) -> Any:
        v = m.user.get(name, _MISSING)
        if v is _MISSING:
            return _ci_find(m.user, lname)[1]
        return v

    return get


def _sys_getter(name: str) -> Fn:
    ptype = SYSTEM_PROPERTIES[name].type
    if ptype == "str":

        def get_str(m: MessageView) -> Any:
            v = m.system.get(name)
            if v is None or v.__class__ is str:
                return v
            return id_to_str(v)  # uuid / ulong / binary ids compare as their string form

        return get_str
    if ptype == "duration":

        def get_duration(m: MessageView) -> Any:
            v = m.system.get(name)
            if kind_of(v) == TD:
                return v.total_seconds()  # the view's convention: float seconds
            return v

        return get_duration

    def get(m: MessageView) -> Any:
        return m.system.get(name)

    return get


def _getter(prop: A.Prop) -> Fn:
    return _sys_getter(prop.name) if prop.scope == "sys" else _user_getter(prop.name)


# ---------------------------------------------------------------------- node compilers
def _compile(node: A.Node) -> _Compiled:
    if isinstance(node, A.Literal):
        return _constant(node.value)
    if isinstance(node, A.Prop):
        return _Compiled(_getter(node))
    if isinstance(node, A.Func):
        return _compile_func(node)
    if isinstance(node, A.Unary):
        return _compile_unary(node)
    if isinstance(node, A.Arith):
        return _compile_arith(node)
    if isinstance(node, A.Compare):
        return _compile_compare(node)
    if isinstance(node, A.Not):
        return _compile_not(node)
    if isinstance(node, A.Logical):
        return _compile_logical(node)
    if isinstance(node, A.In):
        return _compile_in(node)
    if isinstance(node, A.Like):
        return _compile_like(node)
    if isinstance(node, A.IsNull):
        return _compile_is_null(node)
    if isinstance(node, A.Exists):
        return _compile_exists(node)
    raise TypeError(f"unexpected node {node!r}")  # pragma: no cover


def _compile_func(node: A.Func) -> _Compiled:
    if node.name == "newid":
        return _Compiled(lambda _m: uuid.uuid4())
    arg = _compile(node.args[0])
    if arg.const:
        if not isinstance(arg.value, str):
            return _constant(None)
        return _Compiled(_user_getter(arg.value))
    name_fn = arg.fn

    def prop_fn(m: MessageView) -> Any:
        # property(name) looks up application properties only; a non-string name is unknown.
        n = name_fn(m)
        if kind_of(n) != STR:
            return None
        v = m.user.get(n, _MISSING)
        if v is _MISSING:
            return _ci_find(m.user, str(n).lower())[1]
        return v

    return _Compiled(prop_fn)


def _compile_unary(node: A.Unary) -> _Compiled:
    operand = _compile(node.operand)
    op = node.op
    if operand.const:
        return _constant(negate(op, operand.value))
    f = operand.fn
    return _Compiled(lambda m: negate(op, f(m)))


def _compile_arith(node: A.Arith) -> _Compiled:
    left = _compile(node.left)
    right = _compile(node.right)
    op = node.op
    if left.const and right.const:
        return _constant(arith(op, left.value, right.value))
    lf = left.fn
    rf = right.fn
    fast = _INT_FAST.get(op)
    if fast is None:
        return _Compiled(lambda m: arith(op, lf(m), rf(m)))

    def arith_fn(m: MessageView) -> Any:
        a = lf(m)
        b = rf(m)
        if a.__class__ is int and b.__class__ is int:  # hot path: plain longs
            r = fast(a, b)
            if INT64_MIN <= r <= INT64_MAX:
                return r
        return arith(op, a, b)

    return _Compiled(arith_fn)


def _compile_compare(node: A.Compare) -> _Compiled:
    left = _compile(node.left)
    right = _compile(node.right)
    op = node.op
    if left.const and right.const:
        return _constant(compare(op, left.value, right.value))
    if left.const:  # put the constant on the right
        left, right, op = right, left, _MIRROR[op]
    lf = left.fn
    if right.const:
        c = right.value
        ck = kind_of(c)
        if ck == NULL:
            return _constant(None)  # anything compared with NULL is unknown
        if ck in (STR, INT, FLOAT):
            cls = {STR: str, INT: int, FLOAT: float}[ck]
            c = cls(c)
            pyop = _PY_CMP[op]

            def cmp_const(m: MessageView) -> Any:
                v = lf(m)
                if v.__class__ is cls:  # same plain type: Python's operator is exact
                    return pyop(v, c)
                return compare(op, v, c)

            return _Compiled(cmp_const)
        return _Compiled(lambda m: compare(op, lf(m), c))
    rf = right.fn
    return _Compiled(lambda m: compare(op, lf(m), rf(m)))


def _compile_not(node: A.Not) -> _Compiled:
    operand = _compile(node.operand)
    if operand.const:
        v = operand.value
        return _constant(None if v is None else not v)
    f = operand.fn

    def not_fn(m: MessageView) -> Any:
        v = f(m)
        return None if v is None else not v

    return _Compiled(not_fn)


def _compile_logical(node: A.Logical) -> _Compiled:
    left = _compile(node.left)
    right = _compile(node.right)
    if left.const and right.const:
        return _constant(_kleene(node.op, left.value, right.value))
    lf = left.fn
    rf = right.fn
    if node.op == "AND":

        def and_fn(m: MessageView) -> Any:
            a = lf(m)
            if a is False:
                return False
            b = rf(m)
            if b is False:
                return False
            return None if a is None or b is None else True

        return _Compiled(and_fn)

    def or_fn(m: MessageView) -> Any:
        a = lf(m)
        if a is True:
            return True
        b = rf(m)
        if b is True:
            return True
        return None if a is None or b is None else False

    return _Compiled(or_fn)


def _kleene(op: str, a: Any, b: Any) -> Any:
    if op == "AND":
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _compile_in(node: A.In) -> _Compiled:
    operand = _compile(node.operand)
    items = [_compile(i) for i in node.items]
    negated = node.negated

    def finish(r: bool) -> bool:
        return not r if negated else r

    # The docs: IN is unknown only when its left operand is unknown; otherwise it is true
    # when some list item equals the operand, and false when none does.
    if all(i.const for i in items):
        values = [i.value for i in items]
        if operand.const:
            v = operand.value
            if v is None:
                return _constant(None)
            return _constant(finish(any(compare("=", v, x) is True for x in values)))
        lf = operand.fn
        str_set = frozenset(v for v in values if v.__class__ is str)
        others = [v for v in values if v.__class__ is not str]

        def in_const(m: MessageView) -> Any:
            v = lf(m)
            if v is None:
                return None
            if v.__class__ is str and v in str_set:
                return finish(True)
            return finish(any(compare("=", v, x) is True for x in others))

        if not others:

            def in_strs(m: MessageView) -> Any:
                v = lf(m)
                if v is None:
                    return None
                if v.__class__ is str:
                    return finish(v in str_set)
                return finish(kind_of(v) == STR and str(v) in str_set)

            return _Compiled(in_strs)
        return _Compiled(in_const)
    lf = operand.fn
    fns = [i.fn for i in items]

    def in_dyn(m: MessageView) -> Any:
        v = lf(m)
        if v is None:
            return None
        return finish(any(compare("=", v, f(m)) is True for f in fns))

    return _Compiled(in_dyn)


def _compile_like(node: A.Like) -> _Compiled:
    operand = _compile(node.operand)
    pattern = _compile(node.pattern)
    escape = _compile(node.escape) if node.escape is not None else _constant(NO_ESCAPE)
    negated = node.negated

    def finish(r: bool | None) -> bool | None:
        if r is None:
            return None
        return not r if negated else r

    if pattern.const and escape.const:
        if operand.const:
            return _constant(finish(like(operand.value, pattern.value, escape.value)))
        esc = escape.value
        if kind_of(pattern.value) != STR or (
            esc is not NO_ESCAPE and (kind_of(esc) != STR or len(esc) != 1)
        ):
            return _constant(None)
        rx = like_to_regex(str(pattern.value), None if esc is NO_ESCAPE else str(esc))
        if rx is None:  # pragma: no cover - rejected by the parser
            return _constant(None)
        lf = operand.fn
        match = rx.fullmatch

        def like_const(m: MessageView) -> Any:
            v = lf(m)
            if v.__class__ is str or kind_of(v) == STR:
                return finish(match(v) is not None)
            return None

        return _Compiled(like_const)
    lf = operand.fn
    pf = pattern.fn
    ef = escape.fn
    return _Compiled(lambda m: finish(like(lf(m), pf(m), ef(m))))


def _compile_is_null(node: A.IsNull) -> _Compiled:
    get = _getter(node.prop)
    if node.negated:
        return _Compiled(lambda m: get(m) is not None)
    return _Compiled(lambda m: get(m) is None)


def _compile_exists(node: A.Exists) -> _Compiled:
    prop = node.prop
    name = prop.name
    if prop.scope == "sys":
        return _Compiled(lambda m: m.system.get(name) is not None)
    lname = name.lower()

    def exists(m: MessageView) -> bool:
        return name in m.user or _ci_find(m.user, lname)[0] is not None

    return _Compiled(exists)


# ---------------------------------------------------------------------- public objects
class SqlFilter:
    """A compiled SQL filter; unknown counts as no match.

    Every SQL-level problem evaluates to unknown, so ``matches`` raises only on an evaluator
    bug or a malformed view; the broker's rule runner (``core.rules``) reports those.
    """

    __slots__ = ("_fn", "expression")

    def __init__(self, expression: str, fn: Fn) -> None:
        self.expression = expression
        self._fn = fn

    def matches(self, message: MessageView) -> bool:
        """Return True only when the condition evaluates to TRUE for this message."""
        return self._fn(message) is True

    def __repr__(self) -> str:
        return f"SqlFilter({self.expression!r})"


class _BoolFilter:
    """TrueFilter / FalseFilter (the docs: equivalent to ``1=1`` / ``1=0``)."""

    __slots__ = ("expression", "value")

    def __init__(self, value: bool) -> None:
        self.value = value
        self.expression = "1=1" if value else "1=0"

    def matches(self, message: MessageView) -> bool:
        """Constant answer."""
        return self.value

    def __repr__(self) -> str:
        return "TRUE_FILTER" if self.value else "FALSE_FILTER"


TRUE_FILTER: Filter = _BoolFilter(True)
FALSE_FILTER: Filter = _BoolFilter(False)


def _check_text(expression: object, max_length: int, what: str) -> str:
    if not isinstance(expression, str):
        raise SqlFilterError(f"The {what} must be a string", None, repr(expression))
    if len(expression) > max_length:
        raise SqlFilterError(
            f"The {what} is {len(expression)} characters long; the maximum is {max_length}",
            None,
            expression,
        )
    return expression


def compile_filter(
    expression: str,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    parameters: Mapping[str, object] | None = None,
) -> SqlFilter:
    """Compile a SQL filter once; raise SqlFilterError (with position) if it is invalid.

    ``parameters`` supplies values for ``@name`` placeholders (SqlRuleFilter.Parameters).
    """
    text = _check_text(expression, max_length, "filter expression")
    node = parse_filter(text, parameters)
    compiled = _compile(node)
    return SqlFilter(text, compiled.fn)


__all__ = [
    "DEFAULT_MAX_LENGTH",
    "FALSE_FILTER",
    "TRUE_FILTER",
    "SqlFilter",
    "compile_filter",
]
