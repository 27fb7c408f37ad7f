"""A/B of two rule configurations over the same records: which orders change decision, and what it costs.

Verdicts are paired by ``verdictId`` (one per order, the same in both runs since both saw the same input).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fraudrules.pipeline.model import Verdict


@dataclass
class Comparison:
    orders: int = 0
    changed: int = 0
    #: "approve -> review": count.
    transitions: Counter[str] = field(default_factory=Counter)
    #: rule (or ``list:NAME``) -> changed orders where it hit only in the other run (added) / only in the base
    #: (removed).
    rules_added: Counter[str] = field(default_factory=Counter)
    rules_removed: Counter[str] = field(default_factory=Counter)
    #: scenario (or "good") -> changed orders.
    scenarios: Counter[str] = field(default_factory=Counter)
    #: The changed orders: verdictId, orderId, decisions, scenario, rules added and removed.
    changes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "changed": self.changed,
            "transitions": dict(sorted(self.transitions.items())),
            "rules": {
                rule: {"added": self.rules_added[rule], "removed": self.rules_removed[rule]}
                for rule in sorted(self.rules_added.keys() | self.rules_removed.keys())
            },
            "scenarios": dict(sorted(self.scenarios.items())),
        }


def compare_verdicts(
    base: Iterable[Verdict], other: Iterable[Verdict], labels: dict[int, dict[str, Any]]
) -> Comparison:
    others = {verdict["verdictId"]: verdict for verdict in other}
    result = Comparison()
    for first in base:
        second = others.get(first["verdictId"])
        if second is None:
            continue
        result.orders += 1
        if first["decision"] == second["decision"]:
            continue
        result.changed += 1
        result.transitions[f"{first['decision']} -> {second['decision']}"] += 1
        label = labels.get(first["orderId"])
        scenario = "good" if label is None or label.get("fraud", True) is False else str(label.get("scenario"))
        result.scenarios[scenario] += 1
        before = {hit["rule"] for hit in first["hits"]} | {f"list:{hit['list']}" for hit in first.get("lists", [])}
        after = {hit["rule"] for hit in second["hits"]} | {f"list:{hit['list']}" for hit in second.get("lists", [])}
        result.rules_added.update(after - before)
        result.rules_removed.update(before - after)
        result.changes.append(
            {
                "verdictId": first["verdictId"],
                "orderId": first["orderId"],
                "from": first["decision"],
                "to": second["decision"],
                "scenario": scenario,
                "rulesAdded": sorted(after - before),
                "rulesRemoved": sorted(before - after),
            }
        )
    return result


def render_comparison(comparison: Comparison, base: dict[str, Any], other: dict[str, Any]) -> Iterable[str]:
    """The A/B part of the terminal summary: changes, and recall and good-order rates before and after."""
    yield f"compare:       {comparison.changed:,} of {comparison.orders:,} orders change decision"
    for transition, count in sorted(comparison.transitions.items()):
        yield f"  {transition:<24} {count:>8,}"
    for rule in sorted(comparison.rules_added.keys() | comparison.rules_removed.keys()):
        # lists (list:NAME) as rules: the changed orders each one decided only in one of the runs
        shown = f"list {rule[5:]}" if rule.startswith("list:") else f"rule {rule}"
        yield f"  {shown:<24} +{comparison.rules_added[rule]:,} hits / -{comparison.rules_removed[rule]:,} hits"
    for scenario, count in sorted(comparison.scenarios.items()):
        yield f"  in {scenario:<21} {count:>8,} changed"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.2f}%"

    for name in sorted(base["scenarios"].keys() | other["scenarios"].keys()):
        before = base["scenarios"].get(name, {}).get("recall")
        after = other["scenarios"].get(name, {}).get("recall")
        yield f"  recall {name:<17} {pct(before):>8} -> {pct(after)}"
    yield f"  good sent to review      {pct(base['good']['review_rate']):>8} -> {pct(other['good']['review_rate'])}"
    yield f"  good declined            {pct(base['good']['decline_rate']):>8} -> {pct(other['good']['decline_rate'])}"
