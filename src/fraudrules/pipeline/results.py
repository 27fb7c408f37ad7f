"""What a rule group answered, kept so that an event delivered to it twice gets the same answer.

With internal topics between the join and the rule groups, a restart under at-least-once can deliver an event to
a rule group a second time: the join, restarted from its last checkpoint, sends again what it sent after it.
The group has taken the first copy into its rules' state and committed it, so evaluating the repeat would count
the order twice and could answer differently; it answers with the results it gave the first time (and whether
the event was late then). Under exactly-once nothing is delivered twice and nothing is kept.

Kept per checkpoint, not per event: what a group partition answers between two checkpoints is written in values of
at most :data:`BATCH` answers, *batches*, just before the checkpoint commits, in the same transaction as the rule
state it goes with, so the two are durable together. An index of the batches' decision-time ranges, in pages of
:data:`PAGE`, finds the batches that can hold an event, and stays in memory while the partition is assigned (read
back once on a new assignment). A batch is deleted once its latest decision time is more than the retention
(``dedup_retention_seconds`` of event time, as the join keeps decided orders) below what the group has released: a
repeat comes within seconds of wall time, but a backlog crosses hours of event time in that.

Per checkpoint and group partition this writes its batches, their index page and the head (which batches live);
a key per event and its expiry's tombstone, as before, were some three changelog records per order. A batch is
bounded because it is one changelog record, and a record over the broker's ``message.max.bytes`` (1 MB by
default) stops the app: one value per checkpoint grew with the rate, to ~720 KB at 4 partitions in a 100,000-order
``make bench`` drain and over 4 MB at 4 x 2, where a rebalance released a backlog's held events at once.

State, under :data:`RESULTS_PREFIX` of the group partition::

    "head"  -> [first, next]            the live batches are first .. next - 1
    "p<k>"  -> [[low, high], ...]       decision-time range of batches k*PAGE .. k*PAGE + PAGE - 1
    "b<n>"  -> {verdictId: [results, late]}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fraudrules.pipeline.model import Enriched, RuleResults
from fraudrules.state import KeyState, PartitionStates

#: State prefix of the kept results (group values are ints or short strings, so they never collide).
RESULTS_PREFIX = b"fraudrules:results"
#: Batches per index page: a page is rewritten with each batch added to it.
PAGE = 64
#: Answers per batch at most: ~0.6 KB each in ``make bench`` (its hits with their reasons), so ~60 KB a batch,
#: and under 1 MB while an answer stays under 10 KB (an expression rule's reason is at most 500 characters).
BATCH = 100
#: Batches kept deserialized per partition, for repeats in a row (a replay comes in order).
_LOADED = 4
_HEAD = "head"

#: What was answered: ``[results, late]``.
Given = list[Any]


class _Kept:
    """One group partition's batches while it is assigned to this instance."""

    __slots__ = ("first", "horizon", "loaded", "next", "pending", "ranges", "times")

    def __init__(self, state: KeyState) -> None:
        self.first, self.next = state.get(_HEAD, (0, 0))
        #: batch number -> (lowest, highest decision time in it, highest in it or any batch before it), for the
        #: live batches: a lookup going back from the newest stops where the last is below the time it wants
        self.ranges: dict[int, tuple[int, int, int]] = {}
        reach = -1
        for page in range(self.first // PAGE, (self.next - 1) // PAGE + 1) if self.next > self.first else ():
            for i, (low, high) in enumerate(state.get(f"p{page}", ())):
                number = page * PAGE + i
                if self.first <= number < self.next:
                    reach = max(reach, high)
                    self.ranges[number] = (low, high, reach)
        #: what was answered since the last flush, and the decision time of each
        self.pending: dict[str, Given] = {}
        self.times: dict[str, int] = {}
        #: the highest decision time released by the group when it answered (where retention counts from)
        self.horizon = 0
        self.loaded: dict[int, dict[str, Given]] = {}


class KeptResults:
    """The results one partition of a rule group gave, batched per checkpoint (see the module docstring).

    One object per group partition and incarnation of its state (a new one after each assignment): what it keeps
    in memory is read from the state at its first use."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self._kept: _Kept | None = None

    def _of(self, states: PartitionStates) -> _Kept:
        kept = self._kept
        if kept is None:
            kept = self._kept = _Kept(states.for_key(RESULTS_PREFIX))
        return kept

    def keep(
        self, states: PartitionStates, event: Enriched, results: RuleResults, late: bool, released_ms: int | None
    ) -> None:
        """Keep what the group answered for ``event`` until the next :meth:`flush`; ``released_ms``: how far
        the group has released (retention is counted back from it)."""
        kept = self._of(states)
        verdict_id = event["verdictId"]
        kept.pending[verdict_id] = [results, late]
        kept.times[verdict_id] = event["decisionTimeMs"]
        if released_ms is not None and released_ms > kept.horizon:
            kept.horizon = released_ms

    def given(self, states: PartitionStates, event: Enriched) -> Given | None:
        """What the group answered for ``event`` before, if it did (``[results, late]``), else None."""
        kept = self._of(states)
        verdict_id = event["verdictId"]
        found = kept.pending.get(verdict_id)
        if found is not None:
            return found
        at = event["decisionTimeMs"]
        for number in range(kept.next - 1, kept.first - 1, -1):
            low, high, reach = kept.ranges[number]
            if reach < at:
                break
            if low <= at <= high:
                batch = kept.loaded.get(number)
                if batch is None:
                    batch = states.for_key(RESULTS_PREFIX).get(f"b{number}", {})
                    if len(kept.loaded) >= _LOADED:
                        del kept.loaded[next(iter(kept.loaded))]
                    kept.loaded[number] = batch
                found = batch.get(verdict_id)
                if found is not None:
                    return found
        return None

    def flush(self, states: Callable[[], PartitionStates]) -> int:
        """Write what the partition answered since the last flush as batches of at most :data:`BATCH`, in
        decision-time order (so that each covers a range of its own: a lookup reads one), and delete the batches
        past retention, into ``states()`` (the checkpoint's transaction, before it commits); how
        many values were written or deleted."""
        kept = self._kept
        if kept is None or not kept.pending:
            return 0
        state = states().for_key(RESULTS_PREFIX)
        times = kept.times
        answers = sorted(kept.pending.items(), key=lambda answer: times[answer[0]])
        new, written = kept.next, 0
        for start in range(0, len(answers), BATCH):
            batch = answers[start : start + BATCH]
            low, high = times[batch[0][0]], times[batch[-1][0]]
            number = kept.next
            state.set(f"b{number}", dict(batch))
            previous = kept.ranges.get(number - 1)
            kept.ranges[number] = (low, high, high if previous is None else max(previous[2], high))
            kept.next = number + 1
            written += 1
        kept.pending, kept.times = {}, {}
        cutoff = kept.horizon - self.retention_ms
        first = kept.first
        while first < new and kept.ranges[first][1] < cutoff:
            del kept.ranges[first]
            kept.loaded.pop(first, None)
            state.delete(f"b{first}")
            written += 1
            first += 1
            if first % PAGE == 0:
                state.delete(f"p{first // PAGE - 1}")
                written += 1
        kept.first = first
        last = kept.next - 1
        for page in range(new // PAGE, last // PAGE + 1):
            numbers = range(page * PAGE, min(last, page * PAGE + PAGE - 1) + 1)
            state.set(f"p{page}", [list(kept.ranges.get(n, (0, 0, 0))[:2]) for n in numbers])
            written += 1
        state.set(_HEAD, [first, kept.next])
        return written + 1
