from fraudrules_round_amount import ROUND_AMOUNT

from fraudrules.settings import RuleSettings, Settings
from fraudrules.testing import event, run_rules


def test_flags_round_amounts() -> None:
    [verdict] = run_rules([event(payAmount=5000.0)], rules=[ROUND_AMOUNT])

    [hit] = verdict["hits"]
    assert hit["rule"] == "round_amount"
    assert hit["reason"] == "payAmount 5000.00 is a round multiple of 100.00"
    assert verdict["score"] == 30


def test_ignores_ordinary_and_small_amounts() -> None:
    verdicts = run_rules([event(payAmount=5012.37), event(payAmount=500.0)], rules=[ROUND_AMOUNT])

    assert [v["hits"] for v in verdicts] == [[], []]


def test_step_is_configurable() -> None:
    settings = Settings(rules={"round_amount": RuleSettings(config={"step": 1000})})

    verdicts = run_rules([event(payAmount=5000.0), event(payAmount=5100.0)], rules=[ROUND_AMOUNT], settings=settings)

    assert [bool(v["hits"]) for v in verdicts] == [True, False]


def test_is_found_through_its_entry_point_with_the_installed_rules() -> None:
    [verdict] = run_rules([event(payAmount=2000.0)])  # rules=None: every installed plugin

    assert "round_amount" in verdict["ruleset"]["rules"]
    assert [h["rule"] for h in verdict["hits"]] == ["round_amount"]
