"""The closures of CEL's common subset decide as the CEL package does, or leave the expression to it."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fraudrules.pipeline.model import Enriched
from fraudrules.rules.cel_subset import CelError, Defer, NotInSubset, compile_subset
from fraudrules.rules.expressions import Compiled, Expressions
from fraudrules.rules.lists import Entry, Lists, NamedList
from fraudrules.settings import ConfigError

LISTS = frozenset({"vip"})


def vip() -> Lists:
    entries = {value: Entry("known") for value in ("x", "ab", "1", "7")}
    entries["late"] = Entry("expired", expires_ms=1_000)
    return Lists([NamedList("vip", "s", "review", entries)])


def enriched(
    event: dict[str, Any], payment: dict[str, Any] | None = None, order: dict[str, Any] | None = None
) -> Enriched:
    return {"event": {"eventTimeMs": 5_000, **event}, "payment": payment, "order": order}  # type: ignore[typeddict-item]


def through_cel(text: str, order: Enriched, lists: Lists) -> bool | Exception:
    """What the CEL package decides: the expression with its closures taken away."""
    compiled = Compiled("rule", text, LISTS)
    compiled.fast = None
    program = Expressions([compiled], lists)
    program.bind(order)
    result: bool | Exception = program.outcomes()["rule"]
    return result


def through_closures(text: str, order: Enriched, lists: Lists) -> Any:
    compiled = Compiled("rule", text, LISTS)
    assert compiled.fast is not None, f"{text} is in the subset"
    program = Expressions([compiled], lists)
    program.bind(order)
    return compiled.fast(program._closure_records)


@pytest.mark.parametrize(
    ("text", "fields", "expected"),
    [
        ("event.a > 2 && event.s == 'x'", {"a": 3, "s": "x"}, True),
        ("event.a == 2", {"a": 2.0}, True),  # numbers compare as numbers whatever their JSON form
        ("event.a == 'x'", {"a": 2}, False),  # values of different types are never equal
        ("event.missing > 1 && event.a == 0", {"a": 1}, False),  # an error && false is false
        ("event.a == 1 || event.missing > 1", {"a": 1}, True),
        ("-7 / 2 == -3 && -7 % 2 == -1", {}, True),  # CEL truncates toward zero
        ("double(event.a) * 1.5 == 3.0", {"a": 2}, True),
        ("int(event.b) == -2", {"b": -2.7}, True),
        ("event.s.startsWith('a') && size(event.s) == 2 && event.s.size() == 2", {"s": "ab"}, True),
        ("event.s in ['x', 'ab'] && event.a in [1.0]", {"s": "ab", "a": 1}, True),
        ("event.s in lists.vip && !('late' in lists.vip) && 7 in lists.vip", {"s": "x"}, True),
        ("has(order.category) ? order.category == 'travel' : false", {}, True),
        ("string(event.a) + '!' == '12!'", {"a": 12}, True),
        ("event.t == true && event.n == null", {"t": True, "n": None}, True),
    ],
)
def test_closures_decide_as_cel(text: str, fields: dict[str, Any], expected: bool) -> None:
    order = enriched(fields, order={"category": "travel"} if "order." in text else None)
    assert through_cel(text, order, vip()) is expected
    assert through_closures(text, order, vip()) is expected


@pytest.mark.parametrize(
    ("text", "fields", "raised"),
    [
        ("event.missing > 1", {}, KeyError),  # CEL names the missing field
        ("event.a + 1.0 > 0.0", {"a": 1}, CelError),  # no mixed arithmetic
        ("event.a * 2 > 0", {"a": 2**62}, CelError),  # int64 overflow
        ("event.a == 1.0", {"a": 2**60}, Defer),  # CEL compares as doubles beyond 2**53
        ("string(event.b) == '0.5'", {"b": 0.5}, Defer),  # CEL prints doubles its own way
        ("size(event.s) == 1", {"s": "é"}, Defer),  # CEL counts a string's bytes
        ("event.b / 0.0 > 1.0", {"b": 1.5}, Defer),
        ("event.s < 1", {"s": "x"}, CelError),
        ("event.b in lists.vip", {"b": 1.5}, Defer),
    ],
)
def test_closures_raise_where_they_do_not_decide(text: str, fields: dict[str, Any], raised: type[Exception]) -> None:
    with pytest.raises(raised):
        through_closures(text, enriched(fields), vip())


@pytest.mark.parametrize(
    "text",
    [
        "event.l[0] == 1",  # indexing
        "event.m.x == 1",  # a nested field
        "size(event) > 1",  # a whole record
        "event.s.matches('^a')",  # CEL's regular expressions
        "event.a == 1u",  # unsigned ints
        "r'a' == event.s",  # raw strings
        "{'a': 1}['a'] == event.a",  # maps
        "string(event.a) in lists.vip",  # a computed value on a list (CEL sees the event's listed values only)
        "0x10 in lists.vip",
        "[1, 2].all(x, x > 0)",  # macros
        "event.s == '\\u00e9'",  # escapes beyond the simple ones
    ],
)
def test_what_is_outside_the_subset_is_left_to_cel(text: str) -> None:
    with pytest.raises(NotInSubset):
        compile_subset(text, LISTS)
    assert Compiled("rule", text, LISTS).fast is None


def test_a_rule_set_runs_closures_and_cel_programs_side_by_side() -> None:
    lists = vip()
    texts = {
        "fast": "event.a > 1",
        "slow": "event.s.matches('^a')",
        "deferred": "size(event.s) == 2",  # a non-ASCII string: the closure defers, CEL decides
        "error": "event.s > 1",
        "absent": "order.category == 'travel'",  # a payment-only order lacks the order's fields: false
    }
    program = Expressions([Compiled(name, text, LISTS) for name, text in texts.items()], lists)
    assert program.program is not None
    assert len(program._slow) == 1
    program.bind(enriched({"a": 2, "s": "é", "joinStatus": "payment_only"}))

    outcomes = program.outcomes()

    assert {name: outcomes[name] for name in ("fast", "slow", "deferred", "absent")} == {
        "fast": True,
        "slow": False,
        "deferred": True,
        "absent": False,
    }
    assert isinstance(outcomes["error"], TypeError)


# --- generated expressions and events --------------------------------------------------------------------

FIELDS = ("a", "b", "s", "t", "n", "payAmount", "category")  # the last two: a side's own, absent from the other
VALUES: list[Any] = [0, 1, 2, -3, 7, 2**60, 0.0, -0.0, 1.0, 2.5, -2.7, 1e20, "", "x", "ab", "7", "é", True, False, None]
LITERALS = ["0", "1", "2", "-3", "7", "1.0", "2.5", "0.0", "'x'", "'ab'", "'7'", "''", "true", "false", "null"]
STATUSES = ("joined", "payment_only", "order_only")


def generate(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        if rng.random() < 0.6:
            return f"{rng.choice(['event', 'event', 'payment', 'order'])}.{rng.choice(FIELDS)}"
        return rng.choice(LITERALS)
    shape = rng.randrange(12)
    left, right = generate(rng, depth - 1), generate(rng, depth - 1)
    if shape < 5:
        operator = rng.choice(["==", "!=", "<", "<=", ">", ">=", "&&", "||", "+", "-", "*", "/", "%"])
        return f"({left} {operator} {right})"
    if shape == 5:
        return f"{rng.choice(['!', '-'])}{left}" if not left[0].isdigit() else f"!{left}"
    if shape == 6:
        return f"({left} ? {right} : {generate(rng, depth - 1)})"
    if shape == 7:
        return f"{rng.choice(['int', 'double', 'string', 'size'])}({left})"
    if shape == 8:
        return f"{left}.{rng.choice(['startsWith', 'endsWith', 'contains'])}({right})"
    if shape == 9:
        return f"({left} in [{right}, {rng.choice(LITERALS)}])"
    if shape == 10:
        field = f"{rng.choice(['event', 'payment'])}.{rng.choice(FIELDS)}"
        return f"({rng.choice([field, *LITERALS[:7], *LITERALS[8:11]])} in lists.vip)"
    return f"has({rng.choice(['event', 'order'])}.{rng.choice(FIELDS)})"


def random_order(rng: random.Random) -> Enriched:
    def record() -> dict[str, Any]:
        return {field: rng.choice(VALUES) for field in FIELDS if rng.random() < 0.8}

    return enriched({**record(), "joinStatus": rng.choice(STATUSES)}, payment=record(), order=record())


def same(got: bool | Exception, expected: bool | Exception) -> bool:
    if isinstance(expected, Exception):
        return type(got) is type(expected) and str(got) == str(expected)
    return got is expected


def test_generated_expressions_decide_as_cel() -> None:
    """On 4,000 generated expressions, each on 6 generated orders: every outcome (true, false, or the rule's
    error and its message) is the CEL package's; and of the orders CEL decides, the closures decide most alone
    (the fast path is the one that runs: it leaves a value to CEL where CEL's behaviour is not reproduced)."""
    rng = random.Random(20261203)
    lists = vip()
    compared = decided = cel_decided = 0
    for _ in range(4_000):
        text = generate(rng, rng.randint(1, 4))
        try:
            fast, slow = Compiled("rule", text, LISTS), Compiled("rule", text, LISTS)
        except ConfigError:  # the generator writes some text CEL itself refuses
            continue
        if fast.fast is None:
            continue
        slow.fast = None
        program, reference = Expressions([fast], lists), Expressions([slow], lists)
        for _ in range(6):
            order = random_order(rng)
            program.bind(order)
            reference.bind(order)
            got, expected = program.outcomes()["rule"], reference.outcomes()["rule"]
            assert same(got, expected), f"{text} on {order}: closures {got!r}, CEL {expected!r}"
            compared += 1
            if expected is True or expected is False:
                cel_decided += 1
                program._activation = {}
                program.bind(order)
                program.outcomes()
                decided += not program._activation  # CEL's variables were not built: the closures decided
    assert compared > 15_000
    assert decided > cel_decided * 0.9
