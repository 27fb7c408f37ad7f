"""``fraudrules demo`` (``make demo``): labelled data through the real pipeline, then a summary.

On a running broker (``make demo`` starts one): creates the topics, starts ``fraudrules run`` as a
child process, produces seed-format data with fraud scenarios at a steady rate, reads ``sink`` and
``deadletter`` until every order has its verdict, stops the pipeline and prints records in, verdicts
per decision, dead letters, hits per rule, precision and recall against the labels, throughput and
end-to-end latency (from producing an order's second record to reading its verdict).
"""

from __future__ import annotations

import gc
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer

from fraudrules import codec
from fraudrules.connect import BrokerUnavailable, check_broker, client_config
from fraudrules.generate.data import SCENARIOS, Generator, GeneratorConfig
from fraudrules.kafka_tools.harness import (
    IN_ORDER,
    PipelineProcess,
    TopicReader,
    create_topics,
    end_offsets,
    percentile,
    produce_paced,
    wait_for_group,
)
from fraudrules.settings import Settings, TopicNames


@dataclass
class Observed:
    """What the demo read back: verdicts by orderId (first one), arrival times, dead letters."""

    deadletter_topic: str
    verdicts: dict[int, dict[str, Any]] = field(default_factory=dict)
    arrived: dict[int, float] = field(default_factory=dict)
    repeated: int = 0
    deadletters: Counter[str] = field(default_factory=Counter)
    #: Verdicts of warm-up orders (see :func:`warm_up`), kept out of everything else.
    warmed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message: Message, now: float) -> None:
        value = codec.loads(message.value())
        with self.lock:
            if message.topic() == self.deadletter_topic:
                self.deadletters[value["reason"]] += 1
            elif value["orderId"] >= WARM_UP_ID:
                self.warmed += 1
            elif value["orderId"] in self.verdicts:
                self.repeated += 1
            else:
                self.verdicts[value["orderId"]] = value
                self.arrived[value["orderId"]] = now


#: Traffic at the offered rate before the data, for the broker just started to warm up (see :func:`warm_up`).
WARM_UP_SECONDS = 3.0
#: orderIds of the demo's warm-up orders start here (far above the generator's); their merchant and province
#: are used by nothing else.
WARM_UP_ID = 8_000_000_000


def warm_up(
    producer: Producer,
    topics: TopicNames,
    at_ms: int,
    observed: Observed,
    alive: Callable[[], bool],
    timeout: float = 60,
    load: int = 0,
    rate: float = 1000,
) -> bool:
    """Orders before the data until one is decided, so the pipeline reads both inputs before the data is
    produced: with ``auto_offset_reset = latest`` a consumer settles its positions some time after joining its
    group, and records produced in between are skipped (a warm-up order then goes unanswered, and the next is
    sent). Then ``load`` more at ``rate`` orders/s, all decided before the data starts: the broker that
    ``make demo`` has just started compiles its hot paths in its first seconds under load, and on two shared
    cores that took the pipeline's CPU (its latency climbed for the first quarter of a run, by seconds on a
    slow machine). Stamped just before the data, so they move no stream time past it; left out of the summary.
    ``producer`` is the one that then produces the data: ready by then (connected, the topics' metadata known,
    and, idempotent, its producer id acquired), where a new one held the first orders of a run for up to ~0.6 s
    (that was the demo's p99 in half of its runs)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline and alive():
        _send_warm_up(producer, topics, WARM_UP_ID + attempt, at_ms - load)
        producer.flush(30)
        attempt += 1
        answer_by = time.monotonic() + 2
        while time.monotonic() < answer_by:
            if observed.warmed:
                break
            time.sleep(0.05)
        if observed.warmed:
            break
    if not observed.warmed:
        return False
    started = time.monotonic()
    for n in range(load):
        _send_warm_up(producer, topics, WARM_UP_ID + attempt + n, at_ms - load + n + 1)
        if n % 50 == 0:
            producer.poll(0)
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
    producer.flush(30)
    while time.monotonic() < deadline and alive() and observed.warmed < load + 1:
        time.sleep(0.05)
    return observed.warmed >= load + 1


def _send_warm_up(producer: Producer, topics: TopicNames, order_id: int, at_ms: int) -> None:
    """One warm-up order of its own merchant and province (used by nothing else), both sides at ``at_ms``."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at_ms / 1000)) + f".{at_ms % 1000:03d}"
    common = {"createTime": when, "orderId": order_id}
    payment = {**common, "payAmount": 1.0, "payPlatform": 0, "provinceId": 1_000}
    producer.produce(topics.payment, value=codec.dumps(payment), timestamp=at_ms)
    order = {**common, "category": "warm_up", "merchantId": 1_000_000}
    producer.produce(topics.order, value=codec.dumps(order), timestamp=at_ms)


