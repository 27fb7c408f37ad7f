"""The join of one partition (:class:`OrderJoin`): its record path (``process``, ``progress``: a side, or an
input partition's progress) and its timer path (``tick``: a quiet stream; ``flush``: the end of a finite
input), both over the state index (``index.py``); its watermark (``watermark_ms``) by the rule in
``watermark.py``. What it does is described in the package's docstring (``join/__init__.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fraudrules.pipeline.deadletter import side_deadletter
from fraudrules.pipeline.join.events import (
    SIDES,
    differing_fields,
    enriched_event,
    reuse_of,
    same_input,
    verdict_id,
)
from fraudrules.pipeline.join.index import (
    CLOCK_KEY,
    INDEX_PREFIX,
    Clock,
    forget_list,
    schedule,
    unschedule_forget,
)
from fraudrules.pipeline.model import DeadLetter, Enriched, JoinStatus, Side, is_deadletter
from fraudrules.pipeline.progress import CAUGHT_UP_TTL_S
from fraudrules.pipeline.watermark import IdleInputs
from fraudrules.state import KeyState, PartitionStates, create

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
JoinOutput = Enriched | DeadLetter
#: With no consumer lag, a join partition whose inputs have not moved for this long (wall time) is quiet.
QUIET_S = 2.0


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

    One object per join partition and assignment of it (``quix.StoreCaches`` makes a new one with the
    partition's state cache after each assignment): it reads its clock from the state, and keeps in memory only
    what belongs to this assignment (the clock, its inputs' idle clocks and readers' words). ``totals`` is
    shared by the join partitions of an instance.
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

        ``idle_ms``: an input partition that has held the watermark back, still, for this long (wall time, in this
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
        self._clock_read: Clock | None = None
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
        # a new orderId (most) has no entry to read (``seen.py``)
        entry = state.get(_ENTRY) if clock.seen.may_be_stored(order_id) else None
        if entry is not None and "forgetList" in entry and entry["forgetBucket"] <= clock.checked:
            entry = self._past_retention(states, index, clock, order_id, entry)
        if entry is None:
            deadline = timestamp + self.window_ms
            create(state, _ENTRY, {"payment": None, "order": None, name: side, "deadline": deadline, "done": False})
            schedule(index, clock, deadline, order_id)
        elif "earlier" in entry and self._repeats_earlier(side, entry["earlier"], out):
            pass  # a replay or a retry of a side of an earlier order under this orderId
        elif entry[name] is not None:
            first: Side = entry[name]
            if same_input(side, first):
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
            reused = reuse_of(entry)  # completed before the entry is stored as decided
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
            if same_input(side, queued):
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
        clock: Clock,
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
        clock: Clock,
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
        unschedule_forget(index, entry, order_id)
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
        schedule(index, clock, deadline, order_id)
        self.totals.reused += 1
        return opened

    def _repeats_earlier(self, side: Side, earlier: list[dict[str, Any]], out: list[JoinOutput]) -> bool:
        """Whether ``side`` is a replay or a retry of its side of an earlier generation of its orderId (a
        retry is dead-lettered ``duplicate`` into ``out``)."""
        name = side["side"]
        for decided in reversed(earlier):
            used: Side | None = decided[name]
            if used is None:
                continue
            if same_input(side, used):
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

    def _moved(self, source: str, timestamp: int, states: PartitionStates) -> tuple[KeyState, Clock, list[JoinOutput]]:
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

    def _clock(self, index: KeyState, create: bool = False) -> Clock | None:
        """The partition's clock: read from the state once (None if there is none, unless ``create``: then a new
        one), then kept in memory."""
        if self._clock_read is not None:
            return self._clock_read
        stored = index.get(CLOCK_KEY)
        if stored is None and not create:
            return None
        self._clock_read = Clock(stored, self._gap, self.inputs)
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

    def _settle(self, index: KeyState, clock: Clock, out: list[JoinOutput]) -> list[JoinOutput]:
        """Store the clock if it changed and remember what was emitted; ``out``."""
        if clock.changed:
            index.set(CLOCK_KEY, clock.stored())
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
        differing = differing_fields(side["record"], first["record"])
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
        clock: Clock,
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
        bucket = schedule(index, clock, forget_at, order_id, forget=True)
        decided: dict[str, Any] = {
            "payment": entry["payment"],
            "order": entry["order"],
            "done": True,
            "status": status,
            "forgetAt": forget_at,
            "decidedMs": decided_ms,
            "forgetBucket": bucket,
            "forgetList": forget_list(bucket),
        }
        if "reused" in entry:
            decided["reused"] = entry["reused"]
            decided["earlier"] = entry["earlier"]
        state.set(_ENTRY, decided)
        return decided

    def _past_retention(
        self, states: PartitionStates, index: KeyState, clock: Clock, order_id: int, entry: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A decided order whose second of forgetting stream time has passed, its list not yet: forgotten now (out
        of its list too, which would delete the orderId's next order), unless its event still waits downstream:
        then later. The entry that stays, if one does."""
        unschedule_forget(index, entry, order_id)
        state = states.for_key(order_id)
        if self.holds is not None and self.holds(order_id):
            self._forget_later(states, index, clock, order_id, clock.checked * 1000)
            kept: dict[str, Any] | None = state.get(_ENTRY)
            return kept
        state.delete(_ENTRY)
        return None

    def _forget_later(self, states: PartitionStates, index: KeyState, clock: Clock, order_id: int, now: int) -> None:
        """A decided order whose event still waits downstream (``holds``) is forgotten later; its entry notes
        where (read and written here only: rare)."""
        bucket = schedule(index, clock, now, order_id, forget=True)
        state = states.for_key(order_id)
        entry = state.get(_ENTRY)
        if entry is not None and entry["done"]:
            entry["forgetBucket"] = bucket
            entry["forgetList"] = forget_list(bucket)
            state.set(_ENTRY, entry)

    def _advance(self, source: str, timestamp: int, clock: Clock, states: PartitionStates) -> list[JoinOutput]:
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
        index.set(CLOCK_KEY, clock.stored())
        clock.seen.unknown()  # the forgetting lists passed were dropped unread: their entries stay, unlisted
        return out

    def _expire_due(
        self, watermark: int, clock: Clock, states: PartitionStates, pending_only: bool = False
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
        if not pending_only:  # every list up to the watermark is handled
            clock.seen.passed(watermark)
        return out

    def _watermark(self, moved: str, clock: Clock) -> int:
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
        self, states: PartitionStates, index: KeyState, clock: Clock, order_id: int, now: int, pending_only: bool
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
        clock: Clock,
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
        reused = reuse_of(entry)  # completed before the entry is stored as decided
        forget_from = max(now, entry["deadline"]) if pending_only else now
        stored = self._decide(state, index, clock, order_id, entry, status, forget_from, decided)
        event = enriched_event(entry["payment"], entry["order"], status, decided, reused)
        waiting = entry.get("waiting")
        return [event, *self._next_orders(state, index, clock, order_id, stored, waiting, now, pending_only)]
