from __future__ import annotations

import pytest

from fraudrules.pipeline.model import RuleError, RuleHit, RuleResults
from fraudrules.rules.scoring import score_results
from fraudrules.settings import ScoringSettings


def hit(rule: str, score: float, mode: str = "enforce") -> RuleHit:
    return {"rule": rule, "version": "1", "mode": mode, "score": score, "reason": "r", "values": {}, "micros": 1.0}  # type: ignore[typeddict-item]


def results(*hits: RuleHit, errors: list[RuleError] | None = None) -> list[RuleResults]:
    return [{"hits": list(hits), "errors": errors or []}]


@pytest.mark.parametrize(
    ("scores", "expected_score", "decision"),
    [
        ([], 0, "approve"),
        ([39.4], 39, "approve"),
        ([40], 40, "review"),
        ([20, 20], 40, "review"),
        ([79.6], 80, "decline"),
        ([70, 50], 100, "decline"),
        ([100, 100, 100], 100, "decline"),
    ],
)
def test_score_is_the_capped_sum_of_enforced_hits(scores: list[float], expected_score: int, decision: str) -> None:
    scored = score_results(results(*(hit(f"r{i}", s) for i, s in enumerate(scores))), ScoringSettings())

    assert (scored.score, scored.decision) == (expected_score, decision)


def test_shadow_hits_are_reported_but_never_decide() -> None:
    scored = score_results(results(hit("a", 90, "shadow"), hit("b", 10)), ScoringSettings())

    assert (scored.score, scored.decision) == (10, "approve")
    assert [h["rule"] for h in scored.shadow_hits] == ["a"]
    assert [h["rule"] for h in scored.hits] == ["b"]


def test_errors_are_listed_and_do_not_change_the_score() -> None:
    scored = score_results(
        results(hit("b", 45), errors=[{"rule": "broken", "error": "raised ValueError()"}]), ScoringSettings()
    )

    assert scored.errors == [{"rule": "broken", "error": "raised ValueError()"}]
    assert (scored.score, scored.decision) == (45, "review")


def test_thresholds_are_configurable() -> None:
    scored = score_results(results(hit("a", 30)), ScoringSettings(review_at=10, decline_at=30))

    assert scored.decision == "decline"


def test_hits_from_several_groups_are_combined_and_sorted_by_rule() -> None:
    scored = score_results(results(hit("zeta", 20)) + results(hit("alpha", 25)), ScoringSettings())

    assert [h["rule"] for h in scored.hits] == ["alpha", "zeta"]
    assert (scored.score, scored.decision) == (45, "review")
    assert "mode" not in scored.hits[0]
