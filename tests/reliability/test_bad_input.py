"""Thousands of random and adversarial records on both inputs: every one is accounted for, nothing stalls.

Each record ends in exactly one place: the dead-letter topic (found by its source topic/partition/offset)
or a verdict's provenance. Valid-looking records get orderIds of their own, so none is a duplicate.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fraudrules import codec
from tests.conftest import Broker
from tests.fixtures import ORDER, PAYMENT
from tests.kafka_helpers import KEEPALIVE_IDS, create_topics, produce_keepalive, running, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EXAMPLES = 850  # ~22,000 records (each example sends 10-40 records, pairs two); valid pairs top up to 20,000
#: One value of every JSON type, put under the other side's schema fields (a payment's "category": 5).
EVERY_JSON_TYPE = [None, True, 5, 2.5, "x", [1, "a"], {"a": 1}]
OTHER_SIDES_FIELDS = {"payment": ["category", "merchantId"], "order": ["payAmount", "payPlatform", "provinceId"]}
ID = object()  # stands for a fresh orderId in a record template
Coordinates = tuple[str, int, int]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
not_an_id = st.text(max_size=10) | st.booleans() | st.none() | st.just(1.5) | st.lists(st.integers(), max_size=2)
impossible_dates = st.sampled_from(
    [
        "2023-02-30 10:00:00",
        "2023-13-01 00:00:00",
        "2023-01-01 24:00:00",
        "2023-01-01 10:00:60",
        "2023-1-1 1:0:0",
        "2023-01-01T10:00:00",
        "2023-01-01 10:00:00.1234567",
        "",
        "yesterday",
    ]
)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A seed record with fields dropped, replaced by anything, or added; its orderId fresh unless replaced."""
    record: dict[str, Any] = {**base, "orderId": ID}
    for field in draw(st.lists(st.sampled_from(sorted(base)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["drop", "replace"]))
        if action == "drop":
            record.pop(field)
        elif field == "orderId":
            record[field] = draw(not_an_id)
        elif field == "createTime":
            record[field] = draw(impossible_dates | json_values)
        else:
            record[field] = draw(json_values)
    record.update(draw(st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=2)))
    return record


raw_values = st.one_of(
    st.binary(max_size=200),  # random bytes
    st.binary(max_size=50).map(lambda b: b"\xff\xfe" + b),  # invalid UTF-8
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 5_000).map(lambda n: b'{"orderId": 1' + b"0" * n + b"}"),  # huge numbers
    st.sampled_from([b"NaN", b'{"payAmount": NaN}', b'{"orderId": Infinity}', b"-Infinity", b"1e999"]),
    st.sampled_from([b"", b"null", b"true", b"[]", b'"a string"', b"{", b"{}"]),
    st.none(),  # a tombstone
)
keys = st.none() | st.binary(max_size=64) | st.integers().map(lambda i: str(i).encode())
records = st.one_of(
    st.tuples(st.sampled_from(["payment", "order"]), keys, raw_values),
    st.tuples(st.just("payment"), keys, mutated(PAYMENT)),
    st.tuples(st.just("order"), keys, mutated(ORDER)),
    st.tuples(st.just("pair"), keys, st.none()),  # a valid payment and order of a fresh orderId
    st.tuples(st.just("repeat"), keys, st.booleans()),  # a pair, then a side again: the same, or changed
    # a pair whose payment or order carries extra fields named like the other side's typed ones
    st.tuples(
        st.sampled_from(["spoof-payment", "spoof-order"]),
        keys,
        st.dictionaries(
            st.sampled_from(sorted(OTHER_SIDES_FIELDS["payment"] + OTHER_SIDES_FIELDS["order"])),
            json_values,
            min_size=1,
        ),
    ),
)


def deeply_nested(template: dict[str, Any], order_id: int, levels: int) -> bytes:
    """A valid record with an extra field nested ``levels`` deep (orderjson cannot write it: by hand)."""
    record = json.dumps({k: order_id if v is ID else v for k, v in template.items()}).encode()
    return record[:-1] + b', "extra": ' + b'{"a": ' * levels + b"1" + b"}" * levels + b"}"


