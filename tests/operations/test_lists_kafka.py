"""Lists and expression rules changed on a running pipeline, on the real broker: a merchant declined from its
next order on and approved again once removed; an expression rule defined at runtime hits; a broken one is
refused while the app runs on; every change is in the history."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fraudrules import codec
from fraudrules.kafka_tools.harness import InputRecord, produce_paced
from fraudrules.operations.control import RuleControl
from fraudrules.rules.registry import discover_configured
from tests.conftest import Broker
from tests.kafka_helpers import PipelineProcess, create_topics, read_verdicts, running, settings_for, wait_for_group
from tests.operations.test_operations_kafka import fraudrules, records

pytestmark = pytest.mark.kafka


def orders_of(data: list[InputRecord]) -> dict[int, dict[str, Any]]:
    return {value["orderId"]: value for r in data if r.topic == "order" for value in [codec.loads(r.value)]}


def test_lists_and_expressions_change_at_runtime_and_a_broken_expression_is_refused(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path, reorder_bound_ms=0, processing_guarantee="exactly-once")
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order])
    data = records(400, seed=21)
    phases = [data[i * 200 : (i + 1) * 200] for i in range(4)]  # 100 orders each
    counts = [Counter(order["merchantId"] for order in orders_of(phase).values()) for phase in phases[:2]]
    merchant = max(counts[0], key=lambda m: min(counts[0][m], counts[1][m]))  # in both phases
    seen = 0

    def produce_phase(phase: list[InputRecord], pipeline: PipelineProcess) -> dict[int, dict[str, Any]]:
        nonlocal seen
        produce_paced(kafka.bootstrap, topics, phase)
        seen += len(phase) // 2
        sink = read_verdicts(kafka.bootstrap, topics.sink, seen, pipeline)
        wanted = orders_of(phase)
        decided = [v for m in sink for v in [codec.loads(m.value())] if v["orderId"] in wanted]
        assert len(decided) == len(wanted)  # one verdict per order, across the changes (exactly-once)
        return {v["orderId"]: v for v in decided}

    with running(settings, tmp_path / "app.log") as pipeline:
        assert wait_for_group(settings.kafka, settings.consumer_group, timeout=60, alive=pipeline.alive)
        added = fraudrules(
            settings,
            "lists",
            "add",
            "blocked",
            str(merchant),
            "--field",
            "merchantId",
            "--action",
            "decline",
            "--reason",
            "chargebacks",
            "--ttl",
            "7d",
            "--instances",
            "1",
        )
        assert added.returncode == 0, added.stdout + added.stderr
        assert ": applied " in added.stdout
        blocked = produce_phase(phases[0], pipeline)

        removed = fraudrules(settings, "lists", "remove", "blocked", str(merchant), "--instances", "1")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        unblocked = produce_phase(phases[1], pipeline)

        defined = fraudrules(
            settings,
            "rules",
            "define",
            "any_amount",
            "--when",
            "event.payAmount >= 0",
            "--score",
            "1",
            "--reason",
            "every payment",
            "--instances",
            "1",
        )
        assert defined.returncode == 0, defined.stdout + defined.stderr
        expressed = produce_phase(phases[2], pipeline)

        broken = fraudrules(settings, "rules", "define", "broken", "--when", "event.payAmount >", "--score", "5")
        assert broken.returncode == 2
        assert "expression 'broken' does not compile: line 1, column 18" in broken.stderr
        after_broken = produce_phase(phases[3], pipeline)
        assert pipeline.alive()

        shown = fraudrules(settings, "lists", "show", "blocked")
        history = fraudrules(settings, "rules", "history")
        rules_shown = fraudrules(settings, "rules", "show", "--json")

    listed = [v for v in blocked.values() if v["order"] and v["order"]["merchantId"] == merchant]
    assert listed
    assert all(v["decision"] == "decline" for v in listed)
    assert all(v["lists"][0]["list"] == "blocked" and v["lists"][0]["reason"] == "chargebacks" for v in listed)
    assert all("lists" not in v for v in blocked.values() if v not in listed)
    assert all("lists" not in v for v in unblocked.values())
    again = [v for v in unblocked.values() if v["order"] and v["order"]["merchantId"] == merchant]
    assert any(v["decision"] == "approve" for v in again)
    hit_values = [h for v in expressed.values() for h in v["hits"] if h["rule"] == "any_amount"]
    assert len(hit_values) == len([v for v in expressed.values() if v["payment"]])
    assert all(h["reason"] == "every payment" and "event.payAmount" in h["values"] for h in hit_values)
    assert all(v["ruleset"]["rules"]["any_amount"].startswith("cel-") for v in after_broken.values())
    assert len(after_broken) == 100
    versions = [v["ruleset"]["version"] for phase in (blocked, unblocked, expressed) for v in phase.values()]
    assert versions == sorted(versions)
    [added_at] = {v["ruleset"]["lists"] for v in blocked.values()}  # the control topic's position of the change
    [removed_at] = {v["ruleset"]["lists"] for v in unblocked.values()}
    assert removed_at > added_at

    # what a restarted instance starts with: the lists and expressions as the last change left them
    restarted = RuleControl(settings, discover_configured(settings.plugins).rules(), "restarted")
    in_force = restarted.initial()
    restarted.stop()
    assert in_force.ruleset.lists.by_name["blocked"].entries == {}
    assert in_force.ruleset.lists.revision == removed_at
    assert "any_amount" in {rule.id for rule in in_force.ruleset.rules}
    assert "broken" not in {rule.id for rule in in_force.ruleset.rules}

    assert shown.returncode == 0
    assert "blocked: merchantId -> decline, 0 entries in force" in shown.stdout
    lines = history.stdout.splitlines()
    assert any(f"lists add blocked {merchant} (ttl 7d): chargebacks" in line for line in lines)
    assert any(f"lists remove blocked {merchant}" in line for line in lines)
    assert any("define any_amount" in line for line in lines)
    assert any("refused" in line and "define broken" in line for line in lines)
    assert any(r["id"] == "any_amount" for r in codec.loads(rules_shown.stdout)["rules"])
