"""Rules on enriched events: one partial result per rule group (rules keyed by the same event field),
then the verdict once every group has reported.
"""

from __future__ import annotations

from typing import Any

from fraudrules.pipeline.verdict import build_verdict
from fraudrules.rules.engine import RuleSet
from fraudrules.rules.scoring import score_results
from fraudrules.settings import ScoringSettings

#: Group key for an event that lacks the group's field (e.g. merchantId of a payment without its order).
MISSING_KEY = "-"


class Evaluator:
    def __init__(self, ruleset: RuleSet, scoring: ScoringSettings) -> None:
        self.ruleset = ruleset
        self.scoring = scoring
        self.ruleset_info = {
            "id": ruleset.ruleset_id(scoring),
            "rules": dict(sorted(ruleset.versions.items())),
        }
        self.group_fields = sorted(ruleset.groups)

    @staticmethod
    def group_key(field: str) -> Any:
        def key(enriched: dict[str, Any]) -> Any:
            return enriched["event"].get(field, MISSING_KEY)

        return key

    def partial(self, field: str, enriched: dict[str, Any], state: Any) -> dict[str, Any]:
        """Results of the rules keyed by ``field``; ``state`` is the field value's state."""
        event = enriched["event"]
        results = [] if field not in event else self.ruleset.evaluate(self.ruleset.groups[field], event, state)
        return {"orderId": enriched["orderId"], "group": field, "results": results, "enriched": enriched}

    def verdict(self, enriched: dict[str, Any], group_results: list[dict[str, Any]]) -> dict[str, Any]:
        """Stateless rules, scoring and the verdict."""
        results = group_results + self.ruleset.evaluate(self.ruleset.stateless, enriched["event"])
        return build_verdict(enriched, score_results(results, self.scoring), self.ruleset_info)

    def gather(self, partial: dict[str, Any], state: Any) -> list[dict[str, Any]]:
        """Collect the groups' partials of one order (state keyed by orderId); the verdict when all are in."""
        received: dict[str, list[dict[str, Any]]] = state.get("partials") or {}
        received[partial["group"]] = partial["results"]
        if len(received) < len(self.group_fields):
            state.set("partials", received)
            return []
        state.delete("partials")
        results = [result for field in self.group_fields for result in received[field]]
        return [self.verdict(partial["enriched"], results)]
