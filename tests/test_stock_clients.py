"""The outputs are readable by stock clients: the seed README's own kafka-python consumer, no extras installed."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka import codec as kafka_codec

from tests.conftest import Broker
from tests.fixtures import order, payment
from tests.kafka_helpers import (
    KEEPALIVE_IDS,
    at_least,
    create_topics,
    generated_key,
    produce,
    produce_keepalive,
    read_topic,
    running,
    settings_for,
)

pytestmark = pytest.mark.kafka

ORDERS = 20


def seed_readme_consumer(topic: str, bootstrap: str) -> list[dict[str, Any]]:
    """The seed README's ``KafkaConsumer(topic)``, pointed at the test broker and told to read from the start
    (everything there is: it stops after 10 s without a new record)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10_000
    )
    try:
        return [json.loads(msg.value) for msg in consumer]
    finally:
        consumer.close()


def test_plain_kafka_python_reads_sink_and_deadletter(kafka: Broker, unique: str, tmp_path: Path) -> None:
    # plain `pip install kafka-python`: gzip only (lz4, snappy and zstd need extra packages)
    assert [importlib.util.find_spec(name) for name in ("lz4", "snappy", "zstandard", "cramjam")] == [None] * 4
    assert (kafka_codec.has_lz4(), kafka_codec.has_snappy(), kafka_codec.has_zstd()) == (False, False, False)
    settings = settings_for(kafka.bootstrap, unique, tmp_path)  # default output_compression
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order])
    now_ms = int(time.time() * 1000)
    pays = [payment(n) for n in range(1, ORDERS + 1)] + [b"{broken", b"[]"]
    produce(kafka.bootstrap, topics.payment, pays, timestamp=now_ms)
    produce(kafka.bootstrap, topics.order, [order(n) for n in range(1, ORDERS + 1)], timestamp=now_ms)
    produce_keepalive(kafka.bootstrap, topics, partitions=1, after_ms=now_ms, pairs=60)  # moves stream time on

    with running(settings, tmp_path / "app.log") as pipeline:
        read_topic(
            kafka.bootstrap, topics.sink, until=at_least(ORDERS, generated_key), timeout=90, check=pipeline.check
        )
        read_topic(kafka.bootstrap, topics.deadletter, until=at_least(2), timeout=30, check=pipeline.check)

    verdicts = seed_readme_consumer(topics.sink, kafka.bootstrap)
    assert sorted(v["orderId"] for v in verdicts if v["orderId"] < KEEPALIVE_IDS) == list(range(1, ORDERS + 1))
    dead = seed_readme_consumer(topics.deadletter, kafka.bootstrap)
    assert len(dead) == 2
    assert all(d["source"]["topic"] == topics.payment for d in dead)
