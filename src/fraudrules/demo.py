"""The one-command demo (``make demo``): labelled data through the real pipeline, then a summary.

On a running broker (``make demo`` starts one): creates the topics, starts ``fraudrules run`` as a
child process, produces seed-format data with fraud scenarios at a steady rate, reads ``sink`` and
``deadletter`` until every order has its verdict, stops the pipeline and prints records in, verdicts
per decision, dead letters, hits per rule, precision and recall against the labels, throughput and
end-to-end latency (from producing an order's second record to reading its verdict).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudrules import codec
from fraudrules.connect import BrokerUnavailable, check_broker, client_config
from fraudrules.generate.data import SCENARIOS, Generator, GeneratorConfig
from fraudrules.settings import KafkaSettings, TopicNames


@dataclass
class Observed:
    """What the demo read back: verdicts by orderId (first one), arrival times, dead letters."""

    verdicts: dict[int, dict[str, Any]] = field(default_factory=dict)
    arrived: dict[int, float] = field(default_factory=dict)
    repeated: int = 0
    deadletters: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def create_topics(kafka: KafkaSettings, topics: TopicNames) -> None:
    admin = AdminClient(client_config(kafka))
    names = [topics.payment, topics.order, topics.sink, topics.deadletter, topics.labels]
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(name, 1, 1) for name in names if name not in existing]
    for future in admin.create_topics(new).values() if new else []:
        future.result(30)


def _high_watermark(consumer: Consumer, topic: str, partition: int, attempts: int = 20) -> int:
    """A partition's end offset; a topic created a moment ago may not have its leader yet, so retry a while."""
    for _ in range(attempts - 1):
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return int(high)
        except KafkaException:
            time.sleep(0.25)
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    return int(high)


def end_offsets(kafka: KafkaSettings, topic_names: list[str]) -> list[TopicPartition]:
    """Where each partition of ``topic_names`` ends now: this run reads only what comes after."""
    consumer = Consumer(client_config(kafka, **{"group.id": f"fraudrules-demo-offsets-{os.getpid()}"}))
    try:
        positions = []
        for name in topic_names:
            for partition in consumer.list_topics(name, timeout=10).topics[name].partitions:
                positions.append(TopicPartition(name, partition, _high_watermark(consumer, name, partition)))
        return positions
    finally:
        consumer.close()


def read_outputs(
    kafka: KafkaSettings, topics: TopicNames, start: list[TopicPartition], observed: Observed, stop: threading.Event
) -> None:
    """Collect this run's verdicts and dead letters."""
    consumer = Consumer(
        client_config(
            kafka,
            **{"group.id": f"fraudrules-demo-reader-{os.getpid()}", "isolation.level": "read_committed"},
        )
    )
    consumer.assign(start)
    try:
        while not stop.is_set():
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            now = time.monotonic()
            value = codec.loads(message.value())
            with observed.lock:
                if message.topic() == topics.deadletter:
                    observed.deadletters[value["reason"]] += 1
                elif value["orderId"] in observed.verdicts:
                    observed.repeated += 1
                else:
                    observed.verdicts[value["orderId"]] = value
                    observed.arrived[value["orderId"]] = now
    finally:
        consumer.close()


