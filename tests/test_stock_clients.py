"""The outputs are readable by stock clients: the seed README's own kafka-python consumer, no extras installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from kafka import KafkaConsumer
from kafka import codec as kafka_codec
from tests.conftest import Broker
from tests.fixtures import order, payment
from tests.kafka_helpers import at_least, create_topics, produce, read_topic, running, settings_for

pytestmark = pytest.mark.kafka

ORDERS = 20


def seed_readme_consumer(topic: str, bootstrap: str, count: int) -> list[dict[str, object]]:
    """The seed README's ``KafkaConsumer(topic)``, pointed at the test broker and told to read from the start."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=30_000
    )
    values = []
    try:
        for _, msg in zip(range(count), consumer, strict=False):
            values.append(json.loads(msg.value))
    finally:
        consumer.close()
    return values


def test_plain_kafka_python_reads_sink_and_deadletter(kafka: Broker, unique: str, tmp_path: Path) -> None:
    # plain `pip install kafka-python`: gzip only (lz4, snappy and zstd need extra packages)
    assert [importlib.util.find_spec(name) for name in ("lz4", "snappy", "zstandard", "cramjam")] == [None] * 4
    assert (kafka_codec.has_lz4(), kafka_codec.has_snappy(), kafka_codec.has_zstd()) == (False, False, False)
    settings = settings_for(kafka.bootstrap, unique, tmp_path)  # default output_compression
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order])
    produce(kafka.bootstrap, topics.payment, [payment(n) for n in range(1, ORDERS + 1)] + [b"{broken", b"[]"])
    produce(kafka.bootstrap, topics.order, [order(n) for n in range(1, ORDERS + 1)])

    with running(settings, tmp_path / "app.log") as pipeline:
        read_topic(kafka.bootstrap, topics.sink, until=at_least(ORDERS), timeout=90, check=pipeline.check)
        read_topic(kafka.bootstrap, topics.deadletter, until=at_least(2), timeout=30, check=pipeline.check)

    verdicts = seed_readme_consumer(topics.sink, kafka.bootstrap, ORDERS)
    assert sorted(v["orderId"] for v in verdicts) == list(range(1, ORDERS + 1))
    dead = seed_readme_consumer(topics.deadletter, kafka.bootstrap, 2)
    assert len(dead) == 2
    assert all(d["source"]["topic"] == topics.payment for d in dead)
