from __future__ import annotations

from fraudrules.rules.builtin import merchant_category
from fraudrules.rules.builtin.merchant_category import MerchantCategoryConfig
from fraudrules.settings import RuleSettings, Settings
from fraudrules.testing import MemoryState, event, run_rules

RULES = [merchant_category.RULE]


def history(merchant: int, category: str, n: int) -> list[dict]:
    return [event(merchantId=merchant, category=category) for _ in range(n)]


def test_fires_when_a_merchant_with_history_sells_in_a_new_category() -> None:
    verdicts = run_rules([*history(5, "home", 6), event(merchantId=5, category="travel")], rules=RULES)

    [hit] = verdicts[-1]["hits"]
    assert hit["values"]["knownCategories"] == ["home"]
    assert "merchant 5 sold only home in 6 orders, now travel" in hit["reason"]


def test_stays_quiet_for_merchants_keeping_their_categories() -> None:
    events = [*history(5, "home", 50), *history(6, "travel", 50)]

    assert all(v["hits"] == [] for v in run_rules(events, rules=RULES))


def test_needs_history_before_calling_a_category_new() -> None:
    verdicts = run_rules([*history(5, "home", 4), event(merchantId=5, category="travel")], rules=RULES)

    assert verdicts[-1]["hits"] == []


def test_risky_categories_and_amount_limits_are_configurable() -> None:
    settings = Settings(
        rules={
            "merchant_category": RuleSettings(
                config={"risky_categories": ["travel"], "category_limits": {"grocery_pos": 500}}
            )
        }
    )

    risky, over, under = run_rules(
        [
            event(category="travel", merchantId=1),
            event(category="grocery_pos", merchantId=2, payAmount=900.0),
            event(category="grocery_pos", merchantId=3, payAmount=100.0),
        ],
        rules=RULES,
        settings=settings,
    )

    assert risky["hits"][0]["score"] == 20
    assert "above the grocery_pos limit 500.00" in over["hits"][0]["reason"]
    assert under["hits"] == []


def test_state_is_bounded_per_merchant() -> None:
    config = MerchantCategoryConfig(max_categories=3)
    state = MemoryState()
    for category in ["a", "b", "c", "d", "e", "f", "a", "b"] * 10:
        merchant_category.evaluate(event(merchantId=1, category=category)["event"], config, state)

    orders, categories = state.data["seen"]
    assert orders == 80
    assert categories is None  # multi-category merchant: no longer tracked, never flagged
