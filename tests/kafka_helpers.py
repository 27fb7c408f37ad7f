"""Producing to and reading from the real test broker, and running the pipeline in a thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fraudrules import codec
from fraudrules.settings import KafkaSettings, Settings, TopicNames


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
        ),
        "state_dir": tmp_path / "state",
        "commit_interval_seconds": 0.5,
        **overrides,
    }
    return Settings(**values)


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    for future in futures.values():
        future.result(30)


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | dict[str, Any] | None],
    *,
    timestamp: int | None = None,
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 4_000_000})
    for value in values:
        raw = codec.dumps(value) if isinstance(value, dict) else value
        if timestamp is None:
            producer.produce(topic, value=raw)
        else:
            producer.produce(topic, value=raw, timestamp=timestamp)
    assert producer.flush(30) == 0


#: orderIds of keep-alive traffic start here, far from generated ones; its own merchant and province.
KEEPALIVE_IDS = 9_000_000_000


def produce_keepalive(bootstrap: str, topics: TopicNames, partitions: int, after_ms: int, pairs: int = 600) -> None:
    """Normal traffic after a finite data set, every input partition in turn, one pair a second of event time.

    Join expiry follows stream time, which only moves while records arrive on every input partition (as in
    a live system); this stands for the traffic that follows a test's data so that its one-sided orders
    expire. Its merchant and province are used by nothing else, so no rule state is shared.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
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


def produce_records(bootstrap: str, topics: TopicNames, records: Iterable[Any], rate: float | None = None) -> int:
    """Generated records (``fraudrules.generate``) to the payment/order topics, at ``rate`` orders/s or at once.

    Returns the highest timestamp produced (where keep-alive traffic should start).
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    started = time.monotonic()
    last_ms = 0
    for n, record in enumerate(records):
        name = topics.payment if record.topic == "payment" else topics.order
        producer.produce(name, value=record.value, timestamp=record.timestamp_ms)
        last_ms = max(last_ms, record.timestamp_ms)
        producer.poll(0 if rate is None else max(0.0, started + n / (2 * rate) - time.monotonic()))
    assert producer.flush(60) == 0
    return last_ms


def verdicts_by_order(messages: list[Message]) -> dict[int, list[dict[str, Any]]]:
    """A test's own verdicts (keep-alive traffic left out), each order's in the order they were read."""
    by_order: dict[int, list[dict[str, Any]]] = {}
    for verdict in values(messages):
        if verdict["orderId"] < KEEPALIVE_IDS:
            by_order.setdefault(verdict["orderId"], []).append(verdict)
    return by_order


def at_least(count: int, where: Callable[[Message], bool]) -> Callable[[list[Message]], bool]:
    """An ``until`` for :func:`read_topic`: ``count`` messages matching ``where``, each looked at once."""
    looked = matched = 0

    def until(messages: list[Message]) -> bool:
        nonlocal looked, matched
        matched += sum(1 for message in messages[looked:] if where(message))
        looked = len(messages)
        return matched >= count

    return until


def generated_key(message: Message) -> bool:
    """A verdict of a test's own data, not of :func:`produce_keepalive` traffic."""
    return int(message.key() or 0) < KEEPALIVE_IDS


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Message]], bool],
    timeout: float = 60.0,
    settle: float = 0.0,
    watch: PipelineProcess | None = None,
) -> list[Message]:
    """Read ``topic`` from the start (read_committed) until ``until(messages)``, then ``settle`` more seconds.

    With ``watch``, stop early (and fail) if that pipeline process has died.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "topic.metadata.refresh.interval.ms": 1000,  # the app may create the topic after we subscribe
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    done_at: float | None = None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
            if done_at is None and until(messages):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= settle:
                break
            if watch is not None and watch.process.poll() is not None:
                raise AssertionError("the pipeline died; log:\n" + "\n".join(watch.log_lines()[-20:]))
    finally:
        consumer.close()
    return messages


def values(messages: list[Message]) -> list[dict[str, Any]]:
    return [codec.loads(m.value()) for m in messages]


def settings_env(settings: Settings) -> dict[str, str]:
    """FRAUDRULES_* variables that reproduce ``settings`` in another process (secrets included)."""
    dumped = settings.model_dump(mode="json")
    password = settings.kafka.sasl_password
    dumped["kafka"]["sasl_password"] = password.get_secret_value() if password else None
    return {
        f"FRAUDRULES_{name.upper()}": value if isinstance(value, str) else codec.dumps_str(value)
        for name, value in dumped.items()
    }


class PipelineProcess:
    """``fraudrules run`` in a child process, as a user runs it; its stderr goes to ``log``."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        env = {**os.environ, **settings_env(settings), "FRAUDRULES_LOG_FORMAT": "json"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fraudrules", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
            stdin=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as Kubernetes stops a pod: Quix commits its checkpoint and exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """kill -9: no checkpoint, no goodbye."""
        self.process.kill()
        self.process.wait(30)

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@contextmanager
def running(settings: Settings, log: Path) -> Iterator[PipelineProcess]:
    """The pipeline running in a child process for the duration of the block, then stopped cleanly."""
    pipeline = PipelineProcess(settings, log)
    try:
        yield pipeline
    finally:
        status = pipeline.stop()
    assert status == 0, f"fraudrules run exited with {status}; log:\n" + "\n".join(pipeline.log_lines()[-30:])
