"""Driving a real broker from outside the pipeline: what ``fraudrules demo``, ``make bench`` and the tests share.

Every function takes the broker as :class:`~fraudrules.settings.KafkaSettings` (security options included) or
as a plain bootstrap address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudrules import codec
from fraudrules.connect import client_config
from fraudrules.settings import KafkaSettings, Settings, TopicNames

Broker = KafkaSettings | str


def config(kafka: Broker, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for ``kafka``, with ``extra`` on top."""
    settings = KafkaSettings(bootstrap_servers=kafka) if isinstance(kafka, str) else kafka
    return client_config(settings, **extra)


def percentile(values: Iterable[float], share: float) -> float:
    """The value below which ``share`` (0-1) of ``values`` lie (nearest rank); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def create_topics(kafka: Broker, names: Iterable[str], partitions: int = 1) -> None:
    """Create the topics of ``names`` that do not exist yet (replication 1)."""
    admin = AdminClient(config(kafka))
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(name, partitions, 1) for name in dict.fromkeys(names) if name not in existing]
    for future in admin.create_topics(new).values() if new else []:
        future.result(30)


# --- producing ---------------------------------------------------------------------------------------------


class InputRecord(Protocol):
    """A record for the ``payment`` or ``order`` topic, as ``fraudrules.generate`` makes them."""

    @property
    def topic(self) -> str: ...
    @property
    def value(self) -> bytes: ...
    @property
    def timestamp_ms(self) -> int: ...


#: What keeps a producer's records in the order produced within each partition: without it librdkafka retries a
#: failed batch behind the ones sent after it (a topic created a moment before answers its first batches with
#: "unknown partition"), and a partition of a test's backlog then held minutes of event time out of order, which
#: the pipeline rightly decides as late input, not as the backtest of the same records in order.
IN_ORDER = {"enable.idempotence": True}


def produce_one(producer: Producer, topic: str, value: bytes | None, **options: Any) -> None:
    """``producer.produce``, waiting for room when the client's queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, **options)
            return
        except BufferError:
            producer.poll(0.05)


@dataclass
class Produced:
    """What :func:`produce_paced` handed to Kafka."""

    records: int = 0
    #: The highest record timestamp (where traffic that follows should start).
    last_timestamp_ms: int = 0
    #: Per orderId, when its latest record was handed to the client (``time.monotonic()``).
    sent: dict[int, float] = field(default_factory=dict)
    #: Records per orderId (2 for an order with both sides, more with repeats).
    sides: Counter[int] = field(default_factory=Counter)

    @property
    def orders(self) -> int:
        return len(self.sides)

    @property
    def joined(self) -> set[int]:
        """orderIds that got more than one record (both sides, as the generator pairs them)."""
        return {order_id for order_id, n in self.sides.items() if n >= 2}


def _order_id(value: bytes) -> int | None:
    try:
        order_id = codec.loads(value)["orderId"]
    except (ValueError, KeyError, TypeError):
        return None  # a malformed record, made on purpose
    return order_id if isinstance(order_id, int) else None


def produce_paced(
    kafka: Broker,
    topics: TopicNames,
    records: Iterable[InputRecord],
    *,
    rate: float | None = None,
    partitions: int | None = None,
    scatter: int | None = None,
    timestamps: bool = True,
    producer_config: dict[str, Any] | None = None,
    producer: Producer | None = None,
) -> Produced:
    """Produce payment and order records at ``rate`` orders/s (None: as fast as the client takes them).

    The pace is per order: the n-th new orderId is produced no earlier than n/rate seconds after the start.
    ``partitions``: put both sides of an order on partition ``orderId % partitions``; ``scatter``: put the i-th
    record of each topic on partition ``i % scatter``, as two independent round-robin producers do (an order's
    sides mostly on different partitions); ``timestamps=False``:
    let the producer stamp records with the time they are sent (live traffic); ``producer_config``: librdkafka
    settings on top of the defaults; ``producer``: one that is ready (connected, its producer id acquired), in
    place of a new one, whose start holds the first records back (``producer_config`` is then not used).
    """
    if producer is None:
        producer = Producer(config(kafka, **{"linger.ms": 5, **IN_ORDER, **(producer_config or {})}))
    produced = Produced()
    started = time.monotonic()
    written = {topics.payment: 0, topics.order: 0}
    for record in records:
        order_id = _order_id(record.value)
        if order_id is not None and order_id not in produced.sides and rate is not None:
            # pacing before a new order's first record. Sleep: poll(wait) returns at every delivery report, and
            # in a loop spins (most of a core at 1,000 orders/s, taken from the app under measurement)
            while (wait := started + (produced.orders + 1) / rate - time.monotonic()) > 0:
                producer.poll(0)
                time.sleep(wait)
        options: dict[str, Any] = {}
        if timestamps:
            options["timestamp"] = record.timestamp_ms
        topic = topics.payment if record.topic == "payment" else topics.order
        if scatter is not None:
            options["partition"] = written[topic] % scatter
        elif partitions is not None and order_id is not None:
            options["partition"] = order_id % partitions
        written[topic] += 1
        produce_one(producer, topic, record.value, **options)
        produced.records += 1
        produced.last_timestamp_ms = max(produced.last_timestamp_ms, record.timestamp_ms)
        if order_id is not None:
            produced.sides[order_id] += 1
            produced.sent[order_id] = time.monotonic()
        producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} records were not delivered to Kafka")
    return produced


