"""The seed generator run twice, 2.5 minutes apart, plus producer retries: every valid record is in one verdict.

The seed's orderId is "epoch second at start + a counter", so a second run soon after the first reuses most
orderIds with other contents, 75 s of event time after the first run used them (an order every 0.5 s). Each
reused orderId is a new order, joined with its own other side, with a verdict of its own (its own verdictId)
marked ``reusedOrderId``; only the retries are dead letters (``duplicate``), and per input topic records in
verdicts + dead letters = records in.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fraudrules import backtest
from fraudrules.generate.data import Generator, GeneratorConfig, Produced
from fraudrules.validation import validator
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
APART_S = 150
REUSED = COUNT - APART_S  # orderId = start second + n: the second run's first id is the first run's + APART_S


def seed_run(start_ms: int) -> list[Produced]:
    config = GeneratorConfig(profile="seed", count=COUNT, seed=start_ms, start_ms=start_ms)
    return list(Generator(config).records())


def test_a_second_seed_run_gets_verdicts_of_its_own_and_only_retries_are_dead_lettered(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path)
    topics = settings.topics
    first, second = seed_run(START_MS), seed_run(START_MS + APART_S * 1000)
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

    # every valid record is in exactly one verdict: the dead letters are the retries, and nothing else
    assert Counter(d["reason"] for d in letters) == {"duplicate": len(retried)}
    assert len(verdicts) == 2 * COUNT
    assert {v["join"]["status"] for v in verdicts} == {"joined"}
    assert len({v["verdictId"] for v in verdicts}) == len(verdicts)  # a verdictId tells every order apart

    # the second run's orders under reused ids are marked, and name the first run's order they reused
    by_id = {v["verdictId"]: v for v in verdicts}
    marked = [v for v in verdicts if "reusedOrderId" in v]
    assert len(marked) == REUSED
    assert all(validator("verdict").is_valid(v) for v in marked)
    assert len({v["orderId"] for v in marked}) == REUSED
    for verdict in marked:
        reused = verdict["reusedOrderId"]
        previous = by_id[reused["previousVerdictId"]]
        assert previous["orderId"] == verdict["orderId"]
        assert "reusedOrderId" not in previous
        assert previous["eventTime"] < verdict["eventTime"]
        assert "createTime" in reused["differingFields"]
        assert "reused_order_id" in {hit["rule"] for hit in verdict["hits"]}
    unmarked = [v for v in verdicts if "reusedOrderId" not in v]
    assert not any("reused_order_id" in {hit["rule"] for hit in v["hits"]} for v in unmarked)
    # the signal alone does not send an order to review
    alone = [v for v in marked if [hit["rule"] for hit in v["hits"]] == ["reused_order_id"]]
    assert alone
    assert {v["decision"] for v in alone} == {"approve"}

    # the backtest of the same topics decides every order as the live pipeline did, reused orderIds alike
    records = backtest.read_topics(settings.kafka, {"payment": topics.payment, "order": topics.order})
    replayed = backtest.run_records(records, settings=settings, partitions={"payment": 1, "order": 1})

    def judged(verdict: Mapping[str, Any]) -> tuple[Any, ...]:
        hits = [hit["rule"] for hit in verdict["hits"]]
        return verdict["decision"], verdict["score"], hits, verdict["join"], verdict.get("reusedOrderId")

    offline = {v["verdictId"]: judged(v) for v in replayed.verdicts if v["orderId"] < KEEPALIVE_IDS}
    assert offline == {v["verdictId"]: judged(v) for v in verdicts}
    assert Counter(d["reason"] for d in replayed.deadletters) == {"duplicate": len(retried)}
