"""Rules that always raise, sometimes raise, or are slow: the stream goes on and the policy holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudrules.rules.scoring import decide
from fraudrules.settings import IsolationSettings, PluginSettings, ScoringSettings
from tests.conftest import Broker
from tests.kafka_helpers import (
    KEEPALIVE_IDS,
    create_topics,
    read_verdicts,
    running,
    settings_for,
    values,
)
from tests.reliability.support import produce_generated, recent_generator

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

COUNT = 2000
ISOLATION = IsolationSettings()


def test_faulty_rules_are_reported_and_suspended_and_never_decide(kafka: Broker, unique: str, tmp_path: Path) -> None:
    settings = settings_for(
        kafka.bootstrap,
        unique,
        tmp_path,
        join_window_seconds=30,
        plugins=PluginSettings(modules=["tests.reliability.faulty_rules"]),
    )
    create_topics(kafka.bootstrap, [settings.topics.payment, settings.topics.order])
    produce_generated(kafka.bootstrap, settings.topics, recent_generator(COUNT, seed=21), partitions=1)

    with running(settings, tmp_path / "app.log") as pipeline:
        sink = read_verdicts(kafka.bootstrap, settings.topics.sink, COUNT, pipeline)
    verdicts = [v for v in values(sink) if v["orderId"] < KEEPALIVE_IDS]
    assert len({v["orderId"] for v in verdicts}) == COUNT

    def errors_of(rule: str) -> list[str]:
        return [e["error"] for v in verdicts for e in v["errors"] if e["rule"] == rule]

    # always_raises: an error on every verdict, first its exception, then "suspended" in between retries
    always = errors_of("always_raises")
    assert len(always) == COUNT
    assert sum("always_raises is broken" in e for e in always) >= ISOLATION.max_consecutive_failures
    assert sum(e == "suspended after repeated failures" for e in always) >= ISOLATION.suspend_events
    # sometimes_raises: never 20 in a row, so never suspended; its errors are the 1 in 10 it cannot handle
    sometimes = errors_of("sometimes_raises")
    assert "suspended after repeated failures" not in sometimes
    assert 0.05 * COUNT < len(sometimes) < 0.2 * COUNT
    assert sum(any(h["rule"] == "sometimes_raises" for h in v["hits"]) for v in verdicts) > 0.8 * COUNT
    # slow_rule: every call is over slow_ms, so it is suspended after 20 and costs 20 x 80 ms per 1,020 events
    slow = errors_of("slow_rule")
    assert any(e.startswith("slow: ") for e in slow)
    assert sum(e == "suspended after repeated failures" for e in slow) >= ISOLATION.suspend_events
    # fail open: errors never score; the decision follows the enforced hits alone
    scoring = ScoringSettings()
    for v in verdicts:
        assert v["score"] == min(100, round(sum(h["score"] for h in v["hits"])))
        assert v["decision"] == decide(v["score"], scoring)
    # and the logs say so
    log = (tmp_path / "app.log").read_text()
    assert "always_raises is broken" in log
    assert "rule suspended" in log