# --- consumer groups and reading ----------------------------------------------------------------------------


def stable_members(kafka: Broker, group: str, admin: AdminClient | None = None) -> int | None:
    """How many members consumer group ``group`` has once it is stable (partitions assigned), else None.

    Pass ``admin`` when asking repeatedly: one client instead of one per question.
    """
    return group_members(admin or AdminClient(config(kafka)), group)[0]


def group_members(admin: AdminClient, group: str) -> tuple[int | None, bool]:
    """How many members consumer group ``group`` has once it is stable (else None), and whether any member
    holds partitions already (a first instance reads alone until the others join)."""
    [future] = admin.describe_consumer_groups([group]).values()
    try:
        info = future.result(10)
    except KafkaException:  # e.g. the coordinator is still loading on a fresh broker
        return None, False
    assigned = any(member.assignment is not None and member.assignment.topic_partitions for member in info.members)
    return (len(info.members) if info.state == ConsumerGroupState.STABLE else None), assigned


def wait_for_group(
    kafka: Broker,
    group: str,
    members: int | None = None,
    *,
    timeout: float = 90.0,
    alive: Callable[[], bool] = lambda: True,
) -> bool:
    """True once ``group`` is stable with ``members`` members (any number above 0 if None).

    False after ``timeout`` seconds, or as soon as ``alive()`` says the process behind the group has gone.
    """
    admin = AdminClient(config(kafka))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        found = stable_members(kafka, group, admin)
        if found and (members is None or found == members):
            return True
        time.sleep(0.2)
    return False


def end_offsets(kafka: Broker, topics: Iterable[str], attempts: int = 20) -> list[TopicPartition]:
    """Where each partition of ``topics`` ends now (a reader that starts there sees only what comes next).

    A topic created a moment ago may not have its partition leader yet: retried for a while.
    """
    consumer = Consumer(config(kafka, **{"group.id": f"fraudrules-offsets-{os.getpid()}"}))
    positions = []
    try:
        for name in topics:
            for partition in consumer.list_topics(name, timeout=10).topics[name].partitions:
                for attempt in range(attempts):
                    try:
                        _, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                        break
                    except KafkaException:
                        if attempt == attempts - 1:
                            raise
                        time.sleep(0.25)
                positions.append(TopicPartition(name, partition, int(high)))
    finally:
        consumer.close()
    return positions


def reader(kafka: Broker, **overrides: Any) -> Consumer:
    """A consumer of its own group that reads committed records from the start and commits nothing."""
    return Consumer(
        config(
            kafka,
            **{
                "group.id": f"fraudrules-reader-{os.getpid()}-{time.monotonic_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
                "topic.metadata.refresh.interval.ms": 1000,  # the app may create the topic after we subscribe
                **overrides,
            },
        )
    )


def whole_partition(consumer: Consumer, topic: str, partition: int) -> Iterator[Message]:
    """Every record of ``topic``'s ``partition`` through ``consumer`` (assigned to it), from the first to the
    last there is now; it stops early if nothing comes for 10 s."""
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    if high <= low:
        return
    consumer.assign([TopicPartition(topic, partition, low)])
    offset = low
    while offset < high:
        batch = consumer.consume(1000, timeout=10)
        if not batch:
            return
        for message in batch:
            if message.error() is None:
                offset = message.offset() + 1
                yield message


