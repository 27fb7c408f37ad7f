"""What the Kafka tests share on top of :mod:`fraudrules.kafka_tools.harness`: per-test settings, keep-alive
traffic, the producing and reading shortcuts the tests use, verdicts grouped by order."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer

from fraudrules import codec
from fraudrules.kafka_tools.harness import (
    IN_ORDER,
    InputRecord,
    PipelineProcess,
    at_least,
    create_topics,
    produce_paced,
    read_topic,
    running,
    settings_env,
    values,
    wait_for_group,
)
from fraudrules.settings import KafkaSettings, Settings, TopicNames

__all__ = [
    "KEEPALIVE_IDS",
    "PipelineProcess",
    "at_least",
    "create_topics",
    "generated_key",
    "produce",
    "produce_keepalive",
    "produce_records",
    "read_topic",
    "read_verdicts",
    "running",
    "settings_env",
    "settings_for",
    "values",
    "verdicts_by_order",
    "wait_for_group",
]


def settings_for(bootstrap: str, unique: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with this test's own topics, consumer group and state directory."""
    values: dict[str, Any] = {
        "kafka": KafkaSettings(bootstrap_servers=bootstrap),
        "consumer_group": f"fraudrules-{unique}",
        "topics": TopicNames(
            payment=f"payment-{unique}",
            order=f"order-{unique}",
            sink=f"sink-{unique}",
            deadletter=f"deadletter-{unique}",
            labels=f"labels-{unique}",
            rules=f"rules-{unique}",
        ),
        "state_dir": tmp_path / "state",
        "commit_interval_seconds": 0.5,
        **overrides,
    }
    return Settings(**values)


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | dict[str, Any] | None],
    *,
    timestamp: int | None = None,
) -> None:
    """Hand-made records (dicts as JSON, bytes as they are) to ``topic``, all delivered before returning."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 4_000_000})
    options = {} if timestamp is None else {"timestamp": timestamp}
    for value in values:
        producer.produce(topic, value=codec.dumps(value) if isinstance(value, dict) else value, **options)
    assert producer.flush(30) == 0


#: orderIds of keep-alive traffic start here, far from generated ones; its own merchant and province.
KEEPALIVE_IDS = 9_000_000_000


def produce_keepalive(bootstrap: str, topics: TopicNames, partitions: int, after_ms: int, pairs: int = 600) -> None:
    """Normal traffic after a finite data set, every input partition in turn, one pair a second of event time.

    Join expiry follows stream time, which only moves while records arrive on every input partition (as in
    a live system); this stands for the traffic that follows a test's data so that its one-sided orders
    expire. Its merchant and province are used by nothing else, so no rule state is shared.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **IN_ORDER})
    for i in range(pairs):
        at = after_ms + (i + 1) * 1_000
        common = {
            "orderId": KEEPALIVE_IDS + i,
            "createTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at / 1000)),
        }
        pay = {**common, "payAmount": 10.0, "payPlatform": 0, "provinceId": 1_000}
        order = {**common, "category": "keepalive", "merchantId": 1_000_000}
        producer.produce(topics.payment, value=codec.dumps(pay), timestamp=at, partition=i % partitions)
        producer.produce(topics.order, value=codec.dumps(order), timestamp=at, partition=(i + 1) % partitions)
        producer.poll(0)
    assert producer.flush(30) == 0


def produce_records(
    bootstrap: str,
    topics: TopicNames,
    records: Iterable[InputRecord],
    rate: float | None = None,
    producer_config: dict[str, Any] | None = None,
) -> int:
    """Generated records to the payment/order topics, at ``rate`` orders/s or at once (``producer_config``: librdkafka
    settings on top of the defaults).

    Returns the highest timestamp produced (where keep-alive traffic should start).
    """
    return produce_paced(bootstrap, topics, records, rate=rate, producer_config=producer_config).last_timestamp_ms


def verdicts_by_order(messages: list[Message]) -> dict[int, list[dict[str, Any]]]:
    """A test's own verdicts (keep-alive traffic left out), each order's in the order they were read."""
    by_order: dict[int, list[dict[str, Any]]] = {}
    for verdict in values(messages):
        if verdict["orderId"] < KEEPALIVE_IDS:
            by_order.setdefault(verdict["orderId"], []).append(verdict)
    return by_order


def generated_key(message: Message) -> bool:
    """A verdict of a test's own data, not of :func:`produce_keepalive` traffic."""
    return int(message.key() or 0) < KEEPALIVE_IDS


def read_verdicts(
    bootstrap: str, sink: str, count: int, pipeline: PipelineProcess, *, timeout: float = 240, settle: float = 0
) -> list[Message]:
    """``sink`` until ``count`` verdicts of the test's own data were read (keep-alive ones aside), then ``settle``
    seconds more; fails at once if ``pipeline`` dies."""
    until = at_least(count, generated_key)
    return read_topic(bootstrap, sink, until=until, timeout=timeout, settle=settle, check=pipeline.check)
