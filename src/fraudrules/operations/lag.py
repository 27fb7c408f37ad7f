"""Consumer lag of the pipeline's consumer group on its input topics, measured from outside the pipeline.

A background thread asks the broker every few seconds for the group's committed offsets and the partitions'
end offsets (a consumer that never joins the group: it only reads offsets). This is what an operator's
tooling (``kafka-consumer-groups --describe``) reports, it covers every partition of the group whichever
instance owns it, and it works the same under at-least-once and exactly-once (where offsets are committed
in the transaction). librdkafka's own statistics (``statistics.interval.ms``) were the alternative: they
report only this instance's assigned partitions, from the fetch position rather than the commit, cost a
large JSON document per interval on the processing thread's client, and Quix Streams owns that client.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from fraudrules.connect import client_config
from fraudrules.settings import KafkaSettings

log = structlog.get_logger(__name__)


class LagMonitor:
    """``lags``: (topic, partition) -> records not yet committed by ``group``; refreshed every ``interval``."""

    def __init__(self, kafka: KafkaSettings, group: str, topics: Iterable[str], interval: float = 5.0) -> None:
        self.group = group
        self.topics = list(topics)
        self.interval = interval
        self.lags: dict[tuple[str, int], int] = {}
        self._kafka = kafka
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fraudrules-lag", daemon=True)

    def start(self) -> LagMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)

    def _run(self) -> None:
        consumer = Consumer(
            client_config(
                self._kafka,
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "client.id": f"fraudrules-lag-{os.getpid()}",
                },
            )
        )
        try:
            while not self._stop.is_set():
                try:
                    self.lags = measure(consumer, self.topics)
                except KafkaException as exc:  # the broker away for a while: keep the last figures
                    log.debug("consumer lag not measured", error=str(exc))
                self._stop.wait(self.interval)
        finally:
            consumer.close()


def measure(consumer: Consumer, topics: list[str], timeout: float = 5.0) -> dict[tuple[str, int], int]:
    """Per partition of ``topics``: end offset minus the group's committed offset (all of it if none)."""
    partitions: list[TopicPartition] = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            continue
        partitions.extend(TopicPartition(topic, p) for p in sorted(metadata.partitions))
    lags: dict[tuple[str, int], int] = {}
    for committed in consumer.committed(partitions, timeout=timeout) if partitions else []:
        low, high = consumer.get_watermark_offsets(committed, timeout=timeout, cached=False)
        position = committed.offset if committed.offset >= 0 else low
        lags[(committed.topic, committed.partition)] = max(0, high - position)
    return lags
