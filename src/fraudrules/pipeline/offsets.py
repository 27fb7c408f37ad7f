"""What this instance knows of the offsets of the partitions it reads, without asking the broker.

With several partitions only the reader of an input partition can tell whether it is idle (nothing more to
read) or merely not read yet (``progress.py``), and at one partition the join asks whether its stream has
settled. Both come from here: positions and cached watermarks the consumer keeps, and the low, high and
committed offsets its statistics report every second. Nothing here makes a request, so the thread that
processes records never waits for a round trip.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from fraudrules import codec


class ConsumerOffsets:
    """Each partition's offsets as the app's consumer last reported them in its statistics (librdkafka's
    ``stats_cb``, every ``statistics.interval.ms``): low and high watermarks and the group's committed offset,
    learnt from the fetches and the assignment the consumer makes anyway. Reading them asks the broker nothing,
    so the thread that processes records never waits for a round trip (``Consumer.committed`` and uncached
    watermarks each made one, per partition and tick: a backlog at several partitions once made no verdict in
    two minutes). librdkafka calls it from ``poll``, on that thread; parsing a report costs well under a
    millisecond a second."""

    def __init__(self) -> None:
        #: (topic, partition) -> (low, high, committed); -1001 (librdkafka's "invalid") where not known yet.
        self.partitions: dict[tuple[str, int], tuple[int, int, int]] = {}

    def __call__(self, report: str) -> None:
        stats = codec.loads(report)
        known: dict[tuple[str, int], tuple[int, int, int]] = {}
        for topic, about in stats.get("topics", {}).items():
            for number, partition in about.get("partitions", {}).items():
                if number != "-1":  # librdkafka's unassigned-messages pseudo-partition
                    known[(topic, int(number))] = (
                        partition.get("lo_offset", -1001),
                        partition.get("hi_offset", -1001),
                        partition.get("committed_offset", -1001),
                    )
        self.partitions = known


class CaughtUp:
    """Whether this instance has read every record of every partition it consumes: its position against the
    end offset librdkafka last heard of with a fetch (cached, no request). One record of slack: under
    exactly-once a partition can end in a transaction marker, which is never delivered. A partition nothing
    was read from since the assignment has no position; its committed offset (from the consumer's statistics)
    stands in, and for one never committed (read from the start) whether it holds anything at all: a
    partition nobody writes to is caught up from the start, or it would hold every join partition back.
    Nothing here asks the broker (``ConsumerOffsets``)."""

    def __init__(self, consumer: Any, offsets: ConsumerOffsets, from_start: bool = True) -> None:
        self._consumer = consumer
        self._offsets = offsets
        self.from_start = from_start  # ``auto_offset_reset`` "earliest": a group new to a partition reads it all
        self._ends_read: dict[tuple[str, int], int] = {}

    def behind(self, topics: list[str], partition: int) -> bool:
        """Whether records of ``partition`` of any of ``topics`` wait unread: its position against the end offset
        librdkafka last heard of (one record of slack, as above); unknown positions count as not behind."""
        consumer = self._consumer
        try:
            positions = consumer.position([TopicPartition(topic, partition) for topic in topics])
        except KafkaException:
            return False
        for position in positions:
            _, high = consumer.get_watermark_offsets(position, cached=True)
            if high >= 0 and position.offset >= 0 and high - position.offset > 1:
                return True
        return False

    def assigned(self) -> list[TopicPartition]:
        """The partitions this instance consumes (not the changelogs its stores recover from)."""
        return [tp for tp in self._consumer.assignment() if not tp.topic.startswith("changelog__")]

    def each(self, partitions: list[TopicPartition]) -> list[bool]:
        """For each of ``partitions``, whether every record of it was read (False when it cannot be told yet)."""
        consumer = self._consumer
        answers: list[bool] = []
        try:
            positions = consumer.position(partitions)
        except KafkaException:
            return [False] * len(partitions)
        for position in positions:
            _, high = consumer.get_watermark_offsets(position, cached=True)
            place = (position.topic, position.partition)
            if high < 0:
                answers.append(False)
            elif position.offset >= 0:
                answers.append(high - position.offset <= 1)
            elif self._ends_read.get(place) == high:
                answers.append(True)
            else:
                end = self._read_up_to(place, high)
                if end is not None:
                    self._ends_read[place] = end
                answers.append(end is not None)
        return answers

    def _read_up_to(self, place: tuple[str, int], high: int) -> int | None:
        """The end offset of a partition with no position yet if everything before it counts as read, from its
        committed offset; None if not, or if the statistics cannot tell yet."""
        low, reported_high, committed = self._offsets.partitions.get(place, (-1001, -1001, -1001))
        if committed >= 0:
            return high if high - committed <= 1 else None
        if not self.from_start:  # never committed, and read from the end: nothing before it counts
            return high
        if low < 0 or reported_high < 0:  # not reported yet (the first second after an assignment)
            return None
        # never committed: read from the start, so all is read when there is nothing to read
        return high if reported_high - low <= 1 and high <= reported_high else None

    def __call__(self) -> bool:
        assigned = self.assigned()
        return bool(assigned) and all(self.each(assigned))
