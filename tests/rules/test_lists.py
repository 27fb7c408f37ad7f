from __future__ import annotations

from typing import cast

from fraudrules.rules.lists import Entry, ListHit, Lists, decide, text_of
from fraudrules.settings import ListSettings, RuleSettings, Settings
from fraudrules.testing import event, run_rules
from tests.rules.test_engine import always


def test_values_are_listed_by_their_text_whatever_their_json_form() -> None:
    assert text_of(42) == text_of(42.0) == text_of("42") == "42"
    assert text_of(2.5) == "2.5"
    assert text_of(True) == "true"
    assert text_of({"a": 1}) is None
    assert text_of(None) is None


def test_an_allow_list_approves_whatever_the_rules_score_and_their_hits_are_kept() -> None:
    settings = Settings(lists={"vip": ListSettings(field="merchantId", action="approve", values=[7])})

    [on, off] = run_rules([event(merchantId=7), event(merchantId=8)], rules=[always(90)], settings=settings)

    assert on["decision"] == "approve"
    assert on["score"] == 90
    assert [hit["rule"] for hit in on["hits"]] == ["always_90"]
    assert on["lists"] == [
        {"list": "vip", "action": "approve", "field": "merchantId", "value": 7, "reason": "settings file"}
    ]
    assert off["decision"] == "decline"
    assert "lists" not in off


def test_allow_beats_decline_which_beats_review_and_review_never_lowers_a_decline() -> None:
    hit = {"list": "l", "field": "f", "value": 1, "reason": "r"}
    assert (
        decide("decline", cast(list[ListHit], [{**hit, "action": "approve"}, {**hit, "action": "decline"}]))
        == "approve"
    )
    assert (
        decide("approve", cast(list[ListHit], [{**hit, "action": "decline"}, {**hit, "action": "review"}])) == "decline"
    )
    assert decide("approve", cast(list[ListHit], [{**hit, "action": "review"}])) == "review"
    assert decide("decline", cast(list[ListHit], [{**hit, "action": "review"}])) == "decline"


def test_a_decline_list_declines_and_names_the_list_field_value_and_reason() -> None:
    settings = Settings(
        lists={
            "blocked": ListSettings(field="merchantId", action="decline", values=["7"], reason="chargebacks"),
            "watch": ListSettings(field="provinceId", action="review", values=[3]),
        }
    )

    verdicts = run_rules(
        [event(merchantId=7.0), event(provinceId=3), event(merchantId=7, provinceId=3), event()],
        rules=[always(0)],
        settings=settings,
    )

    assert [v["decision"] for v in verdicts] == ["decline", "review", "decline", "approve"]
    assert verdicts[0]["lists"][0] == {
        "list": "blocked",
        "action": "decline",
        "field": "merchantId",
        "value": 7.0,
        "reason": "chargebacks",
    }
    assert [hit["list"] for hit in verdicts[2]["lists"]] == ["blocked", "watch"]


def test_an_entry_applies_to_events_before_its_expiry_only() -> None:
    lists = Lists.from_settings({"snoozed": ListSettings(field="merchantId", action="approve")})
    before, after = event(merchantId=5), event(merchantId=5, createTime="2024-01-08 12:00:00.000")
    expiry = before["event"]["eventTimeMs"] + 7 * 86_400_000 - 1
    lists.update({}, [("snoozed", "5", Entry("false positives", expires_ms=expiry))], revision=12)

    assert [hit["reason"] for hit in lists.match(before["event"])] == ["false positives"]
    assert lists.match(before["event"])[0]["expiresAt"] == "2024-01-08T11:59:59+00:00"
    assert lists.match(after["event"]) == []
    assert lists.revision == 12


def test_runtime_changes_add_remove_and_define_lists_and_change_the_ruleset_id() -> None:
    settings = Settings(lists={"blocked": ListSettings(field="merchantId", action="decline", values=[1, 2])})
    lists = Lists.from_settings(settings.lists)
    before = lists.describe()

    lists.update({"vip": ("userId", "approve")}, [("blocked", "1", None), ("vip", "u9", Entry("CEO"))], revision=3)

    assert set(lists.by_name["blocked"].entries) == {"2"}
    assert lists.by_name["vip"].field == "userId"
    assert set(lists.by_name["vip"].entries) == {"u9"}
    assert lists.describe() != before


def test_a_rule_sets_id_names_its_lists() -> None:
    from fraudrules.rules.engine import RuleSet
    from fraudrules.rules.registry import RegisteredRule

    registered = {"always_0": RegisteredRule(always(0), "test")}
    plain = RuleSet.build(registered, Settings(rules={"always_0": RuleSettings()}))
    listed = RuleSet.build(
        registered, Settings(lists={"b": ListSettings(field="merchantId", action="decline", values=[1])})
    )
    other = RuleSet.build(
        registered, Settings(lists={"b": ListSettings(field="merchantId", action="decline", values=[2])})
    )

    ids = {rs.ruleset_id(Settings().scoring) for rs in (plain, listed, other)}
    assert len(ids) == 3
