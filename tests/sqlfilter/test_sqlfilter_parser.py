"""Parser: every documented grammar element is accepted, and each error path has a position."""

from __future__ import annotations

import pytest

from emulator.servicebus.sqlfilter import SqlFilterError, compile_action, compile_filter
from emulator.servicebus.sqlfilter import ast as A
from emulator.servicebus.sqlfilter.parser import parse_action, parse_filter

# Every production of the documented <predicate> / <expression> grammar, plus the examples in
# "Subscription Rule SQL Filter Syntax" and "Set subscription filters".
VALID_FILTERS = [
    "1=1",
    "1 = 0",
    "NOT a = 1",
    "a = 1 AND b = 2",
    "a = 1 OR b = 2",
    "a = 1",
    "a <> 1",
    "a != 1",
    "a > 1",
    "a >= 1",
    "a < 1",
    "a <= 1",
    "a IS NULL",
    "a IS NOT NULL",
    "a IN (1, 2, 3)",
    "a NOT IN ('x')",
    "a LIKE 'x%'",
    "a NOT LIKE '_x'",
    "a LIKE 'ABC\\%' ESCAPE '\\'",
    "EXISTS(a)",
    "EXISTS (user.a)",
    "(a = 1)",
    "((a = 1) AND (b = 2))",
    "a + 1 = 2",
    "a - 1 = 2",
    "a * 2 = 2",
    "a / 2 = 2",
    "a % 2 = 1",
    "-a = -1",
    "+a = +1",
    "(a + 1) * 2 = 4",
    "newid() = newid()",
    "property('a') = 1",
    "p('a') = 1",
    "P('a' + 'b') = 1",
    "sys.Label LIKE '%bus%'",
    "sys.label LIKE '%bus%'",
    "sys.messageid = 'xxxx'",
    "sys.correlationid like 'abc-%'",
    "user.SuperHero like 'SuperMan%'",
    "MessageProperty = 'A'",
    "MessageProperty > 2.08",
    "StoreId IN('Store1', 'Store2', 'Store3')",
    "sys.To IN ('Store5','Store6','Store7') OR StoreId = 'Store8'",
    "sys.To NOT IN ('Store1','Store2') OR StoreId NOT IN ('Store1','Store2')",
    "\"http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName\" = 'account'",
    "[Property With Space] = 1",
    "[HR-EmployeeID] = 1",
    "user.[my prop] = 1",
    "[sys].[Label] = 'x'",
    "color='blue' AND quantity=10",
    "a = TRUE",
    "a = FALSE",
    "a = NULL",
    "a = 101.5E5",
    "a = -9223372036854775808",
    "a = 9223372036854775807",
    "sys.Subject = 'x'",
    "not A = 1 and B = 2 or C = 3",
    "a IN (b, c + 1, p('x'))",
    "a LIKE b ESCAPE c",
]


@pytest.mark.parametrize("expression", VALID_FILTERS)
def test_documented_grammar_is_accepted(expression: str) -> None:
    compile_filter(expression)


def test_keywords_are_case_insensitive() -> None:
    lower = parse_filter("not a is not null and b not in (1) or c not like 'x' escape '!'")
    upper = parse_filter("NOT a IS NOT NULL AND b NOT IN (1) OR c NOT LIKE 'x' ESCAPE '!'")
    assert lower == upper


def test_precedence_or_below_and_below_not() -> None:
    node = parse_filter("NOT a = 1 AND b = 2 OR c = 3")
    assert isinstance(node, A.Logical) and node.op == "OR"
    assert isinstance(node.left, A.Logical) and node.left.op == "AND"
    assert isinstance(node.left.left, A.Not)
    assert isinstance(node.left.left.operand, A.Compare)


def test_precedence_arithmetic() -> None:
    node = parse_filter("a + b * c - d = 0")
    assert isinstance(node, A.Compare)
    left = node.left
    assert isinstance(left, A.Arith) and left.op == "-"
    assert isinstance(left.left, A.Arith) and left.left.op == "+"
    assert isinstance(left.left.right, A.Arith) and left.left.right.op == "*"


def test_arithmetic_is_left_associative() -> None:
    node = parse_filter("a - b - c = 0")
    assert isinstance(node, A.Compare)
    assert isinstance(node.left, A.Arith) and isinstance(node.left.left, A.Arith)


def test_scopes_and_system_names_are_canonicalised() -> None:
    node = parse_filter("SYS.LABEL = 'x'")
    assert isinstance(node, A.Compare) and node.left == A.Prop(0, "sys", "Label")
    node = parse_filter("sys.subject = 'x'")
    assert isinstance(node, A.Compare) and node.left == A.Prop(0, "sys", "Label")
    node = parse_filter("User.Color = 'x'")
    assert isinstance(node, A.Compare) and node.left == A.Prop(0, "user", "Color")


