"""The seed generator run twice, 2.5 minutes apart, plus producer retries: every record is accounted for.

The seed's orderId is "epoch second at start + a counter", so a second run soon after the first reuses most
orderIds with other contents. None of those records may vanish: each ends in a verdict (named by its
provenance) or in the dead-letter topic with a reason (``conflicting_duplicate`` for a reused orderId,
``duplicate`` for a retry), and per input topic verdicts + dead letters = records in.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from fraudrules.generate.data import Generator, GeneratorConfig
from tests.conftest import Broker
from tests.kafka_helpers import (
    KEEPALIVE_IDS,
    produce_keepalive,
    produce_records,
    read_topic,
    running,
    settings_for,
    values,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

COUNT = 1500
START_MS = (int(time.time()) - 3 * 3600) * 1000


def seed_run(start_ms: int) -> list:
    return list(Generator(GeneratorConfig(count=COUNT, seed=start_ms, start_ms=start_ms, scenario_rates={})).records())


def test_a_second_seed_run_and_retries_are_each_dead_lettered_never_lost(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path)
    topics = settings.topics
    first, second = seed_run(START_MS), seed_run(START_MS + 150_000)
    # both runs write at the same time (the second started 150 s into the first), and 2 % of records are retried
    merged = sorted([*first, *second], key=lambda r: r.timestamp_ms)
    retried = random.Random(7).sample(range(len(merged)), len(merged) // 50)
    for index in sorted(retried, reverse=True):
        merged.insert(index + 1, merged[index])
    produced = Counter(r.topic for r in merged)

    with running(settings, tmp_path / "app.log"):
        last_ms = produce_records(kafka.bootstrap, topics, merged)
        produce_keepalive(kafka.bootstrap, topics, 1, after_ms=last_ms, pairs=120)
        letters = values(read_topic(kafka.bootstrap, topics.deadletter, until=lambda m: False, timeout=40))
        verdicts = [
            v
            for v in values(read_topic(kafka.bootstrap, topics.sink, until=lambda m: False, timeout=5))
            if v["orderId"] < KEEPALIVE_IDS
        ]

    used = Counter(
        (side, (v["provenance"][side]["partition"], v["provenance"][side]["offset"]))
        for v in verdicts
        for side in ("payment", "order")
        if v["provenance"][side] is not None
    )
    assert max(used.values()) == 1  # no record in two verdicts
    refused = Counter((d["source"]["topic"], d["source"]["offset"]) for d in letters)
    assert max(refused.values()) == 1  # no record dead-lettered twice
    in_verdicts = Counter(side for side, _ in used)
    deadlettered = Counter("payment" if d["source"]["topic"] == topics.payment else "order" for d in letters)
    assert in_verdicts + deadlettered == produced, (in_verdicts, deadlettered, produced)
    reasons = Counter(d["reason"] for d in letters)
    assert reasons["conflicting_duplicate"] >= 2 * (COUNT - 300)  # both sides of each reused orderId
    assert reasons["duplicate"] > 0
    assert set(reasons) <= {"conflicting_duplicate", "duplicate", "late"}
    conflict = next(d for d in letters if d["reason"] == "conflicting_duplicate")
    assert "payAmount" in conflict["differingFields"] or "merchantId" in conflict["differingFields"]
    # a verdict id tells every decided order apart
    assert len({v["verdictId"] for v in verdicts}) == len(verdicts)
