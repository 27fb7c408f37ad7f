"""Comparing two runs' verdicts for the same orders (partition counts, instance counts, failovers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any


def outcome(verdict: Mapping[str, Any], leave_out: frozenset[str] = frozenset()) -> tuple[Any, ...]:
    """What a verdict decides: decision, join status and which rules hit (minus ``leave_out``).

    The decision counts only when no rule is left out: a left-out rule's score is part of it.
    """
    rules = tuple(sorted(h["rule"] for h in verdict["hits"] if h["rule"] not in leave_out))
    return (verdict["decision"] if not leave_out else None, verdict["join"]["status"], rules)


def per_merchant(verdicts: Mapping[int, Mapping[str, Any]], leave_out: frozenset[str]) -> dict[Any, Counter[Any]]:
    merchants: dict[Any, Counter[Any]] = {}
    for verdict in verdicts.values():
        merchant = (verdict["order"] or {}).get("merchantId")
        merchants.setdefault(merchant, Counter())[outcome(verdict, leave_out)] += 1
    return merchants


def differences(
    one: Mapping[int, Mapping[str, Any]],
    other: Mapping[int, Mapping[str, Any]],
    leave_out: frozenset[str] = frozenset(),
) -> tuple[dict[Any, Any], list[int]]:
    """Merchants whose verdicts differ as a multiset, and the orderIds whose own verdicts differ.

    Two payments of one merchant a few milliseconds apart can reach its partition in either order when
    they come from different partitions; a rule that reacts to "the first time" (a new category) then
    hits the other one. Per merchant the verdicts are the same; per order they may swap.
    """
    assert one.keys() == other.keys()
    mine, theirs = per_merchant(one, leave_out), per_merchant(other, leave_out)
    merchants = {m: (mine[m], theirs.get(m)) for m in mine if mine[m] != theirs.get(m)}
    orders = [i for i in one if outcome(one[i], leave_out) != outcome(other[i], leave_out)]
    return merchants, orders
