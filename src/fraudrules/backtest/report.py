"""Figures of a backtest: decisions, per-rule hits and precision, per-scenario recall, the good orders' review
and decline rates, controls, bursts, dead letters and speed; and the terminal summary.

A label marks an order as fraud (its ``scenario`` says which kind) unless it says ``"fraud": false``: then it
is a legitimate look-alike (a control), counted with the good orders and reported on its own. "Flagged"
means sent to review or declined.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudrules.pipeline.model import DeadLetter, Verdict

DECISIONS = ("approve", "review", "decline")


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


@dataclass
class Tally:
    """Counts gathered while verdicts stream past (nothing kept per order but the labels)."""

    labels: dict[int, dict[str, Any]]
    orders: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    rule_hits: Counter[str] = field(default_factory=Counter)
    rule_fraud_hits: Counter[str] = field(default_factory=Counter)
    scenario_labelled: Counter[str] = field(default_factory=Counter)
    scenario_flagged: Counter[str] = field(default_factory=Counter)
    control_orders: Counter[str] = field(default_factory=Counter)
    control_decisions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    good_orders: int = 0
    good_decisions: Counter[str] = field(default_factory=Counter)
    bursts: dict[str, bool] = field(default_factory=dict)
    deadlettered: Counter[str] = field(default_factory=Counter)
    join_status: Counter[str] = field(default_factory=Counter)
    #: Hits per minute of event time, per rule, and decisions per minute (for the plots).
    timeline: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    #: Score histogram (buckets of 5) of fraud-labelled and of good orders.
    scores: dict[str, Counter[int]] = field(default_factory=lambda: {"fraud": Counter(), "good": Counter()})

    def add(self, verdict: Verdict) -> None:
        self.orders += 1
        decision = verdict["decision"]
        flagged = decision != "approve"
        self.decisions[decision] += 1
        self.join_status[verdict["join"]["status"]] += 1
        label = self.labels.get(verdict["orderId"])
        fraud = label is not None and label.get("fraud", True) is not False
        rules = {hit["rule"] for hit in verdict["hits"]}
        for rule in rules:
            self.rule_hits[rule] += 1
            if fraud:
                self.rule_fraud_hits[rule] += 1
        minute = _minute(verdict)
        if minute is not None:
            slot = self.timeline[minute]
            slot[decision] += 1
            for rule in rules:
                slot["rule:" + rule] += 1
        self.scores["fraud" if fraud else "good"][min(verdict["score"] // 5, 20)] += 1
        if fraud:
            assert label is not None
            scenario = str(label.get("scenario", "fraud"))
            self.scenario_labelled[scenario] += 1
            self.scenario_flagged[scenario] += flagged
            if "burst" in label:
                burst = f"{scenario}:{label['burst']}"
                self.bursts[burst] = self.bursts.get(burst, False) or flagged
            return
        self.good_orders += 1
        self.good_decisions[decision] += 1
        if label is not None:
            control = str(label.get("scenario", "control"))
            self.control_orders[control] += 1
            self.control_decisions[control][decision] += 1

    def add_deadletter(self, letter: DeadLetter) -> None:
        self.deadlettered[letter["reason"]] += 1

    def summary(self, seconds: float, labelled: bool) -> dict[str, Any]:
        """The figures (``--json``): every rate is a share in [0, 1], None where nothing was counted."""
        fraud_orders = sum(self.scenario_labelled.values())
        fraud_flagged = sum(self.scenario_flagged.values())
        good_flagged = self.good_decisions["review"] + self.good_decisions["decline"]
        return {
            "orders": self.orders,
            "decisions": {d: self.decisions[d] for d in DECISIONS},
            "join": dict(sorted(self.join_status.items())),
            "rules": {
                rule: {
                    "hits": hits,
                    "precision": _rate(self.rule_fraud_hits[rule], hits) if labelled else None,
                }
                for rule, hits in sorted(self.rule_hits.items())
            },
            "scenarios": {
                name: {
                    "labelled": count,
                    "flagged": self.scenario_flagged[name],
                    "recall": _rate(self.scenario_flagged[name], count),
                }
                for name, count in sorted(self.scenario_labelled.items())
            },
            "controls": {
                name: {
                    "orders": count,
                    "review_rate": _rate(self.control_decisions[name]["review"], count),
                    "decline_rate": _rate(self.control_decisions[name]["decline"], count),
                }
                for name, count in sorted(self.control_orders.items())
            },
            "bursts": {"total": len(self.bursts), "caught": sum(self.bursts.values())},
            "good": {
                "orders": self.good_orders,
                "review_rate": _rate(self.good_decisions["review"], self.good_orders),
                "decline_rate": _rate(self.good_decisions["decline"], self.good_orders),
            },
            "confusion": {
                "fraud_flagged": fraud_flagged,
                "fraud_approved": fraud_orders - fraud_flagged,
                "good_flagged": good_flagged,
                "good_approved": self.good_orders - good_flagged,
            },
            "deadlettered": dict(sorted(self.deadlettered.items())),
            "seconds": round(seconds, 3),
            "orders_per_second": round(self.orders / seconds) if seconds > 0 else None,
        }


def _minute(verdict: Verdict) -> int | None:
    """The verdict's event time in minutes since the epoch (for the timeline)."""
    text = verdict["eventTime"]
    return None if len(text) < 16 else _minutes(text[:16])


