from __future__ import annotations

from fraudrules.pipeline.model import Enriched
from fraudrules.rules.builtin import orphan_payment, reused_order_id
from fraudrules.settings import RuleSettings, Settings
from fraudrules.testing import event, run_rules
from fraudrules.validation import validator


def reused(enriched: Enriched) -> Enriched:
    """``enriched`` as the join marks an order under a reused orderId."""
    enriched["event"]["reusedOrderId"] = True
    enriched["reusedOrderId"] = {
        "previousVerdictId": "payment/0/1",
        "previousDecisionTimeMs": 1_700_000_000_000,
        "differingFields": ["createTime", "payAmount"],
    }
    return enriched


def test_a_reused_order_id_alone_is_a_hit_below_review_and_marked_in_the_verdict() -> None:
    again, ordinary = run_rules([reused(event()), event()], rules=[reused_order_id.RULE])

    assert [(hit["rule"], hit["score"]) for hit in again["hits"]] == [("reused_order_id", 10)]
    assert again["decision"] == "approve"  # 10 < scoring.review_at (40): not enough alone
    assert again["reusedOrderId"]["previousVerdictId"] == "payment/0/1"
    assert validator("verdict").is_valid(again)
    assert ordinary["hits"] == []
    assert "reusedOrderId" not in ordinary


def test_its_score_is_configured_and_it_adds_to_other_rules() -> None:
    settings = Settings(rules={"reused_order_id": RuleSettings(config={"score": 45})})
    [configured] = run_rules([reused(event())], rules=[reused_order_id.RULE], settings=settings)
    [with_orphan] = run_rules([reused(event(missing="order"))], rules=[reused_order_id.RULE, orphan_payment.RULE])

    assert (configured["score"], configured["decision"]) == (45, "review")
    assert with_orphan["score"] == 60
    assert {hit["rule"] for hit in with_orphan["hits"]} == {"reused_order_id", "orphan_payment"}


def test_the_default_score_is_below_the_default_review_threshold() -> None:
    assert reused_order_id.ReusedOrderIdConfig().score < Settings().scoring.review_at