def wait_until_consuming(kafka: KafkaSettings, group: str, pipeline: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the pipeline's consumer group is stable with a member (it has its partitions)."""
    admin = AdminClient(client_config(kafka))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pipeline.poll() is None:
        [description] = admin.describe_consumer_groups([group]).values()
        try:
            group_info = description.result(10)
        except Exception:
            group_info = None
        if group_info is not None and group_info.members and group_info.state == ConsumerGroupState.STABLE:
            return True
        time.sleep(0.2)
    return False


def produce(
    kafka: KafkaSettings, topics: TopicNames, generator: Generator, rate: float
) -> tuple[dict[int, float], int]:
    """Produce at ``rate`` orders/s; returns when each order's last record was handed to the client."""
    producer = Producer(client_config(kafka, **{"linger.ms": 5, "enable.idempotence": True}))
    sent: dict[int, float] = {}
    records = 0
    started = time.monotonic()
    orders = 0
    for record in generator.records():
        topic = topics.payment if record.topic == "payment" else topics.order
        while True:
            try:
                producer.produce(topic, value=record.value, timestamp=record.timestamp_ms)
                break
            except BufferError:
                producer.poll(0.05)
        records += 1
        try:
            order_id = codec.loads(record.value)["orderId"]
        except (ValueError, KeyError, TypeError):
            continue  # a malformed record the generator added on purpose
        if order_id not in sent:
            orders += 1
            wait = started + orders / rate - time.monotonic()
            if wait > 0:
                producer.poll(wait)
        sent[order_id] = time.monotonic()
        producer.poll(0)
    for label in generator.labels:
        producer.produce(topics.labels, key=str(label.orderId), value=codec.dumps(label.as_dict()))
    producer.flush(60)
    return sent, records


def summarize(
    generator: Generator, observed: Observed, sent: dict[int, float], records: int, seconds: float
) -> list[str]:
    verdicts = observed.verdicts
    labels = {label.orderId: label.scenario for label in generator.labels}
    flagged = {oid for oid, v in verdicts.items() if v["decision"] != "approve"}
    decisions = Counter(v["decision"] for v in verdicts.values())
    rule_hits: Counter[str] = Counter()
    rule_true: Counter[str] = Counter()
    for oid, verdict in verdicts.items():
        for hit in verdict["hits"] + verdict["shadowHits"]:
            rule_hits[hit["rule"]] += 1
            rule_true[hit["rule"]] += oid in labels
    latencies = [(observed.arrived[oid] - sent[oid]) * 1000 for oid in verdicts if oid in sent]
    joined = [v for v in verdicts.values() if v["join"]["status"] == "joined"]
    joined_latencies = [(observed.arrived[v["orderId"]] - sent[v["orderId"]]) * 1000 for v in joined]
    lines = [
        f"records in:      {records} ({generator.orders} orders; duplicates and malformed records included)",
        f"verdicts:        {len(verdicts)} of {generator.orders} orders: "
        + ", ".join(f"{d} {decisions[d]}" for d in ("approve", "review", "decline"))
        + f"; repeated verdicts read: {observed.repeated}",
        f"dead-lettered:   {sum(observed.deadletters.values())} "
        + f"({', '.join(f'{k} {n}' for k, n in sorted(observed.deadletters.items())) or 'none'})",
        "hits per rule:   (precision = share of the rule's hits on labelled orders)",
    ]
    for rule, hits in sorted(rule_hits.items()):
        lines.append(f"  {rule:<20} {hits:>6} hits, precision {rule_true[rule] / hits:6.1%}")
    lines.append("scenarios:       (recall = share of labelled orders sent to review or decline)")
    for scenario in SCENARIOS:
        ids = [oid for oid, name in labels.items() if name == scenario]
        caught = sum(oid in flagged for oid in ids)
        recall = f"{caught / len(ids):6.1%}" if ids else "   n/a"
        lines.append(f"  {scenario:<20} {len(ids):>6} labelled, {caught:>6} flagged, recall {recall}")
    true_flags = len(flagged & set(labels))
    lines.append(
        f"overall:         precision {true_flags / len(flagged) if flagged else 0:.1%}, "
        f"recall {true_flags / len(labels) if labels else 0:.1%} ({len(flagged)} flagged, {len(labels)} labelled)"
    )
    lines.append(
        f"throughput:      {len(verdicts) / seconds:.0f} orders/s, {records / seconds:.0f} input records/s "
        f"over {seconds:.1f}s (offered rate bounded)"
    )
    lines.append(
        "latency:         produce -> verdict read, joined orders: "
        f"p50 {percentile(joined_latencies, 0.5):.1f} ms, p95 {percentile(joined_latencies, 0.95):.1f} ms, "
        f"p99 {percentile(joined_latencies, 0.99):.1f} ms; all (orphans wait the join window): "
        f"p99 {percentile(latencies, 0.99):.0f} ms"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudrules.demo", description=__doc__)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000.0, help="orders per second offered to the pipeline")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--join-window", type=float, default=30.0, help="join window in seconds (event time)")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    kafka = KafkaSettings(bootstrap_servers=args.bootstrap_servers)
    topics = TopicNames()
    try:
        check_broker(kafka)
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    create_topics(kafka, topics)
    start = end_offsets(kafka, [topics.sink, topics.deadletter])
    generator = Generator(
        GeneratorConfig(
            count=args.count,
            seed=args.seed,
            start_ms=int(time.time() * 1000) - args.count * 500,
            order_first_rate=0.3,
            duplicate_rate=0.002,
            malformed_rate=0.002,
            quiet_tail_ms=int(args.join_window * 1000) + 10_000,
        )
    )
    print(f"fraudrules demo: {args.count} orders (seed {args.seed}) at {args.rate:.0f}/s on {args.bootstrap_servers}")
    with tempfile.TemporaryDirectory(prefix="fraudrules-demo-") as state_dir:
        env = {
            **os.environ,
            "FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS": args.bootstrap_servers,
            "FRAUDRULES_CONSUMER_GROUP": f"fraudrules-demo-{os.getpid()}",
            "FRAUDRULES_STATE_DIR": state_dir,
            "FRAUDRULES_JOIN_WINDOW_SECONDS": str(args.join_window),
            "FRAUDRULES_LOG_FORMAT": "json",
            "FRAUDRULES_LOG_LEVEL": "WARNING",
            "FRAUDRULES_AUTO_OFFSET_RESET": "latest",  # this run's records only (it waits for the group)
        }
        log_path = Path(state_dir) / "fraudrules.log"
        with log_path.open("wb") as log:
            pipeline = subprocess.Popen([sys.executable, "-m", "fraudrules", "run"], env=env, stderr=log)
            observed = Observed()
            stop = threading.Event()
            reader = threading.Thread(target=read_outputs, args=(kafka, topics, start, observed, stop), daemon=True)
            reader.start()
            if not wait_until_consuming(kafka, env["FRAUDRULES_CONSUMER_GROUP"], pipeline, 60):
                print("error: the pipeline did not start consuming within 60s", file=sys.stderr)
                pipeline.kill()
                print(log_path.read_text()[-3000:], file=sys.stderr)
                return 1
            started = time.monotonic()
            sent, records = produce(kafka, topics, generator, args.rate)
            deadline = time.monotonic() + args.timeout
            while len(observed.verdicts) < generator.orders and time.monotonic() < deadline:
                if pipeline.poll() is not None:
                    break
                time.sleep(0.2)
            finished = max(observed.arrived.values(), default=time.monotonic())
            pipeline.send_signal(signal.SIGTERM)
            status = pipeline.wait(60)
            stop.set()
            reader.join(10)
        for line in summarize(generator, observed, sent, records, finished - started):
            print(line)
        if len(observed.verdicts) < generator.orders or status != 0:
            print(
                f"error: {generator.orders - len(observed.verdicts)} orders without a verdict; pipeline exit {status}",
                file=sys.stderr,
            )
            print(log_path.read_text()[-3000:], file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
