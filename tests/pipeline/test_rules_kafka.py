"""Rules on the real broker: injected anomalies hit, and verdicts do not depend on the partition count."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fraudrules.generate.data import Generator, GeneratorConfig
from tests.conftest import Broker
from tests.kafka_helpers import create_topics, read_topic, running, settings_for, values

pytestmark = pytest.mark.kafka

COUNT = 3000
# Recent event times: the broker deletes records older than its retention (7 days) by their timestamps.
START_MS = int(time.time() * 1000) - COUNT * 500 - 60_000
RATES = {
    "amount_spike": 0.01,
    "province_burst": 0.002,
    "category_shift": 0.01,
    "orphan_payment": 0.01,
    "card_testing": 0.002,
}


def generated(seed: int = 5) -> Generator:
    config = GeneratorConfig(count=COUNT, seed=seed, start_ms=START_MS, scenario_rates=RATES, quiet_tail_ms=70_000)
    return Generator(config)


def run_generated(kafka: Broker, unique: str, tmp_path: Path, partitions: int) -> tuple[dict[int, Any], Generator]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = settings_for(kafka.bootstrap, unique, tmp_path, join_window_seconds=30)
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order], partitions)
    generator = generated()
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
    for record in generator.records():
        name = topics.payment if record.topic == "payment" else topics.order
        producer.produce(name, value=record.value, timestamp=record.timestamp_ms)
        producer.poll(0)
    assert producer.flush(30) == 0

    with running(settings, tmp_path / f"app-{partitions}.log") as pipeline:
        sink = read_topic(
            kafka.bootstrap, topics.sink, until=lambda m: len(m) >= COUNT, timeout=240, settle=2, watch=pipeline
        )
    verdicts = {v["orderId"]: v for v in values(sink)}
    assert len(sink) == len(verdicts) == COUNT
    return verdicts, generator


def outcome(verdict: dict[str, Any]) -> tuple[Any, ...]:
    return (
        verdict["decision"],
        verdict["score"],
        verdict["join"]["status"],
        tuple(sorted((h["rule"], round(h["score"], 6)) for h in verdict["hits"])),
    )


def test_injected_anomalies_hit_their_rules_and_verdicts_match_across_partition_counts(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    one, generator = run_generated(kafka, f"{unique}-p1", tmp_path / "p1", partitions=1)
    four, _ = run_generated(kafka, f"{unique}-p4", tmp_path / "p4", partitions=4)

    labels: dict[str, list[int]] = {}
    for label in generator.labels:
        labels.setdefault(label.scenario, []).append(label.orderId)

    def share_hit(scenario: str, rule: str) -> float:
        ids = labels[scenario]
        return sum(any(h["rule"] == rule for h in one[i]["hits"]) for i in ids) / len(ids)

    assert share_hit("orphan_payment", "orphan_payment") == 1.0
    assert share_hit("amount_spike", "amount_spike") >= 0.6
    assert share_hit("category_shift", "merchant_category") >= 0.6
    assert share_hit("province_burst", "province_velocity") >= 0.2
    unlabelled_flags = [
        i for i, v in one.items() if v["decision"] != "approve" and i not in set().union(*labels.values())
    ]
    assert len(unlabelled_flags) <= 0.02 * COUNT

    differing = {i: (outcome(one[i]), outcome(four[i])) for i in one if outcome(one[i]) != outcome(four[i])}
    assert differing == {}
