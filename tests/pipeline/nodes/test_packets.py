"""Packets to the app's own topics: per partition, in order, each item with its timestamp; when they leave."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
from quixstreams.models import SerializationContext
from quixstreams.models.serializers.json import JSONSerializer

from fraudrules import codec
from fraudrules.pipeline.nodes import packets
from fraudrules.pipeline.nodes.packets import Packer, Packets, partition_by, unpacked
from fraudrules.pipeline.nodes.routing import murmur2

PARTITIONS = 4


def side(order_id: int) -> dict[str, Any]:
    return {"side": "payment", "orderId": order_id, "record": {"orderId": order_id}, "source": {}, "traceparent": None}


def heartbeat(to: int) -> dict[str, Any]:
    return {"heartbeat": [[0, 1_000, True]], "to": to}


def order_key(value: Any) -> str:
    return str(value["orderId"])


def by_order(value: Any) -> int:
    return partition_by(order_key, PARTITIONS, str.encode)(value)


class Sent:
    """A packer whose packets are collected as they would go to the topic: (partition, [(timestamp, item)])."""

    def __init__(self) -> None:
        self.packer = Packer("sides", PARTITIONS, order_key, str.encode)
        self.node = self.packer.node()
        self.node.downstream = self.collect
        self.packets: list[tuple[int, list[tuple[int, Any]]]] = []

    def collect(self, value: Any, key: Any, timestamp: int, headers: Any) -> None:
        partition = (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS
        self.packets.append((partition, [(stamp, item) for stamp, item in codec.loads(value)]))

    def send(self, value: Any, timestamp: int) -> list[Any]:
        return cast(list[Any], self.node.func(value, "key", timestamp, []))


def test_items_wait_per_partition_in_the_order_sent_each_with_its_timestamp() -> None:
    sent = Sent()
    values = [side(n) for n in range(40)] + [heartbeat(2)]

    emitted = [e for n, value in enumerate(values) for e in sent.send(value, 1_000 + n)]
    assert emitted == []  # nothing leaves before a flush
    assert all(sent.packer.holds(p) for p in range(PARTITIONS))
    sent.packer.flush()

    assert not any(sent.packer.holds(p) for p in range(PARTITIONS))
    assert sorted(p for p, _ in sent.packets) == list(range(PARTITIONS))  # one packet per partition
    for partition, items in sent.packets:
        expected = [(1_000 + n, v) for n, v in enumerate(values) if by_order(v) == partition]
        assert items == expected
    assert (2, heartbeat(2)) in [(p, items[-1][1]) for p, items in sent.packets]  # after the sides before it


def test_a_full_packet_leaves_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packets, "PACKET_BYTES", 400)
    sent = Sent()
    same_partition = [n for n in range(1_000) if by_order(side(n)) == 1][:12]

    emitted = [e for n in same_partition for e in sent.send(side(n), n)]
    full = [[item["orderId"] for _, item in codec.loads(packet)] for packet, *_ in emitted]
    sent.packer.flush()

    assert len(full) > 1, "a packet that would pass PACKET_BYTES goes out before the item that overfills it"
    assert all(len(codec.loads(packet)) <= 400 // 90 for packet, *_ in emitted)  # each item ~90 bytes
    # every item, once, in the order sent: the one that overfilled a packet starts the next
    leftover = [item["orderId"] for _, [_, items] in enumerate(sent.packets) for _, item in items]
    assert [n for packet in full for n in packet] + leftover == same_partition


def test_a_dead_letter_passes_at_once_with_its_own_key() -> None:
    sent = Sent()
    letter = {"reason": "schema", "source": {"topic": "payment", "key": None}}

    assert sent.send(letter, 5) == [(letter, None, 5, [])]
    assert not any(sent.packer.holds(p) for p in range(PARTITIONS))


def test_packets_leave_when_nothing_more_is_fetched_or_the_oldest_has_waited(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    idle = [False]
    app_packets = Packets(lambda: idle[0])
    packer = app_packets.packer("sides", PARTITIONS, order_key, str.encode)
    node = packer.node()
    flushed: list[Any] = []
    node.downstream = lambda value, *_: flushed.append(value)

    node.func(side(1), None, 1, [])
    app_packets._tick()
    assert flushed == []
    assert packer.holds(by_order(side(1)))

    now[0] += packets.PACKET_S * 1.01
    app_packets._tick()
    assert len(flushed) == 1
    assert not packer.holds(by_order(side(1)))

    node.func(side(2), None, 2, [])
    idle[0] = True
    app_packets._tick()
    assert len(flushed) == 2  # nothing more to process: at once


def test_unpacked_hands_each_item_on_with_its_timestamp_and_takes_a_lone_record_as_it_is() -> None:
    seen: list[tuple[Any, int]] = []

    def step(value: Any, key: Any, timestamp: int, headers: Any) -> list[Any]:
        seen.append((value, timestamp))
        return [(value, key, timestamp, headers)]

    packet = codec.loads(b"[[7,%s],[9,%s]]" % (codec.dumps(side(1)), codec.dumps(heartbeat(0))))
    out = unpacked(step)(packet, "~heartbeat-3", 9, [])
    lone = unpacked(step)(side(5), "5", 11, [])

    assert seen == [(side(1), 7), (heartbeat(0), 9), (side(5), 11)]
    assert len(out) == 2
    assert lone == [(side(5), "5", 11, [])]


@pytest.mark.parametrize("key", [548, "mérchant-7", "-", 3.5])
def test_an_event_goes_to_the_partition_quix_streams_would_have_keyed_it_to(key: Any) -> None:
    partition_of = partition_by(lambda v: v["event"]["merchantId"], 12, codec.dumps_strict)
    serialized = cast(bytes, JSONSerializer()(key, SerializationContext(topic="by-merchantId", field="key")))

    assert partition_of({"event": {"merchantId": key}}) == (murmur2(serialized) & 0x7FFFFFFF) % 12
    assert partition_of(heartbeat(7)) == 7


def test_an_event_whose_group_key_is_null_goes_where_kafka_puts_a_null_key() -> None:
    # Quix Streams writes a None key as a null Kafka key; librdkafka's murmur2 partitioner hashes it as empty
    partition_of = partition_by(lambda v: v["event"].get("deviceId"), 12, codec.dumps_strict)

    assert partition_of({"event": {"deviceId": None}}) == (murmur2(b"") & 0x7FFFFFFF) % 12


def test_remembered_partitions_tell_keys_apart_that_python_finds_equal() -> None:
    # True == 1 == 1.0 as dict keys, but JSON writes them "true", "1" and "1.0": three partitions of their own
    partition_of = partition_by(lambda v: v["event"]["merchantId"], 12, codec.dumps_strict)
    keys: list[Any] = [1, True, 1.0, "1", 1, True, 1.0, "1", ["1"], ["1"]]

    for key in keys:
        assert partition_of({"event": {"merchantId": key}}) == (murmur2(codec.dumps_strict(key)) & 0x7FFFFFFF) % 12


def test_a_packer_remembers_a_bounded_number_of_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packets, "KNOWN_KEYS", 3)
    partition_of = partition_by(lambda v: v["orderId"], 12, str.encode)
    hashed: list[bytes] = []

    def counted(data: bytes) -> int:
        hashed.append(data)
        return murmur2(data)

    monkeypatch.setattr(packets, "murmur2", counted)

    for key in ["1", "2", "3", "1", "4", "1"]:
        assert partition_of({"orderId": key}) == (murmur2(key.encode()) & 0x7FFFFFFF) % 12
    # "1" again is remembered; "4" finds the memory full, which starts again with it; "1" is then hashed anew
    assert hashed == [b"1", b"2", b"3", b"4", b"1"]
