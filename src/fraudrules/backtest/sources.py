"""Where a backtest's records come from: JSON-lines files, or a time or offset range of Kafka topics.

Either way a source yields :class:`InputRecord` values (the raw bytes and where they were read); the replay
decodes them with the pipeline's own decoder. Topics are read by a consumer of a group of its own that
never commits, so a backtest leaves no trace on the cluster and never disturbs the live application.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudrules import codec
from fraudrules.connect import client_config
from fraudrules.pipeline.model import SideName
from fraudrules.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class InputRecord:
    kind: SideName
    value: bytes | None
    topic: str
    partition: int
    offset: int
    #: The Kafka timestamp (topics); None for files.
    timestamp: int | None = None
    key: bytes | None = None
    headers: Any = None


def read_files(payments: Path, orders: Path) -> Iterator[InputRecord]:
    """Every line of ``payments`` and ``orders`` (the layout ``fraudrules generate --output-dir`` writes).

    A record's place is its file's stem as the topic, partition 0 and its line number (from 0) as the
    offset, so a dead letter or a verdict's provenance names the line.
    """
    for kind, path in (("payment", payments), ("order", orders)):
        with path.open("rb") as lines:
            for number, line in enumerate(lines):
                value = line.rstrip(b"\r\n")
                if not value and not line.strip():
                    continue  # blank lines (a trailing newline) are not records
                yield InputRecord(kind, value, path.stem, 0, number)  # type: ignore[arg-type]


def read_labels(path: Path) -> dict[int, dict[str, Any]]:
    """``labels.jsonl``: orderId -> its label (``scenario``; ``fraud`` false marks a legitimate look-alike)."""
    labels: dict[int, dict[str, Any]] = {}
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                label = codec.loads(line)
                labels[int(label["orderId"])] = label
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a label ({exc})") from exc
    return labels


def read_topics(
    kafka: KafkaSettings,
    topics: dict[SideName, str],
    since_ms: int | None = None,
    until_ms: int | None = None,
    idle_seconds: float = 5.0,
) -> Iterator[InputRecord]:
    """The records of ``topics`` with Kafka timestamps in [since_ms, until_ms) (everything by default).

    Starts each partition at the first offset at or after ``since_ms`` and stops it at the end offset seen at
    the start (or at the first record past ``until_ms``), so a live topic's new records do not extend a run.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    config = {
        **client_config(kafka),
        **kafka.consumer_extra,
        "group.id": f"fraudrules-backtest-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    consumer = Consumer(config)
    try:
        kinds: dict[str, SideName] = {name: kind for kind, name in topics.items()}
        assignment: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for name in kinds:
            metadata = consumer.list_topics(name, timeout=15).topics[name]
            if metadata.error is not None:
                raise ValueError(f"cannot read topic {name}: {metadata.error}")
            for partition in sorted(metadata.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=15)
                ends[(name, partition)] = high
                start = TopicPartition(name, partition, OFFSET_BEGINNING if since_ms is None else since_ms)
                if since_ms is not None:
                    start = consumer.offsets_for_times([start], timeout=15)[0]
                    if start.offset < 0:  # nothing at or after since_ms
                        ends[(name, partition)] = -1
                if high > low and ends[(name, partition)] >= 0:
                    assignment.append(start)
        consumer.assign(assignment)
        open_partitions = {(tp.topic, tp.partition) for tp in assignment}
        last_record = time.monotonic()
        while open_partitions:
            message = consumer.poll(0.5)
            if message is None:
                if time.monotonic() - last_record > idle_seconds:
                    raise TimeoutError(f"no records for {idle_seconds}s before the end of {sorted(open_partitions)}")
                continue
            if message.error() is not None:
                continue  # partition EOF and transient errors; the end offsets decide when to stop
            last_record = time.monotonic()
            place = (message.topic(), message.partition())
            _, timestamp = message.timestamp()
            past_end = message.offset() >= ends[place] or (until_ms is not None and timestamp >= until_ms)
            if not past_end:
                yield InputRecord(
                    kinds[message.topic()],
                    message.value(),
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    timestamp,
                    message.key(),
                    message.headers(),
                )
            if past_end or message.offset() >= ends[place] - 1:
                open_partitions.discard(place)
                consumer.pause([TopicPartition(*place)])
    finally:
        consumer.close()
