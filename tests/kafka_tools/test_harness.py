"""The Kafka harness: pure helpers without a broker, producing and reading against the real one."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from fraudrules import codec
from fraudrules.kafka_tools.harness import (
    Produced,
    at_least,
    create_topics,
    end_offsets,
    percentile,
    produce_paced,
    read_topic,
    settings_env,
    values,
)
from fraudrules.settings import KafkaSettings, Settings, TopicNames
from tests.conftest import Broker


@dataclass(frozen=True)
class Record:
    topic: str
    value: bytes
    timestamp_ms: int


def pair(order_id: int, at_ms: int) -> list[Record]:
    common = {"orderId": order_id, "createTime": "2024-01-01 12:00:00"}
    return [
        Record("payment", codec.dumps({**common, "payAmount": 1.0, "payPlatform": 0, "provinceId": 1}), at_ms),
        Record("order", codec.dumps({**common, "category": "home", "merchantId": 1}), at_ms),
    ]


def test_percentile_is_the_nearest_rank_and_nan_for_nothing() -> None:
    assert percentile(range(1, 101), 0.5) == 51
    assert percentile([3.0, 1.0, 2.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))


def test_at_least_counts_matching_messages_once_each() -> None:
    until = at_least(2, lambda message: message == "x")
    seen: list[str] = ["x", "y"]

    assert not until(seen)
    seen.append("x")
    assert until(seen)


def test_produced_orders_with_both_sides_are_the_joined_ones() -> None:
    produced = Produced(records=3)
    produced.sides.update({1: 2, 2: 1})

    assert (produced.orders, produced.joined) == (2, {1})


def test_settings_env_rebuilds_the_same_settings_in_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers="h:1", sasl_username="u", sasl_password=SecretStr("s3cret")),
        topics=TopicNames(sink="verdicts"),
        join_window_seconds=12.5,
    )
    env = settings_env(settings)
    for name in [n for n in os.environ if n.startswith("FRAUDRULES_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert Settings() == settings


@pytest.mark.kafka
def test_paced_records_arrive_in_order_and_a_reader_from_the_end_sees_only_new_ones(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    topics = TopicNames(payment=f"payment-{unique}", order=f"order-{unique}")
    create_topics(kafka.bootstrap, [topics.payment, topics.order])
    produce_paced(kafka.bootstrap, topics, pair(1, 1_000))
    start = end_offsets(kafka.bootstrap, [topics.payment])

    began = time.monotonic()
    produced = produce_paced(kafka.bootstrap, topics, [*pair(2, 2_000), *pair(3, 3_000), *pair(4, 4_000)], rate=10)
    took = time.monotonic() - began
    payments = read_topic(kafka.bootstrap, topics.payment, until=at_least(4), timeout=30)

    assert took >= 0.3  # the 3rd new order waits until 3/10 s after the start
    assert (produced.records, produced.joined, produced.last_timestamp_ms) == (6, {2, 3, 4}, 4_000)
    assert [v["orderId"] for v in values(payments)] == [1, 2, 3, 4]
    assert [m.timestamp()[1] for m in payments] == [1_000, 2_000, 3_000, 4_000]
    assert [(tp.topic, tp.offset) for tp in start] == [(topics.payment, 1)]


def test_a_backlog_produced_into_new_topics_keeps_every_partition_in_the_order_produced(
    kafka: Broker, unique: str
) -> None:
    # Topics created a moment before: the broker answers the first batches of some partitions with "unknown
    # partition", and a producer that retried them behind later ones left minutes of a test's backlog out of
    # order (1 run in 4 before). Each partition must hold its records as produced: timestamps never go back.
    topics = TopicNames(payment=f"payment-{unique}", order=f"order-{unique}")
    create_topics(kafka.bootstrap, [topics.payment, topics.order], 4)
    records = [record for i in range(4_000) for record in pair(i, 1_000 + i * 10)]
    produce_paced(kafka.bootstrap, topics, records)

    for topic in (topics.payment, topics.order):
        read = read_topic(kafka.bootstrap, topic, until=at_least(4_000), timeout=30)
        by_partition: dict[int, list[int]] = {}
        for message in read:
            by_partition.setdefault(message.partition(), []).append(message.timestamp()[1])
        assert len(by_partition) > 1  # spread over partitions, as a keyless producer does
        assert sum(map(len, by_partition.values())) == 4_000
        assert all(stamps == sorted(stamps) for stamps in by_partition.values())
