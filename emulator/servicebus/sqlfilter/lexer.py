"""Tokenizer for the Service Bus SQL filter / rule action language.

Keywords are not distinguished here: every bare word is an ``IDENT`` and the parser decides,
by context, whether it is a keyword, a function name, a scope or a property name. That keeps
``[AND]``/``"AND"`` (delimited, never keywords) apart from ``AND`` without a keyword table in
two places.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .errors import SqlFilterError


class Tok(Enum):
    """Token kinds."""

    IDENT = "identifier"  # regular identifier: letter, then letters/digits/underscores
    QIDENT = "quoted identifier"  # [delimited] or "quoted"; never a keyword
    STRING = "string"
    INT = "integer"
    FLOAT = "number"
    PARAM = "parameter"  # @name
    OP = "operator"  # = <> != < <= > >= + - * / %
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    DOT = "'.'"
    SEMI = "';'"
    EOF = "end of expression"


@dataclass(frozen=True, slots=True)
class Token:
    """One token; ``pos`` is its 0-based offset, ``text`` the exact source slice."""

    kind: Tok
    value: object
    pos: int
    text: str

    def describe(self) -> str:
        """Human-readable form for error messages."""
        if self.kind is Tok.EOF:
            return "end of expression"
        return f"'{self.text}'"


_NUMBER = re.compile(r"(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = "0123456789"
_PUNCT = {"(": Tok.LPAREN, ")": Tok.RPAREN, ",": Tok.COMMA, ".": Tok.DOT, ";": Tok.SEMI}
_TWO_CHAR_OPS = ("<>", "!=", "<=", ">=")
_ONE_CHAR_OPS = "=<>+-*/%"


def _is_ident_start(ch: str) -> bool:
    # The docs: [[:IsLetter:]] — any Unicode letter (System.Char.IsLetter).
    return ch.isalpha()


def _is_ident_part(ch: str) -> bool:
    # The docs: [_[:IsLetter:][:IsDigit:]] — underscore, letter, or Unicode decimal digit.
    return ch == "_" or ch.isalpha() or ch.isdecimal()


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an EOF token; raise SqlFilterError on bad input."""
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch == "'":
            value, i = _read_quoted(text, i, "'", "string constant")
            tokens.append(Token(Tok.STRING, value, start, text[start:i]))
        elif ch == '"':
            value, i = _read_quoted(text, i, '"', "quoted identifier")
            _require_name(value, start, text)
            tokens.append(Token(Tok.QIDENT, value, start, text[start:i]))
        elif ch == "[":
            value, i = _read_quoted(text, i, "]", "delimited identifier")
            _require_name(value, start, text)
            tokens.append(Token(Tok.QIDENT, value, start, text[start:i]))
        elif ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER.match(text, i)
            assert m is not None  # guarded by the first character
            i = m.end()
            literal = m.group(0)
            if "." in literal or "e" in literal or "E" in literal:
                value_f = float(literal)
                if value_f in (float("inf"), float("-inf")):
                    raise SqlFilterError(
                        f"Numeric constant {literal} is out of range for a double", start, text
                    )
                tokens.append(Token(Tok.FLOAT, value_f, start, literal))
            else:
                tokens.append(Token(Tok.INT, int(literal), start, literal))
        elif _is_ident_start(ch):
            i += 1
            while i < n and _is_ident_part(text[i]):
                i += 1
            tokens.append(Token(Tok.IDENT, text[start:i], start, text[start:i]))
        elif ch == "@":
            i += 1
            while i < n and _is_ident_part(text[i]):
                i += 1
            if i == start + 1:
                raise SqlFilterError("Expected a parameter name after '@'", start, text)
            tokens.append(Token(Tok.PARAM, text[start + 1 : i], start, text[start:i]))
        elif text.startswith(_TWO_CHAR_OPS, i):
            op = text[i : i + 2]
            i += 2
            tokens.append(Token(Tok.OP, op, start, op))
        elif ch in _ONE_CHAR_OPS:
            i += 1
            tokens.append(Token(Tok.OP, ch, start, ch))
        elif ch in _PUNCT:
            i += 1
            tokens.append(Token(_PUNCT[ch], ch, start, ch))
        else:
            hint = " (use <> or != for 'not equal')" if ch == "!" else ""
            raise SqlFilterError(f"Unexpected character {ch!r}{hint}", start, text)
    tokens.append(Token(Tok.EOF, None, n, ""))
    return tokens


def _read_quoted(text: str, start: int, close: str, what: str) -> tuple[str, int]:
    """Read a quoted run starting at ``start``; a doubled closing char stands for itself."""
    parts: list[str] = []
    i = start + 1
    n = len(text)
    while True:
        j = text.find(close, i)
        if j < 0:
            raise SqlFilterError(f"Unterminated {what}: missing closing {close}", start, text)
        parts.append(text[i:j])
        if j + 1 < n and text[j + 1] == close:
            parts.append(close)
            i = j + 2
            continue
        return "".join(parts), j + 1


def _require_name(value: str, pos: int, text: str) -> None:
    if not value:
        raise SqlFilterError("Empty identifier", pos, text)
