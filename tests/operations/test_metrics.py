"""Metrics counted from what the pipeline does, in Prometheus' exposition format (no Kafka)."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fraudrules.operations.metrics import Metrics
from fraudrules.pipeline.evaluate import Evaluator
from fraudrules.rules.engine import RuleSet
from fraudrules.rules.model import Hit, Rule
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import ExpressionSettings, IsolationSettings, ListSettings, RuleSettings, Settings
from fraudrules.testing import event


def scraped(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def deadletter(reason: str) -> dict[str, Any]:
    return {"reason": reason, "error": "", "source": {}}


def test_records_dead_letters_verdicts_hits_and_latency_are_counted_under_conventional_names() -> None:
    fires: Rule[Any] = Rule(id="fires", version="1", description="", evaluate=lambda e, c, s: Hit(50, "x"))
    quiet: Rule[Any] = Rule(id="quiet", version="1", description="", evaluate=lambda e, c, s: Hit(5, "y"))
    settings = Settings(
        rules={"quiet": RuleSettings(mode="shadow")},
        expressions={"big": ExpressionSettings(when="event.payAmount > 1.0", score=1)},
        lists={"watched": ListSettings(field="merchantId", action="review", values=[1])},
    )
    registered = {r.id: RegisteredRule(r, "t") for r in (fires, quiet)}
    evaluator = Evaluator(RuleSet.build(registered, settings), settings.scoring)
    metrics = Metrics()
    evaluator.ruleset.observer = metrics

    for _ in range(3):
        metrics.admitted("payment", {"side": "payment"})  # type: ignore[arg-type]
    metrics.admitted("order", deadletter("schema"))  # type: ignore[arg-type]
    metrics.joined([deadletter("duplicate")])
    verdict = evaluator.verdict(event(), [])
    verdict["latencyMs"] = 30.0
    metrics.verdict(verdict)

    found = scraped(metrics)
    assert found[("fraudrules_records_in_total", (("topic", "payment"),))] == 3
    assert found[("fraudrules_records_in_total", (("topic", "order"),))] == 1
    assert found[("fraudrules_deadletters_total", (("reason", "schema"),))] == 1
    assert found[("fraudrules_deadletters_total", (("reason", "duplicate"),))] == 1
    assert found[("fraudrules_verdicts_total", (("decision", "review"),))] == 1
    assert found[("fraudrules_rule_hits_total", (("mode", "enforce"), ("rule", "fires")))] == 1
    assert found[("fraudrules_rule_hits_total", (("mode", "shadow"), ("rule", "quiet")))] == 1
    assert found[("fraudrules_rule_evaluation_seconds_count", (("rule", "fires"),))] == 1
    assert found[("fraudrules_rule_hits_total", (("mode", "enforce"), ("rule", "big")))] == 1  # an expression rule
    assert found[("fraudrules_rule_evaluation_seconds_count", (("rule", "big"),))] == 1
    assert found[("fraudrules_list_hits_total", (("action", "review"), ("list", "watched")))] == 1
    assert found[("fraudrules_verdict_latency_seconds_bucket", (("join", "joined"), ("le", "0.05")))] == 1
    assert found[("fraudrules_verdict_latency_seconds_bucket", (("join", "joined"), ("le", "0.025")))] == 0


def test_rule_times_are_a_cumulative_histogram_per_rule() -> None:
    metrics = Metrics()
    for seconds in (3e-6, 3e-6, 2e-5, 0.02, 9.0):
        metrics.rule_call("r", seconds)

    found = scraped(metrics)
    bucket = "fraudrules_rule_evaluation_seconds_bucket"
    assert found[(bucket, (("le", "5e-06"), ("rule", "r")))] == 2
    assert found[(bucket, (("le", "2.5e-05"), ("rule", "r")))] == 3
    assert found[(bucket, (("le", "0.05"), ("rule", "r")))] == 4
    assert found[(bucket, (("le", "+Inf"), ("rule", "r")))] == 5
    assert found[("fraudrules_rule_evaluation_seconds_count", (("rule", "r"),))] == 5
    assert abs(found[("fraudrules_rule_evaluation_seconds_sum", (("rule", "r"),))] - 9.020026) < 1e-9


def test_errors_and_suspensions_are_counted_per_rule() -> None:
    def boom(*_: Any) -> Hit:
        raise ValueError("boom")

    broken = Rule(id="broken", version="1", description="", evaluate=boom)
    settings = Settings(isolation=IsolationSettings(max_consecutive_failures=2, suspend_events=5))
    evaluator = Evaluator(RuleSet.build({"broken": RegisteredRule(broken, "t")}, settings), settings.scoring)
    metrics = Metrics()
    evaluator.ruleset.observer = metrics

    for _ in range(4):
        metrics.verdict(evaluator.verdict(event(), []))

    found = scraped(metrics)
    assert found[("fraudrules_rule_errors_total", (("rule", "broken"),))] == 4
    assert found[("fraudrules_rule_suspensions_total", (("rule", "broken"),))] == 1
