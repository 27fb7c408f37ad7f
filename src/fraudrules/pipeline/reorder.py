"""Rules in event-time order: a bounded reorder buffer in front of every rule group, released by a watermark.

A rule group's partition receives enriched events from every join partition, each read at its own pace, and
even at one partition the join emits an order when its second side arrives or its window runs out, which is
not the order in which orders became decidable. So every event waits here until no event that sorts before
it can still arrive; then the rules see it, in the order of ``(decisionTimeMs, orderId, verdictId)``,
whatever the partition count, the reading pace or the run. The offline backtest releases in the very same
order, so the live pipeline and the backtest agree.

The watermark, as in Flink: each join partition promises the lowest decision time it can still emit
(:meth:`fraudrules.pipeline.join.OrderJoin.watermark_ms`) with heartbeats to every partition of the rule
groups, sent after its events on the same path; a group partition releases the events strictly below the
lowest promise of all join partitions minus ``bound_ms``. ``bound_ms`` (the ``reorder_bound_ms`` setting)
is the tolerated out-of-orderness of timestamps within one input partition, which a single producer per
partition never has but several producers writing one partition (their linger and clock skew) do. Live, an
order waits for the later of: every input partition having delivered a record after it, and ``bound_ms``.
A join partition silent for ``idle_ms`` (wall time) stops holding the watermark back, as the join's own
idleness does.

An event that sorts below what was already released (its side's timestamp was more than ``bound_ms``
behind others of its input partition) is late: it is evaluated at once and its verdict says ``late``, never
dropped or held.

State lives in the group partition's store, so a crash loses nothing that was consumed: each waiting event
under its own key, an index of 100 ms buckets, and the promises of the join partitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fraudrules.pipeline.join import PartitionStates
from fraudrules.pipeline.model import Enriched

#: State prefix of the reorder buffer (group values are ints or short strings, so they never collide).
REORDER_PREFIX = b"fraudrules:reorder"
BUCKET_MS = 100
#: Through topics a join partition sends its promise at most once per this much stream time (in memory, on
#: every rise): each one is a record to every rule-group partition.
HEARTBEAT_MS = 50
_META = "meta"


def order_key(event: Enriched) -> tuple[int, int, str]:
    """Where an event sorts: decision time, then orderId, then verdictId (unique), the same in every run."""
    return (event["decisionTimeMs"], event["orderId"], event["verdictId"])


class Reorder:
    """The reorder buffer of one rule group (state per group partition, reports per upstream join partition)."""

    def __init__(
        self,
        upstream: int,
        bound_ms: int,
        idle_ms: int | None = 30_000,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``upstream``: how many join partitions report; ``bound_ms``: see the module docstring."""
        self.upstream = upstream
        self.bound_ms = bound_ms
        self.idle_s = None if idle_ms is None else idle_ms / 1000
        self._wall_clock = wall_clock
        # (group partition, join partition) -> wall time since when it holds the others back, in this process.
        self._blocking: dict[tuple[int, int], float] = {}
        self.late = 0

    def add(self, event: Enriched, states: PartitionStates) -> list[Enriched]:
        """Buffer ``event``; a late one comes straight back (marked ``late``)."""
        store = states.for_key(REORDER_PREFIX)
        meta = _meta(store.get(_META))
        released = meta["released"]
        decision_ms = event["decisionTimeMs"]
        if released is not None and decision_ms < released:
            self.late += 1
            return [{**event, "late": True}]
        bucket = decision_ms // BUCKET_MS
        entries = store.get(bucket)
        entry = [decision_ms, event["orderId"], event["verdictId"]]
        if entries is None:
            store.set(bucket, [entry])
            meta["buckets"].append(bucket)
            meta["buckets"].sort()
            store.set(_META, meta)
        elif entry not in entries:
            store.set(bucket, [*entries, entry])
        store.set(_event_key(event["verdictId"]), event)  # a repeat (a replay) overwrites itself
        return []

    def report(self, partition: int, upstream: int, watermark_ms: int, states: PartitionStates) -> list[Enriched]:
        """Join partition ``upstream`` has read up to ``watermark_ms``: the events that can go now, in order."""
        store = states.for_key(REORDER_PREFIX)
        meta = _meta(store.get(_META))
        marks: dict[str, int] = meta["marks"]
        name = str(upstream)
        if marks.get(name, -1) >= watermark_ms:
            return []
        marks[name] = watermark_ms
        now = self._wall_clock()
        self._blocking.pop((partition, upstream), None)
        reports: list[tuple[int, int]] = []
        for source in range(self.upstream):
            mark = marks.get(str(source))
            if mark is None:  # a join partition that never reported: hold, unless silent since this process began
                since = self._blocking.setdefault((partition, source), now)
                if self.idle_s is not None and now - since >= self.idle_s:
                    continue
                store.set(_META, meta)
                return []
            reports.append((mark, source))
        out = self._release(self._watermark(partition, reports, now) - self.bound_ms, meta, states)
        store.set(_META, meta)
        return out

    def _watermark(self, partition: int, reports: list[tuple[int, int]], now: float) -> int:
        """The lowest report, leaving out a join partition that has held the others back for ``idle_ms``.

        The clock starts when a partition falls behind the others, not when it last reported: a quiet stream's
        partitions all stop reporting (they have promised everything they read), and one that comes back later
        than the others after a failover must not count as idle for the quiet time before it.
        """
        reports.sort()
        while self.idle_s is not None and len(reports) > 1 and reports[0][0] < reports[1][0]:
            since = self._blocking.setdefault((partition, reports[0][1]), now)
            if now - since < self.idle_s:
                break
            reports.pop(0)
        return reports[0][0]

    def flush(self, states: PartitionStates) -> list[Enriched]:
        """End of a finite input (the backtest): everything waiting, in order."""
        store = states.for_key(REORDER_PREFIX)
        meta = _meta(store.get(_META))
        if not meta["buckets"]:
            return []
        out = self._release(meta["buckets"][-1] * BUCKET_MS + BUCKET_MS, meta, states)
        store.set(_META, meta)
        return out

    def _release(self, watermark: int, meta: dict[str, Any], states: PartitionStates) -> list[Enriched]:
        if meta["released"] is not None and watermark <= meta["released"]:
            return []
        meta["released"] = watermark
        store = states.for_key(REORDER_PREFIX)
        due: list[list[Any]] = []
        kept: list[int] = []
        for bucket in meta["buckets"]:
            if bucket * BUCKET_MS >= watermark:
                kept.append(bucket)
                continue
            entries: list[list[Any]] = store.get(bucket) or []
            ready = [e for e in entries if e[0] < watermark]
            waiting = [e for e in entries if e[0] >= watermark]
            due.extend(ready)
            if waiting:
                store.set(bucket, waiting)
                kept.append(bucket)
            else:
                store.delete(bucket)
        meta["buckets"] = kept
        out: list[Enriched] = []
        for _, _, verdict_id in sorted(due):
            key = _event_key(verdict_id)
            event = store.get(key)
            if event is not None:
                store.delete(key)
                out.append(event)
        return out


def _event_key(verdict_id: str) -> str:
    return "e:" + verdict_id


def _meta(stored: dict[str, Any] | None) -> dict[str, Any]:
    return stored if stored is not None else {"marks": {}, "released": None, "buckets": []}


class Heartbeats:
    """When a join partition sends its promise: once it has risen by ``every_ms`` since the last one sent, so
    each rule-group partition hears from each join partition ``1000 / every_ms`` times a second of stream time
    at most. The cost of a coarser step is latency: a released event waits up to ``every_ms`` more."""

    def __init__(self, every_ms: int) -> None:
        self.every_ms = every_ms
        self._sent: dict[int, int] = {}

    def due(self, partition: int, watermark_ms: int | None) -> bool:
        if watermark_ms is None:
            return False
        last = self._sent.get(partition)
        if last is not None and watermark_ms < last + self.every_ms:
            return False
        self._sent[partition] = watermark_ms
        return True