@functools.lru_cache(maxsize=4096)
def _minutes(text: str) -> int:
    """'YYYY-MM-DD HH:MM' in minutes since the epoch: parsed once per minute of data, not once per verdict."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) // 60


def _pct(value: float | None) -> str:
    return "     -" if value is None else f"{value * 100:6.2f}%"


def render(summary: dict[str, Any]) -> Iterable[str]:
    """The terminal summary, line by line."""
    d = summary["decisions"]
    yield (
        f"orders:        {summary['orders']:,}  approve {d['approve']:,}  review {d['review']:,}  "
        f"decline {d['decline']:,}"
    )
    yield "join:          " + "  ".join(f"{k} {v:,}" for k, v in summary["join"].items())
    letters = summary["deadlettered"]
    yield f"dead-lettered: {sum(letters.values()):,}" + (
        "  (" + ", ".join(f"{k} {v:,}" for k, v in letters.items()) + ")" if letters else ""
    )
    good = summary["good"]
    yield (
        f"good orders:   {good['orders']:,}  sent to review {_pct(good['review_rate'])}  "
        f"declined {_pct(good['decline_rate'])}"
    )
    if summary["rules"]:
        yield "rules:         hits  precision (share of hits on fraud-labelled orders)"
        for rule, figures in summary["rules"].items():
            yield f"  {rule:<24} {figures['hits']:>8,}  {_pct(figures['precision'])}"
    if summary["scenarios"]:
        yield "scenarios:     labelled  flagged  recall"
        for name, figures in summary["scenarios"].items():
            yield f"  {name:<24} {figures['labelled']:>8,} {figures['flagged']:>8,}  {_pct(figures['recall'])}"
        c = summary["confusion"]
        yield "confusion:     flagged  approved"
        yield f"  fraud         {c['fraud_flagged']:>7,}  {c['fraud_approved']:>8,}"
        yield f"  good          {c['good_flagged']:>7,}  {c['good_approved']:>8,}"
    if summary["bursts"]["total"]:
        yield f"bursts:        {summary['bursts']['caught']} of {summary['bursts']['total']} caught"
    if summary["controls"]:
        yield "controls:      orders  review  decline  (legitimate look-alikes)"
        for name, figures in summary["controls"].items():
            yield (
                f"  {name:<24} {figures['orders']:>6,} {_pct(figures['review_rate'])} {_pct(figures['decline_rate'])}"
            )
    yield f"speed:         {summary['orders_per_second'] or 0:,} orders/s ({summary['seconds']} s)"
