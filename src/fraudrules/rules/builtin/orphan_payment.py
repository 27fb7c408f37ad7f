"""orphan_payment: a payment whose order never arrived within the join window."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fraudrules.rules.model import Event, Hit, Rule, RuleState


class OrphanPaymentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(default=50, ge=0, le=100)


def evaluate(event: Event, config: OrphanPaymentConfig, state: RuleState | None) -> Hit | None:
    if event.get("joinStatus") != "payment_only":
        return None
    return Hit(
        score=config.score,
        reason=f"payment of {event.get('payAmount')} for order {event.get('orderId')} has no order "
        "within the join window",
        values={"joinStatus": "payment_only", "payAmount": event.get("payAmount")},
    )


RULE = Rule(
    id="orphan_payment",
    version="1.0.0",
    description="A payment whose order never arrived within the join window.",
    evaluate=evaluate,
    config_model=OrphanPaymentConfig,
)
