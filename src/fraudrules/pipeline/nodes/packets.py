"""Several partitions: what goes to a topic of the app's own travels in packets, one record per partition.

Every record through a topic costs about the same whatever it carries: produced, stored and fetched by the
broker, consumed, deserialised and handed to a step by Quix Streams. At several partitions an order crosses
the app's own topics four times (its two sides to the join, its event to each rule group), and those hops were
four fifths of what an order cost more than at one partition (BENCHMARKS "Scaling"). So what a node sends to
such a topic (sides, events, and the watermarks after them) is packed: one packet per partition it is for,
the items in the order they were sent, each with the Kafka timestamp it would have had alone.

A packet leaves when

- it holds :data:`PACKET_BYTES`;
- its oldest item has waited :data:`PACKET_S`;
- this instance has nothing more fetched to process (so live traffic, a record or two per poll, goes out at
  once, as before: packing costs no latency where there is none to hide, and a backlog's packets are full);
- before every checkpoint commits: nothing is held in memory past the offsets of the records it came from.

A packet waiting here is to the rest of the pipeline what a record still in the producer's queue was: on its
way, for at most :data:`PACKET_S` and the loop that notices (the watermark that follows the items is in the
same packet, after them).

The node that reads the topic takes a packet's items one by one (:func:`unpacked`), as if each had come alone;
a record of a release before packets (one item, not a list) is taken as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quixstreams import Application

from fraudrules import codec
from fraudrules.pipeline.deadletter import deadletter_key
from fraudrules.pipeline.model import is_deadletter, is_heartbeat, is_progress
from fraudrules.pipeline.nodes.routing import key_for_partition, murmur2
from fraudrules.pipeline.quix import Emission, EmittingNode, Store, every_loop

#: A node's record path: ``(value, key, timestamp, headers)`` to what it emits.
Step = Callable[[Any, Any, int, Any], list[Emission]]

#: A packet leaves once it holds this many bytes (well under Kafka's 1 MB default record size).
PACKET_BYTES = 256 * 1024
#: ... or once its oldest item has waited this long (a backlog: the watermark keeps moving).
PACKET_S = 0.02


class Packer:
    """What the nodes before it send to ``topic`` (``partitions`` partitions, keys written with
    ``serialize_key``), packed per partition: the one of ``key_of`` an item (:func:`partition_by`; not a dead
    letter: those pass on at once, to their own topic). A packet is the JSON ``[[timestamp, item], ...]`` (bytes:
    whatever else leaves a packer is a dead letter)."""

    def __init__(
        self,
        topic: str,
        partitions: int,
        key_of: Callable[[Any], Any],
        serialize_key: Callable[[Any], bytes],
    ) -> None:
        self.topic = topic
        self._partition_of = partition_by(key_of, partitions, serialize_key)
        # a key of the topic that lands on each partition: what a packet is written with
        self._keys = [key_for_partition(p, partitions, serialize_key) for p in range(partitions)]
        self._items: list[list[bytes]] = [[] for _ in range(partitions)]
        self._sizes = [0] * partitions
        self._stamps = [0] * partitions
        self._nodes: list[EmittingNode] = []
        self.since: float | None = None  # when the oldest item waiting was packed (monotonic)

    def node(self) -> EmittingNode:
        """A node that packs what reaches it: attach it after the node whose emissions it takes."""
        node = EmittingNode(self._on_record)
        self._nodes.append(node)
        return node

    def holds(self, partition: int) -> bool:
        """Whether items for ``partition`` wait here."""
        return bool(self._items[partition])

    def _on_record(self, value: Any, key: Any, timestamp: int, _: Any) -> list[Emission]:
        if is_deadletter(value):
            return [(value, deadletter_key(value), timestamp, [])]
        partition = self._partition_of(value)
        item = b"[%d,%s]" % (timestamp, codec.dumps(value))
        out = []
        if self._items[partition] and self._sizes[partition] + len(item) > PACKET_BYTES:
            out.append(self._packet(partition))  # full: it goes, and this item starts the next one
        if self.since is None:
            self.since = time.monotonic()
        self._items[partition].append(item)
        self._sizes[partition] += len(item) + 1
        self._stamps[partition] = max(self._stamps[partition], timestamp)
        return out

    def _packet(self, partition: int) -> Emission:
        items = self._items[partition]
        packet = b"[" + b",".join(items) + b"]"  # [[timestamp, item], ...]
        stamp = self._stamps[partition]
        self._items[partition], self._sizes[partition], self._stamps[partition] = [], 0, 0
        return (packet, self._keys[partition], stamp, [])

    def flush(self) -> None:
        """Send every packet that holds anything."""
        if self.since is None:
            return
        self.since = None
        packets = [self._packet(p) for p, items in enumerate(self._items) if items]
        if packets and self._nodes:
            self._nodes[0].emit(self.topic, 0, packets)


class Packets:
    """The app's packers: flushed when due (module docstring), from the run loop and before every commit."""

    def __init__(self, idle: Callable[[], bool]) -> None:
        self._idle = idle
        self._packers: list[Packer] = []

    def packer(
        self, topic: str, partitions: int, key_of: Callable[[Any], Any], serialize_key: Callable[[Any], bytes]
    ) -> Packer:
        packer = Packer(topic, partitions, key_of, serialize_key)
        self._packers.append(packer)
        return packer

    def drive(self, app: Application, store: Store) -> None:
        """Flush from the run loop when due, and before every checkpoint commits (``store``'s context)."""
        store.before_commit(self.flush)
        every_loop(app, self._tick)

    def _tick(self) -> None:
        oldest = min((p.since for p in self._packers if p.since is not None), default=None)
        if oldest is not None and (self._idle() or time.monotonic() - oldest >= PACKET_S):
            self.flush()

    def flush(self) -> None:
        # in the order of the pipeline: what a flush sends on is packed further down only by a later record
        for packer in self._packers:
            packer.flush()


