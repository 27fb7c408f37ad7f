"""Reading the inputs in event-time order: the next input record is the oldest one fetched, whichever partition.

At several partitions the join's watermark is the lowest of every input partition's, so an input partition read
ahead of the others only fills the join's state: its sides wait there until the slowest input catches up,
outlive checkpoints, and are written to the changelog once more each. librdkafka hands a fetch over partition
by partition (a producer's whole batch at once, whatever the consumer's fetch size, KIP-74), so an instance
holding several input partitions reads them unevenly, by minutes or hours of event time in a backlog.

So the records the consumer fetches go through this buffer (Quix Streams' place for one, ``quix.align_inputs``;
at one partition too, where it orders the payment and the order partition as ``concat`` would): records of the
app's own topics (sides, rule groups) come out first, as they came; an input record comes out
when it is the oldest by timestamp among the input partitions' buffered records, and only while every input
partition that has records left to fetch has some here (one that does not is waited for: the consumer fetches
it meanwhile). A partition read to within ``NEAR_END`` records of its end (what was fetched of it against the end
offset librdkafka last heard of) is not waited for: live, every partition is that close to its end (what
arrived during a fetch's round trip), and an order among them is not worth a wait; a backlog's partitions are
thousands of records behind. A partition whose buffer holds ``max_size``
records is read on while another is waited for, the fullest first, so a partition far ahead does not fill
memory. What waits here is not read yet, though the consumer's position is past it: ``offsets.CaughtUp`` asks
:meth:`AlignedInputs.holds`.

The order is an optimisation, not what verdicts rest on: the join's watermark and the reorder buffers make them
the same whatever order records come in (an end offset librdkafka has not heard of yet lets a record through
before an older one still to be fetched).

Flink's watermark alignment does the same across splits; Quix Streams' own buffer (for ``concat`` and joins)
aligns only partitions of the same number and every topic of it, its own outputs included, which stalls this
pipeline. The buffer is fed by a batch read that returns at the first record (``quix.py`` item 10): Quix
Streams' own waits its whole poll timeout for a full batch, at every hop of an order and of a watermark.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

Place = tuple[str, int]

_UNKNOWN = -1001
#: Records short of its end at which a partition is no longer waited for (live traffic, a backlog's last ones).
NEAR_END = 100


class _Input:
    """The fetched, not yet processed records of one input partition."""

    __slots__ = ("high", "last", "next_timestamp", "records")

    def __init__(self) -> None:
        self.records: deque[Any] = deque()
        self.next_timestamp = float("inf")
        self.last = -1  # the highest offset fetched (or the position's predecessor)
        self.high = _UNKNOWN  # the end offset librdkafka last heard of

    def drained(self) -> bool:
        """Fetched to within ``NEAR_END`` records of its end, as far as is known."""
        return self.high >= 0 and self.last + NEAR_END >= self.high


class AlignedInputs:
    """The consumer's buffer (the interface of Quix Streams' ``InternalConsumerBuffer``): ``inputs`` are the
    topics read in timestamp order; any other topic's records pass first, in the order fetched."""

    def __init__(self, inputs: Iterable[str], max_size: int = 10_000) -> None:
        self._inputs = frozenset(inputs)
        self._max_size = max_size
        self._buffers: dict[Place, _Input] = {}
        self._through: deque[Any] = deque()
        self._through_count: dict[Place, int] = {}

    def assign_partitions(self, partitions: Iterable[Any]) -> None:
        for tp in partitions:
            if tp.topic in self._inputs:
                self._buffers.setdefault((tp.topic, tp.partition), _Input())

    def revoke_partitions(self, partitions: Iterable[Any]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for place in gone:
            self._buffers.pop(place, None)
        if gone and self._through:
            self._keep_through(lambda place: place not in gone)

    def feed(
        self, messages: Iterable[Any], high_watermarks: dict[Place, int], positions: dict[Place, int] | None = None
    ) -> None:
        buffers, through, counts = self._buffers, self._through, self._through_count
        for message in messages:
            place = (message.topic(), message.partition())
            buffer = buffers.get(place)
            if buffer is None:
                through.append(message)
                counts[place] = counts.get(place, 0) + 1
                continue
            if not buffer.records:
                buffer.next_timestamp = message.timestamp()[1]
            buffer.records.append(message)
            buffer.last = message.offset()
        for place, high in high_watermarks.items():
            buffer = buffers.get(place)
            if buffer is not None:
                buffer.high = high
        for place, position in (positions or {}).items():
            buffer = buffers.get(place)
            if buffer is not None and position > 0 and position - 1 > buffer.last:
                buffer.last = position - 1

    def pop(self) -> Any:
        """The next record to process, or None: nothing buffered, or an input partition must be fetched first."""
        if self._through:
            message = self._through.popleft()
            self._through_count[(message.topic(), message.partition())] -= 1
            return message
        oldest: _Input | None = None
        fullest: _Input | None = None
        at = float("inf")
        waiting = False
        most = self._max_size - 1
        for buffer in self._buffers.values():
            records = buffer.records
            if not records:
                waiting = waiting or not buffer.drained()
                continue
            if buffer.next_timestamp < at:
                oldest, at = buffer, buffer.next_timestamp
            if len(records) > most:
                fullest, most = buffer, len(records)
        if waiting:
            # far ahead of a partition still to be fetched: read on, rather than fill memory
            oldest = fullest
        if oldest is None:
            return None
        records = oldest.records
        message = records.popleft()
        oldest.next_timestamp = records[0].timestamp()[1] if records else float("inf")
        return message

    def empty(self) -> bool:
        """Whether nothing fetched waits here to be processed (the next record is still to be fetched)."""
        return not self._through and not any(buffer.records for buffer in self._buffers.values())

    def holds(self, topic: str, partition: int) -> bool:
        """Whether records of ``topic``/``partition`` were fetched and wait here: the consumer's position is past
        them, yet they are not processed (so the partition is not read to its end)."""
        buffer = self._buffers.get((topic, partition))
        if buffer is not None:
            return bool(buffer.records)
        return self._through_count.get((topic, partition), 0) > 0

    def _keep_through(self, keep: Callable[[Place], bool]) -> None:
        self._through = deque(m for m in self._through if keep((m.topic(), m.partition())))
        self._through_count = {place: n for place, n in self._through_count.items() if keep(place)}

    def pause_full(self) -> list[Place]:
        """Nothing is paused (a pause would drop what librdkafka fetched ahead, and freeze the position that
        ``offsets.StallWatch`` watches): a full buffer is read on instead."""
        return []

    def resume_empty(self) -> list[Place]:
        return []

    def clear(self, topic: str, partition: int) -> None:
        """Forget what was fetched of a partition (Quix Streams seeks it back to read it again)."""
        if (topic, partition) in self._buffers:
            self._buffers[(topic, partition)] = _Input()
        else:
            self._keep_through(lambda place: place != (topic, partition))

    def close(self) -> None:
        self._buffers.clear()
        self._through.clear()
        self._through_count.clear()
