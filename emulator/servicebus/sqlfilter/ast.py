"""Syntax tree of a parsed expression.

Every node carries ``pos`` (0-based offset of its first character) so that semantic errors
found after parsing still point at the right place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    """Base node."""

    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A constant: int, float, str, bool or None (NULL); parameters are folded into literals."""

    value: object


@dataclass(frozen=True, slots=True)
class Prop(Node):
    """A property reference; ``name`` is canonical for ``sys`` and as written for ``user``."""

    scope: str  # "user" | "sys"
    name: str


@dataclass(frozen=True, slots=True)
class Func(Node):
    """``newid()``, or ``property(expr)`` / ``p(expr)`` (normalised to name "property")."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """Unary ``+`` / ``-``."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Arith(Node):
    """Binary arithmetic ``+ - * / %``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """Comparison; ``op`` is one of ``= <> < <= > >=`` (``!=`` is normalised to ``<>``)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not(Node):
    """Logical NOT."""

    operand: Node


@dataclass(frozen=True, slots=True)
class Logical(Node):
    """``AND`` / ``OR``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class In(Node):
    """``expr [NOT] IN (items...)``."""

    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Like(Node):
    """``expr [NOT] LIKE pattern [ESCAPE char]``."""

    operand: Node
    pattern: Node
    escape: Node | None
    negated: bool


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    """``property IS [NOT] NULL``."""

    prop: Prop
    negated: bool


@dataclass(frozen=True, slots=True)
class Exists(Node):
    """``EXISTS(property)``."""

    prop: Prop


@dataclass(frozen=True, slots=True)
class SetStmt(Node):
    """Rule action ``SET property = expression``."""

    target: Prop
    value: Node


@dataclass(frozen=True, slots=True)
class RemoveStmt(Node):
    """Rule action ``REMOVE property``."""

    target: Prop


PREDICATES = (Compare, Not, Logical, In, Like, IsNull, Exists)


def is_predicate(node: Node) -> bool:
    """True when ``node`` yields a truth value (condition) rather than a scalar value."""
    return isinstance(node, PREDICATES)
