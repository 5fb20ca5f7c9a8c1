"""Lexer: every token form the documented grammar uses, and each lexical error with position."""

from __future__ import annotations

import pytest

from emulator.servicebus.sqlfilter import SqlFilterError
from emulator.servicebus.sqlfilter.lexer import Tok, tokenize


def kinds(text: str) -> list[Tok]:
    return [t.kind for t in tokenize(text)][:-1]


def values(text: str) -> list[object]:
    return [t.value for t in tokenize(text)][:-1]


def test_string_with_doubled_quote() -> None:
    (tok,) = tokenize("'it''s'")[:-1]
    assert tok.kind is Tok.STRING and tok.value == "it's" and tok.text == "'it''s'"


def test_empty_string_constant() -> None:
    assert values("''") == [""]


def test_unicode_string_constant() -> None:
    assert values("'héllo ✓ 日本'") == ["héllo ✓ 日本"]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("1894", Tok.INT, 1894),
        ("2", Tok.INT, 2),
        ("1894.1204", Tok.FLOAT, 1894.1204),
        ("2.0", Tok.FLOAT, 2.0),
        ("101.5E5", Tok.FLOAT, 101.5e5),
        ("0.5E-2", Tok.FLOAT, 0.5e-2),
        ("1e3", Tok.FLOAT, 1000.0),
        (".5", Tok.FLOAT, 0.5),
        ("5.", Tok.FLOAT, 5.0),
        ("7E+2", Tok.FLOAT, 700.0),
    ],
)
def test_numeric_constants(text: str, kind: Tok, value: object) -> None:
    (tok,) = tokenize(text)[:-1]
    assert tok.kind is kind and tok.value == value and type(tok.value) is type(value)


def test_number_too_large_for_double() -> None:
    with pytest.raises(SqlFilterError) as e:
        tokenize("a = 1e400")
    assert e.value.position == 4


def test_regular_identifier_unicode_letters_and_digits() -> None:
    assert kinds("Größe_2 日本") == [Tok.IDENT, Tok.IDENT]
    assert values("Größe_2") == ["Größe_2"]


def test_identifier_cannot_start_with_underscore() -> None:
    with pytest.raises(SqlFilterError) as e:
        tokenize("_a")
    assert e.value.position == 0


def test_delimited_identifier() -> None:
    assert values("[Property With Space] [HR-EmployeeID] [a]]b]") == [
        "Property With Space",
        "HR-EmployeeID",
        "a]b",
    ]
    assert kinds("[x]") == [Tok.QIDENT]


def test_quoted_identifier() -> None:
    assert values('"Contoso & Northwind" "a""b"') == ["Contoso & Northwind", 'a"b']
    assert kinds('"x"') == [Tok.QIDENT]


@pytest.mark.parametrize("text", ["[]", '""'])
def test_empty_identifier_rejected(text: str) -> None:
    with pytest.raises(SqlFilterError) as e:
        tokenize(text)
    assert e.value.position == 0


@pytest.mark.parametrize(
    ("text", "pos"),
    [("a = 'abc", 4), ("[abc", 0), ('x = "abc', 4), ("a = 'it''", 4)],
)
def test_unterminated_quotes(text: str, pos: int) -> None:
    with pytest.raises(SqlFilterError) as e:
        tokenize(text)
    assert e.value.position == pos
    assert "Unterminated" in e.value.message


def test_operators() -> None:
    toks = tokenize("= <> != < <= > >= + - * / %")[:-1]
    assert [t.value for t in toks] == [
        "=",
        "<>",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "%",
    ]
    assert {t.kind for t in toks} == {Tok.OP}


def test_punctuation_and_parameters() -> None:
    assert kinds("( ) , . ; @p1") == [
        Tok.LPAREN,
        Tok.RPAREN,
        Tok.COMMA,
        Tok.DOT,
        Tok.SEMI,
        Tok.PARAM,
    ]
    assert values("@p1") == ["p1"]


def test_bare_at_sign_rejected() -> None:
    with pytest.raises(SqlFilterError) as e:
        tokenize("a = @")
    assert e.value.position == 4


@pytest.mark.parametrize(("text", "pos"), [("a ! b", 2), ("a = #1", 4), ("a == `x`", 5)])
def test_unexpected_character(text: str, pos: int) -> None:
    with pytest.raises(SqlFilterError) as e:
        tokenize(text)
    assert e.value.position == pos


def test_positions_and_eof() -> None:
    toks = tokenize("  ab  = 'x'")
    assert [t.pos for t in toks] == [2, 6, 8, 11]
    assert toks[-1].kind is Tok.EOF


def test_whitespace_kinds() -> None:
    assert kinds("a\t=\n1\r\n") == [Tok.IDENT, Tok.OP, Tok.INT]
