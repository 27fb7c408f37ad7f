"""From rule results to a score and a decision.

The score is the sum of the enforced hits' scores, capped at 100. Shadow hits are reported but never
count. ``score >= decline_at`` declines, ``score >= review_at`` sends to review, anything lower approves.
Rule errors do not change the score (fail open); they are listed in the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fraudrules.pipeline.model import Decision, RuleError, RuleHit, RuleResults
from fraudrules.rules.lists import ListHit
from fraudrules.rules.lists import decide as decide_by_lists
from fraudrules.settings import ScoringSettings

__all__ = ["Decision", "Scored", "decide", "score_results", "with_lists"]


@dataclass(frozen=True, slots=True)
class Scored:
    decision: Decision
    score: int
    hits: list[dict[str, Any]]
    shadow_hits: list[dict[str, Any]]
    errors: list[RuleError]
    #: The lists the order is on (``rules/lists.py``); they decided ``decision`` if there are any.
    lists: tuple[ListHit, ...] = ()


def decide(score: int, scoring: ScoringSettings) -> Decision:
    if score >= scoring.decline_at:
        return "decline"
    if score >= scoring.review_at:
        return "review"
    return "approve"


def score_results(results: list[RuleResults], scoring: ScoringSettings) -> Scored:
    """Combine the results of every rule group of one order (hits and errors sorted by rule id)."""
    if not any(r["hits"] or r["errors"] for r in results):  # most orders: nothing to sort or sum
        return Scored(decide(0, scoring), 0, [], [], [])
    hits: list[dict[str, Any]] = []
    shadow: list[dict[str, Any]] = []
    all_hits: list[RuleHit] = sorted((hit for r in results for hit in r["hits"]), key=lambda h: h["rule"])
    for hit in all_hits:
        shown = {k: v for k, v in hit.items() if k != "mode"}
        (shadow if hit["mode"] == "shadow" else hits).append(shown)
    errors = sorted((error for r in results for error in r["errors"]), key=lambda e: e["rule"])
    score = min(100, round(sum(hit["score"] for hit in hits)))
    return Scored(decide(score, scoring), score, hits, shadow, errors)


def with_lists(scored: Scored, hits: list[ListHit]) -> Scored:
    """``scored`` with the decision the lists the order is on make (unchanged if it is on none)."""
    if not hits:
        return scored
    return replace(scored, decision=decide_by_lists(scored.decision, hits), lists=tuple(hits))
