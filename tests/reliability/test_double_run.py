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
from fraudrules.kafka_tools.harness import at_least, create_topics, produce_paced
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


CLOSE = 400  # orders a run in the close-together case


@pytest.mark.parametrize("layout", ["keyed", "scattered"])
def test_two_uses_of_an_order_id_close_together_on_three_partitions_each_get_a_verdict(
    kafka: Broker, unique: str, tmp_path: Path, layout: str
) -> None:
    """Two seed runs a second apart, every payment written before any order: each reused orderId's second
    payment arrives while its first order is still open, waits behind it, and starts its own order once that one
    joins. Three partitions, each order's sides on one (``keyed``) or put round-robin by two independent
    producers (``scattered``). Every valid record is in exactly one verdict, no dead letter; keyed, each orderId's
    two uses pair in their partition's order, and the backtest of the topics decides every order alike."""
    settings = settings_for(kafka.bootstrap, unique, tmp_path)
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order], partitions=3)
    runs = [
        [*Generator(GeneratorConfig(profile="seed", count=CLOSE, seed=s, start_ms=s)).records()]
        for s in (START_MS, START_MS + 1_000)
    ]
    merged = sorted([*runs[0], *runs[1]], key=lambda r: (r.topic != "payment", r.timestamp_ms))
    placement: dict[str, Any] = {"partitions": 3} if layout == "keyed" else {"scatter": 3}

    with running(settings, tmp_path / "app.log") as pipeline:
        produce_paced(kafka.bootstrap, topics, merged, **placement)
        verdicts = values(read_topic(kafka.bootstrap, topics.sink, until=at_least(2 * CLOSE), check=pipeline.check))
        letters = values(read_topic(kafka.bootstrap, topics.deadletter, until=lambda m: False, timeout=3))

    assert letters == []
    assert len(verdicts) == 2 * CLOSE
    assert {v["join"]["status"] for v in verdicts} == {"joined"}
    used = Counter(
        (side, v["provenance"][side]["partition"], v["provenance"][side]["offset"])
        for v in verdicts
        for side in ("payment", "order")
    )
    assert len(used) == 4 * CLOSE  # every record in one verdict
    marked = [v for v in verdicts if "reusedOrderId" in v]
    assert len(marked) == CLOSE - 1  # the second run's ids are the first's + 1 (a second later)
    if layout == "scattered":
        return  # which use of an orderId a side joins is the order the join reads them in
    assert all(v["payment"]["createTime"] == v["order"]["createTime"] for v in verdicts)
    records = backtest.read_topics(settings.kafka, {"payment": topics.payment, "order": topics.order})
    replayed = backtest.run_records(records, settings=settings, partitions={"payment": 3, "order": 3})
    assert replayed.deadletters == []

    def judged(verdict: Mapping[str, Any]) -> tuple[Any, ...]:
        return verdict["decision"], verdict["score"], verdict["join"], verdict.get("reusedOrderId")

    assert {v["verdictId"]: judged(v) for v in replayed.verdicts} == {v["verdictId"]: judged(v) for v in verdicts}
