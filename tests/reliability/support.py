"""Data for the reliability tests: generated traffic with recent timestamps, produced at a pace or at once."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from confluent_kafka import Message

from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.settings import TopicNames
from tests.kafka_helpers import KEEPALIVE_IDS, produce_keepalive, produce_records, values


def recent_generator(count: int, seed: int, **config: Any) -> Generator:
    """The seed's traffic with scenarios, ending a minute ago (the broker keeps 7 days by timestamp)."""
    start_ms = int(time.time() * 1000) - count * 500 - 60_000
    return Generator(GeneratorConfig(count=count, seed=seed, start_ms=start_ms, **config))


def produce_generated(
    bootstrap: str,
    topics: TopicNames,
    generator: Generator,
    partitions: int,
    rate: float | None = None,
    producer_config: dict[str, Any] | None = None,
) -> int:
    """Produce the generator's records (at ``rate`` orders/s, or at once, with ``producer_config`` on top of the
    defaults), then keep-alive traffic.

    Returns how many input records were produced, keep-alive ones included.
    """
    records = list(generator.records())
    last_ms = produce_records(bootstrap, topics, records, rate, producer_config)
    pairs = 600
    produce_keepalive(bootstrap, topics, partitions, after_ms=last_ms, pairs=pairs)
    return len(records) + 2 * pairs


def verdict_counts(messages: list[Message]) -> Counter[int]:
    """Verdicts per orderId of the test's own data (keep-alive traffic left out)."""
    return Counter(v["orderId"] for v in values(messages) if v["orderId"] < KEEPALIVE_IDS)
