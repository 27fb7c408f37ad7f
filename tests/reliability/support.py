"""Data for the reliability tests: generated traffic with recent timestamps, produced at a pace or at once."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from fraudrules import codec
from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.kafka_tools.harness import reader, whole_partition
from fraudrules.pipeline.nodes.packets import packet_items
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


def trace_missing(bootstrap: str, topics: TopicNames, group: str, decided: set[int], limit: int = 5) -> str:
    """Where the records of the test's orders that got no verdict went: every record mentioning one of them on
    the inputs, the app's internal topics and the dead-letter topic (a failing test's message)."""
    names = [topics.payment, topics.order, f"fraudrules-sides--{group}"]
    names += [f"fraudrules-by-{field}--{group}" for field in ("merchantId", "provinceId")]
    names.append(topics.deadletter)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    present = admin.list_topics(timeout=10).topics
    found: dict[int, list[str]] = {}
    inputs: set[int] = set()
    consumer = reader(bootstrap)
    try:
        for name, partition in [(n, p) for n in names if n in present for p in present[n].partitions]:
            for message in whole_partition(consumer, name, partition):
                value = codec.loads(message.value() or b"null")
                internal = name.startswith("fraudrules-")  # packets; the inputs' records stand alone
                stamped = packet_items(value, message.timestamp()[1]) if internal else [[message.timestamp()[1], value]]
                for timestamp, item in stamped:
                    order_id = _order_of(item)
                    if order_id is None or order_id >= KEEPALIVE_IDS:
                        continue
                    if name in (topics.payment, topics.order):
                        inputs.add(order_id)
                    found.setdefault(order_id, []).append(
                        f"  {name}[{partition}]@{message.offset()} ts={timestamp}: {_brief(item)}"
                    )
    finally:
        consumer.close()
    missing = sorted(inputs - decided)
    lines = [f"{len(missing)} orders without a verdict: {missing[:50]}"]
    for order_id in missing[:limit]:
        lines.append(f"order {order_id}:")
        lines.extend(found.get(order_id, []))
    return "\n".join(lines)


def _order_of(value: Any) -> int | None:
    if not isinstance(value, dict):
        return None
    for holder in (value, value.get("event"), value.get("record"), value.get("original")):
        if isinstance(holder, dict) and isinstance(holder.get("orderId"), int):
            return int(holder["orderId"])
    return None


def _brief(value: dict[str, Any]) -> str:
    keep = ("side", "source", "verdictId", "decisionTimeMs", "join", "late", "reason", "results")
    return repr({k: value[k] for k in keep if k in value})
