"""The join's state index: where each join partition keeps its clock and its deadline and forgetting lists.

Under :data:`INDEX_PREFIX` of the partition's state: the clock (:class:`Clock`, under :data:`CLOCK_KEY`), the
orderIds whose join window ends in each second (under the second), and the decided orders to forget in each
minute of stream time (under minus the minute's last second, :func:`forget_list`). :func:`schedule` and
:func:`unschedule_forget` write the lists; the join's timer path reads them as stream time passes them.
"""

from __future__ import annotations

from typing import Any

from fraudrules.pipeline.join.seen import SeenOrders
from fraudrules.state import KeyState, create

#: State prefix of the partition-wide deadline index (orderIds are ints, so they never collide with it).
INDEX_PREFIX = b"fraudrules:join-deadlines"
#: The key of the partition's clock in the index.
CLOCK_KEY = "clock"


def kept_cached(prefix: Any, key: Any, written: bool) -> bool:
    """What of the join's state stays cached across checkpoints (``state.WriteBackStates``): its clock and its
    deadline lists, each read when it falls due, within the join window of its writing; a forgetting list only
    while it is being written (it is read next a retention later); not the orders' entries (one per order)."""
    return prefix == INDEX_PREFIX and (written or not (type(key) is int and key < 0))


#: The only prefix ``kept_cached`` keeps anything under.
KEPT_PREFIXES = frozenset({INDEX_PREFIX})


#: Decided orders are listed for forgetting by the minute of stream time (the bucket that ends it); an entry
#: notes the second it is forgotten in (``forgetBucket``) and its list (``forgetList``).
FORGET_LIST_S = 60


def forget_list(bucket: int) -> int:
    """The bucket of the forgetting list of an order forgotten in second ``bucket``: the minute's last."""
    return -(-bucket // FORGET_LIST_S) * FORGET_LIST_S


class Clock:
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

    ``seen``: the orderIds that may have an entry in the partition's state (``seen.py``), told by
    :func:`schedule`; in memory only, like ``horizon``.
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
        "seen",
        "sides",
    )

    def __init__(self, stored: dict[str, Any] | None, gap: int, inputs: list[str]) -> None:
        self.gap = gap
        self.changed = stored is None
        # A new clock has scanned nothing. Not even up to the first record it sees: with several partitions that
        # can be the progress of an input read far ahead of the others, whose sides still to come would then be
        # scheduled after every watermark sent meanwhile. Only spans holding deadlines are scanned, so a first
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
        # a stored clock: its partition's state may hold entries, listed up to its horizon
        self.seen = SeenOrders(None if self.changed else self.horizon)

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


def schedule(index: KeyState, clock: Clock, deadline: int, order_id: int, forget: bool = False) -> int:
    """Due once stream time reaches the next bucket; never in a bucket already scanned (late records). A decided
    order's forgetting (``forget``) goes to the forgetting list of the bucket's minute, under minus the minute's
    last bucket (``_forget_list``): due, it is deleted without being read. The bucket."""
    bucket = max(deadline // 1000 + 1, clock.checked + 1)
    listed = forget_list(bucket) if forget else bucket
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
    clock.seen.scheduled(order_id, listed)
    return bucket


def unschedule_forget(index: KeyState, entry: dict[str, Any], order_id: int) -> None:
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
