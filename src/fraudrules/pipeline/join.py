"""The payment/order join by orderId: a small state machine over partition state, any arrival order.

Per orderId the state holds the sides seen so far. The first side waits up to the join window; the second
completes the join and emits one enriched event at once. A side whose partner has not arrived when the
partition's stream time passes its deadline is emitted alone, with a join status naming the missing side.

Every input record ends in exactly one place. Once an order is decided its sides are remembered for
``retention`` (stream time). A later record under the same orderId is dead-lettered ``duplicate`` when it
repeats a side already used (a producer's retry) and ``late`` when it is the missing side of an order already
decided without it. A record whose content differs from its side of a decided order is a reused orderId (the
seed's generator run twice): it starts a new order under that orderId, a *generation*, held in the same entry,
which its own other side joins by the same rules as any order; its event carries ``reusedOrderId`` (the order
decided before it, when, and the fields that differ), and the earlier generations stay in the entry so that
their retries are still ``duplicate`` and their replays still recognised. A second, different record of the
side an order still open (waiting for its other side) already holds waits behind it and starts the next
generation once that order is decided: the sides of one orderId pair first come, first served, as its other
side cannot tell which of the two it belongs to. Only past ``MAX_WAITING`` waiting records is one
dead-lettered ``conflicting_duplicate``, a bound on what one orderId can hold. The same input record read
again (same topic, partition and offset: a replay after a crash) is recognised and ignored, since its outcome
exists. After the retention a reused orderId is a new order like any other. Each order has its own
``verdictId``: the position of a record it uses, and no record is used twice.

Stream time is a watermark: the lowest of the highest Kafka timestamps read from each partition of both
inputs, so a replayed backlog cannot expire one side before the other side's records of the same period
are read. Deadlines live in an index of one-second buckets under a partition-wide prefix, so expiry costs
one state read per record and a bucket scan once per second of stream time. A decided order is forgotten
once stream time passes its second too, but its forgetting is listed per minute (``FORGET_LIST_S``): the
same second decides, and a stream of a few orders a second writes a list per minute, not one per order.
An idle input partition (``watermark.py``, the rule the rule groups use too: still for ``idle_ms`` of wall
time and, with several partitions, its reader said it has read everything there is, ``progress.py``) stops
holding the watermark back until it delivers again; one that is merely not being read (a backlog, another
instance busy or gone) holds it back for as long as that lasts. When every input has been still for the quiet
time (the stream went quiet), stream time follows the wall clock from the last record on, through
:meth:`OrderJoin.tick` (a timer), so the last orders of a stream get their one-sided verdicts too.

Each enriched event carries ``decisionTimeMs``, when it became decidable in stream time: the later side's
timestamp for a joined order, the end of the second its window ran out in for a one-sided one. The join
also promises, through :meth:`OrderJoin.watermark_ms`, the lowest decision time any event it emits later
can have; the rule groups wait for that promise to see events in decision-time order (``reorder.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fraudrules.pipeline.deadletter import side_deadletter
from fraudrules.pipeline.model import DeadLetter, Enriched, JoinStatus, ReusedOrderId, Side, Source, is_deadletter
from fraudrules.pipeline.progress import CAUGHT_UP_TTL_S
from fraudrules.pipeline.watermark import IdleInputs
from fraudrules.state import KeyState, PartitionStates, create
from fraudrules.validation import SchemaName, load_schema

SIDES = ("payment", "order")


def _schema_fields(name: SchemaName) -> tuple[frozenset[str], int]:
    """A schema's fields, and how many fields a valid record has when it has no other (-1: cannot be told,
    some field is optional)."""
    schema = load_schema(name)
    fields = frozenset(schema["properties"])
    return fields, len(fields) if fields <= set(schema.get("required", ())) else -1


PAYMENT_FIELDS, _PAYMENT_ONLY = _schema_fields("payment")
ORDER_FIELDS, _ORDER_ONLY = _schema_fields("order")
SCHEMA_FIELDS = PAYMENT_FIELDS | ORDER_FIELDS

#: State prefix of the partition-wide deadline index (orderIds are ints, so they never collide with it).
INDEX_PREFIX = b"fraudrules:join-deadlines"
_CLOCK = "clock"


def kept_cached(prefix: Any, key: Any, written: bool) -> bool:
    """What of the join's state stays cached across checkpoints (``state.WriteBackStates``): its clock and its
    deadline lists, each read when it falls due, within the join window of its writing; a forgetting list only
    while it is being written (it is read next a retention later); not the orders' entries (one per order)."""
    return prefix == INDEX_PREFIX and (written or not (type(key) is int and key < 0))


#: The only prefix ``kept_cached`` keeps anything under.
KEPT_PREFIXES = frozenset({INDEX_PREFIX})


#: The state key of an order's entry (under its orderId).
JOIN_ENTRY = _ENTRY = "join"
#: At most this many earlier generations of a reused orderId are kept in its entry (oldest dropped first), so
#: that a producer writing one orderId again and again cannot grow an entry, and the cost of each record in it,
#: without bound.
MAX_EARLIER = 8
#: At most this many records of next orders wait in an entry behind its open order (see ``OrderJoin._queue``);
#: one more is dead-lettered ``conflicting_duplicate``, so that one orderId written again and again cannot grow
#: an entry without bound.
MAX_WAITING = 8
#: Keys of a decided entry that its next generation does not keep of it.
_NOT_KEPT = ("earlier", "forgetAt", "forgetBucket", "forgetList")
#: Decided orders are listed for forgetting by the minute of stream time (the bucket that ends it); an entry
#: notes the second it is forgotten in (``forgetBucket``) and its list (``forgetList``).
FORGET_LIST_S = 60


