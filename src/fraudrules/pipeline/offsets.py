"""What this instance knows of the offsets of the partitions it reads, without asking the broker.

With several partitions only the reader of an input partition can tell whether it is idle (nothing more to
read) or merely not read yet (``progress.py``), and at one partition the join asks whether its stream has
settled. Both come from here: positions and cached watermarks the consumer keeps, and the low, high and
committed offsets its statistics report every second. Nothing here makes a request, so the thread that
processes records never waits for a round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
        #: (topic, partition) -> (the position the app has consumed up to, the records left to read up to the
        #: last stable offset: librdkafka's ``app_offset`` and ``consumer_lag``, -1 where not known).
        self.reading: dict[tuple[str, int], tuple[int, int]] = {}
        #: Whether every broker of the cluster (not the bootstrap addresses) was up at the last report.
        self.brokers_up = False

    def __call__(self, report: str) -> None:
        stats = codec.loads(report)
        known: dict[tuple[str, int], tuple[int, int, int]] = {}
        reading: dict[tuple[str, int], tuple[int, int]] = {}
        for topic, about in stats.get("topics", {}).items():
            for number, partition in about.get("partitions", {}).items():
                if number != "-1":  # librdkafka's unassigned-messages pseudo-partition
                    place = (topic, int(number))
                    known[place] = (
                        partition.get("lo_offset", -1001),
                        partition.get("hi_offset", -1001),
                        partition.get("committed_offset", -1001),
                    )
                    reading[place] = (partition.get("app_offset", -1001), partition.get("consumer_lag", -1))
        self.partitions, self.reading = known, reading
        brokers = [b for b in stats.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
        self.brokers_up = bool(brokers) and all(b.get("state") == "UP" for b in brokers)


#: A partition with records to read whose position has not moved for this long (wall time), while every broker
#: is up and no store recovers, is stalled (:class:`StallWatch`).
STALL_S = 30.0


class PipelineStalled(RuntimeError):
    """The consumer stopped delivering records that wait in partitions it is assigned (``StallWatch``)."""


class StallWatch:
    """A guard against a consumer that stops delivering records it has to read (seen in CI, rarely: after a kill
    -9 under exactly-once and a restart, the consumer was assigned the sides topic, ~1,000 committed records
    waited in each partition, every broker was up and the main thread polled, yet nothing came for four minutes;
    ``pipeline/quix.py`` item 13). From the consumer's statistics alone (``ConsumerOffsets``): an assigned
    partition of the app's (``CaughtUp.assigned``: no changelog) with more than one record left to read below
    its last stable offset, whose consumed position has not moved for ``stall_s``, is stalled; a restart from
    the last checkpoint reads it again. Records that another producer's open transaction holds back do not
    count (they are above the last stable offset), nor does anything while a broker is down or a store
    recovers."""

    def __init__(
        self, offsets: ConsumerOffsets, stall_s: float = STALL_S, wall_clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._offsets = offsets
        self.stall_s = stall_s
        self._wall_clock = wall_clock
        # (topic, partition) -> (its consumed position, wall time since when it has not moved)
        self._since: dict[tuple[str, int], tuple[int, float]] = {}

    def stalled(self, recovering: bool, assigned: set[tuple[str, int]]) -> list[tuple[str, int]]:
        """The partitions stalled now among those ``assigned`` (the statistics also report partitions lately
        revoked, their positions frozen), sorted."""
        offsets = self._offsets
        if recovering or not offsets.brokers_up:
            self._since = {}
            return []
        now = self._wall_clock()
        since: dict[tuple[str, int], tuple[int, float]] = {}
        stalled = []
        for place, (position, left) in offsets.reading.items():
            if left <= 1 or place not in assigned:
                continue
            known = self._since.get(place)
            if known is None or known[0] != position:
                known = (position, now)
            since[place] = known
            if now - known[1] >= self.stall_s:
                stalled.append(place)
        self._since = since
        return sorted(stalled)

    def check(self, recovering: bool, assigned: set[tuple[str, int]]) -> None:
        """Raise :class:`PipelineStalled` if any partition is stalled."""
        stalled = self.stalled(recovering, assigned)
        if stalled:
            named = ", ".join(f"{topic}[{partition}]" for topic, partition in stalled)
            raise PipelineStalled(
                f"{named}: records wait to be read, every broker is up, and the consumer delivered none of them "
                f"for {self.stall_s:.0f} s; restarting from the last checkpoint"
            )


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
        self._assigned: list[TopicPartition] | None = None
        #: Whether records of a partition were fetched but wait unprocessed in the consumer's buffer (its
        #: position is past them): ``aligned.AlignedInputs.holds``.
        self.held: Callable[[str, int], bool] | None = None

    def behind(self, topics: list[str], partition: int) -> bool:
        """Whether records of ``partition`` of any of ``topics`` wait unread: its position against the end offset
        librdkafka last heard of (one record of slack, as above); unknown positions count as not behind."""
        held = self.held
        if held is not None and any(held(topic, partition) for topic in topics):
            return True
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
        """The partitions this instance consumes (not the changelogs its stores recover from), as of the last
        rebalance: librdkafka answers ``assignment()`` from its own thread, which the caller waits for (about a
        millisecond in a drain), so it is asked once per :meth:`rebalanced`, not on every look."""
        if self._assigned is None:
            self._assigned = [tp for tp in self._consumer.assignment() if not tp.topic.startswith("changelog__")]
        return self._assigned

    def rebalanced(self) -> None:
        """The assignment changed (called from the consumer's rebalance callbacks): ask it again when needed."""
        self._assigned = None

    def each(self, partitions: list[TopicPartition]) -> list[bool]:
        """For each of ``partitions``, whether every record of it was read (False when it cannot be told yet)."""
        consumer = self._consumer
        answers: list[bool] = []
        try:
            positions = consumer.position(partitions)
        except KafkaException:
            return [False] * len(partitions)
        held = self.held
        for position in positions:
            _, high = consumer.get_watermark_offsets(position, cached=True)
            place = (position.topic, position.partition)
            if high < 0 or (held is not None and held(*place)):
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
