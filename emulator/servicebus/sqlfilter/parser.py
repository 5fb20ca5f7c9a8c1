"""Recursive-descent (Pratt) parser for SQL filters and SQL rule actions.

The documented grammar splits ``<predicate>`` from ``<expression>``, but a leading ``(`` can
open either, so the parser reads one unified precedence ladder and then checks each
operator's operands for the right *kind* (condition vs value). That gives precise messages
such as "AND needs a condition on its right" instead of a generic syntax error.

Precedence, loosest first: OR, AND, NOT, comparison / [NOT] IN / [NOT] LIKE / IS [NOT] NULL
(non-associative), + -, * / %, unary + -.

One module of ~510 lines on purpose: a recursive-descent parser is one mutually recursive
set of methods over one token cursor (the filter ladder, then the action statements that
reuse it); the lexer, AST, errors and system-property names already live apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import ast as A
from .errors import SqlFilterError
from .lexer import Tok, Token, tokenize
from .sysprops import SETTABLE_SYSTEM_PROPERTIES, lookup_system_property

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

#: Reserved words that cannot be used as bare property names (bracket them instead).
FILTER_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "EXISTS", "TRUE", "FALSE"}
)
ACTION_KEYWORDS = FILTER_KEYWORDS | {"SET", "REMOVE"}

#: Maximum statements in one rule action (Service Bus quotas: "expressions per rule action").
MAX_ACTION_STATEMENTS = 32

_BP_OR = 1
_BP_AND = 2
_BP_NOT = 3
_BP_CMP = 4
_BP_ADD = 5
_BP_MUL = 6
_BP_UNARY = 7

_CMP_OPS = {"=": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ADD_OPS = ("+", "-")
_MUL_OPS = ("*", "/", "%")
_FUNCTIONS = {"newid": 0, "property": 1, "p": 1}


class Parser:
    """Parses one expression; create a new instance per expression."""

    def __init__(
        self,
        text: str,
        *,
        keywords: frozenset[str],
        parameters: Mapping[str, object] | None = None,
    ) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.keywords = keywords
        self.parameters = _normalise_parameters(parameters)

    # ----------------------------------------------------------------- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        if t.kind is not Tok.EOF:
            self.i += 1
        return t

    def error(self, message: str, pos: int | None) -> SqlFilterError:
        return SqlFilterError(message, pos, self.text)

    def is_kw(self, t: Token, word: str) -> bool:
        return t.kind is Tok.IDENT and _word(t.value) == word

    def expect(self, kind: Tok, what: str) -> Token:
        t = self.tok
        if t.kind is not kind:
            raise self.error(f"Expected {what} but found {t.describe()}", t.pos)
        return self.advance()

    def expect_kw(self, word: str) -> Token:
        t = self.tok
        if not self.is_kw(t, word):
            raise self.error(f"Expected {word} but found {t.describe()}", t.pos)
        return self.advance()

    # ----------------------------------------------------------------- entry points
    def parse_filter(self) -> A.Node:
        """Parse a whole filter; the result is a condition."""
        if self.tok.kind is Tok.EOF:
            raise self.error("The filter expression is empty", 0)
        node = self.parse_expr(0)
        if self.tok.kind is not Tok.EOF:
            raise self.unexpected(self.tok)
        if not A.is_predicate(node):
            raise self.error(
                "A filter must be a condition (for example: color = 'red'), not a value",
                node.pos,
            )
        return node

    def parse_action(self) -> list[A.Node]:
        """Parse ``statement [;] ...``; each statement is SET or REMOVE."""
        statements: list[A.Node] = []
        while True:
            while self.tok.kind is Tok.SEMI:
                self.advance()
            t = self.tok
            if t.kind is Tok.EOF:
                break
            if self.is_kw(t, "SET"):
                self.advance()
                target = self.parse_target()
                eq = self.tok
                if not (eq.kind is Tok.OP and eq.value == "="):
                    raise self.error(
                        f"Expected '=' after the property in SET but found {eq.describe()}",
                        eq.pos,
                    )
                self.advance()
                if self.tok.kind is Tok.EOF:
                    raise self.error("Expected an expression after '='", self.tok.pos)
                value = self.parse_expr(0)
                self.require_value(value, "SET")
                statements.append(A.SetStmt(t.pos, target, value))
            elif self.is_kw(t, "REMOVE"):
                self.advance()
                statements.append(A.RemoveStmt(t.pos, self.parse_target()))
            else:
                raise self.error(f"Expected SET or REMOVE but found {t.describe()}", t.pos)
            nxt = self.tok
            if not (
                nxt.kind in (Tok.SEMI, Tok.EOF)
                or self.is_kw(nxt, "SET")
                or self.is_kw(nxt, "REMOVE")
            ):
                raise self.unexpected(nxt)
            if len(statements) > MAX_ACTION_STATEMENTS:
                raise self.error(
                    f"A rule action can hold at most {MAX_ACTION_STATEMENTS} statements",
                    t.pos,
                )
        if not statements:
            raise self.error("The rule action is empty", 0)
        return statements

    def parse_target(self) -> A.Prop:
        t = self.tok
        if t.kind not in (Tok.IDENT, Tok.QIDENT):
            raise self.error(f"Expected a property name but found {t.describe()}", t.pos)
        if t.kind is Tok.IDENT and self.peek().kind is Tok.LPAREN:
            raise self.error("Expected a property name, not a function call", t.pos)
        prop = self.parse_property()
        if prop.scope == "sys" and prop.name not in SETTABLE_SYSTEM_PROPERTIES:
            raise self.error(
                f"System property sys.{prop.name} is read-only and cannot be changed by "
                "a rule action",
                prop.pos,
            )
        return prop

    def unexpected(self, t: Token) -> SqlFilterError:
        if t.kind is Tok.RPAREN:
            return self.error("Unbalanced ')': no matching '('", t.pos)
        return self.error(f"Unexpected {t.describe()}; expected an operator or the end", t.pos)

    # ----------------------------------------------------------------- kind checks
    def require_predicate(self, node: A.Node, context: str) -> None:
        if not A.is_predicate(node):
            raise self.error(
                f"{context} needs a condition (comparison, IN, LIKE, IS NULL, EXISTS), not a value",
                node.pos,
            )

    def require_value(self, node: A.Node, context: str) -> None:
        if A.is_predicate(node):
            raise self.error(
                f"{context} needs a value, not a condition; conditions cannot be compared "
                "or used in arithmetic",
                node.pos,
            )

    # ----------------------------------------------------------------- Pratt core
    def parse_expr(self, min_bp: int) -> A.Node:
        left = self.parse_prefix()
        while True:
            t = self.tok
            if t.kind is Tok.OP:
                op = str(t.value)
                if op in _CMP_OPS:
                    bp = _BP_CMP
                elif op in _ADD_OPS:
                    bp = _BP_ADD
                elif op in _MUL_OPS:
                    bp = _BP_MUL
                else:  # pragma: no cover - lexer emits only the operators above
                    raise self.unexpected(t)
                if bp <= min_bp:
                    break
                self.advance()
                if bp == _BP_CMP:
                    self.require_value(left, f"'{op}'")
                    right = self.parse_operand(_BP_CMP, t)
                    self.require_value(right, f"'{op}'")
                    left = A.Compare(left.pos, _CMP_OPS[op], left, right)
                    self.forbid_chained_comparison()
                else:
                    self.require_value(left, f"'{op}'")
                    right = self.parse_operand(bp, t)
                    self.require_value(right, f"'{op}'")
                    left = A.Arith(left.pos, op, left, right)
                continue
            if t.kind is not Tok.IDENT:
                break
            word = _word(t.value)
            if word in ("OR", "AND"):
                bp = _BP_OR if word == "OR" else _BP_AND
                if bp <= min_bp:
                    break
                self.advance()
                self.require_predicate(left, word)
                right = self.parse_operand(bp, t)
                self.require_predicate(right, word)
                left = A.Logical(left.pos, word, left, right)
            elif word in ("IN", "LIKE", "IS", "NOT"):
                if min_bp >= _BP_CMP:
                    break
                left = self.parse_postfix_predicate(left)
                self.forbid_chained_comparison()
            else:
                break
        return left

    def forbid_chained_comparison(self) -> None:
        t = self.tok
        word = _word(t.value) if t.kind is Tok.IDENT else ""
        nxt = _word(self.peek().value) if self.peek().kind is Tok.IDENT else ""
        if (
            (t.kind is Tok.OP and t.value in _CMP_OPS)
            or word in ("IN", "LIKE", "IS")
            or (word == "NOT" and nxt in ("IN", "LIKE"))
        ):
            raise self.error(
                f"Unexpected {t.describe()}: comparisons cannot be chained; combine them "
                "with AND / OR",
                t.pos,
            )

    def parse_operand(self, bp: int, op_token: Token) -> A.Node:
        if self.tok.kind is Tok.EOF:
            raise self.error(
                f"Expected an operand after {op_token.describe()} but the expression ended",
                self.tok.pos,
            )
        return self.parse_expr(bp)

    def parse_postfix_predicate(self, left: A.Node) -> A.Node:
        t = self.advance()
        word = _word(t.value)
        negated = False
        if word == "NOT":
            nxt = self.tok
            if self.is_kw(nxt, "IN") or self.is_kw(nxt, "LIKE"):
                negated = True
                word = _word(self.advance().value)
            else:
                raise self.error(
                    f"Expected IN or LIKE after NOT but found {nxt.describe()}", nxt.pos
                )
        if word == "IS":
            if not isinstance(left, A.Prop):
                raise self.error(
                    "IS [NOT] NULL can only test a property (for example: color IS NULL)",
                    left.pos,
                )
            if self.is_kw(self.tok, "NOT"):
                self.advance()
                negated = True
            self.expect_kw("NULL")
            return A.IsNull(left.pos, left, negated)
        self.require_value(left, word)
        if word == "IN":
            self.expect(Tok.LPAREN, "'(' after IN")
            items: list[A.Node] = []
            if self.tok.kind is Tok.RPAREN:
                raise self.error("IN needs at least one value in its list", self.tok.pos)
            while True:
                item = self.parse_operand(0, t)
                self.require_value(item, "An IN list item")
                items.append(item)
                if self.tok.kind is Tok.COMMA:
                    self.advance()
                    continue
                self.expect(Tok.RPAREN, "',' or ')' in the IN list")
                break
            return A.In(left.pos, left, tuple(items), negated)
        # LIKE
        pattern = self.parse_operand(_BP_CMP, t)
        self.require_value(pattern, "LIKE pattern")
        self.check_static_string(pattern, "The LIKE pattern")
        escape: A.Node | None = None
        if self.is_kw(self.tok, "ESCAPE"):
            esc_tok = self.advance()
            escape = self.parse_operand(_BP_CMP, esc_tok)
            self.require_value(escape, "ESCAPE")
            self.check_static_string(escape, "The ESCAPE character")
            if isinstance(escape, A.Literal) and len(str(escape.value)) != 1:
                raise self.error(
                    "The ESCAPE character must be a string of exactly one character",
                    escape.pos,
                )
            if isinstance(escape, A.Literal) and isinstance(pattern, A.Literal):
                from .values import like_to_regex

                if like_to_regex(str(pattern.value), str(escape.value)) is None:
                    raise self.error(
                        "The LIKE pattern ends with the ESCAPE character; it must be "
                        "followed by the character it escapes",
                        pattern.pos,
                    )
        return A.Like(left.pos, left, pattern, escape, negated)

    def check_static_string(self, node: A.Node, what: str) -> None:
        if isinstance(node, A.Literal) and not isinstance(node.value, str):
            raise self.error(f"{what} must be a string", node.pos)

    def parse_prefix(self) -> A.Node:
        t = self.tok
        k = t.kind
        if k is Tok.STRING or k is Tok.FLOAT:
            self.advance()
            return A.Literal(t.pos, t.value)
        if k is Tok.INT:
            self.advance()
            return A.Literal(t.pos, self.checked_int(int(t.value), t))  # type: ignore[call-overload]
        if k is Tok.PARAM:
            self.advance()
            return A.Literal(t.pos, self.parameter(t))
        if k is Tok.LPAREN:
            self.advance()
            if self.tok.kind is Tok.RPAREN:
                raise self.error("Empty parentheses", self.tok.pos)
            inner = self.parse_operand(0, t)
            if self.tok.kind is not Tok.RPAREN:
                raise self.error(
                    f"Expected ')' to close the '(' at position {t.pos} but found "
                    f"{self.tok.describe()}",
                    self.tok.pos,
                )
            self.advance()
            return inner
        if k is Tok.OP and t.value in _ADD_OPS:
            self.advance()
            nxt = self.tok
            if t.value == "-" and nxt.kind is Tok.INT:
                # Fold "-<int>" so that -9223372036854775808 (Int64.MinValue) is accepted.
                self.advance()
                value = -int(nxt.value)  # type: ignore[call-overload]
                return A.Literal(t.pos, self.checked_int(value, nxt))
            operand = self.parse_operand(_BP_UNARY, t)
            self.require_value(operand, f"Unary '{t.value}'")
            return A.Unary(t.pos, str(t.value), operand)
        if k is Tok.IDENT:
            word = _word(t.value)
            if word == "NOT":
                self.advance()
                operand = self.parse_operand(_BP_NOT, t)
                self.require_predicate(operand, "NOT")
                return A.Not(t.pos, operand)
            if word == "TRUE" or word == "FALSE":
                self.advance()
                return A.Literal(t.pos, word == "TRUE")
            if word == "NULL":
                self.advance()
                return A.Literal(t.pos, None)
            if word == "EXISTS":
                self.advance()
                self.expect(Tok.LPAREN, "'(' after EXISTS")
                arg = self.tok
                if arg.kind not in (Tok.IDENT, Tok.QIDENT) or (
                    arg.kind is Tok.IDENT and self.peek().kind is Tok.LPAREN
                ):
                    raise self.error(
                        f"EXISTS takes a property name but found {arg.describe()}", arg.pos
                    )
                prop = self.parse_property()
                self.expect(Tok.RPAREN, "')' to close EXISTS(")
                return A.Exists(t.pos, prop)
            if self.peek().kind is Tok.LPAREN:
                return self.parse_function()
            return self.parse_property()
        if k is Tok.QIDENT:
            return self.parse_property()
        if k is Tok.EOF:
            raise self.error("Unexpected end of expression; expected a value", t.pos)
        raise self.error(f"Unexpected {t.describe()}; expected a value or a property", t.pos)

    def checked_int(self, value: int, t: Token) -> int:
        if value < INT64_MIN or value > INT64_MAX:
            raise self.error(
                f"Integer constant {t.text} is out of range for a 64-bit integer; "
                "write it with a decimal point to use a floating-point number",
                t.pos,
            )
        return value

    def parameter(self, t: Token) -> object:
        name = str(t.value)
        if name.lower() in self.parameters:
            return self.parameters[name.lower()]
        raise self.error(f"No value was supplied for parameter @{name}", t.pos)

    def parse_function(self) -> A.Node:
        t = self.advance()
        name = str(t.value).lower()
        if name not in _FUNCTIONS:
            raise self.error(
                f"Unknown function '{t.value}'; supported functions are newid(), "
                "property(name) and p(name)",
                t.pos,
            )
        self.advance()  # '('
        args: list[A.Node] = []
        if self.tok.kind is not Tok.RPAREN:
            while True:
                arg = self.parse_operand(0, t)
                self.require_value(arg, f"Argument of {name}()")
                args.append(arg)
                if self.tok.kind is Tok.COMMA:
                    self.advance()
                    continue
                break
        self.expect(Tok.RPAREN, f"')' to close {t.value}(")
        if len(args) != _FUNCTIONS[name]:
            raise self.error(
                f"{t.value}() takes {_FUNCTIONS[name]} argument(s) but got {len(args)}", t.pos
            )
        if name == "newid":
            return A.Func(t.pos, "newid", ())
        self.check_static_string(args[0], "The property name")
        return A.Func(t.pos, "property", (args[0],))

    def parse_property(self) -> A.Prop:
        t = self.advance()
        if self.tok.kind is Tok.DOT:
            scope = str(t.value).lower()
            if scope not in ("sys", "user"):
                raise self.error(
                    f"Unknown scope '{t.value}'; use sys. or user. (or bracket a name "
                    "containing dots, e.g. [a.b])",
                    t.pos,
                )
            self.advance()
            name_tok = self.tok
            if name_tok.kind not in (Tok.IDENT, Tok.QIDENT):
                raise self.error(
                    f"Expected a property name after '{t.text}.' but found {name_tok.describe()}",
                    name_tok.pos,
                )
            self.advance()
            self.check_not_keyword(name_tok)
            if scope == "sys":
                sp = lookup_system_property(str(name_tok.value))
                if sp is None:
                    raise self.error(f"Unknown system property sys.{name_tok.value}", name_tok.pos)
                return A.Prop(t.pos, "sys", sp.name)
            return A.Prop(t.pos, "user", str(name_tok.value))
        self.check_not_keyword(t)
        return A.Prop(t.pos, "user", str(t.value))

    def check_not_keyword(self, t: Token) -> None:
        if t.kind is Tok.IDENT and _word(t.value) in self.keywords:
            raise self.error(
                f"'{t.value}' is a reserved keyword; to use it as a property name write "
                f"[{t.value}]",
                t.pos,
            )


def _word(value: object) -> str:
    """Upper-cased ASCII word for keyword tests (dotless-i "\u0131n".upper() is "IN")."""
    text = str(value)
    return text.upper() if text.isascii() else ""


def _normalise_parameters(parameters: Mapping[str, object] | None) -> dict[str, object]:
    """Accept keys with or without the leading '@'; names are case-insensitive."""
    out: dict[str, object] = {}
    for key, value in (parameters or {}).items():
        out[key.removeprefix("@").lower()] = value
    return out


def parse_filter(text: str, parameters: Mapping[str, object] | None = None) -> A.Node:
    """Parse a SQL filter expression into a condition node."""
    return Parser(text, keywords=FILTER_KEYWORDS, parameters=parameters).parse_filter()


def parse_action(text: str, parameters: Mapping[str, object] | None = None) -> list[A.Node]:
    """Parse a SQL rule action into SET / REMOVE statements."""
    return Parser(text, keywords=ACTION_KEYWORDS, parameters=parameters).parse_action()
