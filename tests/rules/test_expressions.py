from __future__ import annotations

import pytest

from fraudrules.rules.engine import RuleSet
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import ConfigError, ExpressionSettings, IsolationSettings, ListSettings, Settings
from fraudrules.testing import event, run_rules
from tests.rules.test_engine import always


def settings_with(**expressions: str | ExpressionSettings) -> Settings:
    built = {
        name: value if isinstance(value, ExpressionSettings) else ExpressionSettings(when=value, score=50, reason=name)
        for name, value in expressions.items()
    }
    lists = {"vip": ListSettings(field="merchantId", action="review", values=[7, "m8"])}
    return Settings(expressions=built, lists=lists)


def test_an_expression_hits_with_its_score_reason_and_the_values_it_read() -> None:
    settings = settings_with(
        big=ExpressionSettings(when="event.payAmount > 50000 && event.category == 'travel'", score=45, reason="big")
    )

    hit, miss = run_rules(
        [event(payAmount=60000.0, category="travel"), event(payAmount=60000.0)], rules=[], settings=settings
    )

    assert hit["decision"] == "review"
    assert hit["score"] == 45
    [shown] = hit["hits"]
    assert (shown["rule"], shown["reason"], shown["score"]) == ("big", "big", 45.0)
    assert shown["values"] == {"event.category": "travel", "event.payAmount": 60000}
    assert miss["hits"] == []
    assert miss["decision"] == "approve"


@pytest.mark.parametrize("amount", [100, 100.0])
def test_numbers_compare_as_numbers_whatever_their_json_form(amount: float) -> None:
    settings = settings_with(
        eq="event.payAmount == 100", eq_double="event.payAmount == 100.0", gt="event.payAmount > 99.5"
    )

    [verdict] = run_rules([event(payAmount=amount)], rules=[], settings=settings)

    assert sorted(hit["rule"] for hit in verdict["hits"]) == ["eq", "eq_double", "gt"]
    assert verdict["errors"] == []


def test_payment_order_and_lists_are_variables() -> None:
    settings = settings_with(
        listed="event.merchantId in lists.vip",
        literal="'m8' in lists.vip",
        sides="payment.payPlatform == 1 && order.merchantId == 7",
    )

    verdicts = run_rules(
        [event(merchantId=7, payPlatform=1), event(merchantId=7.0), event(merchantId="m8"), event(merchantId=9)],
        rules=[],
        settings=settings,
    )

    assert [sorted(hit["rule"] for hit in v["hits"]) for v in verdicts] == [
        ["listed", "literal", "sides"],
        ["listed", "literal"],
        ["listed", "literal"],
        ["literal"],
    ]


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("event.payAmount > ", "expression 'broken' does not compile: line 1, column 19: Syntax error"),
        ("event.x == 'a", "expression 'broken' does not compile: line 1, column 12"),
        ("amount > 5", "expression 'broken' uses amount: its variables are event, payment, order and lists"),
        ("event.merchantId in lists.nope", "expression 'broken' names lists that do not exist: nope"),
    ],
)
def test_a_broken_expression_is_refused_with_its_name_and_the_position(when: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RuleSet.build({}, settings_with(fine="true", broken=when))

    assert message in str(refused.value)


def test_comprehension_variables_are_not_unknown_variables() -> None:
    ruleset = RuleSet.build({}, settings_with(any_big="[event.payAmount, 5].exists(x, x > 10)"))

    assert [rule.id for rule in ruleset.rules] == ["any_big"]


def test_an_expression_that_fails_on_one_event_is_that_rules_error_for_that_event() -> None:
    settings = settings_with(typed="event.payAmount + 'x' == 'y'", fine="event.payAmount > 1", absent="event.nope > 1")

    [verdict] = run_rules([event(payAmount=5.0)], rules=[], settings=settings)

    assert [hit["rule"] for hit in verdict["hits"]] == ["fine"]
    errors = {error["rule"]: error["error"] for error in verdict["errors"]}
    assert set(errors) == {"absent", "typed"}
    assert "no field 'nope'" in errors["absent"]


def test_a_one_sided_order_does_not_hit_an_expression_about_its_missing_side() -> None:
    settings = settings_with(category="event.category == 'travel'")

    [verdict] = run_rules([event(missing="order")], rules=[], settings=settings)

    assert verdict["hits"] == []
    assert verdict["errors"] == []


def test_an_expression_that_keeps_failing_is_suspended_like_any_rule() -> None:
    settings = settings_with(bad="event.nope > 1").model_copy(
        update={"isolation": IsolationSettings(max_consecutive_failures=2, suspend_events=5)}
    )

    verdicts = run_rules([event() for _ in range(3)], rules=[], settings=settings)

    assert verdicts[2]["errors"] == [{"rule": "bad", "error": "suspended after repeated failures"}]


def test_expressions_are_rules_shadow_mode_names_and_the_ruleset_id() -> None:
    registered = {"always_10": RegisteredRule(always(10), "test")}
    settings = settings_with(big=ExpressionSettings(when="event.payAmount > 1", score=30, mode="shadow"))
    ruleset = RuleSet.build(registered, settings)
    changed = RuleSet.build(registered, settings_with(big=ExpressionSettings(when="event.payAmount > 2", score=30)))

    assert {(r.id, r.plugin, r.mode) for r in ruleset.rules} == {
        ("always_10", "test", "enforce"),
        ("big", "expressions", "shadow"),
    }
    assert ruleset.ruleset_id(settings.scoring) != changed.ruleset_id(settings.scoring)
    [verdict] = run_rules([event()], rules=[always(10)], settings=settings)
    assert [h["rule"] for h in verdict["shadowHits"]] == ["big"]
    assert verdict["score"] == 10
    with pytest.raises(ConfigError, match="already uses: always_10"):
        RuleSet.build(registered, settings_with(always_10="true"))
