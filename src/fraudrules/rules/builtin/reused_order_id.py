"""reused_order_id: an order under an orderId another order with other content was decided under shortly before."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fraudrules.rules.model import Event, Hit, Rule, RuleState


class ReusedOrderIdConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Below ``scoring.review_at`` (40) by default: a reused orderId alone is a producer's numbering (the seed's
    #: generator started twice), not fraud; with another rule's hit it may tip the order into review.
    score: float = Field(default=10, ge=0, le=100)


def evaluate(event: Event, config: ReusedOrderIdConfig, state: RuleState | None) -> Hit | None:
    if event.get("reusedOrderId") is not True:
        return None
    return Hit(
        score=config.score,
        reason=f"orderId {event.get('orderId')} was used by another order, with other content, "
        "decided within the dedup retention",
        values={"reusedOrderId": True},
    )


RULE = Rule(
    id="reused_order_id",
    version="1.0.0",
    description="An order whose orderId another order, with other content, was decided under within the dedup "
    "retention (the verdict's reusedOrderId names it).",
    evaluate=evaluate,
    config_model=ReusedOrderIdConfig,
)