def summarize(
    generator: Generator,
    observed: Observed,
    sent: dict[int, float],
    records: int,
    seconds: float,
    offered_seconds: float,
) -> list[str]:
    """The summary's lines. ``seconds``: from the first order sent to the last verdict read; ``offered_seconds``:
    to the last order sent (the rest is the wait of the last orders once the stream stops)."""
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
        f"throughput:      {len(verdicts) / offered_seconds:.0f} orders/s, {records / offered_seconds:.0f} input "
        f"records/s over the {offered_seconds:.1f}s they were sent in (offered rate bounded); the last verdict "
        f"{seconds - offered_seconds:.1f}s after the last order (a stream that stops: its last orders wait "
        "join_quiet_seconds)"
    )
    lines.append(
        "latency:         produce -> verdict read, joined orders: "
        f"p50 {percentile(joined_latencies, 0.5):.1f} ms, p95 {percentile(joined_latencies, 0.95):.1f} ms, "
        f"p99 {percentile(joined_latencies, 0.99):.1f} ms; all (orphans wait the join window): "
        f"p99 {percentile(latencies, 0.99):.0f} ms"
    )
    # in the order they were produced: a p50 that grows from quarter to quarter is a pipeline falling behind
    by_sending = [
        latency for _, latency in sorted(zip([sent[v["orderId"]] for v in joined], joined_latencies, strict=True))
    ]
    quarters = [by_sending[len(by_sending) * q // 4 : len(by_sending) * (q + 1) // 4] for q in range(4)]
    lines.append(
        "                 p50 by quarter of the run: "
        + " -> ".join(f"{percentile(quarter, 0.5):.0f}" for quarter in quarters if quarter)
        + " ms"
        + (" (flat: the pipeline keeps up)" if _flat(quarters) else " (climbing: the pipeline fell behind)")
    )
    return lines


def _flat(quarters: list[list[float]]) -> bool:
    """Whether the median latency of the last quarter is within 2x (and 100 ms) of the second's."""
    medians = [percentile(q, 0.5) for q in quarters if q]
    return len(medians) < 2 or medians[-1] <= max(2 * medians[1 if len(medians) > 2 else 0], medians[0] + 100)


def run_demo(
    settings: Settings,
    *,
    count: int,
    rate: float,
    seed: int,
    join_window: float,
    timeout: float,
    echo: Callable[[str], None] = print,
    error: Callable[[str], None] = print,
) -> int:
    """The demo on the broker of ``settings.kafka``, with ``settings.topics``; returns the exit status."""
    kafka, topics = settings.kafka, settings.topics
    try:
        check_broker(kafka)
    except BrokerUnavailable as exc:
        error(f"error: {exc}")
        return 1
    create_topics(kafka, [topics.payment, topics.order, topics.sink, topics.deadletter, topics.labels])
    start = end_offsets(kafka, [topics.sink, topics.deadletter])
    start_ms = int(time.time() * 1000) - count * 500
    generator = Generator(
        GeneratorConfig(
            count=count,
            seed=seed,
            start_ms=start_ms,
            order_first_rate=0.3,
            duplicate_rate=0.002,
            malformed_rate=0.002,
            quiet_tail_ms=int(join_window * 1000) + 10_000,
        )
    )
    echo(f"fraudrules demo: {count} orders (seed {seed}) at {rate:.0f}/s on {kafka.bootstrap_servers}")
    with tempfile.TemporaryDirectory(prefix="fraudrules-demo-") as state_dir:
        pipeline_settings = settings.model_copy(
            update={
                "consumer_group": f"fraudrules-demo-{os.getpid()}",
                "state_dir": Path(state_dir),
                "join_window_seconds": join_window,
                "log_level": "WARNING",
                "auto_offset_reset": "latest",  # this run's records only (it waits for the group)
            }
        )
        log_path = Path(state_dir) / "fraudrules.log"
        pipeline = PipelineProcess(pipeline_settings, log_path)
        observed = Observed(deadletter_topic=topics.deadletter)
        reader = TopicReader(kafka, start=start, on_message=observed.add)
        try:
            if not wait_for_group(kafka, pipeline_settings.consumer_group, timeout=60, alive=pipeline.alive):
                error("error: the pipeline did not start consuming within 60s")
                pipeline.kill()
                error(log_path.read_text()[-3000:])
                return 1
            warm = int(rate * WARM_UP_SECONDS)
            echo(f"warm-up:         {warm} orders over {WARM_UP_SECONDS:.0f}s, left out of the figures")
            producer = Producer(client_config(kafka, **IN_ORDER))
            if not warm_up(producer, topics, start_ms - 1_000, observed, pipeline.alive, load=warm, rate=rate):
                error("error: the pipeline did not decide its warm-up orders within 60s")
                pipeline.kill()
                error(log_path.read_text()[-3000:])
                return 1
            records = list(generator.records())  # generated before the clock starts: the run times the pipeline
            # and not this process: no pass of the cyclic collector over the records and the verdicts read while
            # it runs (they paused the producer's pace and the reader's clock for up to 172 ms; reference
            # counting still frees what is dropped)
            gc.disable()
            started = time.monotonic()
            produced = produce_paced(kafka, topics, records, rate=rate, producer=producer)
            labels = Producer(client_config(kafka))
            for label in generator.labels:
                labels.produce(topics.labels, key=str(label.orderId), value=codec.dumps(label.as_dict()))
            labels.flush(60)
            deadline = time.monotonic() + timeout
            while len(observed.verdicts) < generator.orders and time.monotonic() < deadline and pipeline.alive():
                time.sleep(0.2)
            finished = max(observed.arrived.values(), default=time.monotonic())
            status = pipeline.stop()
        finally:
            gc.enable()
            reader.close()
            if pipeline.alive():  # the demo itself failed: leave nothing running
                pipeline.kill()
        offered = max(produced.sent.values(), default=started) - started
        for line in summarize(generator, observed, produced.sent, produced.records, finished - started, offered):
            echo(line)
        if len(observed.verdicts) < generator.orders or status != 0:
            error(
                f"error: {generator.orders - len(observed.verdicts)} orders without a verdict; pipeline exit {status}"
            )
            error(log_path.read_text()[-3000:])
            return 1
    return 0