def packet_items(value: Any, timestamp: int) -> list[Any]:
    """A record of an internal topic as its items, ``[timestamp, item]`` each: a packet's, or the record itself
    with its own timestamp (one written before packets)."""
    return value if isinstance(value, list) else [[timestamp, value]]


def unpacked(step: Step) -> Step:
    """``step`` for a topic of packets: each item in turn, with its own timestamp; what they emit, in order."""

    def on_record(value: Any, key: Any, timestamp: int, headers: Any) -> list[Emission]:
        if not isinstance(value, list):  # one item, from a release before packets
            return step(value, key, timestamp, headers)
        out: list[Emission] = []
        for stamp, item in value:
            out += step(item, None, stamp, headers)
        return out

    return on_record


def partition_by(
    key_of: Callable[[Any], Any], partitions: int, serialize_key: Callable[[Any], bytes]
) -> Callable[[Any], int]:
    """The partition an item goes to: its key's, as Kafka's partitioner (murmur2) would place it (a null key
    as an empty one, as librdkafka's ``murmur2`` partitioner does); a watermark's (progress, heartbeat) names its
    partition (``to``). The partitions of up to :data:`KNOWN_KEYS` string and integer keys are remembered: a rule
    group's keys (merchants, provinces) come again and again, and murmur2 in Python costs more than a lookup."""
    known: dict[Any, int] = {}

    def partition_of(value: Any) -> int:
        if is_progress(value) or is_heartbeat(value):
            return int(value["to"])
        key = key_of(value)
        kind = type(key)
        if kind is not str and kind is not int:  # only these: True == 1 == 1.0 as dict keys, not as JSON
            return _partition(key, partitions, serialize_key)
        partition = known.get(key)
        if partition is not None:
            return partition
        if len(known) >= KNOWN_KEYS:
            known.clear()
        partition = known[key] = _partition(key, partitions, serialize_key)
        return partition

    return partition_of


#: How many keys' partitions a packer remembers, then it starts again: about 1 MB of orderIds, which come twice
#: each (their two sides, close in a backlog read in timestamp order), or every merchant of most shops.
KNOWN_KEYS = 8_192


def _partition(key: Any, partitions: int, serialize_key: Callable[[Any], bytes]) -> int:
    # a null key (a plugin's group field present but null) as Kafka's murmur2 partitioner hashes it: empty
    return (murmur2(b"" if key is None else serialize_key(key)) & 0x7FFFFFFF) % partitions
