"""Operations on the real broker: the metrics endpoint of a running pipeline, ``fraudrules top`` on it, and
rule changes through the control topic (mid-stream, malformed, across a kill -9 under exactly-once, two
instances)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from fraudrules import codec
from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.kafka_tools.harness import InputRecord, Produced, produce_paced
from fraudrules.kafka_tools.localkafka import free_port
from fraudrules.operations.top import parse
from fraudrules.settings import KafkaSettings, Settings
from tests.conftest import Broker
from tests.kafka_helpers import (
    PipelineProcess,
    create_topics,
    produce,
    produce_keepalive,
    read_topic,
    read_verdicts,
    running,
    settings_env,
    settings_for,
    values,
    verdicts_by_order,
    wait_for_group,
)

pytestmark = pytest.mark.kafka


def records(count: int, seed: int) -> list[InputRecord]:
    start = int(time.time() * 1000) - count * 500 - 60_000
    config = GeneratorConfig(count=count, seed=seed, start_ms=start, scenario_rates={"amount_spike": 0.02})
    return list(Generator(config).records())


def scrape(port: int) -> dict[str, dict[Any, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode(), 0.0).samples


def total(samples: dict[str, dict[Any, float]], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if wanted <= set(k))


def fraudrules(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    env.pop("FRAUDRULES_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "fraudrules", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_metrics_endpoint_of_a_running_pipeline_counts_what_it_did_and_top_shows_it(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(kafka.bootstrap, unique, tmp_path, metrics_port=port)
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order])
    data = records(300, seed=11)

    with running(settings, tmp_path / "app.log") as pipeline:
        assert wait_for_group(settings.kafka, settings.consumer_group, timeout=60, alive=pipeline.alive)
        produced = produce_paced(kafka.bootstrap, topics, data, rate=300)
        produce(kafka.bootstrap, topics.payment, [b"not json", {"orderId": "x"}])
        produce_keepalive(kafka.bootstrap, topics, 1, after_ms=produced.last_timestamp_ms, pairs=20)
        read_verdicts(kafka.bootstrap, topics.sink, 300, pipeline)
        deadline = time.monotonic() + 30
        while True:  # the lag monitor measures every 5 s, after the next commit
            samples = scrape(port)
            lag = samples.get("fraudrules_consumer_lag", {})
            if (len(lag) == 2 and sum(lag.values()) == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        top = fraudrules(settings, "top", "--once", "--interval", "0.5", "--url", f"http://127.0.0.1:{port}/metrics")

    counted = total(samples, "fraudrules_verdicts_total")
    verdicts = values(read_topic(kafka.bootstrap, topics.sink, until=lambda m: len(m) >= counted, timeout=30))
    assert total(samples, "fraudrules_records_in_total", topic=topics.payment) == 300 + 2 + 20
    assert total(samples, "fraudrules_records_in_total", topic=topics.order) == 300 + 20
    assert total(samples, "fraudrules_deadletters_total", reason="not_json") == 1
    assert total(samples, "fraudrules_deadletters_total", reason="schema") == 1
    assert counted == len(verdicts) >= 300
    reviews = sum(1 for v in verdicts if v["decision"] == "review")
    assert total(samples, "fraudrules_verdicts_total", decision="review") == reviews
    spikes = sum(1 for v in verdicts for hit in v["hits"] if hit["rule"] == "amount_spike")
    assert total(samples, "fraudrules_rule_hits_total", rule="amount_spike", mode="enforce") == spikes
    assert total(samples, "fraudrules_rule_evaluation_seconds_count", rule="orphan_payment") == counted
    assert total(samples, "fraudrules_verdict_latency_seconds_count") == counted
    assert total(samples, "fraudrules_join_open_orders") == 0
    assert len(lag) == 2
    assert sum(lag.values()) == 0
    [(info, _)] = samples["fraudrules_ruleset_info"].items()
    assert dict(info)["id"] == verdicts[0]["ruleset"]["id"]
    assert all(hit["micros"] > 0 for v in verdicts for hit in v["hits"])  # item 2: each hit's time

    assert top.returncode == 0, top.stderr
    for shown in ("decisions", "approve", "review", "amount_spike", "p99", "consumer lag", topics.payment):
        assert shown in top.stdout


def control_records(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any] | None]]:
    messages = read_topic(bootstrap, topic, until=lambda _: False, timeout=3)
    out = []
    for message in messages:
        try:
            value = codec.loads(message.value()) if message.value() else None
        except ValueError:
            value = None
        out.append(((message.key() or b"").decode(errors="replace"), value))
    return out


def in_background(target: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(target(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, result


def switched_once(sink: list[Message], old: str, new: str) -> bool:
    """In the order verdicts were written (one partition), the rule set changes once, from old to new."""
    ids = [v["ruleset"]["id"] for v in values(sink) if v["orderId"] < 9_000_000_000]
    first_new = ids.index(new)
    return set(ids[:first_new]) == {old} and set(ids[first_new:]) == {new}


def test_a_rule_change_mid_stream_decides_from_the_next_orders_on_survives_kill_9_and_junk_exactly_once(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    kafka_settings = KafkaSettings(
        bootstrap_servers=kafka.bootstrap, producer_extra={"transaction.timeout.ms": "10000"}
    )
    settings = settings_for(
        kafka.bootstrap, unique, tmp_path, processing_guarantee="exactly-once", kafka=kafka_settings
    )
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order])
    data = records(600, seed=12)
    # 200 orders while the change is made, 100 once it is applied (whatever the machine's pace), 300 across a kill
    first, middle, second = data[:400], data[400:600], data[600:]
    log = tmp_path / "app.log"

    pipeline = PipelineProcess(settings, log)
    try:
        assert wait_for_group(settings.kafka, settings.consumer_group, timeout=60, alive=pipeline.alive)
        producing, produced_first = in_background(produce_paced, kafka.bootstrap, topics, first, rate=100)
        time.sleep(1.5)
        junk = [b"\xff\xfe", b"{not json", b'{"version": 50, "rules": {"nope": {}}}', b'{"version": 51, "rules": 3}']
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        for value in junk:
            producer.produce(topics.rules, key=b"ruleset", value=value)
        assert producer.flush(10) == 0
        published = time.monotonic()
        change = fraudrules(
            settings, "rules", "set", "scoring.review_at=0", "amount_spike.mode=shadow", "--instances", "1"
        )
        applied = time.monotonic()
        assert change.returncode == 0, change.stdout + change.stderr
        assert ": applied " in change.stdout
        producing.join(60)
        produced_after = produce_paced(kafka.bootstrap, topics, middle, rate=100)
        # kill -9 in the middle of the second half, then restart: the latest rule set from the topic
        producing, _ = in_background(produce_paced, kafka.bootstrap, topics, second, rate=100)
        time.sleep(1.5)
        pipeline.kill()
        pipeline = PipelineProcess(settings, log)
        producing.join(60)
        produce_keepalive(kafka.bootstrap, topics, 1, after_ms=max(r.timestamp_ms for r in data), pairs=20)
        sink = read_verdicts(kafka.bootstrap, topics.sink, 600, pipeline, settle=2)
    finally:
        assert pipeline.stop() == 0

    by_order = verdicts_by_order(sink)
    assert len(by_order) == 600
    assert all(len(repeated) == 1 for repeated in by_order.values())  # exactly once across change and kill
    verdicts = {order_id: repeated[0] for order_id, repeated in by_order.items()}
    new_version = int(change.stdout.split("published rule set version ")[1].split()[0])
    assert new_version == 51  # above every version read from the topic, junk included (50)
    new = {v["ruleset"]["id"] for v in verdicts.values() if v["ruleset"].get("version") == new_version}
    old = {v["ruleset"]["id"] for v in verdicts.values() if "version" not in v["ruleset"]}
    assert len(new) == 1
    assert len(old) == 1
    assert switched_once(sink, old.pop(), next(iter(new)))
    sent: Produced = produced_first[0]
    after = [order_id for order_id, at in [*sent.sent.items(), *produced_after.sent.items()] if at > applied]
    before = [order_id for order_id, at in sent.sent.items() if at < published]
    assert after
    assert before
    assert all(verdicts[o]["ruleset"].get("version") == new_version for o in after)
    assert all(verdicts[o]["decision"] != "approve" for o in after)  # review_at 0
    assert not any(h["rule"] == "amount_spike" for o in after for h in verdicts[o]["hits"])  # shadow now
    second_ids = {codec.loads(r.value)["orderId"] for r in second}
    assert all(verdicts[o]["ruleset"].get("version") == new_version for o in second_ids)  # after the restart too

    statuses = [value for key, value in control_records(kafka.bootstrap, topics.rules) if key.startswith("status/")]
    rejected = [s for s in statuses if s and s["status"] == "rejected"]
    assert len(rejected) == len(junk)
    assert any("no installed plugin provides: nope" in s["error"] for s in rejected)
    assert any("invalid ruleset record" in s["error"] for s in rejected)
    [accepted] = [s for s in statuses if s and s["status"] == "applied"]
    assert accepted["version"] == new_version
    lines = pipeline.log_lines()
    assert any("rule change rejected" in line for line in lines)
    assert any('"rule set from the control topic"' in line and f'"version": {new_version}' in line for line in lines)


def test_two_instances_converge_on_a_rule_change(kafka: Broker, unique: str, tmp_path: Path) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path, join_window_seconds=30)
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order, topics.sink], partitions=2)
    data = records(500, seed=13)
    # half while the change is made, half once every instance said it applied it (whatever the machine's pace)
    during, after_change = data[:500], data[500:]
    one = settings.model_copy(update={"state_dir": tmp_path / "one"})
    two = settings.model_copy(update={"state_dir": tmp_path / "two"})

    with running(one, tmp_path / "one.log") as first, running(two, tmp_path / "two.log") as second:
        assert wait_for_group(settings.kafka, settings.consumer_group, 2, timeout=90, alive=first.alive)
        producing, produced = in_background(produce_paced, kafka.bootstrap, topics, during, rate=100, partitions=2)
        time.sleep(2)
        change = fraudrules(settings, "rules", "set", "scoring.review_at=1", "--instances", "2", "--wait", "10")
        applied = time.monotonic()
        producing.join(60)
        produced_after = produce_paced(kafka.bootstrap, topics, after_change, rate=100, partitions=2)
        produce_keepalive(kafka.bootstrap, topics, 2, after_ms=max(r.timestamp_ms for r in data), pairs=20)
        sink = read_verdicts(kafka.bootstrap, topics.sink, 500, first, settle=2)
        second.check()

    assert change.returncode == 0, change.stdout + change.stderr
    answers = [line for line in change.stdout.splitlines() if ": applied " in line]
    assert len(answers) == 2  # both instances
    assert len({line.split()[-1] for line in answers}) == 1  # the same ruleset id
    by_order = verdicts_by_order(sink)
    assert len(by_order) == 500
    after = [order_id for order_id, at in [*produced[0].sent.items(), *produced_after.sent.items()] if at > applied]
    assert len(after) >= 200
    new_ids = {by_order[o][-1]["ruleset"]["id"] for o in after}
    assert new_ids == {answers[0].split()[-1]}
    partitions = {m.partition() for m in sink if codec.loads(m.value())["ruleset"]["id"] in new_ids}
    assert partitions == {0, 1}  # both instances wrote verdicts under the new rule set
