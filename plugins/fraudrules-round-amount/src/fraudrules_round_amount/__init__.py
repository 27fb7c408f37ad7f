"""fraudrules plugin: the ``round_amount`` rule."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fraudrules.rules import Event, Hit, Rule, RuleState, hookimpl


class RoundAmountConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    step: float = Field(default=100.0, gt=0)
    min_amount: float = Field(default=1000.0, ge=0)
    score: float = Field(default=30, ge=0, le=100)


def evaluate(event: Event, config: RoundAmountConfig, state: RuleState | None) -> Hit | None:
    amount = event.get("payAmount")
    if amount is None or amount < config.min_amount:
        return None
    if abs(amount / config.step - round(amount / config.step)) > 1e-9:
        return None
    return Hit(
        score=config.score,
        reason=f"payAmount {amount:.2f} is a round multiple of {config.step:.2f}",
        values={"payAmount": amount, "step": config.step},
    )


ROUND_AMOUNT = Rule(
    id="round_amount",
    version="0.1.0",
    description="Payment of a round amount (a whole multiple of `step`, at least `min_amount`).",
    evaluate=evaluate,
    config_model=RoundAmountConfig,
)


@hookimpl
def fraudrules_rules() -> list[Rule[Any]]:
    return [ROUND_AMOUNT]
