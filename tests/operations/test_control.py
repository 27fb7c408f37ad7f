"""The control topic's records, rule changes and the evaluator's swap, without Kafka."""

from __future__ import annotations

from typing import Any

import pytest

from fraudrules.operations.control import RulesetRecord, apply_assignments, build, parse
from fraudrules.pipeline.evaluate import Evaluator
from fraudrules.rules.engine import RuleSet
from fraudrules.rules.model import Hit, Rule
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import ConfigError, ExpressionSettings, RuleSettings, ScoringSettings, Settings
from fraudrules.testing import event

FIRES: Rule[Any] = Rule(id="fires", version="1", description="fires at 50", evaluate=lambda e, c, s: Hit(50, "x"))
KEYED: Rule[Any] = Rule(
    id="keyed", version="1", description="by merchant", evaluate=lambda e, c, s: None, key="merchantId"
)
REGISTERED = {rule.id: RegisteredRule(rule, "test") for rule in (FIRES, KEYED)}


def test_a_record_that_is_not_a_ruleset_is_refused_with_what_is_wrong() -> None:
    for value, says in [
        (None, "tombstone"),
        (b"{not json", "invalid ruleset record"),
        (b"[1, 2]", "invalid ruleset record"),
        (b'{"rules": {}}', "version"),
        (b'{"version": 1, "rules": {"fires": {"mode": "loud"}}}', "mode"),
        (b'{"version": 1, "scoring": {"review_at": 500}}', "review_at"),
        (b'{"version": 1, "extra": 1}', "extra"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse(value)


def test_a_ruleset_builds_with_the_rules_and_scoring_it_names_replacing_the_settings() -> None:
    settings = Settings(rules={"fires": RuleSettings(mode="shadow")})
    record = RulesetRecord(
        version=3, rules={"keyed": RuleSettings(enabled=False)}, scoring=ScoringSettings(review_at=10)
    )

    built = build(record, settings, REGISTERED, current=2)

    assert [r.id for r in built.ruleset.rules] == ["fires"]
    assert built.ruleset.rules[0].mode == "enforce"
    assert built.settings.scoring.review_at == 10
    assert built.version == 3


def test_unknown_rules_bad_configs_old_versions_and_crossed_thresholds_are_refused() -> None:
    settings = Settings()
    with pytest.raises(ConfigError, match="no installed plugin provides: nope"):
        build(RulesetRecord(version=1, rules={"nope": RuleSettings()}), settings, REGISTERED, None)
    with pytest.raises(ConfigError, match="invalid config for rule 'fires'"):
        build(RulesetRecord(version=1, rules={"fires": RuleSettings(config={"x": 1})}), settings, REGISTERED, None)
    with pytest.raises(ConfigError, match="not above the version in force"):
        build(RulesetRecord(version=2), settings, REGISTERED, current=2)
    with pytest.raises(ConfigError, match="decline_at"):
        build(
            RulesetRecord(version=1, scoring=ScoringSettings(review_at=60, decline_at=50)), settings, REGISTERED, None
        )


def test_assignments_set_mode_enablement_config_scoring_and_expressions() -> None:
    config = RulesetRecord(
        version=1,
        rules={"fires": RuleSettings(config={"a": 1})},
        expressions={"big": ExpressionSettings(when="event.payAmount > 1", score=10)},
    )
    changed = apply_assignments(
        config,
        [
            ("fires.mode", "shadow"),
            ("fires.b", [1, 2]),
            ("keyed.enabled", False),
            ("scoring.review_at", 30),
            ("big.score", 55),
            ("big.mode", "shadow"),
        ],
    )

    assert changed.rules["fires"] == RuleSettings(mode="shadow", config={"a": 1, "b": [1, 2]})
    assert changed.rules["keyed"].enabled is False
    assert changed.scoring.review_at == 30
    assert changed.expressions["big"] == ExpressionSettings(when="event.payAmount > 1", score=55, mode="shadow")
    with pytest.raises(ConfigError, match=r"fires\.mode"):
        apply_assignments(config, [("fires.mode", "loud")])
    with pytest.raises(ConfigError, match=r"RULE\.FIELD=VALUE"):
        apply_assignments(config, [("fires", 1)])


def test_a_rule_set_offered_by_another_thread_decides_from_the_next_record_and_names_itself() -> None:
    settings = Settings()
    evaluator = Evaluator(RuleSet.build(REGISTERED, settings), settings.scoring)
    before = evaluator.verdict(event(), [])
    shadow = build(RulesetRecord(version=1, rules={"fires": RuleSettings(mode="shadow")}), settings, REGISTERED, None)

    info = evaluator.offer(shadow.ruleset, shadow.settings.scoring, shadow.version)
    still = evaluator.verdict(event(), [])
    assert evaluator.apply_pending() == info
    after = evaluator.verdict(event(), [])

    assert before["decision"] == still["decision"] == "review"
    assert still["ruleset"] == before["ruleset"]
    assert after["decision"] == "approve"
    assert [h["rule"] for h in after["shadowHits"]] == ["fires"]
    assert after["ruleset"]["id"] != before["ruleset"]["id"]
    assert after["ruleset"]["version"] == 1
    assert "version" not in before["ruleset"]
    assert evaluator.apply_pending() is None


def test_every_installed_key_has_a_rule_group_so_enabling_a_keyed_rule_needs_no_restart() -> None:
    settings = Settings(rules={"keyed": RuleSettings(enabled=False)})
    evaluator = Evaluator(RuleSet.build(REGISTERED, settings), settings.scoring)
    assert evaluator.group_fields == ["merchantId"]

    enabled = RuleSet.build(REGISTERED, Settings())
    evaluator.offer(enabled, settings.scoring, 2)
    evaluator.apply_pending()
    assert [r.id for r in evaluator.ruleset.groups["merchantId"]] == ["keyed"]


def test_a_rule_set_needing_a_group_the_topology_lacks_is_refused_with_restart_advice() -> None:
    settings = Settings()
    evaluator = Evaluator(RuleSet.build({"fires": REGISTERED["fires"]}, settings), settings.scoring)

    with pytest.raises(ConfigError, match="restart"):
        evaluator.offer(RuleSet.build(REGISTERED, settings), settings.scoring, 1)
    assert evaluator.pending is None