def test_bracketed_keyword_is_a_property() -> None:
    node = parse_filter('[AND] = 1 AND "OR" = 2')
    assert isinstance(node, A.Logical)
    assert node.left == A.Compare(0, "=", A.Prop(0, "user", "AND"), A.Literal(8, 1))


def test_bare_sys_without_dot_is_a_user_property() -> None:
    node = parse_filter("sys = 1")
    assert isinstance(node, A.Compare) and node.left == A.Prop(0, "user", "sys")


def test_function_names_without_parens_are_properties() -> None:
    node = parse_filter("newid = 1 AND p = 2")
    assert isinstance(node, A.Logical)


def test_parameters() -> None:
    f = compile_filter("a = @x AND b = @Y", parameters={"@x": 1, "y": "z"})
    assert f.expression == "a = @x AND b = @Y"
    node = parse_filter("a = @x", {"x": 5})
    assert isinstance(node, A.Compare) and node.right == A.Literal(4, 5)


VALID_ACTIONS = [
    "SET a = 1",
    "set a = 1",
    "SET a = 1;",
    "SET quantity = quantity / 2; REMOVE priority;SET sys.CorrelationId = 'low';",
    "SET a = 1 SET b = 2",
    "REMOVE a",
    "remove [my prop]; remove user.b",
    ";;SET a = 1;;",
    "SET sys.Label = 'SalesEvent'",
    "SET source='routedOrders'",
    "SET sys.Label = property('x') + '.MyPostFix'",
    "SET a = newid()",
    "SET a = NULL",
    "SET sys.TimeToLive = sys.TimeToLive",
    "SET [x y] = -(a + 1) % 3",
]


@pytest.mark.parametrize("expression", VALID_ACTIONS)
def test_documented_action_grammar_is_accepted(expression: str) -> None:
    compile_action(expression)


def test_action_statements() -> None:
    stmts = parse_action("SET a = 1; REMOVE sys.Label")
    assert isinstance(stmts[0], A.SetStmt) and stmts[0].target == A.Prop(4, "user", "a")
    assert isinstance(stmts[1], A.RemoveStmt) and stmts[1].target == A.Prop(18, "sys", "Label")


# (expression, position, message fragment)
FILTER_ERRORS = [
    ("", 0, "empty"),
    ("a", 0, "must be a condition"),
    ("TRUE", 0, "must be a condition"),
    ("a + 1", 0, "must be a condition"),
    ("a =", 3, "expression ended"),
    ("a == 1", 3, "Unexpected '='"),
    ("= 1", 0, "Unexpected '='"),
    ("a = 1)", 5, "Unbalanced"),
    ("(a = 1", 6, "Expected ')'"),
    ("()", 1, "Empty parentheses"),
    ("a = 1 = 2", 6, "cannot be chained"),
    ("a = 1 IN (1)", 6, "cannot be chained"),
    ("a < b LIKE 'x'", 6, "cannot be chained"),
    ("a = b NOT IN (1)", 6, "cannot be chained"),
    ("a IS NULL IS NULL", 10, "cannot be chained"),
    ("a b", 2, "Unexpected 'b'"),
    ("a = 1 b = 2", 6, "Unexpected 'b'"),
    ("NOT a", 4, "NOT needs a condition"),
    ("a = 1 AND b", 10, "AND needs a condition"),
    ("b OR a = 1", 0, "OR needs a condition"),
    ("(a = 1) + 1 = 2", 1, "needs a value"),
    ("a = (b = 1)", 5, "needs a value"),
    ("a AND", 0, "AND needs a condition"),
    ("a = 1 AND", 9, "expression ended"),
    ("a NOT b", 6, "Expected IN or LIKE after NOT"),
    ("a IS 1", 5, "Expected NULL"),
    ("a IS NOT 1", 9, "Expected NULL"),
    ("1 IS NULL", 0, "can only test a property"),
    ("p('a') IS NULL", 0, "can only test a property"),
    ("a IN 1", 5, "'(' after IN"),
    ("a IN ()", 6, "at least one value"),
    ("a IN (1", 7, "',' or ')'"),
    ("a IN (1 2)", 8, "',' or ')'"),
    ("a IN (b = 1)", 6, "needs a value"),
    ("a LIKE 5", 7, "pattern must be a string"),
    ("a LIKE 'x' ESCAPE 1", 18, "ESCAPE character must be a string"),
    ("a LIKE 'x' ESCAPE ''", 18, "exactly one character"),
    ("a LIKE 'x' ESCAPE 'ab'", 18, "exactly one character"),
    ("a LIKE 'x!' ESCAPE '!'", 7, "ends with the ESCAPE"),
    ("EXISTS a", 7, "'(' after EXISTS"),
    ("EXISTS(1)", 7, "takes a property name"),
    ("EXISTS(p('a'))", 7, "takes a property name"),
    ("EXISTS(a", 8, "')' to close EXISTS"),
    ("foo(1) = 1", 0, "Unknown function"),
    ("newid(1) = 1", 0, "takes 0 argument"),
    ("property() = 1", 0, "takes 1 argument"),
    ("p('a', 'b') = 1", 0, "takes 1 argument"),
    ("p(1) = 1", 2, "property name must be a string"),
    ("x.y = 1", 0, "Unknown scope"),
    ("sys.Nope = 1", 4, "Unknown system property"),
    ("sys. = 1", 5, "Expected a property name"),
    ("user.'a' = 1", 5, "Expected a property name"),
    ("user.1 = 1", 4, "Unexpected '.1'"),
    ("and = 1", 0, "reserved keyword"),
    ("a = 1 AND like = 2", 10, "reserved keyword"),
    ("user.null = 1", 5, "reserved keyword"),
    ("a = 9223372036854775808", 4, "out of range"),
    ("a = -9223372036854775809", 5, "out of range"),
    ("a = @missing", 4, "No value was supplied"),
    ("a = 'x", 4, "Unterminated string"),
    ("a = - ", 6, "expression ended"),
    ("a = NOT b = 1", 4, "needs a value"),
]


