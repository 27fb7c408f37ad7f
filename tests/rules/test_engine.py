from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from fraudrules.rules.engine import ActiveRule, RuleSet
from fraudrules.rules.model import Event, Hit, Rule, RuleState
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import ConfigError, IsolationSettings, RuleSettings, Settings
from fraudrules.testing import event, run_rules


def always(score: float) -> Rule[Any]:
    return Rule(id=f"always_{int(score)}", version="1", description="fires", evaluate=lambda e, c, s: Hit(score, "x"))


def raising(e: Event, c: BaseModel, s: RuleState | None) -> Hit | None:
    raise ValueError("boom")


RAISES = Rule(id="raises", version="1", description="always raises", evaluate=raising)


def test_shadow_rules_are_reported_without_changing_the_decision() -> None:
    settings = Settings(rules={"always_90": RuleSettings(mode="shadow")})

    [verdict] = run_rules([event()], rules=[always(90), always(10)], settings=settings)

    assert [h["rule"] for h in verdict["shadowHits"]] == ["always_90"]
    assert [h["rule"] for h in verdict["hits"]] == ["always_10"]
    assert verdict["decision"] == "approve"


def test_disabled_rules_do_not_run() -> None:
    settings = Settings(rules={"always_90": RuleSettings(enabled=False)})

    [verdict] = run_rules([event()], rules=[always(90)], settings=settings)

    assert verdict["hits"] == []
    assert verdict["ruleset"]["rules"] == {}


def test_a_raising_rule_is_reported_and_the_other_rules_still_decide() -> None:
    verdicts = run_rules([event(), event()], rules=[RAISES, always(50)])

    for verdict in verdicts:
        assert verdict["errors"] == [{"rule": "raises", "error": "raised ValueError('boom')"}]
        assert verdict["decision"] == "review"


def test_a_rule_that_keeps_failing_is_suspended_then_retried() -> None:
    settings = Settings(isolation=IsolationSettings(max_consecutive_failures=3, suspend_events=5))

    verdicts = run_rules([event() for _ in range(12)], rules=[RAISES], settings=settings)

    errors = [v["errors"][0]["error"] for v in verdicts]
    assert errors[:3] == ["raised ValueError('boom')"] * 3
    assert errors[3:8] == ["suspended after repeated failures"] * 5
    assert errors[8] == "raised ValueError('boom')"


def test_a_slow_rule_is_reported_and_suspended_like_a_failing_one() -> None:
    def slow(e: Event, c: BaseModel, s: RuleState | None) -> Hit | None:
        time.sleep(0.02)
        return None

    settings = Settings(isolation=IsolationSettings(slow_ms=5, max_consecutive_failures=2, suspend_events=3))
    rule = Rule(id="slow", version="1", description="sleeps", evaluate=slow)

    verdicts = run_rules([event() for _ in range(5)], rules=[rule], settings=settings)

    errors = [v["errors"][0]["error"] for v in verdicts]
    assert errors[0].startswith("slow: ")
    assert errors[0].endswith("> 5.0 ms")
    assert errors[2:5] == ["suspended after repeated failures"] * 3


def test_invalid_rule_config_is_an_error_naming_the_rule() -> None:
    from fraudrules.rules.builtin import amount_spike

    settings = Settings(rules={"amount_spike": RuleSettings(config={"min_history": -1})})

    with pytest.raises(ConfigError, match="invalid config for rule 'amount_spike'"):
        RuleSet.build({"amount_spike": RegisteredRule(amount_spike.RULE, "builtin_rules")}, settings)


def test_settings_for_a_rule_nobody_provides_are_an_error() -> None:
    settings = Settings(rules={"amount_spikes": RuleSettings(mode="shadow")})

    with pytest.raises(ConfigError, match="amount_spikes"):
        RuleSet.build({}, settings)


def test_ruleset_id_changes_with_config_and_mode() -> None:
    rules = {"always_10": RegisteredRule(always(10), "p")}
    base = RuleSet.build(rules, Settings()).ruleset_id(Settings().scoring)
    shadow = RuleSet.build(rules, Settings(rules={"always_10": RuleSettings(mode="shadow")}))

    assert shadow.ruleset_id(Settings().scoring) != base
    assert RuleSet.build(rules, Settings()).ruleset_id(Settings().scoring) == base


class NoConfig(BaseModel):
    pass


