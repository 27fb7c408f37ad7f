"""Keys that land on a chosen partition: how a progress record or a heartbeat reaches one partition of a
topic that Quix Streams' producer partitions by key (librdkafka's ``murmur2``, Kafka's Java partitioner)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

#: Route keys of progress records and heartbeats: ``<prefix>-<n>``, n chosen per target partition.
ROUTE_KEY = "~heartbeat"


def key_for_partition(partition: int, partitions: int, serialize: Callable[[str], bytes]) -> str:
    """A key that lands on ``partition`` of a ``partitions``-partition topic whose keys are ``serialize`` d."""
    for n in range(1_000_000):
        key = f"{ROUTE_KEY}-{n}"
        if (murmur2(serialize(key)) & 0x7FFFFFFF) % partitions == partition:
            return key
    raise AssertionError(f"no key for partition {partition} of {partitions}")  # pragma: no cover


def json_key(key: str) -> bytes:
    """A ``group_by`` key as Quix Streams writes it (JSON)."""
    return json.dumps(key).encode()


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as an unsigned 32-bit int."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    if whole < length:  # the last 1-3 bytes, little-endian, as Kafka's switch over them adds them up
        h = ((h ^ int.from_bytes(data[whole:], "little")) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


_WORDS = struct.Struct("<I")