class TopicReader:
    """Reads topics in a thread (from the start, or from ``start`` positions) and counts what it read.

    ``on_message(message, read_at)`` is called for each record, in the reader's thread.
    """

    def __init__(
        self,
        kafka: Broker,
        topics: Iterable[str] = (),
        *,
        start: list[TopicPartition] | None = None,
        on_message: Callable[[Message, float], None] | None = None,
    ) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self._on_message = on_message
        self._stop = threading.Event()
        self._consumer = reader(kafka)
        if start is not None:
            self._consumer.assign(start)
        else:
            self._consumer.subscribe(list(topics))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = self._consumer
        while not self._stop.is_set():
            # poll returns as soon as one record is there; ``consume(n, timeout)`` would wait for n records or the
            # whole timeout (up to 100 ms more on every latency measured), so it only takes what is already in
            first = consumer.poll(0.1)
            if first is None:
                continue
            now = time.monotonic()
            messages = [m for m in [first, *consumer.consume(999, timeout=0)] if m.error() is None]
            if not messages:
                continue
            if self._on_message is not None:
                for message in messages:
                    self._on_message(message, now)
            self.first = self.first or now
            self.last = now
            self.count += len(messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def read_topic(
    kafka: Broker,
    topic: str,
    *,
    until: Callable[[list[Message]], bool],
    timeout: float = 60.0,
    settle: float = 0.0,
    check: Callable[[], None] = lambda: None,
    **consumer_config: Any,
) -> list[Message]:
    """Read ``topic`` from the start until ``until(messages)``, then ``settle`` more seconds, or ``timeout``.

    ``check()`` is called between polls: it may raise to stop early (say, the pipeline process died).
    """
    consumer = reader(kafka, **consumer_config)
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
            check()
    finally:
        consumer.close()
    return messages


def at_least(count: int, where: Callable[[Message], bool] = lambda _: True) -> Callable[[list[Message]], bool]:
    """An ``until`` for :func:`read_topic`: ``count`` messages matching ``where``, each looked at once."""
    looked = matched = 0

    def until(messages: list[Message]) -> bool:
        nonlocal looked, matched
        matched += sum(1 for message in messages[looked:] if where(message))
        looked = len(messages)
        return matched >= count

    return until


def values(messages: Iterable[Message]) -> list[Any]:
    """The JSON values of ``messages``."""
    return [codec.loads(m.value()) for m in messages]


# --- the pipeline in a child process ------------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """``FRAUDRULES_*`` variables that reproduce ``settings`` in another process (secrets included)."""
    dumped = settings.model_dump(mode="json")
    defaults = Settings.model_construct().model_dump(mode="json")
    for name, value in settings.kafka:
        if hasattr(value, "get_secret_value"):
            dumped["kafka"][name] = value.get_secret_value()
    return {
        f"FRAUDRULES_{name.upper()}": value if isinstance(value, str) else codec.dumps_str(value)
        for name, value in dumped.items()
        # a default is left unset, so that a settings file can give it (and None is not the string "null")
        if value is not None and (name == "kafka" or value != defaults.get(name))
    }


class PipelineProcess:
    """``fraudrules run`` in a child process, as a user runs it, with JSON logs on stderr into ``log``."""

    def __init__(self, settings: Settings, log: Path, config: Path | None = None, **env: str) -> None:
        """``config``: a settings file for what ``settings`` leaves at its defaults (long lists, which no
        environment variable can hold)."""
        self.settings = settings
        self.log = log
        environment = {**os.environ, **settings_env(settings), "FRAUDRULES_LOG_FORMAT": "json", **env}
        environment.pop("FRAUDRULES_CONFIG", None)  # everything is in the variables above ...
        if config is not None:
            environment["FRAUDRULES_CONFIG"] = str(config)  # ... and this file
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fraudrules", "run"],
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        """Raise :class:`RuntimeError`, with the end of the log, if the process has exited."""
        if self.process.poll() is not None:
            tail = "\n".join(self.log_lines()[-20:])
            raise RuntimeError(f"fraudrules run exited with {self.process.returncode}; log:\n{tail}")

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
def running(settings: Settings, log: Path, config: Path | None = None, **env: str) -> Iterator[PipelineProcess]:
    """The pipeline in a child process for the duration of the block, then stopped with SIGTERM.

    Raises :class:`RuntimeError` (with the end of its log) if it did not exit cleanly.
    """
    pipeline = PipelineProcess(settings, log, config, **env)
    try:
        yield pipeline
    finally:
        status = pipeline.stop()
    if status != 0:
        raise RuntimeError(f"fraudrules run exited with {status}; log:\n" + "\n".join(pipeline.log_lines()[-30:]))
