"""Where progress records and heartbeats land: keys for chosen partitions, by Kafka's murmur2."""

from __future__ import annotations

import random
from typing import cast

import pytest
from quixstreams.models import SerializationContext
from quixstreams.models.serializers.json import JSONSerializer

from fraudrules.pipeline.nodes.routing import json_key, key_for_partition, murmur2

# Kafka's own test vectors for Utils.murmur2 (signed 32-bit results).
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize("text", sorted(KAFKA_VECTORS))
def testmurmur2_is_kafkas(text: str) -> None:
    signed = murmur2(text.encode())
    signed -= (1 << 32) if signed & 0x80000000 else 0
    assert signed == KAFKA_VECTORS[text]


@pytest.mark.parametrize("partitions", [1, 2, 4, 12])
def test_heartbeat_keys_land_on_every_partition_as_quix_streams_serializes_them(partitions: int) -> None:
    serialize = JSONSerializer()
    context = SerializationContext(topic="repartition", field="key")
    keys = [key_for_partition(p, partitions, json_key) for p in range(partitions)]

    assert len(set(keys)) == partitions
    for partition, key in enumerate(keys):
        assert (murmur2(cast(bytes, serialize(key, context))) & 0x7FFFFFFF) % partitions == partition


@pytest.mark.parametrize("partitions", [2, 4, 12])
def test_progress_keys_land_on_every_partition_of_the_sides_topic(partitions: int) -> None:
    keys = [key_for_partition(p, partitions, str.encode) for p in range(partitions)]

    assert [(murmur2(key.encode()) & 0x7FFFFFFF) % partitions for key in keys] == list(range(partitions))


def _kafka_murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` transliterated byte by byte, the reference for the faster one."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = data[4 * i] | data[4 * i + 1] << 8 | data[4 * i + 2] << 16 | data[4 * i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest, tail = length % 4, length & ~3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def test_murmur2_agrees_with_kafkas_for_every_length_and_byte() -> None:
    rng = random.Random(7)
    for length in range(0, 40):
        for _ in range(25):
            data = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(data) == _kafka_murmur2(data), data
