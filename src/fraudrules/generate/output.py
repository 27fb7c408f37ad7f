"""Where generated records go: Kafka topics (paced like the seed, or as fast as possible) or JSON-lines files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from fraudrules import codec
from fraudrules.connect import BrokerUnavailable, check_broker, client_config
from fraudrules.generate.data import Generator
from fraudrules.settings import KafkaSettings, TopicNames


@dataclass(frozen=True)
class Written:
    payments: int
    orders: int
    labels: int
    seconds: float


def write_files(generator: Generator, directory: Path, progress: Callable[[int], None] = lambda _: None) -> Written:
    """payment.jsonl, order.jsonl (one record per line, in send order) and labels.jsonl."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    counts = {"payment": 0, "order": 0}
    with (directory / "payment.jsonl").open("wb") as payments, (directory / "order.jsonl").open("wb") as orders:
        files = {"payment": payments, "order": orders}
        for record in generator.records():
            files[record.topic].write(record.value + b"\n")
            counts[record.topic] += 1
            if record.topic == "payment":
                progress(1)
    with (directory / "labels.jsonl").open("wb") as labels:
        for label in generator.labels:
            labels.write(codec.dumps(label.as_dict()) + b"\n")
    return Written(counts["payment"], counts["order"], len(generator.labels), time.monotonic() - started)


def write_kafka(
    generator: Generator,
    kafka: KafkaSettings,
    topics: TopicNames,
    rate: float,
    progress: Callable[[int], None] = lambda _: None,
) -> Written:
    """Produce to ``topics.payment``/``topics.order`` (Kafka timestamp = createTime) and labels to ``topics.labels``.

    ``rate`` is pairs per second (the seed's 2.0), or 0 for as fast as possible.
    """
    errors: list[Any] = []
    producer = Producer(
        client_config(kafka, **{"linger.ms": 20, "compression.type": "lz4", "enable.idempotence": True, "acks": "all"})
    )

    def on_delivery(error: Any, _: Any) -> None:
        if error is not None:
            errors.append(error)

    started = time.monotonic()
    counts = {"payment": 0, "order": 0}
    labelled = 0
    pairs = 0
    for record in generator.records():
        name = topics.payment if record.topic == "payment" else topics.order
        _produce(producer, name, record.value, record.timestamp_ms, on_delivery)
        counts[record.topic] += 1
        if record.topic == "payment":
            pairs += 1
            progress(1)
            if rate > 0:
                wait = started + pairs / rate - time.monotonic()
                if wait > 0:
                    producer.poll(wait)
        while labelled < len(generator.labels):
            label = generator.labels[labelled]
            _produce(producer, topics.labels, codec.dumps(label.as_dict()), None, on_delivery, str(label.orderId))
            labelled += 1
        if errors:
            break
    producer.flush(60)
    if errors:
        raise BrokerUnavailable(f"Kafka refused records: {errors[0]}")
    return Written(counts["payment"], counts["order"], labelled, time.monotonic() - started)


def _produce(
    producer: Producer, topic: str, value: bytes, timestamp: int | None, on_delivery: Any, key: str | None = None
) -> None:
    while True:
        try:
            if timestamp is None:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            else:
                producer.produce(topic, value=value, key=key, timestamp=timestamp, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot produce to {topic}: {exc}") from exc


def connect(kafka: KafkaSettings) -> None:
    """Fail fast, with a readable message, when Kafka cannot be reached."""
    check_broker(kafka, timeout=15)
