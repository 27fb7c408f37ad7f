"""The whole pipeline on the real broker: joins in any order, dead letters, orphans, exactly-once restarts."""

from __future__ import annotations

import base64
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Message

from fraudrules.validation import validator
from tests.conftest import Broker
from tests.fixtures import order, payment
from tests.kafka_helpers import create_topics, produce, read_topic, running, settings_for, values

pytestmark = pytest.mark.kafka

NOW_MS = int(time.time() * 1000)


def verdict_counts(messages: list[Message]) -> Counter[int]:
    return Counter(v["orderId"] for v in values(messages))


def test_pairs_in_either_order_give_exactly_one_valid_verdict_each(kafka: Broker, unique: str, tmp_path: Path) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path)
    topics = settings.topics
    payment_first = range(100, 120)
    order_first = range(200, 220)
    produce(kafka.bootstrap, topics.payment, [payment(i) for i in payment_first])
    produce(kafka.bootstrap, topics.order, [order(i) for i in order_first])

    with running(settings, tmp_path / "app.log"):
        time.sleep(3)  # the first sides wait in state while the app is already running
        produce(kafka.bootstrap, topics.order, [order(i) for i in payment_first])
        produce(kafka.bootstrap, topics.payment, [payment(i) for i in order_first])
        sink = read_topic(kafka.bootstrap, topics.sink, until=lambda m: len(m) >= 40, settle=2)

    assert verdict_counts(sink) == Counter({i: 1 for i in [*payment_first, *order_first]})
    for message in sink:
        verdict = values([message])[0]
        assert validator("verdict").is_valid(verdict), validator("verdict").explain(verdict)
        assert message.key() == str(verdict["orderId"]).encode()
        assert verdict["join"] == {"status": "joined"}
        assert verdict["provenance"]["payment"]["topic"] == topics.payment
        assert verdict["provenance"]["order"]["topic"] == topics.order


def test_repeated_records_still_give_one_verdict(kafka: Broker, unique: str, tmp_path: Path) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path)
    ids = range(1, 11)
    produce(kafka.bootstrap, settings.topics.payment, [payment(i) for i in ids] * 3)
    produce(kafka.bootstrap, settings.topics.order, [order(i) for i in ids] * 2)

    with running(settings, tmp_path / "app.log"):
        sink = read_topic(kafka.bootstrap, settings.topics.sink, until=lambda m: len(m) >= 10, settle=4)
        letters = values(read_topic(kafka.bootstrap, settings.topics.deadletter, until=lambda m: len(m) >= 30))

    assert verdict_counts(sink) == Counter({i: 1 for i in ids})
    # every repeat is accounted for: 20 payments and 10 orders, each naming the record it repeats
    assert Counter((d["reason"], d["source"]["topic"]) for d in letters) == {
        ("duplicate", settings.topics.payment): 20,
        ("duplicate", settings.topics.order): 10,
    }
    used = {
        (v["provenance"][side]["topic"], v["provenance"][side]["offset"])
        for v in values(sink)
        for side in ("payment", "order")
    }
    assert all((d["original"]["topic"], d["original"]["offset"]) in used for d in letters)
    assert all(validator("deadletter").is_valid(d) for d in letters)


BROKEN: dict[str, bytes | None] = {
    "not_json": b"{this is not json",
    "not_utf8": b"\xc3\x28\xff",
    "missing_field": b'{"createTime": "2023-12-08 22:19:02.808", "orderId": 5, "payPlatform": 1, "provinceId": 1}',
    "wrong_type": b'{"createTime": "2023-12-08 22:19:02.808", "orderId": "5", "payAmount": 1.0, '
    b'"payPlatform": 1, "provinceId": 1}',
    "negative_amount": b'{"createTime": "2023-12-08 22:19:02.808", "orderId": 5, "payAmount": -1, '
    b'"payPlatform": 1, "provinceId": 1}',
    "empty_value": b"",
    "null_value": None,
    "one_megabyte": b'{"pad": "' + b"x" * 1_000_000 + b'"}',
    "impossible_date": b'{"createTime": "2023-02-30 22:19:02", "orderId": 5, "payAmount": 1.0, '
    b'"payPlatform": 1, "provinceId": 1}',
}
EXPECTED_REASON = {
    "not_json": ("not_json", "not JSON"),
    "not_utf8": ("not_utf8", "not UTF-8"),
    "missing_field": ("schema", '"payAmount" is a required property'),
    "wrong_type": ("schema", "$.orderId"),
    "negative_amount": ("schema", "$.payAmount"),
    "empty_value": ("not_json", "empty"),
    "null_value": ("null_value", "no value"),
    "one_megabyte": ("too_large", "above the 65536 limit"),
    "impossible_date": ("schema", "$.createTime"),
}


