"""kill -9 mid-stream and restart, several times: no order is missing; under exactly-once none is doubled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

from fraudrules.kafka_tools.harness import TopicReader, end_offsets
from fraudrules.settings import Settings
from tests.conftest import Broker
from tests.kafka_helpers import (
    PipelineProcess,
    create_topics,
    generated_key,
    read_topic,
    settings_for,
    verdicts_by_order,
)
from tests.reliability.support import produce_generated, recent_generator, trace_missing

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

COUNT = 12_000
KILLS = 3
#: The issue's target: from the restarted process's start to its first verdict a reader can see. Measured here:
#: ~2.7 s at-least-once; ~4.5-5.2 s exactly-once, of which fixed costs: ~1.3 s Python start and imports, ~0.5-1 s
#: librdkafka's InitProducerId (retried every 500 ms while the broker aborts the killed one's transaction), ~1-1.5 s
#: Quix Streams' changelog recovery check (a hard-coded 1 s poll), then a commit interval before it is visible.
#: Restart to first verdict is printed (README: 2-5 s). The test guards against the failure it fixed — a restarted
#: instance waiting out the killed member's 45 s session — with room for a loaded CI machine; timings belong in
#: the report, not in a tight assertion.
RESTART_CEILING_S = 15.0
#: Orders a second, as live traffic: each restart has records to decide (a backlog could be finished before a kill).
RATE = 400


def distinct_orders(count: int) -> Callable[[list[Message]], bool]:
    """An ``until``: verdicts for ``count`` different orders (repeats after a restart do not count)."""
    seen: set[bytes | None] = set()
    looked = 0

    def until(messages: list[Message]) -> bool:
        nonlocal looked
        seen.update(m.key() for m in messages[looked:] if generated_key(m))
        looked = len(messages)
        return len(seen) >= count

    return until


def restart(kafka: Broker, settings: Settings, log: Path) -> tuple[PipelineProcess, float]:
    """Start the pipeline again; seconds from its start until a read_committed reader sees a verdict it made."""
    seen = TopicReader(kafka.bootstrap, start=end_offsets(kafka.bootstrap, [settings.topics.sink]))
    try:
        started = time.monotonic()
        pipeline = PipelineProcess(settings, log)
        while seen.first is None and time.monotonic() - started < 120:
            pipeline.check()
            time.sleep(0.02)
    finally:
        seen.close()
    if seen.first is None:
        pipeline.kill()
        raise AssertionError("no verdict within 120 s of the restart; log:\n" + "\n".join(pipeline.log_lines()[-20:]))
    return pipeline, seen.first - started


def content(verdict: dict[str, Any]) -> tuple[Any, ...]:
    """What a verdict says, leaving out when it was made (decidedAt, latencyMs, each hit's micros)."""
    hits = [{k: v for k, v in hit.items() if k != "micros"} for hit in verdict["hits"]]
    return (verdict["verdictId"], verdict["decision"], verdict["score"], verdict["join"], hits, verdict["provenance"])


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
@pytest.mark.parametrize(
    "partitions",
    # 1: the chained pipeline, its state cached in memory between checkpoints; 2: through internal topics
    [1, 2],
)
def test_kill_9_mid_stream_then_restart(
    kafka: Broker, unique: str, tmp_path: Path, guarantee: str, partitions: int
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path, join_window_seconds=30, processing_guarantee=guarantee)
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order], partitions=partitions)
    producing = threading.Thread(
        target=produce_generated,
        args=(kafka.bootstrap, topics, recent_generator(COUNT, seed=31)),
        kwargs={"partitions": partitions, "rate": RATE},
    )
    producing.start()

    log = tmp_path / "app.log"
    restarts: list[float] = []
    pipeline = PipelineProcess(settings, log)
    for kill in range(1, KILLS + 1):
        try:
            # let it get a quarter further into the data, then kill it without warning
            read_topic(
                kafka.bootstrap,
                topics.sink,
                until=distinct_orders(kill * COUNT // (KILLS + 1)),
                timeout=180,
                check=pipeline.check,
            )
        finally:
            pipeline.kill()
        assert pipeline.process.returncode == -9
        pipeline, seconds = restart(kafka, settings, log)
        restarts.append(seconds)
    print(f"{guarantee}: restart to first verdict: {', '.join(f'{s:.2f}' for s in restarts)} s")

    producing.join()
    try:
        sink = read_topic(
            kafka.bootstrap, topics.sink, until=distinct_orders(COUNT), timeout=240, settle=3, check=pipeline.check
        )
    finally:
        status = pipeline.stop()
    assert status == 0, "\n".join(pipeline.log_lines()[-30:])

    by_order = verdicts_by_order(sink)
    assert len(by_order) == COUNT, trace_missing(kafka.bootstrap, topics, settings.consumer_group, set(by_order))
    repeated = {order_id: vs for order_id, vs in by_order.items() if len(vs) > 1}
    if guarantee == "exactly-once":
        assert repeated == {}
    else:
        # repeats are possible after a crash; they say the same thing, so consumers dedupe by verdictId
        differing = {order_id: vs for order_id, vs in repeated.items() if len({repr(content(v)) for v in vs}) > 1}
        assert differing == {}, "\n".join(repr(v) for vs in list(differing.values())[:3] for v in vs)
    print(f"{guarantee}: {COUNT} orders, {KILLS} kill -9, {len(repeated)} orders with a repeated verdict")
    assert max(restarts) <= RESTART_CEILING_S, restarts