def test_every_record_is_dead_lettered_or_decided(kafka: Broker, unique: str, tmp_path: Path) -> None:
    cfg = settings_for(kafka.bootstrap, unique, tmp_path, join_window_seconds=10)
    topics = cfg.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order], partitions=2)
    names = {"payment": topics.payment, "order": topics.order}
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5, "message.max.bytes": 4_000_000})
    produced: list[Coordinates] = []
    sent: dict[Coordinates, bytes | None] = {}
    ids = itertools.count(1)

    def delivered(err: Any, message: Any) -> None:
        assert err is None, err
        coordinates = (message.topic(), message.partition(), message.offset())
        produced.append(coordinates)
        sent[coordinates] = message.value()

    def send(kind: str, key: bytes | None, value: bytes | None) -> None:
        producer.produce(names[kind], key=key, value=value, on_delivery=delivered)
        producer.poll(0)

    def serialise(template: dict[str, Any], order_id: int) -> bytes:
        record = {k: order_id if v is ID else v for k, v in template.items()}
        return json.dumps(record).encode()  # allow_nan: NaN and Infinity tokens reach the pipeline

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(records, min_size=10, max_size=40))
    def send_batch(batch: list[tuple[str, bytes | None, Any]]) -> None:
        for kind, key, value in batch:
            if kind.startswith("spoof-"):
                pair(key, kind.removeprefix("spoof-"), value)
            elif kind in ("pair", "repeat"):
                order_id = next(ids)
                send("payment", key, serialise({**PAYMENT, "orderId": ID}, order_id))
                send("order", key, serialise({**ORDER, "orderId": ID}, order_id))
                if kind == "repeat":  # a producer's retry (the same record), or a reused orderId (other content)
                    changes = {} if value else {"payAmount": 1.0}
                    send("payment", key, serialise({**PAYMENT, "orderId": ID, **changes}, order_id))
            elif isinstance(value, dict):
                send(kind, key, serialise(value, next(ids)))
            else:
                send(kind, key, value)

    def pair(key: bytes | None, side: str, extras: dict[str, Any]) -> int:
        """A valid payment and order of a fresh orderId, ``extras`` added to ``side``."""
        order_id = next(ids)
        payment, order = {**PAYMENT, "orderId": ID}, {**ORDER, "orderId": ID}
        (payment if side == "payment" else order).update(extras)
        send("payment", key, serialise(payment, order_id))
        send("order", key, serialise(order, order_id))
        return order_id

    send_batch()
    assert producer.flush(60) == 0
    while len(produced) <= 20_000:  # hypothesis drew fewer records now and then (19,956 once)
        for _ in range(100):
            pair(None, "payment", {})
        assert producer.flush(60) == 0
    # Every JSON type under every schema field of the other side, on both sides: the rules see typed fields only.
    spoofed = {
        pair(None, side, {name: value})
        for side, names in OTHER_SIDES_FIELDS.items()
        for name in names
        for value in EVERY_JSON_TYPE
    }
    # 1 MB values: a valid record padded to 1 MB, JSON over 1 MiB, not JSON; and a valid record at the limit
    send("order", None, serialise({**ORDER, "orderId": ID, "pad": "x" * 1_000_000}, next(ids)))
    send("payment", b"big", b'{"orderId": 1, "pad": "' + b"x" * 1_100_000 + b'"}')
    send("payment", None, b"x" * 1_000_000)
    send("order", None, serialise({**ORDER, "orderId": ID, "pad": "x" * (cfg.max_record_bytes - 200)}, next(ids)))
    # Poison pills that once stopped the pipeline for good: deep nesting inside valid records (beyond what
    # orjson writes, beyond what Quix Streams' per-record copy survives), a 1 MiB key on an invalid record
    # (its dead letter would carry it twice), a 1 MiB header on valid records (copied onto their verdict).
    for levels in (100, 300, 1_000):
        send("order", None, deeply_nested({**ORDER, "orderId": ID}, next(ids), levels))
        send("payment", None, deeply_nested({**PAYMENT, "orderId": ID}, next(ids), levels))
    send("payment", b"k" * 1_048_576, b"{not json")
    send("order", b"k" * 1_048_576, serialise({**ORDER, "orderId": ID}, next(ids)))
    order_id, huge = next(ids), [("x-huge", b"h" * 1_048_576), ("authorization", b"Bearer secret")]
    producer.produce(
        names["payment"], value=serialise({**PAYMENT, "orderId": ID}, order_id), headers=huge, on_delivery=delivered
    )
    producer.produce(
        names["order"], value=serialise({**ORDER, "orderId": ID}, order_id), headers=huge, on_delivery=delivered
    )
    assert producer.flush(60) == 0
    produce_keepalive(kafka.bootstrap, topics, partitions=2, after_ms=int(time.time() * 1000), pairs=120)

    expected = set(produced)
    assert len(expected) == len(produced) > 20_000
    with running(cfg, tmp_path / "app.log") as pipeline:
        dead, decided, verdicts = account(kafka.bootstrap, [topics.deadletter, topics.sink], expected, pipeline)

    assert dead & decided == set()  # never both
    missing = sorted(expected - dead - decided)
    assert missing == [], [(c, (sent[c] or b"")[:300]) for c in missing[:10]]  # never neither
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log
    stopped = codec.loads(log.strip().splitlines()[-1])
    assert stopped["records_in"] == len(produced) + 2 * 120
    assert stopped["valid"] + stopped["invalid"] == stopped["records_in"]
    assert stopped["invalid"] + stopped["refused_by_join"] == stopped["deadlettered"] == len(dead)
    assert {v["orderId"] for v in verdicts if v["orderId"] in spoofed and v["join"]["status"] == "joined"} == spoofed
    # no rule saw a spoofed field: none failed on one (a "category": 5 once stopped the app, UnstorableValue)
    errors = [e for v in verdicts for e in v["errors"] if not e["error"].startswith("slow")]  # a busy machine's
    assert errors == []
    print(f"{len(produced)} records: {len(dead)} dead-lettered, {len(decided)} in verdicts")


def account(
    bootstrap: str, topics: list[str], expected: set[Coordinates], pipeline: Any, timeout: float = 300
) -> tuple[set[Coordinates], set[Coordinates], list[dict[str, Any]]]:
    """Read dead letters and verdicts until every expected record is in one of them (or time runs out): the
    records dead-lettered, the records decided and the verdicts (keep-alive orders left out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"accounting-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 10_000_000,
            "receive.message.max.bytes": 20_000_000,
            "topic.metadata.refresh.interval.ms": 1000,  # the app may create the topic after we subscribe
        }
    )
    consumer.subscribe(topics)
    dead: set[Coordinates] = set()
    decided: set[Coordinates] = set()
    verdicts: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not expected <= dead | decided:
            assert pipeline.process.poll() is None, "the pipeline died"
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            value = codec.loads(message.value())
            if message.topic() == topics[0]:
                source = value["source"]
                dead.add((source["topic"], source["partition"], source["offset"]))
            elif value["orderId"] < KEEPALIVE_IDS:
                verdicts.append(value)
                for side in value["provenance"].values():
                    if side is not None:
                        decided.add((side["topic"], side["partition"], side["offset"]))
    finally:
        consumer.close()
    return dead, decided, verdicts
