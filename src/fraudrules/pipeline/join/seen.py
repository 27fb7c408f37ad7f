"""Which orderIds may have an entry in a join partition's state, so that the first side of a new order does not
look for one.

Each order's first side reads its orderId's entry, and for a new orderId (every order but a retry, a replay or
a reuse) the store has none: in the running app that read goes through Quix Streams' transaction to RocksDB and
comes back empty, one such read per order (BENCHMARKS "Where the time goes", "What a state read costs").
:class:`SeenOrders` answers "not stored" without reading, exactly (never for an orderId that has an entry) and
in memory of about two bytes per orderId listed, from two facts of the join's index (``index.py``):

- every entry in the state is listed, in a deadline list or a forgetting list, until that list falls due; the
  list's bucket is at most the highest bucket of the clock's spans (``Clock.ranges``);
- every entry is written, and listed again, only through :func:`index.schedule`, which tells this object.

So an orderId scheduled since the partition's state was opened is remembered (a Bloom filter: "may be" is
sometimes wrong, which costs the read it would have cost anyway; "not" never is) at least until stream time has
passed the list it was put in, and then may be forgotten: its entry is gone, or it was scheduled again and is
remembered from then. The filters are kept in generations, each closed when it holds :data:`CAPACITY`
orderIds and dropped once the clock has checked past the highest list bucket any of them was put in (one
record timestamped far in the future keeps its own generation, not the others). A partition whose state held
join entries when it was opened (a restart, a rebalance) answers "may be" for every orderId until stream time
has passed the highest list bucket its stored clock knew.

Memory: about two bytes per orderId listed within the retention (``dedup_retention_seconds`` of stream time),
in generations of 1 MiB; past :data:`MAX_GENERATIONS` of them (some 16 million orderIds in one partition's
retention) a partition reads every first side again, as before, until stream time has passed them.
"""

from __future__ import annotations

#: Bits of one generation's filter (a power of two: 1 MiB) ...
BITS_LOG2 = 23
#: ... and how many orderIds it takes before it is closed: 16 bits each, so that with two probes an orderId
#: never scheduled is taken for one that was about once in seventy reads, a full generation, at worst.
CAPACITY = (1 << BITS_LOG2) // 16
#: More generations alive than this (a retention holding more orderIds than they take, or stream time stopped):
#: they are given up for "may be" until stream time passes them all, so memory stays bounded (32 MiB).
MAX_GENERATIONS = 32

_NEVER = 1 << 62  # a bucket stream time never reaches
_MIX = 0x9E3779B97F4A7C15  # 2**64 / the golden ratio: a multiplicative hash spreads consecutive orderIds
_MASK64 = (1 << 64) - 1
_LOW = (1 << BITS_LOG2) - 1


def _probes(order_id: object) -> tuple[int, int]:
    """The two bits of ``order_id`` in a generation: the top bits of its mixed hash, and bits from its middle."""
    mixed = (hash(order_id) * _MIX) & _MASK64
    return mixed >> (64 - BITS_LOG2), (mixed >> 16) & _LOW


class _Generation:
    __slots__ = ("bits", "count", "until")

    def __init__(self) -> None:
        self.bits = bytearray(1 << (BITS_LOG2 - 3))
        self.count = 0
        self.until = -1  # the highest list bucket any of its orderIds was put in

    def has(self, first: int, second: int) -> bool:
        bits = self.bits
        return bool(bits[first >> 3] >> (first & 7) & 1 and bits[second >> 3] >> (second & 7) & 1)

    def add(self, first: int, second: int) -> None:
        bits = self.bits
        bits[first >> 3] |= 1 << (first & 7)
        bits[second >> 3] |= 1 << (second & 7)
        self.count += 1


class SeenOrders:
    """The orderIds that may have an entry in one join partition's state (module docstring). ``stored_until``:
    the highest list bucket of the clock read from the state when it was opened (None: there was no clock, so
    no entry either); until stream time has passed it, every orderId may have one."""

    __slots__ = ("_all_until", "_closed", "_current")

    def __init__(self, stored_until: int | None) -> None:
        self._all_until = stored_until
        self._current: _Generation | None = None
        self._closed: list[_Generation] = []

    def may_be_stored(self, order_id: object) -> bool:
        """False only if ``order_id`` has no entry in the state (nor in a cache in front of it)."""
        if self._all_until is not None:
            return True
        current = self._current
        if current is None:
            return False
        first, second = _probes(order_id)
        if current.has(first, second):
            return True
        return any(generation.has(first, second) for generation in self._closed)

    def scheduled(self, order_id: object, bucket: int) -> None:
        """``order_id``'s entry was written and put in the list of ``bucket`` (a deadline's or a forgetting's)."""
        first, second = _probes(order_id)
        current = self._current
        if current is None:
            current = self._current = _Generation()
        elif current.has(first, second):  # there already (or its bits are): it stays until this bucket too
            current.until = max(current.until, bucket)
            return
        elif current.count >= CAPACITY:
            self._closed.append(current)
            current = self._current = _Generation()
            if len(self._closed) >= MAX_GENERATIONS:
                self._give_up()
        current.add(first, second)
        if bucket > current.until:
            current.until = bucket

    def unknown(self) -> None:
        """From now on every orderId may have an entry (lists were dropped without forgetting what they held)."""
        self._all_until = _NEVER
        self._closed = []

    def passed(self, checked: int) -> None:
        """Stream time has checked every list up to bucket ``checked`` (and handled what they held)."""
        if self._all_until is not None and self._all_until <= checked:
            self._all_until = None
        if self._closed:
            self._closed = [generation for generation in self._closed if generation.until > checked]

    def _give_up(self) -> None:
        """Too many generations alive: "may be" for every orderId until stream time passes every list theirs
        were put in, the filters dropped (the current one, just opened, keeps what is scheduled from now)."""
        until = max(generation.until for generation in self._closed)
        self._all_until = max(until, self._all_until if self._all_until is not None else -1)
        self._closed = []