def test_broken_records_are_dead_lettered_with_reasons_while_valid_ones_flow(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path)
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order])
    names = list(BROKEN)
    # valid pairs before, between and after the broken records
    produce(kafka.bootstrap, topics.payment, [payment(1)])
    produce(kafka.bootstrap, topics.payment, [BROKEN[name] for name in names])
    produce(kafka.bootstrap, topics.payment, [payment(2)])
    produce(kafka.bootstrap, topics.order, [order(1), b"[1, 2, 3]", order(2)])

    with running(settings, tmp_path / "app.log"):
        sink = read_topic(kafka.bootstrap, topics.sink, until=lambda m: len(m) >= 2)
        dead = read_topic(kafka.bootstrap, topics.deadletter, until=lambda m: len(m) >= len(names) + 1, settle=1)

    assert verdict_counts(sink) == Counter({1: 1, 2: 1})
    letters = values(dead)
    assert all(validator("deadletter").is_valid(letter) for letter in letters)
    from_payment = sorted(
        (letter for letter in letters if letter["source"]["topic"] == topics.payment),
        key=lambda letter: letter["source"]["offset"],
    )
    assert [letter["source"]["offset"] for letter in from_payment] == list(range(1, len(names) + 1))
    for name, letter in zip(names, from_payment, strict=True):
        reason, text = EXPECTED_REASON[name]
        assert letter["reason"] == reason, name
        assert text in letter["error"], (name, letter["error"])
        raw = BROKEN[name]
        assert letter["rawSize"] == (0 if raw is None else len(raw))
        if raw is not None and not letter["rawTruncated"]:
            assert base64.b64decode(letter["raw"]) == raw
    [from_order] = [letter for letter in letters if letter["source"]["topic"] == topics.order]
    assert (from_order["reason"], from_order["source"]["offset"]) == ("not_object", 1)


def test_payment_without_order_gets_a_missing_order_verdict_after_the_window(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path, join_window_seconds=5)
    topics = settings.topics
    produce(kafka.bootstrap, topics.payment, [payment(1)], timestamp=NOW_MS)
    produce(kafka.bootstrap, topics.order, [order(2)], timestamp=NOW_MS + 1_000)
    # later traffic moves stream time past the window
    produce(kafka.bootstrap, topics.payment, [payment(3)], timestamp=NOW_MS + 7_000)
    produce(kafka.bootstrap, topics.order, [order(3)], timestamp=NOW_MS + 7_000)

    with running(settings, tmp_path / "app.log"):
        sink = read_topic(kafka.bootstrap, topics.sink, until=lambda m: len(m) >= 3, settle=2)

    by_id = {v["orderId"]: v for v in values(sink)}
    assert sorted(by_id) == [1, 2, 3]
    assert by_id[1]["join"]["status"] == "payment_only"
    assert by_id[1]["order"] is None
    assert [hit["rule"] for hit in by_id[1]["hits"]] == ["orphan_payment"]
    assert by_id[2]["join"]["status"] == "order_only"
    assert by_id[3]["join"]["status"] == "joined"


def test_exactly_once_restart_mid_stream_gives_every_order_one_verdict(
    kafka: Broker, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path, processing_guarantee="exactly-once")
    topics = settings.topics
    ids = list(range(1, 1501))
    produce(kafka.bootstrap, topics.payment, [payment(i) for i in ids])

    with running(settings, tmp_path / "first.log"):
        produce(kafka.bootstrap, topics.order, [order(i) for i in ids[:750]])
        read_topic(kafka.bootstrap, topics.sink, until=lambda m: len(m) >= 200, timeout=60)
    produce(kafka.bootstrap, topics.order, [order(i) for i in ids[750:]])
    with running(settings, tmp_path / "second.log"):
        sink = read_topic(kafka.bootstrap, topics.sink, until=lambda m: len(m) >= len(ids), timeout=90, settle=3)

    assert verdict_counts(sink) == Counter({i: 1 for i in ids})