def _forget_list(bucket: int) -> int:
    """The bucket of the forgetting list of an order forgotten in second ``bucket``: the minute's last."""
    return -(-bucket // FORGET_LIST_S) * FORGET_LIST_S


JoinOutput = Enriched | DeadLetter
#: With no consumer lag, a join partition whose inputs have not moved for this long (wall time) is quiet.
QUIET_S = 2.0


class _Clock:
    """The partition's join clock, read once per record and written back only when it changed.

    ``checked``: buckets up to here are scanned; ``sides``: the highest bucket seen from each input
    partition ("payment/0", "order/3", ...; the watermark is their minimum); ``high``: the highest timestamp
    (ms) seen from each, what another process taking the partition over starts from (``OrderJoin._known``);
    ``ranges``: [low, high] spans of buckets that hold deadlines, so that a jump in stream time scans only
    buckets that can hold something.

    Kept in memory only (the clock stays in memory while its partition's state is the same incarnation):
    ``horizon``, the highest bucket a stored list can be in, and ``made``, the lists made since (their keys).
    A list above the horizon and not made is not there, so it is not read: in a stream of a few orders a second
    most seconds of a span hold no list.

    ``second_lists_until``: up to this bucket forgetting lists may be per second (state of an earlier release,
    whose clock did not store it: up to its horizon); beyond, they are per minute only.
    """

    __slots__ = (
        "changed",
        "checked",
        "gap",
        "high",
        "horizon",
        "joined",
        "made",
        "ranges",
        "second_lists_until",
        "sides",
    )

    def __init__(self, stored: dict[str, Any] | None, gap: int, inputs: list[str]) -> None:
        self.gap = gap
        self.changed = stored is None
        # A new clock has scanned nothing. Not even up to the first record it sees: with several partitions that
        # can be the progress of an input read far ahead of the others, whose sides still to come would then be
        # scheduled after everything promised meanwhile. Only spans holding deadlines are scanned, so a first
        # scan that jumps over years costs nothing.
        stored = stored or {"checked": -1, "sides": dict.fromkeys(inputs, -1), "ranges": [], "secondListsUntil": -1}
        self.checked: int = stored["checked"]
        self.sides: dict[str, int] = stored["sides"]
        self.ranges: list[list[int]] = stored["ranges"]
        self.high: dict[str, int] = stored.get("high", {})  # absent in a clock stored by version 0.2
        # Not stored: orders joined since the clock was read, whose deadline need not be looked at (the order is
        # decided and its forgetting is scheduled on its own). Empty after a restart, which only costs reads.
        self.joined: set[int] = set()
        self.horizon = max((high for _, high in self.ranges), default=-1)
        self.made: set[int] = set()
        self.second_lists_until: int = stored.get("secondListsUntil", self.horizon)

    def may_list(self, key: int) -> bool:
        """Whether the list under ``key`` (a bucket, or minus one) may be stored (else it is not)."""
        return abs(key) <= self.horizon or key in self.made

    def stored(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "sides": self.sides,
            "ranges": self.ranges,
            "high": self.high,
            "secondListsUntil": self.second_lists_until,
        }

    def may_list_forgets(self, bucket: int) -> bool:
        """Whether a forgetting list may be stored under ``-bucket``."""
        return (bucket % FORGET_LIST_S == 0 or bucket <= self.second_lists_until) and self.may_list(-bucket)

    def may_hold(self, bucket: int) -> bool:
        """Whether ``bucket`` may hold deadlines (is within a span); one outside every span holds none."""
        return any(low <= bucket <= high for low, high in self.ranges)

    def note(self, bucket: int) -> None:
        """Remember that ``bucket`` holds a deadline."""
        for span in self.ranges:
            if span[0] - self.gap <= bucket <= span[1] + self.gap:
                if bucket < span[0] or bucket > span[1]:
                    span[0], span[1] = min(span[0], bucket), max(span[1], bucket)
                    self.changed = True
                return
        self.ranges.append([bucket, bucket])
        self.changed = True

    def due(self, watermark: int) -> list[int]:
        """The buckets in (checked, watermark] that can hold deadlines; forgets spans left behind."""
        buckets = [
            bucket
            for low, high in self.ranges
            for bucket in range(max(low, self.checked + 1), min(high, watermark) + 1)
        ]
        self.ranges = [span for span in self.ranges if span[1] > watermark]
        self.checked = watermark
        self.changed = True
        return sorted(set(buckets))


class JoinTotals:
    """What every join partition of this instance counts together, and what the quiet-stream watermark of any
    of them reaches for (what this instance read and emitted on any join partition, in this process)."""

    __slots__ = ("deadlettered", "expired", "highest_read", "joined", "last_decided", "replayed", "reused")

    def __init__(self) -> None:
        self.deadlettered = 0
        self.replayed = 0
        self.expired = 0
        self.joined = 0
        #: Records that started a new order under the orderId of a decided one (a reused orderId).
        self.reused = 0
        #: The highest Kafka timestamp read from any input partition, on any join partition (ms).
        self.highest_read = -1
        #: The highest decision time emitted on any join partition.
        self.last_decided = -1


class OrderJoin:
    """The join of one partition: payment and order sides by orderId. ``process`` returns what the record
    completes or refuses; ``progress`` and ``tick`` move its stream time without a side; ``watermark_ms`` is the
    watermark it sends on.

    One object per join partition and incarnation of its state (a new one after each assignment, with nothing
    in memory but what it reads from the state): ``nodes/join.py`` and ``chain.py`` make one per partition they
    hold. ``totals`` is shared by the join partitions of an instance.
    """

    def __init__(
        self,
        window_ms: int,
        retention_ms: int,
        partitions: dict[str, int] | None = None,
        idle_ms: int | None = 30_000,
        wall_clock: Callable[[], float] = time.monotonic,
        max_raw_bytes: int = 262_144,
        quiet_margin_ms: int = 0,
        readers_report: bool = False,
        quiet_ms: int = int(QUIET_S * 1000),
        totals: JoinTotals | None = None,
    ) -> None:
        """``partitions``: how many partitions each input topic has (payment and order), one each by default.

        ``idle_ms``: an input partition whose stream time has not moved for this long (wall time, in this
        process) while others move is left out of the watermark (``watermark.py``), so one quiet partition
        cannot hold every one-sided verdict back forever; None (the backtest) never idles a partition.

        ``quiet_margin_ms``: how far past the latest record and event it knows of a quiet partition's watermark
        goes: the rule groups' reorder bound, so that they release everything (nothing older can come: every
        record there is was read), plus the step of the inputs' progress records, which may leave the last
        few milliseconds of another input partition unreported.

        ``readers_report``: the inputs' progress records say whether their readers have read everything there
        is (several partitions, ``progress.py``); then only an input whose reader said so less than
        ``CAUGHT_UP_TTL_S`` ago can be idle or quiet, and ``tick``'s ``settled`` is not asked.

        ``quiet_ms``: with every record there is read, how long (wall time) the inputs stay still before the
        stream counts as quiet (``tick``), at most ``idle_ms``.
        """
        self.quiet_margin_ms = quiet_margin_ms
        self.quiet_s = quiet_ms / 1000
        partitions = partitions or {"payment": 1, "order": 1}
        self.inputs = [f"{side}/{p}" for side in SIDES for p in range(partitions[side])]
        self.idle_s = None if idle_ms is None else idle_ms / 1000
        self._wall_clock = wall_clock
        self.readers_report = readers_report
        # which input partitions are idle (``watermark.py``), in this process
        ttl = CAUGHT_UP_TTL_S if readers_report else None
        self._idle: IdleInputs[str] = IdleInputs(self.idle_s, readers_report, ttl)
        # input partition -> the highest timestamp read from it (ms), in this process
        self._highest: dict[str, int] = {}
        # the clock, read from the state once (None: not yet)
        self._clock_read: _Clock | None = None
        # the clock's ``checked`` bucket after the last record or tick (None: no stream time yet)
        self._checked: int | None = None
        # stream time while the partition is quiet (see ``tick``); None while records arrive
        self._quiet: int | None = None
        self.totals = totals if totals is not None else JoinTotals()
        self.window_ms = window_ms
        self.retention_ms = max(retention_ms, window_ms)
        self.max_raw_bytes = max_raw_bytes
        self._gap = self.retention_ms // 1000 + 2
        #: Set by a chain whose reorder buffer rebuilds waiting events from the join's entries (``chain.py``):
        #: whether an event of an orderId still waits there, so that its decided entry is not forgotten yet.
        self.holds: Callable[[int], bool] | None = None

    def process(self, side: Side, timestamp: int, states: PartitionStates) -> list[JoinOutput]:
        """Handle one side seen at Kafka ``timestamp`` (ms): what it completes or refuses."""
        name = side["side"]
        source = f"{name}/{side['source']['partition']}"
        index, clock, out = self._moved(source, timestamp, states)
        order_id = side["orderId"]
        state = states.for_key(order_id)
        entry = state.get(_ENTRY)
        if entry is not None and "forgetList" in entry and entry["forgetBucket"] <= clock.checked:
            entry = self._past_retention(states, index, clock, order_id, entry)
        if entry is None:
            deadline = timestamp + self.window_ms
            state.set(_ENTRY, {"payment": None, "order": None, name: side, "deadline": deadline, "done": False})
            self._schedule(index, clock, deadline, order_id)
        elif "earlier" in entry and self._repeats_earlier(side, entry["earlier"], out):
            pass  # a replay or a retry of a side of an earlier order under this orderId
        elif entry[name] is not None:
            first: Side = entry[name]
            if _same_input(side, first):
                self.totals.replayed += 1  # the same input record read again after a restart: its outcome exists
            elif side["record"] == first["record"]:
                out.append(self._duplicate(side, first))
            elif entry["done"]:
                self._reopen(state, index, clock, order_id, entry, side, timestamp)
            else:
                out.extend(self._queue(state, entry, side))
        elif entry["done"]:
            other: Side = entry["order" if name == "payment" else "payment"]
            self.totals.deadlettered += 1
            out.append(
                side_deadletter(
                    "late",
                    f"the {name} of order {order_id} arrived after the order was decided without it "
                    f"({entry['status']})",
                    side,
                    original=other["source"],
                    max_raw_bytes=self.max_raw_bytes,
                )
            )
        else:
            entry[name] = side
            decided = max(timestamp, entry["deadline"] - self.window_ms)
            reused = _reuse_of(entry)  # completed before the entry is stored as decided
            out.append(enriched_event(entry["payment"], entry["order"], "joined", decided, reused))
            self.totals.joined += 1
            clock.joined.add(order_id)
            decided_entry = self._decide(state, index, clock, order_id, entry, "joined", timestamp, decided)
            out.extend(self._next_orders(state, index, clock, order_id, decided_entry, entry.get("waiting"), timestamp))
        return self._settle(index, clock, out)

    def _queue(self, state: KeyState, entry: dict[str, Any], side: Side) -> list[JoinOutput]:
        """``side`` differs from its side of the order still open in ``entry``: the record of a next order under
        this orderId, come before the open one was decided (a reused orderId, its two uses close together, or
        a producer's two orders under one id). It waits in the entry, in arrival order, and starts its own
        order once the open one is decided (:meth:`_next_orders`); a replay or a retry of a waiting record is
        recognised. Only past ``MAX_WAITING`` waiting records is one dead-lettered ``conflicting_duplicate``."""
        waiting: list[Side] = entry.get("waiting", [])
        for queued in waiting:
            if _same_input(side, queued):
                self.totals.replayed += 1
                return []
            if side["record"] == queued["record"]:
                return [self._duplicate(side, queued)]
        if len(waiting) >= MAX_WAITING:
            return [self._conflict(side, entry[side["side"]])]
        entry["waiting"] = [*waiting, side]
        state.set(_ENTRY, entry)
        return []

    def _next_orders(
        self,
        state: KeyState,
        index: KeyState,
        clock: _Clock,
        order_id: int,
        decided: dict[str, Any],
        waiting: list[Side] | None,
        now: int,
        pending_only: bool = False,
    ) -> list[JoinOutput]:
        """An order was just decided (stored as ``decided``): the first of the records ``waiting`` behind it,
        if any, starts the orderId's next generation, as if it had come now (:meth:`_reopen`), with the others
        still waiting behind that one. A next order whose window ran out already (the one before it waited for
        the watermark, or the input has ended: ``pending_only``) is decided at once, at the end of the second its
        own window ran out in, as it would have been alone: the decision time does not depend on when the clock
        got there."""
        if not waiting:
            return []
        side = waiting[0]
        opened = self._reopen(state, index, clock, order_id, decided, side, side["source"]["timestamp"], waiting[1:])
        if pending_only or opened["deadline"] // 1000 + 1 <= clock.checked:
            return self._expired(state, index, clock, order_id, opened, now, pending_only)
        return []

    def _reopen(
        self,
        state: KeyState,
        index: KeyState,
        clock: _Clock,
        order_id: int,
        entry: dict[str, Any],
        side: Side,
        timestamp: int,
        waiting: list[Side] | None = None,
    ) -> dict[str, Any]:
        """``side`` differs from its side of the decided order in ``entry``: a reused orderId. It starts the
        orderId's next generation, an open order like any other, which keeps the decided ones before it
        (``MAX_EARLIER`` at most) until it is forgotten itself, and the records ``waiting`` behind it. The decided
        order's forgetting is unscheduled (it would delete the new one); the entry's forgetting is scheduled
        again when the new order is decided. The new entry."""
        name = side["side"]
        decided = {key: value for key, value in entry.items() if key not in _NOT_KEPT}
        earlier = [*entry.get("earlier", ()), decided][-MAX_EARLIER:]
        # the differing fields are known once the order is decided (both its records, whichever came first)
        reused = {
            "previousVerdictId": verdict_id(entry["payment"], entry["order"]),
            "previousDecisionTimeMs": entry.get("decidedMs", entry["forgetAt"] - self.retention_ms),
        }
        self._unschedule_forget(index, entry, order_id)
        deadline = timestamp + self.window_ms
        opened: dict[str, Any] = {
            "payment": None,
            "order": None,
            name: side,
            "deadline": deadline,
            "done": False,
            "reused": reused,
            "earlier": earlier,
        }
        if waiting:
            opened["waiting"] = waiting
        state.set(_ENTRY, opened)
        # Its deadline is looked at whatever became of the earlier order's: once joined, that one's deadline may
        # still be due, and must then not be mistaken for this one's (nor this one's for that one's).
        clock.joined.discard(order_id)
        self._schedule(index, clock, deadline, order_id)
        self.totals.reused += 1
        return opened

    @staticmethod
    def _unschedule_forget(index: KeyState, entry: dict[str, Any], order_id: int) -> None:
        """Take the decided ``entry``'s forgetting out of the index (where ``_decide`` put it)."""
        bucket = entry.get("forgetList", entry.get("forgetBucket"))  # a list per second before ``forgetList``
        if bucket is None:  # decided by a release that did not store it: where it goes unless the clock was ahead
            bucket = entry["forgetAt"] // 1000 + 1
        ids = index.get(-bucket)
        if ids is None or order_id not in ids:
            return
        ids.remove(order_id)
        if ids:
            index.set(-bucket, ids)
        else:
            index.delete(-bucket)

    def _repeats_earlier(self, side: Side, earlier: list[dict[str, Any]], out: list[JoinOutput]) -> bool:
        """Whether ``side`` is a replay or a retry of its side of an earlier generation of its orderId (a
        retry is dead-lettered ``duplicate`` into ``out``)."""
        name = side["side"]
        for decided in reversed(earlier):
            used: Side | None = decided[name]
            if used is None:
                continue
            if _same_input(side, used):
                self.totals.replayed += 1
                return True
            if side["record"] == used["record"]:
                out.append(self._duplicate(side, used))
                return True
        return False

    def progress(
        self, source: str, timestamp: int, states: PartitionStates, caught_up: bool = False
    ) -> list[JoinOutput]:
        """Input partition ``source`` ("payment/3") has been read up to ``timestamp`` (-1: nothing read since its
        reader got it), and its reader had read everything there was if ``caught_up``, as its progress record to
        this join partition says (several partitions): stream time moves as for one of its sides."""
        now = self._wall_clock()
        inputs = self._idle
        inputs.confirm(source, caught_up, now)
        self._known(states)
        if timestamp <= self._highest.get(source, -1):  # a reader's repeated word: nothing moved
            inputs.heard(now)
            return []
        index, clock, out = self._moved(source, timestamp, states)
        return self._settle(index, clock, out)

    def _moved(self, source: str, timestamp: int, states: PartitionStates) -> tuple[KeyState, _Clock, list[JoinOutput]]:
        """Input partition ``source`` delivered at ``timestamp``: the partition's index and clock, and what the
        move of stream time makes due."""
        index = states.for_key(INDEX_PREFIX)
        clock = self._clock(index, create=True)
        assert clock is not None
        # After a stall, the first input read again would find every other one idle and expire their orders
        # before their partners are read: their idleness counts from now, as after a restart.
        self._idle.heard(self._wall_clock())
        self._quiet = None
        if timestamp > self._highest.get(source, -1):
            self._highest[source] = timestamp
            if timestamp > self.totals.highest_read:
                self.totals.highest_read = timestamp
        if timestamp > clock.high.get(source, -1):
            clock.high[source] = timestamp
            clock.changed = True
        return index, clock, self._advance(source, timestamp, clock, states)

    def _clock(self, index: KeyState, create: bool = False) -> _Clock | None:
        """The partition's clock: read from the state once (None if there is none, unless ``create``: then a new
        one), then kept in memory."""
        if self._clock_read is not None:
            return self._clock_read
        stored = index.get(_CLOCK)
        if stored is None and not create:
            return None
        self._clock_read = _Clock(stored, self._gap, self.inputs)
        return self._clock_read

    def _known(self, states: PartitionStates) -> bool:
        """Whether the partition has a stream time. A partition that got no side since this object took it (an
        assignment, a restart) takes what its stored clock knew: how far it checked, and each input partition's
        highest timestamp. Its readers may have nothing new to read, and then their progress records say -1,
        which moves nothing; without this its stream time would stay unknown, and it would neither expire its
        waiting orders nor send the rule groups a watermark, however long it stayed quiet. (A clock stored
        without timestamps has each input's highest second; its start stands in: lower than what was read, so
        safe.)"""
        if self._checked is not None:
            return True
        clock = self._clock(states.for_key(INDEX_PREFIX))
        if clock is None:
            return False
        self._checked = clock.checked
        for source, bucket in clock.sides.items():
            high = clock.high.get(source, bucket * 1000 if bucket >= 0 else None)
            if high is not None:
                self._highest.setdefault(source, high)
                if high > self.totals.highest_read:
                    self.totals.highest_read = high
        return True

    def _settle(self, index: KeyState, clock: _Clock, out: list[JoinOutput]) -> list[JoinOutput]:
        """Store the clock if it changed and remember what was emitted; ``out``."""
        if clock.changed:
            index.set(_CLOCK, clock.stored())
            clock.changed = False
        self._checked = clock.checked
        totals = self.totals
        for item in out:
            if not is_deadletter(item) and item["decisionTimeMs"] > totals.last_decided:
                totals.last_decided = item["decisionTimeMs"]
        return out

    def tick(
        self,
        states: PartitionStates,
        settled: Callable[[], bool] = lambda: False,
        behind: Callable[[], bool] = lambda: False,
    ) -> list[Enriched]:
        """Between records (live, a timer): the one-sided orders a quiet stream makes due.

        The stream of the partition is quiet when none of its inputs has moved for ``idle_ms``, or for
        ``quiet_ms`` (:data:`QUIET_S` by default) if ``settled()`` says the application has read every record
        there is (no consumer lag: then no older record can still come, whereas a backlog read partition by
        partition can leave one join partition without records for seconds). While quiet, stream time follows
        the wall clock from the last record on, less the quiet time (so a new record, stamped when it was
        produced, is not behind it).
        ``behind()`` says whether records of this join partition's own input wait unread: then it is not quiet,
        only not being read yet (a backlog read unevenly), whatever the wall clock says.
        """
        if self.idle_s is None or not self._known(states):
            return []
        if behind():
            self._quiet = None
            return []
        watermark = self._quiet_watermark(min(self.quiet_s, self.idle_s))
        if watermark is None:
            self._quiet = None
            return []
        if (
            self._quiet is None
            and self._quiet_watermark(self.idle_s) is None
            and not (self.readers_report or settled())
        ):
            return []
        self._quiet = watermark
        assert self._checked is not None
        if watermark // 1000 <= self._checked:
            return []
        index = states.for_key(INDEX_PREFIX)
        clock = self._clock(index)
        if clock is None:
            return []
        out = self._settle(index, clock, self._expire_due(watermark // 1000, clock, states))
        return [event for event in out if not is_deadletter(event)]  # expiry emits only events

    def watermark_ms(self) -> int | None:
        """The lowest ``decisionTimeMs`` an event emitted later can have (ms), or None while some input
        partition has not been read since this object took the partition (and is not idle yet).

        A joined order's decision time is its later side's timestamp, so it is at least the lowest of the
        highest timestamps read from each input partition that is not idle (``watermark.py``; for inputs in
        timestamp order: the rule groups' ``reorder_bound_ms`` covers the rest). A one-sided order not yet
        emitted is decided at the end of a second the clock has not reached. On a quiet stream the watermark goes
        just past the last event emitted, and stays there until something new happens.
        """
        checked = self._checked
        if checked is None:
            return None
        quiet = self._quiet
        if quiet is not None:
            # Everything read is behind it: the watermark goes just past the latest record and event, and no
            # further. Not with the wall clock: a producer that pauses and then goes on with timestamps a little
            # after its last ones (a replay) would find its next orders late. So a quiet stream sends one
            # watermark. What this instance read and emitted on any of its join partitions counts: input progress
            # records are sent at most once per interval, so one partition may not have heard of an input's last
            # records that the sides to another partition carried.
            totals = self.totals
            last = max(totals.highest_read, totals.last_decided)
            return min(last + 1 + self.quiet_margin_ms, (checked + 1) * 1000)
        highest = self._highest
        marks = [(source, highest.get(source)) for source in self.inputs]
        lowest = self._idle.lowest(marks, self._wall_clock())
        return None if lowest is None else min(lowest, (checked + 1) * 1000)

    def _quiet_watermark(self, quiet_s: float | None) -> int | None:
        """Stream time (ms) when no input has moved for ``quiet_s``: the highest timestamp read plus the wall
        time since the last record, less ``quiet_s``; None while some input moves."""
        if quiet_s is None:
            return None
        now = self._wall_clock()
        last = self._idle.all_idle_since(self.inputs, now, quiet_s)
        if last is None:
            return None
        highest = max(self._highest.get(source, -1) for source in self.inputs)
        if highest < 0:
            return None
        return highest + int((now - last - quiet_s) * 1000)

    def _duplicate(self, side: Side, first: Side) -> DeadLetter:
        """``side`` repeats ``first`` (the same content, another input record): a producer's retry."""
        self.totals.deadlettered += 1
        source = first["source"]
        return side_deadletter(
            "duplicate",
            f"repeats the {side['side']} of order {side['orderId']} already read at "
            f"{source['topic']}/{source['partition']}/{source['offset']}",
            side,
            original=source,
            max_raw_bytes=self.max_raw_bytes,
        )

    def _conflict(self, side: Side, first: Side) -> DeadLetter:
        """``side`` differs from ``first``, which its order, still open, already holds, and ``MAX_WAITING``
        records of next orders under its orderId already wait behind that one."""
        self.totals.deadlettered += 1
        source = first["source"]
        differing = _differing(side["record"], first["record"])
        return side_deadletter(
            "conflicting_duplicate",
            f"orderId {side['orderId']} is taken by the {side['side']} at "
            f"{source['topic']}/{source['partition']}/{source['offset']}, still waiting for its other side, "
            f"which differs in {', '.join(differing)}, and {MAX_WAITING} more orders under it wait already",
            side,
            original=source,
            max_raw_bytes=self.max_raw_bytes,
            differing=differing,
        )

    def _decide(
        self,
        state: KeyState,
        index: KeyState,
        clock: _Clock,
        order_id: int,
        entry: dict[str, Any],
        status: JoinStatus,
        now: int,
        decided_ms: int,
    ) -> dict[str, Any]:
        """Remember the decided order's sides until the retention passes (duplicates, late sides, replays), with
        its decision time ``decided_ms`` and where its forgetting is scheduled (for a next generation, if its
        orderId is reused), and what it reused, with the generations before it, if it did. What is stored."""
        forget_at = now + self.retention_ms
        bucket = self._schedule(index, clock, forget_at, order_id, forget=True)
        decided: dict[str, Any] = {
            "payment": entry["payment"],
            "order": entry["order"],
            "done": True,
            "status": status,
            "forgetAt": forget_at,
            "decidedMs": decided_ms,
            "forgetBucket": bucket,
            "forgetList": _forget_list(bucket),
        }
        if "reused" in entry:
            decided["reused"] = entry["reused"]
            decided["earlier"] = entry["earlier"]
        state.set(_ENTRY, decided)
        return decided

    def _schedule(self, index: KeyState, clock: _Clock, deadline: int, order_id: int, forget: bool = False) -> int:
        """Due once stream time reaches the next bucket; never in a bucket already scanned (late records). A decided
        order's forgetting (``forget``) goes to the forgetting list of the bucket's minute, under minus the minute's
        last bucket (``_forget_list``): due, it is deleted without being read. The bucket."""
        bucket = max(deadline // 1000 + 1, clock.checked + 1)
        listed = _forget_list(bucket) if forget else bucket
        key = -listed if forget else bucket
        # outside every span, or above what was stored and not made since: nothing stored there
        ids = index.get(key) if clock.may_hold(listed) and clock.may_list(key) else None
        if ids is None:
            create(index, key, [order_id])
            clock.made.add(key)
        else:
            ids.append(order_id)
            index.set(key, ids)
        clock.note(listed)
        return bucket

    def _past_retention(
        self, states: PartitionStates, index: KeyState, clock: _Clock, order_id: int, entry: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A decided order whose second of forgetting stream time has passed, its list not yet: forgotten now (out
        of its list too, which would delete the orderId's next order), unless its event still waits downstream:
        then later. The entry that stays, if one does."""
        self._unschedule_forget(index, entry, order_id)
        state = states.for_key(order_id)
        if self.holds is not None and self.holds(order_id):
            self._forget_later(states, index, clock, order_id, clock.checked * 1000)
            kept: dict[str, Any] | None = state.get(_ENTRY)
            return kept
        state.delete(_ENTRY)
        return None

    def _forget_later(self, states: PartitionStates, index: KeyState, clock: _Clock, order_id: int, now: int) -> None:
        """A decided order whose event still waits downstream (``holds``) is forgotten later; its entry notes
        where (read and written here only: rare)."""
        bucket = self._schedule(index, clock, now, order_id, forget=True)
        state = states.for_key(order_id)
        entry = state.get(_ENTRY)
        if entry is not None and entry["done"]:
            entry["forgetBucket"] = bucket
            entry["forgetList"] = _forget_list(bucket)
            state.set(_ENTRY, entry)

    def _advance(self, source: str, timestamp: int, clock: _Clock, states: PartitionStates) -> list[JoinOutput]:
        """Emit and forget what is due; cheap unless an input's stream time entered a new second.

        Stream time is a watermark: the lowest of the highest timestamps read from each input partition
        (every partition of payment and of order), so a backlog on one input (a replay, a lagging producer,
        partitions read one after the other) never expires the other side's records early. Input partitions
        idle for ``idle_ms`` are left out.
        """
        bucket = timestamp // 1000
        if bucket <= clock.sides.get(source, -1):
            return []
        clock.sides[source] = bucket
        clock.changed = True
        return self._expire_due(self._watermark(source, clock), clock, states)

    def flush(self, states: PartitionStates) -> list[JoinOutput]:
        """End of a finite input (the backtest): every waiting side gets its one-sided event now."""
        index = states.for_key(INDEX_PREFIX)
        clock = self._clock(index)
        if clock is None:
            return []
        highest = max((span[1] for span in clock.ranges), default=clock.checked)
        out = self._expire_due(highest, clock, states, pending_only=True)
        index.set(_CLOCK, clock.stored())
        return out

    def _expire_due(
        self, watermark: int, clock: _Clock, states: PartitionStates, pending_only: bool = False
    ) -> list[JoinOutput]:
        if watermark <= clock.checked:
            return []
        out: list[JoinOutput] = []
        index = states.for_key(INDEX_PREFIX)
        may_list, made = clock.may_list, clock.made
        for due in clock.due(watermark):
            ids = index.get(due) if may_list(due) else None
            made.discard(due)
            if ids is not None:
                index.delete(due)
                joined = clock.joined
                for order_id in ids:
                    if order_id in joined:  # its deadline, though it was joined: nothing to do
                        joined.discard(order_id)
                        continue
                    out.extend(self._expire(states, index, clock, order_id, watermark * 1000, pending_only))
            forgets = index.get(-due) if not pending_only and clock.may_list_forgets(due) else None
            made.discard(-due)
            if forgets is not None:
                index.delete(-due)
                for order_id in forgets:
                    if self.holds is not None and self.holds(order_id):
                        self._forget_later(states, index, clock, order_id, watermark * 1000)  # its event waits
                    else:
                        states.for_key(order_id).delete(_ENTRY)
        return out

    def _watermark(self, moved: str, clock: _Clock) -> int:
        if self.idle_s is None:
            return min(clock.sides.values())
        now = self._wall_clock()
        inputs = self._idle
        inputs.moved(moved, now)
        # A source not seen since this process started counts from now: a restart idles nobody.
        lowest = inputs.lowest(clock.sides.items(), now, when_all_idle=clock.sides[moved])
        assert lowest is not None  # every input has a bucket (-1: none read yet)
        return lowest

    def _expire(
        self, states: PartitionStates, index: KeyState, clock: _Clock, order_id: int, now: int, pending_only: bool
    ) -> list[JoinOutput]:
        state = states.for_key(order_id)
        entry = state.get(_ENTRY)
        if entry is None:
            return []
        if entry["done"]:
            if pending_only:
                return []
            if entry["forgetAt"] <= now:  # its deadline looked at after its retention, or an earlier release's
                self._past_retention(states, index, clock, order_id, entry)
            return []
        if entry["deadline"] > now and not pending_only:
            return []
        return self._expired(state, index, clock, order_id, entry, now, pending_only)

    def _expired(
        self,
        state: KeyState,
        index: KeyState,
        clock: _Clock,
        order_id: int,
        entry: dict[str, Any],
        now: int,
        pending_only: bool,
    ) -> list[JoinOutput]:
        """The one-sided event of the open order in ``entry``, decided now (stream time ``now``), and what the
        records waiting behind it decide as they start their orders (:meth:`_next_orders`)."""
        status: JoinStatus = "payment_only" if entry["payment"] is not None else "order_only"
        self.totals.expired += 1
        # decided at the end of the second its window ran out in, whenever the clock got there
        decided = (entry["deadline"] // 1000 + 1) * 1000
        reused = _reuse_of(entry)  # completed before the entry is stored as decided
        forget_from = max(now, entry["deadline"]) if pending_only else now
        stored = self._decide(state, index, clock, order_id, entry, status, forget_from, decided)
        event = enriched_event(entry["payment"], entry["order"], status, decided, reused)
        waiting = entry.get("waiting")
        return [event, *self._next_orders(state, index, clock, order_id, stored, waiting, now, pending_only)]


def _same_input(side: Side, used: Side) -> bool:
    """Whether ``side`` is the input record ``used`` read again (same topic, partition and offset)."""
    source, first = side["source"], used["source"]
    return (source["topic"], source["partition"], source["offset"]) == (
        first["topic"],
        first["partition"],
        first["offset"],
    )


def _differing(record: dict[str, Any], original: dict[str, Any]) -> list[str]:
    """The top-level fields whose values differ between two records, sorted."""
    return sorted(k for k in record.keys() | original.keys() if record.get(k) != original.get(k))


def _reuse_of(entry: dict[str, Any]) -> ReusedOrderId | None:
    """What the order in ``entry``, being decided, reused (None for an order like any other), completed here,
    in ``entry`` too (to be stored as decided), with the fields in which its records differ from the previous
    order's records of the same side: the same whichever of its records came first."""
    reused: dict[str, Any] | None = entry.get("reused")
    if reused is None:
        return None
    differing: set[str] = set()
    previous = entry["earlier"][-1]
    for name in SIDES:
        if entry[name] is not None and previous[name] is not None:
            differing.update(_differing(entry[name]["record"], previous[name]["record"]))
    complete: ReusedOrderId = {
        "previousVerdictId": reused["previousVerdictId"],
        "previousDecisionTimeMs": reused["previousDecisionTimeMs"],
        "differingFields": sorted(differing),
    }
    entry["reused"] = complete
    return complete


def decided_event(entry: dict[str, Any] | None, wanted: str, decision_ms: int) -> Enriched | None:
    """The event of the decided order whose verdictId is ``wanted``, rebuilt from the join ``entry`` of its
    orderId (that order's, or a later order's under the same orderId that keeps it): None if it holds no such
    decided order (any more)."""
    if entry is None:
        return None
    for decided in (entry, *reversed(entry.get("earlier", ()))):
        if decided["done"] and wanted == verdict_id(decided["payment"], decided["order"]):
            payment, order = decided["payment"], decided["order"]
            return enriched_event(payment, order, decided["status"], decision_ms, decided.get("reused"))
    return None


def verdict_id(payment: Side | None, order: Side | None) -> str:
    """``topic/partition/offset`` of the payment (else of the order): unique per order, traceable to its input."""
    side = payment if payment is not None else order
    assert side is not None
    source: Source = side["source"]
    return f"{source['topic']}/{source['partition']}/{source['offset']}"


_EPOCH = datetime(1970, 1, 1)
_MILLISECOND = timedelta(milliseconds=1)


def event_time_ms(create_time: str) -> int:
    """createTime ('YYYY-MM-DD HH:MM:SS.fff', UTC) as milliseconds since the epoch (a fraction of a millisecond
    rounded down). Naive arithmetic on the time as written: exact, and cheaper than an aware datetime's float
    timestamp, which also lost a millisecond of some times (BENCHMARKS "Changes and gains")."""
    return (datetime.fromisoformat(create_time) - _EPOCH) // _MILLISECOND


def rule_fields(payment: dict[str, Any] | None, order: dict[str, Any] | None) -> dict[str, Any]:
    """The fields the rules see: each schema's fields from its own side, extra fields only under names no
    schema field uses. An extra ``"category": 5`` on a payment neither replaces the order's category nor
    becomes a category of a payment without its order, so whoever writes one topic cannot choose the state
    or the rules an order is judged by. A record with exactly its schema's fields (the usual one: the
    schemas require every field they name) is copied as it is."""
    fields: dict[str, Any] = {}
    sides = [
        (record, own, len(record) == only)
        for record, own, only in ((order, ORDER_FIELDS, _ORDER_ONLY), (payment, PAYMENT_FIELDS, _PAYMENT_ONLY))
        if record is not None
    ]
    for record, _, plain in sides:
        if not plain:  # extras first, so that no typed field is replaced by one
            fields.update({name: value for name, value in record.items() if name not in SCHEMA_FIELDS})
    for record, own, plain in sides:
        fields.update(record if plain else {name: record[name] for name in own if name in record})
    return fields


def enriched_event(
    payment: Side | None,
    order: Side | None,
    status: JoinStatus,
    decided_ms: int,
    reused: ReusedOrderId | None = None,
) -> Enriched:
    """What the rules see (``event``: the order's and payment's fields merged) plus provenance, and ``reused``:
    the order decided before under its orderId, if this one reuses it (the rules see ``reusedOrderId``)."""
    present = payment if payment is not None else order
    assert present is not None
    fields = rule_fields(None if payment is None else payment["record"], None if order is None else order["record"])
    fields["orderId"] = present["orderId"]
    fields["joinStatus"] = status
    fields["eventTimeMs"] = event_time_ms(present["record"]["createTime"])
    fields["reusedOrderId"] = reused is not None  # set either way: an extra field of that name decides nothing
    sources = [s["source"]["timestamp"] for s in (payment, order) if s is not None]
    traces = [s.get("traceparent") for s in (payment, order) if s is not None]
    event: Enriched = {
        "orderId": present["orderId"],
        "verdictId": verdict_id(payment, order),
        "event": fields,
        "payment": None if payment is None else payment["record"],
        "order": None if order is None else order["record"],
        "provenance": {
            "payment": None if payment is None else payment["source"],
            "order": None if order is None else order["source"],
        },
        "inputTimestampMs": max(sources),
        "decisionTimeMs": decided_ms,
        "traceparent": next((t for t in traces if t), None),
    }
    if reused is not None:
        event["reusedOrderId"] = reused
    return event
