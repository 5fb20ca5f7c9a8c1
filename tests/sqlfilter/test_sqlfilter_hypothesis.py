"""Property-based tests.

1. The parser never crashes on arbitrary text: it compiles or raises SqlFilterError with a
   position inside the text, and whatever compiles never raises when evaluated. The
   evaluator swallows no exception (errors are reported by ``core.rules``), so this checks
   the evaluator itself, not a catch-all around it.
2. The compiled evaluator agrees with a deliberately naive reference evaluator (a direct tree
   walk written here, sharing no code with the package) on generated expressions and
   property bags, for the full three-valued result (checked via ``e`` and ``NOT (e)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.servicebus.sqlfilter import (
    MessageView,
    SqlFilterError,
    compile_action,
    compile_filter,
)

# --------------------------------------------------------------------------- fuzzing
_VOCAB = [
    "a", "b", "[x y]", '"q"', "sys.Label", "user.a", "sys.Nope", "sys", ".", "user.",
    "AND", "or", "NOT", "IN", "like", "ESCAPE", "IS", "NULL", "EXISTS", "TRUE", "false",
    "SET", "REMOVE", "newid()", "p(", "property", "(", ")", ",", ";", "=", "<>", "!=", "<",
    "<=", ">", ">=", "+", "-", "*", "/", "%", "1", "2.5", "1e3", "9223372036854775808",
    "'s'", "'it''s'", "'%x_'", "'", "[", "]", '"', "@p", "@", "!", "#", "\u00e9", "\n",
]  # fmt: skip

_text = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(_VOCAB), max_size=25).map(" ".join),
    st.lists(st.sampled_from(_VOCAB), max_size=25).map("".join),
)

_any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.binary(max_size=3),
)
_bag = st.dictionaries(st.sampled_from(["a", "b", "A", "x y", "q", "Label"]), _any_value)


def _check_error(err: SqlFilterError, text: str) -> None:
    assert err.message
    assert err.expression == text
    assert err.position is None or 0 <= err.position <= len(text)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(text=_text, user=_bag, system=_bag)
def test_filter_parser_never_crashes(
    text: str, user: dict[str, object], system: dict[str, object]
) -> None:
    try:
        f = compile_filter(text, parameters={"p": 1})
    except SqlFilterError as err:
        _check_error(err, text)
        return
    assert f.matches(MessageView(system=system, user=user)) in (True, False)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(text=_text, user=_bag, system=_bag)
def test_action_parser_never_crashes(
    text: str, user: dict[str, object], system: dict[str, object]
) -> None:
    try:
        a = compile_action(text, parameters={"p": 1})
    except SqlFilterError as err:
        _check_error(err, text)
        return
    a.apply(MessageView(system=dict(system), user=dict(user)))


@given(st.text(min_size=1025, max_size=1100))
def test_over_length_always_rejected(text: str) -> None:
    try:
        compile_filter(text)
    except SqlFilterError as err:
        assert err.position is None
    else:  # pragma: no cover
        raise AssertionError("accepted an over-length expression")


# --------------------------------------------------------------------------- reference
class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


U = _Unknown()  # the reference's unknown marker (missing property or not comparable)
MISSING = object()


@dataclass(frozen=True)
class Lit:
    value: object


@dataclass(frozen=True)
class Prop:
    name: str  # as written; the bag is keyed by its lower-case form


@dataclass(frozen=True)
class Neg:
    operand: object


@dataclass(frozen=True)
class Bin:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Cmp:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Logic:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class NotP:
    operand: object


@dataclass(frozen=True)
class InP:
    operand: object
    items: tuple[object, ...]
    negated: bool


@dataclass(frozen=True)
class LikeP:
    operand: object
    pattern: object
    escape: str | None
    negated: bool


@dataclass(frozen=True)
class IsNullP:
    prop: Prop
    negated: bool


@dataclass(frozen=True)
class ExistsP:
    prop: Prop


def _is_num(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def ref_value(node: object, bag: dict[str, object]) -> object:
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Prop):
        v = bag.get(node.name.lower(), MISSING)
        return U if v is MISSING else v
    if isinstance(node, Neg):
        v = ref_value(node.operand, bag)
        return -v if _is_num(v) else U  # type: ignore[operator]
    assert isinstance(node, Bin)
    a = ref_value(node.left, bag)
    b = ref_value(node.right, bag)
    if a is U or b is U or a is None or b is None:
        return U
    if node.op == "+" and (isinstance(a, str) or isinstance(b, str)):
        return _text_of(a) + _text_of(b)
    if not (_is_num(a) and _is_num(b)):
        return U
    x, y = int(a), int(b)  # type: ignore[call-overload]
    if node.op == "+":
        return x + y
    if node.op == "-":
        return x - y
    if node.op == "*":
        return x * y
    if y == 0:
        return U
    q = int(x / y) if abs(x) < 2**50 and abs(y) < 2**50 else None
    assert q is not None
    return q if node.op == "/" else x - y * q


def _text_of(v: object) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    return str(v)


def ref_compare(op: str, a: object, b: object) -> object:
    if a is U or b is U or a is None or b is None:
        return U
    if (_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str)):
        return {
            "=": a == b,
            "<>": a != b,
            "<": a < b,  # type: ignore[operator]
            "<=": a <= b,  # type: ignore[operator]
            ">": a > b,  # type: ignore[operator]
            ">=": a >= b,  # type: ignore[operator]
        }[op]
    if isinstance(a, bool) and isinstance(b, bool):
        return {"=": a == b, "<>": a != b}.get(op, U)
    return U


def ref_like(s: str, pattern: str, escape: str | None) -> object:
    # Tokenise the pattern, then match with a memoised recursion (no regular expressions).
    toks: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape:
            if i + 1 == len(pattern):
                return U
            toks.append(("lit", pattern[i + 1]))
            i += 2
            continue
        toks.append(("any", "") if c == "%" else ("one", "") if c == "_" else ("lit", c))
        i += 1

    @cache
    def m(si: int, ti: int) -> bool:
        if ti == len(toks):
            return si == len(s)
        kind, ch = toks[ti]
        if kind == "any":
            return any(m(k, ti + 1) for k in range(si, len(s) + 1))
        if si == len(s):
            return False
        if kind == "one" or s[si] == ch:
            return m(si + 1, ti + 1)
        return False

    return m(0, 0)


_AND = {(True, True): True, (True, False): False, (False, True): False, (False, False): False}
_OR = {(True, True): True, (True, False): True, (False, True): True, (False, False): False}


def ref_pred(node: object, bag: dict[str, object]) -> object:
    if isinstance(node, Cmp):
        return ref_compare(node.op, ref_value(node.left, bag), ref_value(node.right, bag))
    if isinstance(node, NotP):
        v = ref_pred(node.operand, bag)
        return U if v is U else not v
    if isinstance(node, Logic):
        a = ref_pred(node.left, bag)
        b = ref_pred(node.right, bag)
        if node.op == "AND":
            if a is False or b is False:
                return False
            return U if U in (a, b) else _AND[(a, b)]  # type: ignore[index]
        if a is True or b is True:
            return True
        return U if U in (a, b) else _OR[(a, b)]  # type: ignore[index]
    if isinstance(node, InP):
        v = ref_value(node.operand, bag)
        if v is U or v is None:
            return U
        hit = any(ref_compare("=", v, ref_value(i, bag)) is True for i in node.items)
        return not hit if node.negated else hit
    if isinstance(node, LikeP):
        v = ref_value(node.operand, bag)
        p = ref_value(node.pattern, bag)
        if not isinstance(v, str) or not isinstance(p, str):
            return U
        r = ref_like(v, p, node.escape)
        return U if r is U else (not r if node.negated else r)
    if isinstance(node, IsNullP):
        v = bag.get(node.prop.name.lower())
        return (v is not None) if node.negated else (v is None)
    assert isinstance(node, ExistsP)
    return node.prop.name.lower() in bag


# --------------------------------------------------------------------------- rendering
def _prec(node: object) -> int:
    if isinstance(node, Logic):
        return 1 if node.op == "OR" else 2
    if isinstance(node, NotP):
        return 3
    if isinstance(node, Cmp | InP | LikeP | IsNullP):
        return 4
    if isinstance(node, Bin):
        return 5 if node.op in "+-" else 6
    if isinstance(node, Neg):
        return 7
    if isinstance(node, Lit) and _is_num(node.value) and int(node.value) < 0:  # type: ignore[call-overload]
        return 7
    return 8


def _wrap(node: object, minimum: int) -> str:
    text = render(node)
    return f"({text})" if _prec(node) < minimum else text


def _lit(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(v)


def render(node: object) -> str:
    if isinstance(node, Lit):
        return _lit(node.value)
    if isinstance(node, Prop):
        return node.name if node.name.isalpha() else f"[{node.name}]"
    if isinstance(node, Neg):
        return "-" + _wrap(node.operand, 7)
    if isinstance(node, Bin):
        own = _prec(node)
        return f"{_wrap(node.left, own)} {node.op} {_wrap(node.right, own + 1)}"
    if isinstance(node, Cmp):
        return f"{_wrap(node.left, 5)} {node.op} {_wrap(node.right, 5)}"
    if isinstance(node, Logic):
        own = _prec(node)
        return f"{_wrap(node.left, own)} {node.op} {_wrap(node.right, own + 1)}"
    if isinstance(node, NotP):
        return "NOT " + _wrap(node.operand, 3)
    if isinstance(node, InP):
        items = ", ".join(_wrap(i, 5) for i in node.items)
        return f"{_wrap(node.operand, 5)} {'NOT IN' if node.negated else 'IN'} ({items})"
    if isinstance(node, LikeP):
        text = f"{_wrap(node.operand, 5)} {'NOT LIKE' if node.negated else 'LIKE'} "
        text += _wrap(node.pattern, 5)
        return text + (f" ESCAPE {_lit(node.escape)}" if node.escape is not None else "")
    if isinstance(node, IsNullP):
        return f"{render(node.prop)} IS {'NOT ' if node.negated else ''}NULL"
    assert isinstance(node, ExistsP)
    return f"EXISTS({render(node.prop)})"


# --------------------------------------------------------------------------- strategies
_NAMES = ["a", "B", "c", "x y"]
_names = st.sampled_from(_NAMES)
_props = st.builds(Prop, _names)
_strings = st.text(alphabet="ab'!%_", max_size=4)
_scalars = st.one_of(st.integers(-5, 5), _strings, st.booleans())
_literals = st.builds(Lit, st.one_of(st.none(), _scalars))

_values = st.recursive(
    st.one_of(_literals, _props),
    lambda inner: st.one_of(
        st.builds(Neg, inner),
        st.builds(Bin, st.sampled_from(["+", "-", "*", "/", "%"]), inner, inner),
    ),
    max_leaves=6,
)

_cmp_ops = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
_patterns = st.one_of(st.builds(Lit, _strings.filter(lambda s: not s.endswith("!"))), _props)
_base_preds = st.one_of(
    st.builds(Cmp, _cmp_ops, _values, _values),
    st.builds(InP, _values, st.lists(_values, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(LikeP, _values, _patterns, st.sampled_from([None, "!"]), st.booleans()),
    st.builds(IsNullP, _props, st.booleans()),
    st.builds(ExistsP, _props),
)
_preds = st.recursive(
    _base_preds,
    lambda inner: st.one_of(
        st.builds(NotP, inner),
        st.builds(Logic, st.sampled_from(["AND", "OR"]), inner, inner),
    ),
    max_leaves=5,
)
_bags = st.dictionaries(
    st.sampled_from([n.lower() for n in _NAMES]), st.one_of(st.none(), _scalars), max_size=4
)


def _truth(text: str, bag: dict[str, object]) -> object:
    msg = MessageView(user=dict(bag))
    pos = compile_filter(text).matches(msg)
    neg = compile_filter(f"NOT ({text})").matches(msg)
    assert not (pos and neg)
    return True if pos else False if neg else U


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_preds, bag=_bags)
def test_filter_agrees_with_reference(tree: object, bag: dict[str, object]) -> None:
    text = render(tree)
    assert _truth(text, bag) == ref_pred(tree, bag), text


@settings(max_examples=500, deadline=None)
@given(tree=_values, bag=_bags)
def test_set_agrees_with_reference(tree: object, bag: dict[str, object]) -> None:
    text = f"SET result = {render(tree)}"
    msg = MessageView(user=dict(bag))
    compile_action(text).apply(msg)
    expected = ref_value(tree, bag)
    got = msg.user["result"]
    assert got == (None if expected is U else expected), text
    assert type(got) is type(None if expected is U else expected), text