@pytest.mark.parametrize(("expression", "pos", "fragment"), FILTER_ERRORS)
def test_filter_errors_carry_position(expression: str, pos: int, fragment: str) -> None:
    with pytest.raises(SqlFilterError) as e:
        compile_filter(expression)
    err = e.value
    assert err.position == pos, err
    assert fragment.lower() in err.message.lower(), err
    assert err.expression == expression
    assert isinstance(err, ValueError)
    assert f"position {pos}" in str(err)


ACTION_ERRORS = [
    ("", 0, "empty"),
    (";", 0, "empty"),
    ("a = 1", 0, "Expected SET or REMOVE"),
    ("SET", 3, "Expected a property name"),
    ("SET a", 5, "Expected '='"),
    ("SET a 1", 6, "Expected '='"),
    ("SET a =", 7, "Expected an expression"),
    ("SET a = b = 1", 8, "needs a value"),
    ("SET a = 1 AND b = 2", 8, "AND needs a condition"),
    ("SET a = 1, SET b = 2", 9, "Unexpected ','"),
    ("SET a = 1 b = 2", 10, "Unexpected 'b'"),
    ("SET p('a') = 1", 4, "not a function call"),
    ("SET 'a' = 1", 4, "Expected a property name"),
    ("SET sys.SequenceNumber = 1", 4, "read-only"),
    ("SET sys.EnqueuedTimeUtc = NULL", 4, "read-only"),
    ("REMOVE sys.DeliveryCount", 7, "read-only"),
    ("SET sys.Bogus = 1", 8, "Unknown system property"),
    ("REMOVE", 6, "Expected a property name"),
    ("SET set = 1", 4, "reserved keyword"),
    ("REMOVE a b", 9, "Unexpected 'b'"),
]


@pytest.mark.parametrize(("expression", "pos", "fragment"), ACTION_ERRORS)
def test_action_errors_carry_position(expression: str, pos: int, fragment: str) -> None:
    with pytest.raises(SqlFilterError) as e:
        compile_action(expression)
    assert e.value.position == pos, e.value
    assert fragment.lower() in e.value.message.lower(), e.value


def test_set_and_remove_are_not_reserved_in_filters() -> None:
    compile_filter("set = 1 AND remove = 2")


def test_action_statement_limit() -> None:
    compile_action("; ".join(f"SET a{i} = {i}" for i in range(32)))
    text = "; ".join(f"SET a{i} = {i}" for i in range(33))
    with pytest.raises(SqlFilterError) as e:
        compile_action(text)
    assert "at most 32" in e.value.message
    assert e.value.position == text.rindex("SET")


def test_length_limit_default_and_configurable() -> None:
    ok = "a = '" + "x" * (1024 - 7) + "'"
    assert len(ok) == 1023
    compile_filter(ok + " ")
    with pytest.raises(SqlFilterError) as e:
        compile_filter(ok + "  ")
    assert e.value.position is None and "1025" in e.value.message and "1024" in e.value.message
    with pytest.raises(SqlFilterError):
        compile_filter("a = 1", max_length=4)
    compile_filter(ok + "  ", max_length=2048)
    with pytest.raises(SqlFilterError):
        compile_action("SET a = '" + "x" * 1020 + "'")
    compile_action("SET a = 1", max_length=9)


def test_non_string_expression() -> None:
    with pytest.raises(SqlFilterError):
        compile_filter(None)  # type: ignore[arg-type]
    with pytest.raises(SqlFilterError):
        compile_action(b"SET a = 1")  # type: ignore[arg-type]


def test_non_ascii_words_are_never_keywords() -> None:
    dotless = "\u0131n"  # .upper() == "IN" in Python; it must stay an identifier
    node = parse_filter(f"{dotless} = 1")
    assert isinstance(node, A.Compare) and node.left == A.Prop(0, "user", dotless)
