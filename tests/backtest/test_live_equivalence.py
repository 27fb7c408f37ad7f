"""The backtest runs the pipeline's own code: on the same traffic it decides every order as the live app did."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from fraudrules import backtest
from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.generate.output import write_files
from fraudrules.settings import ExpressionSettings, ListSettings
from tests.conftest import Broker
from tests.kafka_helpers import (
    KEEPALIVE_IDS,
    produce_keepalive,
    produce_records,
    read_topic,
    read_verdicts,
    running,
    settings_for,
    values,
    verdicts_by_order,
    wait_for_group,
)

pytestmark = pytest.mark.kafka

COUNT = 3000
RATE = 400
START_MS = int(time.time() * 1000) - COUNT * 500 - 120_000


def config() -> GeneratorConfig:
    # Duplicates, broken records and orders sent before their payments: every path of the join and the decoder.
    return GeneratorConfig(
        count=COUNT,
        seed=23,
        start_ms=START_MS,
        order_first_rate=0.2,
        duplicate_rate=0.01,
        malformed_rate=0.005,
        scenario_rates={
            "amount_spike": 0.01,
            "province_burst": 0.002,
            "category_shift": 0.01,
            "orphan_payment": 0.01,
            "card_testing": 0.002,
        },
    )


#: Lists and expression rules decide in the backtest as live (what an analyst tries before applying).
LISTS = {
    "blocked": ListSettings(field="merchantId", action="decline", values=[3, 17], reason="chargebacks"),
    "trusted": ListSettings(field="merchantId", action="approve", values=["5"]),
    "watched": ListSettings(field="provinceId", action="review", values=[2]),
}
EXPRESSIONS = {
    "big_on_platform_1": ExpressionSettings(
        when="event.payAmount > 80000.0 && event.payPlatform == 1", score=30, reason="big payment, platform 1"
    ),
    "trusted_but_big": ExpressionSettings(
        when="event.merchantId in lists.trusted && event.payAmount > 10000", score=10, mode="shadow"
    ),
}


def test_backtest_of_files_and_of_topics_decides_every_order_as_the_live_pipeline(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(
        kafka.bootstrap, unique, tmp_path, join_window_seconds=30, lists=LISTS, expressions=EXPRESSIONS
    )
    topics = settings.topics
    write_files(Generator(config()), tmp_path / "data")
    generator = Generator(config())

    with running(settings, tmp_path / "app.log") as pipeline:
        assert wait_for_group(settings.kafka, settings.consumer_group, timeout=60, alive=pipeline.alive)
        last_ms = produce_records(kafka.bootstrap, topics, generator.records(), RATE)
        produce_keepalive(kafka.bootstrap, topics, 1, after_ms=last_ms)
        sink = read_verdicts(kafka.bootstrap, topics.sink, COUNT, pipeline, settle=3)
        letters = values(read_topic(kafka.bootstrap, topics.deadletter, until=lambda m: False, timeout=3))

    live = {order_id: verdicts[0] for order_id, verdicts in verdicts_by_order(sink).items()}
    assert all(len(verdicts) == 1 for verdicts in verdicts_by_order(sink).values())
    assert len(live) == COUNT

    data = tmp_path / "data"
    from_files = backtest.run(data / "payment.jsonl", data / "order.jsonl", data / "labels.jsonl", settings=settings)
    records = backtest.read_topics(settings.kafka, {"payment": topics.payment, "order": topics.order})
    from_topics = backtest.run_records(records, settings=settings, partitions={"payment": 1, "order": 1})

    for result in (from_files, from_topics):
        replayed = {v["orderId"]: v for v in result.verdicts if v["orderId"] < KEEPALIVE_IDS}
        assert replayed.keys() == live.keys()
        differ = {
            i: (live[i]["decision"], replayed[i]["decision"])
            for i in live
            if live[i]["decision"] != replayed[i]["decision"]
        }
        # No tolerance: the same steps see the same records in the same order.
        assert differ == {}
        assert all(
            (live[i]["score"], [h["rule"] for h in live[i]["hits"]], live[i]["join"], live[i].get("lists"))
            == (
                replayed[i]["score"],
                [h["rule"] for h in replayed[i]["hits"]],
                replayed[i]["join"],
                replayed[i].get("lists"),
            )
            and [h["rule"] for h in live[i]["shadowHits"]] == [h["rule"] for h in replayed[i]["shadowHits"]]
            for i in live
        )
        assert Counter(d["reason"] for d in result.deadletters) == Counter(d["reason"] for d in letters)
    listed = Counter(hit["list"] for v in live.values() for hit in v.get("lists", []))
    assert set(listed) == set(LISTS)
    expressed = Counter(h["rule"] for v in live.values() for h in [*v["hits"], *v["shadowHits"]])
    assert expressed["big_on_platform_1"] > 0
    assert expressed["trusted_but_big"] > 0
    # the figures of a labelled run: some of every decision the data calls for, and labelled scenarios judged
    summary = from_files.summary
    assert summary["orders"] == COUNT
    assert summary["scenarios"]["orphan_payment"]["recall"] == 1.0
    assert summary["deadlettered"]["duplicate"] > 0
    # the verdicts of a topic backtest name the live records they came from
    some = next(v for v in from_topics.verdicts if v["orderId"] in live)
    assert some["verdictId"] == live[some["orderId"]]["verdictId"]
