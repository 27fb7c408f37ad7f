"""amount_spike: a payment far above its merchant's running baseline.

State per merchantId: three numbers, the count and the running mean and variance of the merchant's
payment amounts (exact while fewer than ``max_history`` payments are seen, then exponentially weighted
with weight 1/max_history, so the baseline follows slow drift). A payment that hits is not added.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from fraudrules.rules.model import Event, Hit, Rule, RuleState


class AmountSpikeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Payments the merchant needs before the rule can fire (warm-up).
    min_history: int = Field(default=8, ge=2)
    #: Standard deviations above the merchant's mean.
    z_threshold: float = Field(default=4.0, gt=0)
    #: ... and at least this multiple of the mean (guards merchants with a tiny variance).
    min_ratio: float = Field(default=3.0, ge=1)
    #: Window of the running average once reached (bounds how slowly the baseline adapts).
    max_history: int = Field(default=500, ge=2)
    score: float = Field(default=70, ge=0, le=100)


def evaluate(event: Event, config: AmountSpikeConfig, state: RuleState | None) -> Hit | None:
    amount = event.get("payAmount")
    if amount is None or state is None:
        return None
    n, mean, var = state.get("stats") or (0, 0.0, 0.0)
    if n >= config.min_history:
        std = math.sqrt(var)
        threshold = max(mean + config.z_threshold * std, mean * config.min_ratio)
        if amount > threshold:
            return Hit(
                score=config.score,
                reason=(
                    f"payAmount {amount:.2f} is {amount / mean if mean else math.inf:.1f}x merchant "
                    f"{event.get('merchantId')}'s mean {mean:.2f} (std {std:.2f}, {n} payments); "
                    f"threshold {threshold:.2f}"
                ),
                values={"payAmount": amount, "mean": mean, "std": std, "history": n, "threshold": threshold},
            )
    n = min(n + 1, config.max_history)
    weight = 1 / n
    delta = amount - mean
    state.set("stats", (n, mean + weight * delta, (1 - weight) * (var + weight * delta * delta)))
    return None


RULE = Rule(
    id="amount_spike",
    version="1.0.0",
    description="Payment amount far above the merchant's running mean (z-score and ratio, after warm-up).",
    evaluate=evaluate,
    config_model=AmountSpikeConfig,
    key="merchantId",
)
