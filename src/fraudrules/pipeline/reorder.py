"""Rules in event-time order: a bounded reorder buffer in front of every rule group, released by a watermark.

A rule group's partition receives enriched events from every join partition, each read at its own pace, and
even at one partition the join emits an order when its second side arrives or its window runs out, which is
not the order in which orders became decidable. So every event waits here until no event that sorts before
it can still arrive; then the rules see it, in the order of ``(decisionTimeMs, orderId, verdictId)``,
whatever the partition count, the reading pace or the run. The offline backtest releases in the very same
order, so the live pipeline and the backtest agree.

The watermark, as in Flink: each join partition's watermark is the lowest decision time it can still emit
(:meth:`fraudrules.pipeline.join.OrderJoin.watermark_ms`) with heartbeats to every partition of the first
rule group, sent after its events on the same path; a group partition releases the events strictly below the
lowest watermark of all join partitions minus ``bound_ms``. Rule groups are chained (several partitions): a
group partition's watermark to the next group is what it released (:meth:`Reorder.released_ms`), exactly, so the next
groups' buffers use a bound of 0. ``bound_ms`` (the ``reorder_bound_ms`` setting)
is the tolerated out-of-orderness of timestamps within one input partition, which a single producer per
partition never has but several producers writing one partition (their linger and clock skew) do. Live, an
order waits for the later of: every input partition having delivered a record after it, and ``bound_ms``.
The group partition's watermark is the lowest of its inputs' (the join partitions') that are not idle, by the
rule the join applies to its own inputs (``watermark.py``): a join partition that has held the watermark back,
still, for ``idle_ms`` (wall time) is idle; through topics (several partitions) only one whose last heartbeat
said its own input was read to the end, so that a join partition whose instance is behind on a backlog holds
the groups back until it is done. ``bound_ms`` is Flink's allowed lateness.

An event that sorts below what was already released (its side's timestamp was more than ``bound_ms``
behind others of its input partition) is late: it is evaluated at once and its verdict says ``late``, never
dropped or held.

State lives in the group partition's store, so a crash loses nothing that was consumed: the waiting events in
100 ms buckets of decision time (one value per bucket, each entry with its event: one state write per bucket and
checkpoint, not one per event), and the watermarks of the join partitions. Chained behind the
join of the same partition (one-partition inputs, ``chain.py``) the events themselves stay in memory, since
the join's entries can rebuild them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import structlog

from fraudrules.pipeline.model import Enriched
from fraudrules.pipeline.watermark import IdleInputs
from fraudrules.state import PartitionStates, create

#: State prefix of the reorder buffer (group values are ints or short strings, so they never collide).
REORDER_PREFIX = b"fraudrules:reorder"
BUCKET_MS = 100
_META = "meta"


def kept_cached(prefix: Any, *_: Any) -> bool:
    """What of a reorder buffer's state stays cached across checkpoints (``state.WriteBackStates``): all of it,
    the events that wait and where the buffer stands, read again as soon as the watermark moves."""
    return bool(prefix == REORDER_PREFIX)


#: The only prefix ``kept_cached`` keeps anything under.
KEPT_PREFIXES = frozenset({REORDER_PREFIX})


#: Where a bucket entry ``[decisionTimeMs, orderId, verdictId, event?]`` sorts (never by its event).
_ORDER = itemgetter(0, 1, 2)

log = structlog.get_logger(__name__)


#: Rebuilds a waiting event from other state: (states, orderId, verdictId, decisionTimeMs) -> event or None.
Recall = Callable[[PartitionStates, int, str, int], Enriched | None]


def order_key(event: Enriched) -> tuple[int, int, str]:
    """Where an event sorts: decision time, then orderId, then verdictId (unique), the same in every run."""
    return (event["decisionTimeMs"], event["orderId"], event["verdictId"])


class Reorder:
    """The reorder buffer of one partition of a rule group, fed by ``upstream`` partitions.

    One object per group partition and incarnation of its state (a new one after each assignment): the sorted
    index of buckets in use is kept in memory, rebuilt from the state's ``[low, high]`` range when the object
    first needs it, so adding an event never rewrites a list.
    """

    def __init__(
        self,
        upstream: int,
        bound_ms: int,
        idle_ms: int | None = 30_000,
        wall_clock: Callable[[], float] = time.monotonic,
        recall: Recall | None = None,
        readers_report: bool = False,
    ) -> None:
        """``upstream``: how many join partitions report; ``bound_ms``: see the module docstring.

        ``recall``: where the join of the same partition keeps every decided order until its event is released
        (``chain.py``), the waiting events are held in memory only, not in the state: their keys in the state's
        buckets are enough to rebuild them after a restart, with ``recall(states, orderId, verdictId,
        decisionTimeMs)`` (:meth:`restore`). That saves writing, reading and deleting every event's body.
        """
        self.upstream = upstream
        self._recall = recall
        # verdictId -> event: the waiting events, with ``recall`` only (None: not rebuilt yet).
        self._held: _Held | None = None
        self.bound_ms = bound_ms
        self.idle_s = None if idle_ms is None else idle_ms / 1000
        self._wall_clock = wall_clock
        self.readers_report = readers_report
        # which partitions upstream are idle (``watermark.py``): a heartbeat goes out only when its watermark
        # moves, so its word on its own input stands until the next one
        self._idle: IdleInputs[int] = IdleInputs(self.idle_s, readers_report)
        # the sorted buckets in use (None: not read yet): a superset of the state's after an abort
        self._index: list[int] | None = None
        self.late = 0
        self.lost = 0

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
        index = self._buckets(meta, store)
        # the index holds every bucket in use (and after an abort maybe more): one not in it is not in the state
        at = bisect_left(index, bucket)
        indexed = at < len(index) and index[at] == bucket
        entries = store.get(bucket) if indexed else None
        verdict_id = event["verdictId"]
        # with ``recall`` the waiting events are in memory (where a waiting verdictId is found at once), else in
        # their bucket's entries
        bodies = self._bodies(states) if self._recall is not None else None
        entry: list[Any] = [decision_ms, event["orderId"], verdict_id]
        if bodies is None:
            entry.append(event)
        if entries is None:
            create(store, bucket, [entry])
            if not indexed:
                index.insert(at, bucket)
            if meta["low"] is None or bucket < meta["low"] or bucket > meta["high"]:
                meta["low"], meta["high"] = index[0], index[-1]
                store.set(_META, meta)
        elif verdict_id in bodies if bodies is not None else any(e[2] == verdict_id for e in entries):
            pass  # waiting already: a replay (the same event)
        else:
            entries.append(entry)
            store.set(bucket, entries)
        if bodies is not None:
            bodies[verdict_id] = event
        return []

    def released_ms(self, states: PartitionStates) -> int | None:
        """Everything below this decision time (ms) has been released (or came late), in this partition's
        state; None before the first release. An event at or above it has never reached the rules."""
        released: int | None = _meta(states.for_key(REORDER_PREFIX).get(_META))["released"]
        return released

    def holds(self, order_id: int) -> bool:
        """Whether an event of ``order_id`` waits here (with ``recall``: in memory, as restored)."""
        return self._held is not None and order_id in self._held.orders

    def restore(self, states: PartitionStates) -> None:
        """With ``recall``: on the object's first call, rebuild the waiting events in memory from the state
        (before the join may forget anything: it keeps what :meth:`holds` says waits)."""
        if self._recall is not None and self._held is None:
            self._bodies(states)

    def _bodies(self, states: PartitionStates) -> _Held:
        if self._held is not None:
            return self._held
        assert self._recall is not None
        store = states.for_key(REORDER_PREFIX)
        meta = _meta(store.get(_META))
        bodies = _Held()
        for bucket in self._buckets(meta, store):
            for decision_ms, order_id, verdict_id in store.get(bucket) or []:
                event = self._recall(states, order_id, verdict_id, decision_ms)
                if event is not None:
                    bodies[verdict_id] = event
        self._held = bodies
        return bodies

    def report(
        self, upstream: int, watermark_ms: int, states: PartitionStates, caught_up: bool = True
    ) -> list[Enriched]:
        """Join partition ``upstream`` has read up to ``watermark_ms``: the events that can go now, in order.

        ``caught_up``: whether it had read all of its own input when it said so. With ``readers_report`` only
        such a join partition can be left out for holding the others back (one never heard of is waited for).
        """
        now = self._wall_clock()
        inputs = self._idle
        inputs.confirm(upstream, caught_up, now)
        store = states.for_key(REORDER_PREFIX)
        meta = _meta(store.get(_META))
        marks: dict[str, int] = meta["marks"]
        name = str(upstream)
        if marks.get(name, -1) >= watermark_ms:
            return []
        marks[name] = watermark_ms
        inputs.heard(now)
        inputs.moved(upstream, now)
        # A partition upstream that never reported holds the rules back, unless idle (``watermark.py``); when
        # every one is idle, the highest.
        reported = [(source, marks.get(str(source))) for source in range(self.upstream)]
        highest = max((m for _, m in reported if m is not None), default=None)
        watermark = inputs.lowest(reported, now, when_all_idle=highest)
        if watermark is None:
            store.set(_META, meta)
            return []
        index = self._buckets(meta, store)
        out = self._release(watermark - self.bound_ms, meta, store, index, states)
        store.set(_META, meta)
        return out

    def flush(self, states: PartitionStates) -> list[Enriched]:
        """End of a finite input (the backtest): everything waiting, in order."""
        store = states.for_key(REORDER_PREFIX)
        meta = _meta(store.get(_META))
        if meta["high"] is None:
            return []
        index = self._buckets(meta, store)
        out = self._release(meta["high"] * BUCKET_MS + BUCKET_MS, meta, store, index, states)
        store.set(_META, meta)
        return out

    def _buckets(self, meta: dict[str, Any], store: Any) -> list[int]:
        """The sorted buckets in use; read from the state on the object's first need."""
        if self._index is None:
            low = meta["low"]
            self._index = [] if low is None else [b for b in range(low, meta["high"] + 1) if store.get(b) is not None]
        return self._index

    def _release(
        self, watermark: int, meta: dict[str, Any], store: Any, index: list[int], states: PartitionStates
    ) -> list[Enriched]:
        if meta["released"] is not None and watermark <= meta["released"]:
            return []
        meta["released"] = watermark
        due: list[list[Any]] = []
        last = (watermark - 1) // BUCKET_MS  # the last bucket that can hold something below the watermark
        done = 0
        for bucket in index:
            if bucket > last:
                break
            entries: list[list[Any]] | None = store.get(bucket)
            done += 1
            if entries is None:
                continue
            ready = [e for e in entries if e[0] < watermark]
            if len(ready) == len(entries):
                store.delete(bucket)
            else:
                store.set(bucket, [e for e in entries if e[0] >= watermark])
                done -= 1  # still in use
            due.extend(ready)
        del index[:done]
        meta["low"], meta["high"] = (index[0], index[-1]) if index else (None, None)
        out: list[Enriched] = []
        if self._recall is not None:
            bodies = self._bodies(states)
            for decision_ms, order_id, verdict_id in sorted(due):
                event = bodies.pop(verdict_id, None) or self._recall(states, order_id, verdict_id, decision_ms)
                if event is None:  # cannot happen while the join keeps what is held; say so if it does
                    log.error("a waiting event could not be rebuilt", orderId=order_id, verdictId=verdict_id)
                    self.lost += 1
                    continue
                out.append(event)
            return out
        for entry in sorted(due, key=_ORDER):
            if len(entry) > 3:
                out.append(entry[3])
                continue
            key = _event_key(entry[2])  # an event kept under a key of its own (a store written by an earlier release)
            event = store.get(key)
            if event is not None:
                store.delete(key)
                out.append(event)
        return out


class _Held(dict[str, Enriched]):
    """The waiting events by verdictId (with ``recall``), counting them per orderId (``Reorder.holds``). Only
    ``[]=`` and ``pop`` change it."""

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[int, int] = {}

    def __setitem__(self, verdict_id: str, event: Enriched) -> None:
        if verdict_id not in self:
            order_id = event["orderId"]
            self.orders[order_id] = self.orders.get(order_id, 0) + 1
        super().__setitem__(verdict_id, event)

    def pop(self, verdict_id: str, default: Any = None) -> Any:
        event = super().pop(verdict_id, None)
        if event is None:
            return default
        order_id = event["orderId"]
        left = self.orders[order_id] - 1
        if left:
            self.orders[order_id] = left
        else:
            del self.orders[order_id]
        return event


def _event_key(verdict_id: str) -> str:
    return "e:" + verdict_id


def _meta(stored: dict[str, Any] | None) -> dict[str, Any]:
    return stored if stored is not None else {"marks": {}, "released": None, "low": None, "high": None}
