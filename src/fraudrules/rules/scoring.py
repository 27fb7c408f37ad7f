"""From rule results to a score and a decision.

The score is the sum of the enforced hits' scores, capped at 100. Shadow hits are reported but never
count. ``score >= decline_at`` declines, ``score >= review_at`` sends to review, anything lower approves.
Rule errors do not change the score (fail open); they are listed in the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fraudrules.settings import ScoringSettings

Decision = Literal["approve", "review", "decline"]


@dataclass(frozen=True, slots=True)
class Scored:
    decision: Decision
    score: int
    hits: list[dict[str, Any]]
    shadow_hits: list[dict[str, Any]]
    errors: list[dict[str, Any]]


def decide(score: int, scoring: ScoringSettings) -> Decision:
    if score >= scoring.decline_at:
        return "decline"
    if score >= scoring.review_at:
        return "review"
    return "approve"


def score_results(results: list[dict[str, Any]], scoring: ScoringSettings) -> Scored:
    hits: list[dict[str, Any]] = []
    shadow: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for result in sorted(results, key=lambda r: r["rule"]):
        if "error" in result:
            errors.append(result)
        else:
            hit = {k: result[k] for k in ("rule", "version", "score", "reason", "values")}
            (shadow if result["mode"] == "shadow" else hits).append(hit)
    score = min(100, round(sum(hit["score"] for hit in hits)))
    return Scored(decide(score, scoring), score, hits, shadow, errors)