class CountingState:
    """A key's state that counts the store operations made on it."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.gets = self.sets = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.gets += 1
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.sets += 1
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.sets += 1
        self.data.pop(key, None)


def counter(rule_id: str) -> Rule[Any]:
    def count(e: Event, c: BaseModel, state: RuleState | None) -> Hit | None:
        assert state is not None
        state.set("seen", (state.get("seen") or 0) + 1)
        state.set("last", e["orderId"])
        state.delete("never-set")
        return None

    return Rule(id=rule_id, version="1", description="counts", evaluate=count, key="merchantId")


def test_the_rules_of_a_group_read_and_write_the_key_state_once_per_event_each_under_its_own_names() -> None:
    rules = RuleSet([ActiveRule(counter(name), "p", NoConfig(), "enforce") for name in ("first", "second")])
    state = CountingState()

    for order_id in (1, 2):
        rules.evaluate(rules.groups["merchantId"], event(orderId=order_id)["event"], state)

    assert (state.gets, state.sets) == (2, 2)
    assert json.loads(state.data["rules"]) == {"first.seen": 2, "first.last": 2, "second.seen": 2, "second.last": 2}


def storer(rule_id: str, bad: Any) -> Rule[Any]:
    """Counts its events, and on an event whose amount is 13 stores ``bad`` (in place, inside its list, too)."""

    def store(e: Event, c: BaseModel, state: RuleState | None) -> Hit | None:
        assert state is not None
        seen = state.get("seen") or []
        seen.append(e["payAmount"])
        if e["payAmount"] == 13:
            seen.append(bad)
        state.set("seen", seen)
        return None

    return Rule(id=rule_id, version="1", description="stores", evaluate=store, key="merchantId")


@pytest.mark.parametrize("bad", [{5: 1}, {1, 2}, b"bytes", object(), datetime.now(UTC)], ids=type)
def test_a_value_that_cannot_be_stored_is_that_rules_error_and_its_state_stays_as_it_was(bad: Any) -> None:
    isolation = IsolationSettings(max_consecutive_failures=2, suspend_events=1)
    rules = RuleSet(
        [
            ActiveRule(storer("bad", bad), "p", NoConfig(), "enforce"),
            ActiveRule(counter("good"), "p", NoConfig(), "enforce"),
        ],
        isolation,
    )
    state = CountingState()

    def run(amount: float) -> list[Any]:
        return rules.evaluate(rules.groups["merchantId"], event(payAmount=amount)["event"], state)["errors"]

    assert run(1.0) == []
    errors = run(13)
    assert [e["rule"] for e in errors] == ["bad"]
    assert "not JSON" in errors[0]["error"]
    stored = json.loads(state.data["rules"])
    assert stored["bad.seen"] == [1.0]  # as before the event, though the rule changed its list in place
    assert stored["good.seen"] == 2  # the other rule's state moved on
    assert run(2.0) == []
    assert json.loads(state.data["rules"])["bad.seen"] == [1.0, 2.0]
    run(13)
    run(13)  # a second failure in a row: suspended for the next event
    assert [e["error"] for e in run(3.0)] == ["suspended after repeated failures"]


@pytest.mark.parametrize("values", [{"x": {1, 2}}, {"when": datetime.now(UTC)}, "not a dict"])
def test_a_hit_that_cannot_be_written_is_that_rules_error(values: Any) -> None:
    def odd(e: Event, c: BaseModel, state: RuleState | None) -> Hit | None:
        return Hit(score=50, reason="odd", values=values)

    rules = RuleSet(
        [ActiveRule(Rule(id="odd", version="1", description="odd", evaluate=odd), "p", NoConfig(), "enforce")]
    )
    results = rules.evaluate(rules.stateless, event()["event"])
    assert results["hits"] == []
    assert [e["rule"] for e in results["errors"]] == ["odd"]


def test_a_group_whose_rules_change_nothing_writes_nothing() -> None:
    def reads(e: Event, c: BaseModel, state: RuleState | None) -> Hit | None:
        assert state is not None
        state.get("anything")
        return None

    rule = Rule(id="reads", version="1", description="reads", evaluate=reads, key="merchantId")
    rules, state = RuleSet([ActiveRule(rule, "p", NoConfig(), "enforce")]), CountingState()

    rules.evaluate(rules.groups["merchantId"], event()["event"], state)

    assert (state.gets, state.sets) == (1, 0)
