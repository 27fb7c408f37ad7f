"""merchant_category: risky categories, per-category amount limits, and a merchant selling outside its usual
categories.

State per merchantId, bounded: the merchant's categories seen so far (at most ``max_categories``; a
merchant that exceeds it is treated as multi-category and never flagged for inconsistency) and its
order count. A category the merchant has never used fires once it has ``min_history`` orders.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fraudrules.rules.model import Event, Hit, Rule, RuleState


class MerchantCategoryConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Categories that always add ``risky_score`` (none by default: the seed's data has no risky category).
    risky_categories: list[str] = Field(default_factory=list)
    risky_score: float = Field(default=20, ge=0, le=100)
    #: category -> highest normal payAmount; above it adds ``limit_score``.
    category_limits: dict[str, float] = Field(default_factory=dict)
    limit_score: float = Field(default=40, ge=0, le=100)
    #: Orders a merchant needs before a new category counts as inconsistent (warm-up).
    min_history: int = Field(default=5, ge=1)
    #: Categories remembered per merchant (bounds the state).
    max_categories: int = Field(default=8, ge=1)
    inconsistency_score: float = Field(default=45, ge=0, le=100)


def evaluate(event: Event, config: MerchantCategoryConfig, state: RuleState | None) -> Hit | None:
    category = event.get("category")
    if category is None or state is None:
        return None
    reasons: list[str] = []
    score = 0.0
    values: dict[str, object] = {"category": category}
    if category in config.risky_categories:
        reasons.append(f"category {category} is configured as risky")
        score += config.risky_score
    limit = config.category_limits.get(category)
    amount = event.get("payAmount")
    if limit is not None and amount is not None and amount > limit:
        reasons.append(f"payAmount {amount:.2f} is above the {category} limit {limit:.2f}")
        values.update(payAmount=amount, limit=limit)
        score += config.limit_score
    orders, categories = state.get("seen") or (0, [])
    if categories is not None and category not in categories:
        if orders >= config.min_history:
            reasons.append(
                f"merchant {event.get('merchantId')} sold only {', '.join(sorted(categories))} "
                f"in {orders} orders, now {category}"
            )
            values.update(knownCategories=sorted(categories), history=orders)
            score += config.inconsistency_score
        categories = [*categories, category] if len(categories) < config.max_categories else None
    state.set("seen", (orders + 1, categories))
    if not reasons:
        return None
    return Hit(score=min(score, 100.0), reason="; ".join(reasons), values=values)


RULE = Rule(
    id="merchant_category",
    version="1.0.0",
    description="Risky categories, per-category amount limits, and merchants selling outside their categories.",
    evaluate=evaluate,
    config_model=MerchantCategoryConfig,
    key="merchantId",
)
