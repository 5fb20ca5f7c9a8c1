"""The single error type of the SQL filter package.

Raised only while compiling an expression (rule creation), never while evaluating, so a bad
rule is rejected up front with an actionable message and a position into the text.
"""

from __future__ import annotations


class SqlFilterError(ValueError):
    """An invalid SQL filter or rule action expression.

    ``position`` is the 0-based character offset into ``expression`` where the problem was
    detected, or ``None`` when it concerns the expression as a whole (e.g. its length).
    """

    def __init__(self, message: str, position: int | None = None, expression: str = "") -> None:
        self.message: str = message
        self.position: int | None = position
        self.expression: str = expression
        where = "" if position is None else f" at position {position}"
        super().__init__(f"{message}{where}")
