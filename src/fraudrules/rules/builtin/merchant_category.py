"""merchant_category: risky categories, per-category amount limits, and a merchant selling in a category its
history makes improbable.

Why a new category is judged by the merchant's own history, not by a fixed warm-up: a merchant that sells in
every category (the seed's generator draws a category per order) meets new categories all the time, while a
merchant that has sold only ``home`` in 40 orders almost never should. The chance that the next order is in a
category not seen yet is estimated from the merchant's counts with Good-Turing's missing mass, smoothed by
one (add-one, so that a merchant with no singleton yet is not given probability zero)::

    p_new = (N1 + 1) / (n + 1)      N1 = categories seen exactly once, n = orders seen

A merchant that keeps meeting categories once has a high ``p_new`` and is never flagged; one that repeats a
few categories has a low one. When this is low, a second estimate guards merchants that spread over many
categories but happen to have no singleton left: ``theta / (n + theta)`` with ``theta`` the Ewens
(Chinese-restaurant) estimate from the number of distinct categories in ``n`` orders, and the larger of the
two is used (it only runs for a category the merchant has not used, so its cost does not matter).

A new category fires when ``p_new <= max_new_probability``. The default 0.1
flags a single-category merchant from its 10th order on (1 in 10 under add-one after 9 orders), and a merchant
with singletons needs ~10 orders per singleton; on the seed's 11 uniform categories the missing mass only
falls below 0.1 after ~30 orders with one category left, so the seed's traffic is rarely (and per merchant
at most a few times) flagged.

State per merchantId, bounded: the order count and a count per category, at most ``max_categories``
categories; a merchant beyond that sells everything and is not tracked (never flagged) any more.
"""

from __future__ import annotations

import math

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
    #: A category the merchant never used fires when the estimated chance of an unseen category,
    #: (N1 + 1) / (n + 1), is at most this (see the module docstring for why 0.1).
    max_new_probability: float = Field(default=0.1, gt=0, le=1)
    #: Categories counted per merchant (bounds the state); a merchant using more sells everything.
    max_categories: int = Field(default=16, ge=1)
    inconsistency_score: float = Field(default=45, ge=0, le=100)


def new_category_chance(distinct: int, orders: int) -> float:
    """theta / (orders + theta), theta the Chinese-restaurant (Ewens) estimate from ``distinct`` categories in
    ``orders`` orders: E[distinct] = sum(theta / (theta + i), i < orders), solved by bisection.

    It measures how readily the merchant has taken up new categories over its whole history; Good-Turing's
    singletons can all have been seen twice by chance while a merchant is still spreading (the seed's
    merchants after ~30 orders).
    """
    if distinct <= 1 or orders <= distinct:
        return 0.0 if distinct <= 1 else 1.0

    def expected(theta: float) -> float:
        exact = min(orders, 64)
        total = sum(theta / (theta + i) for i in range(exact))
        if orders > exact:  # the rest of the sum as an integral
            total += theta * math.log((theta + orders - 0.5) / (theta + exact - 0.5))
        return total

    low, high = 0.0, float(orders)
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if expected(mid) < distinct else (low, mid)
    return high / (orders + high)


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
    orders: int = state.get("orders") or 0
    counts: dict[str, int] | None = state.get("counts", {})
    if counts is not None:
        seen = counts.get(category)
        if seen is None:
            singletons = sum(1 for c in counts.values() if c == 1)
            p_new = (singletons + 1) / (orders + 1)
            if p_new <= config.max_new_probability:  # rare: only then the costlier second estimate
                p_new = max(p_new, new_category_chance(sum(1 for c in counts.values() if c), orders))
            flagged = orders > 0 and p_new <= config.max_new_probability
            if flagged:
                known = counts
                usual = sorted(known, key=lambda c: (-known[c], c))
                reasons.append(
                    f"merchant {event.get('merchantId')} sold only in {', '.join(usual)} in {orders} orders, "
                    f"now {category} (chance of a new category {p_new:.3f})"
                )
                values.update(knownCategories=sorted(counts), history=orders, newCategoryChance=p_new)
                score += config.inconsistency_score
            if len(counts) >= config.max_categories:
                counts = None
            else:
                # A flagged category is remembered (a merchant that keeps using it is not flagged again) but
                # counts as evidence of a varied merchant only once it is used again: repeated shifts at one
                # merchant must not make the next one look likely.
                counts[category] = 0 if flagged else 1
        else:
            counts[category] = seen + 1
        state.set("counts", counts)
    state.set("orders", orders + 1)
    if not reasons:
        return None
    return Hit(score=min(score, 100.0), reason="; ".join(reasons), values=values)


RULE = Rule(
    id="merchant_category",
    version="2.0.0",
    description="Risky categories, per-category amount limits, and a category the merchant's history makes improbable.",
    evaluate=evaluate,
    config_model=MerchantCategoryConfig,
    key="merchantId",
)
