"""The watermark and idleness rule, written once, in Flink's words; the join and the rule groups both use it.

Every stateful stage has inputs, each with a watermark: how far in event time that input has been read.

- A **join partition**'s inputs are the input partitions its sides come from (``payment/3``, ``order/0``); an
  input's watermark is the highest Kafka timestamp read from it (several partitions: its reader's progress
  record says so, ``progress.py``).
- A **rule-group partition**'s inputs are the partitions of the stage before it (the join's, or the previous
  group's); an input's watermark is the one its latest heartbeat carried.

The stage's **watermark** is the lowest watermark of its inputs that are not idle (:meth:`IdleInputs.lowest`),
as Flink's ``StatusWatermarkValve`` combines input channels. An input is **idle** (Flink's
``WatermarkStatus.IDLE``) when it has held the watermark back, without moving, for ``idle_s`` of wall time (the
``join_idle_seconds`` setting) and, where the inputs' readers confirm what they read (several partitions), its
reader's latest word said it had read everything there is: an input whose reader is merely behind on a backlog,
busy elsewhere, or gone holds the stage back for as long as that lasts, as it must, since its records will still
come. Flink counts idleness from an input's last record; here the clock starts once the input is the one holding
the watermark back (the lowest, or never heard of), and restarts when it moves: a partition that was still but
ahead of the others, whose last word was "read to the end", may be moving to another instance (a rebalance),
and must not be idle the moment the others pass it. When every input is idle the stage's watermark is what
each caller says (the join sends no watermark; a rule group takes the highest, as Flink does).

A stage partition that heard nothing at all for :data:`STALL_S` was not being read (a backlog elsewhere, a
rebalance) or its whole stream paused: every input's idle clock restarts, so that no input counts as idle for
a time in which nothing could be read.

Where this rule is applied: ``join/operator.py`` (expiry of one-sided orders, and the join partition's watermark sent to
the rule groups), ``reorder.py`` (what a rule group releases). The rest of event time, in the same words: a
**timer** (``nodes/timers.py``) lets a stage act between records, the join expiring one-sided orders and
promoting a partition whose inputs are all idle; **allowed lateness** is the rule groups' ``reorder_bound_ms``,
and an event that comes below a watermark already passed is evaluated at once and marked ``late``.

The other words for time in the code, each one of these:

- a **progress** record: an input partition's watermark, which its reader sends every join partition (as a
  Flink source sends its split's watermark); a **heartbeat**: a stage partition's watermark record to every
  partition of the next stage, after the events it covers (Flink's watermark element on a channel);
- **caught up** (a reader's word): it has read everything there is, so its input may be idle; **behind**: records
  of a partition's own input wait unread, so it is not idle, only not read yet; **settled**: the whole app has
  no consumer lag (one partition, where no reader reports);
- **quiet**: every input of a join partition has been still for ``join_quiet_seconds`` and may be idle
  (:meth:`IdleInputs.all_idle_since`; Flink: the partition's own status turns idle), and its timer lets stream
  time follow the wall clock;
- a **stall**: nothing reached a partition for :data:`STALL_S`: its inputs' idle clocks restart.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

#: A stage partition that received nothing for this long (wall time) was not being read, or its whole stream
#: paused: its inputs' idle clocks restart (their records may be queued right behind). Live inputs report at
#: least every 50 ms, so only a stall or a stream slower than a record per 5 s gets here.
STALL_S = 5.0

K = TypeVar("K", bound=Hashable)


class IdleInputs(Generic[K]):
    """Which inputs of one stage partition are idle, and the partition's watermark over the rest.

    ``idle_s``: how long an input holds the watermark back, still, before it may be idle (None: never, the
    backtest).
    ``confirmed``: the inputs' readers say whether they have read everything there is (:meth:`confirm`), and
    only an input whose reader said so can be idle; ``confirmation_s``: how long such a word holds (None: until
    the next). A reader that is caught up repeats its word at least every second, so the join believes it for
    five; a join partition's heartbeat goes out only when its watermark moves, so a rule group believes the
    latest one until the next.
    """

    __slots__ = ("_confirmed_at", "_heard_at", "_holding_since", "_moved_at", "confirmation_s", "confirmed", "idle_s")

    def __init__(self, idle_s: float | None, confirmed: bool = False, confirmation_s: float | None = None) -> None:
        self.idle_s = idle_s
        self.confirmed = confirmed
        self.confirmation_s = confirmation_s
        # input -> wall time it last moved (or was first asked about)
        self._moved_at: dict[K, float] = {}
        # input -> wall time since when it has held the watermark back without moving
        self._holding_since: dict[K, float] = {}
        # input -> wall time its reader last said it had read everything there is (``confirmed``)
        self._confirmed_at: dict[K, float] = {}
        self._heard_at: float | None = None

    def heard(self, now: float) -> None:
        """Something reached this partition at wall time ``now``: after a stall every idle clock restarts."""
        last = self._heard_at
        if last is not None and now - last > STALL_S:
            for clocks in (self._moved_at, self._holding_since):
                for key in clocks:
                    clocks[key] = now
        self._heard_at = now

    def moved(self, key: K, now: float) -> None:
        """Input ``key``'s watermark rose at wall time ``now``: it is not idle, and its clock starts again when it
        next holds the watermark back."""
        self._moved_at[key] = now
        self._holding_since.pop(key, None)

    def confirm(self, key: K, caught_up: bool, now: float) -> None:
        """Input ``key``'s reader said at ``now`` whether it had read everything there is."""
        if caught_up:
            self._confirmed_at[key] = now
        else:
            self._confirmed_at.pop(key, None)

    def idle(self, key: K, now: float) -> bool:
        """Whether input ``key``, holding the watermark back at wall time ``now``, is idle (its clock starts now
        if it was not running)."""
        since = self._holding_since.setdefault(key, now)
        return self.idle_s is not None and now - since >= self.idle_s and self._may_idle(key, now)

    def lowest(self, marks: Iterable[tuple[K, int | None]], now: float, when_all_idle: int | None = None) -> int | None:
        """The partition's watermark from its inputs' ``(input, watermark)``: the lowest of those not idle; None
        while one that is not idle has none (never heard of); ``when_all_idle`` if every input is idle. Only the
        inputs at or below it hold it back: their clocks run (all of them, ties and the never heard of alike);
        the clocks of those above it stop."""
        holding = self._holding_since
        watermark: int | None = when_all_idle
        found = False
        for key, mark in sorted(marks, key=_lowest_first):
            if found:
                if mark is None or (watermark is not None and mark <= watermark):
                    holding.setdefault(key, now)  # level with the watermark: holding it back too
                else:
                    holding.pop(key, None)
            elif not self.idle(key, now):
                watermark, found = mark, True
        return watermark

    def all_idle_since(self, keys: Iterable[K], now: float, still_s: float) -> float | None:
        """If no input in ``keys`` has moved for ``still_s`` and each may be idle: since when the last one has
        been still (wall time); else None. The partition as a whole has gone idle (a quiet stream)."""
        last = None
        for key in keys:
            since = self._moved_at.setdefault(key, now)
            if now - since < still_s or not self._may_idle(key, now):
                return None
            if last is None or since > last:
                last = since
        return last

    def _may_idle(self, key: K, now: float) -> bool:
        """Whether input ``key`` may count as idle: always, unless ``confirmed`` (then: its reader's latest word
        said it had read everything there is, within ``confirmation_s``)."""
        if not self.confirmed:
            return True
        said = self._confirmed_at.get(key)
        return said is not None and (self.confirmation_s is None or now - said < self.confirmation_s)


def _lowest_first(mark: tuple[Any, int | None]) -> int:
    """Where an input sorts: by its watermark, one never heard of first."""
    return -(2**63) if mark[1] is None else mark[1]
