from __future__ import annotations

import pytest

from fraudrules.rules.scoring import score_results
from fraudrules.settings import ScoringSettings


def hit(rule: str, score: float, mode: str = "enforce") -> dict:
    return {"rule": rule, "version": "1", "mode": mode, "score": score, "reason": "r", "values": {}}


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
    scored = score_results([hit(f"r{i}", s) for i, s in enumerate(scores)], ScoringSettings())

    assert (scored.score, scored.decision) == (expected_score, decision)


def test_shadow_hits_are_reported_but_never_decide() -> None:
    scored = score_results([hit("a", 90, "shadow"), hit("b", 10)], ScoringSettings())

    assert (scored.score, scored.decision) == (10, "approve")
    assert [h["rule"] for h in scored.shadow_hits] == ["a"]
    assert [h["rule"] for h in scored.hits] == ["b"]


def test_errors_are_listed_and_do_not_change_the_score() -> None:
    scored = score_results([{"rule": "broken", "error": "raised ValueError()"}, hit("b", 45)], ScoringSettings())

    assert scored.errors == [{"rule": "broken", "error": "raised ValueError()"}]
    assert (scored.score, scored.decision) == (45, "review")


def test_thresholds_are_configurable() -> None:
    scored = score_results([hit("a", 30)], ScoringSettings(review_at=10, decline_at=30))

    assert scored.decision == "decline"
