"""The one state protocol: what the join and the rules read and write under one key.

In the live pipeline it is Quix Streams' RocksDB-backed state (changelogged to Kafka); in the backtest and
in tests it is a dict (:class:`fraudrules.testing.MemoryState`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol


class KeyState(Protocol):
    """State under one key (an orderId, a merchant, a province): get, set and delete by name."""

    def get(self, key: Any, default: Any = None) -> Any: ...
    def set(self, key: Any, value: Any) -> None: ...
    def delete(self, key: Any) -> None: ...


class PartitionStates(Protocol):
    """State of one partition, addressable under any key prefix (an orderId, a rule group's key, an index)."""

    def for_key(self, key: Any) -> KeyState: ...


_ABSENT: Any = object()
#: Which values a :class:`WriteBackStates` keeps cached across a flush: ``(prefix, key, written)``, ``written``
#: saying whether that flush wrote it.
Keep = Callable[[Any, Any, bool], bool]


class UnstorableValue(ValueError):
    """A value written to state that the store cannot keep (not JSON-serializable)."""


class _CachedKeyState:
    """One prefix's values as read or written since the last flush; ``_ABSENT`` marks a known absence, ``fresh``
    the keys known to be absent from the backing (read so, or :func:`create` d): deleting one writes nothing."""

    __slots__ = ("_backing", "_owner", "_prefix", "dirty", "fresh", "values")

    def __init__(self, owner: WriteBackStates, prefix: Any) -> None:
        self._owner = owner
        self._prefix = prefix
        self._backing: KeyState | None = None
        self.values: dict[Any, Any] = {}
        self.dirty: set[Any] = set()
        self.fresh: set[Any] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        values = self.values
        value = values.get(key, _ABSENT)
        if value is _ABSENT and key not in values:
            value = values[key] = self.backing().get(key, _ABSENT)
            if value is _ABSENT:
                self.fresh.add(key)
        return default if value is _ABSENT else value

    def set(self, key: Any, value: Any) -> None:
        self.values[key] = value
        self._changed(key)

    def create(self, key: Any, value: Any) -> None:
        """Set ``key``, which the caller knows the state does not hold. Untouched since the last flush, the
        backing does not hold it either."""
        values = self.values
        if key not in values:
            self.fresh.add(key)
        values[key] = value
        self._changed(key)

    def delete(self, key: Any) -> None:
        self.values[key] = _ABSENT
        self._changed(key)

    def _changed(self, key: Any) -> None:
        if not self.dirty:
            self._owner.dirty.append(self)
        self.dirty.add(key)

    def backing(self) -> KeyState:
        if self._backing is None:
            self._backing = self._owner.backing.for_key(self._prefix)
        return self._backing

    def flush(self) -> int:
        backing, values, fresh = self.backing(), self.values, self.fresh
        written = 0
        for key in self.dirty:
            value = values[key]
            if value is _ABSENT:
                if key not in fresh:  # a key made and deleted since the last flush: the backing never had it
                    backing.delete(key)
                    written += 1
                continue
            try:
                backing.set(key, value)
            except Exception as exc:  # the store's serializer: a plugin rule's value it cannot store
                raise UnstorableValue(f"state under {self._prefix!r}, {key!r} cannot be stored: {exc}") from exc
            written += 1
        return written

    def retain(self, keep: Keep) -> bool:
        """After a flush: keep the values ``keep`` names (all stored now), forget the rest and every known
        absence. Whether any is kept."""
        prefix, dirty = self._prefix, self.dirty
        self.values = {
            key: value for key, value in self.values.items() if value is not _ABSENT and keep(prefix, key, key in dirty)
        }
        self.fresh = set()
        self.dirty = set()
        return bool(self.values)


def create(state: KeyState, key: Any, value: Any) -> None:
    """``state.set(key, value)`` for a ``key`` the caller knows ``state`` does not hold (a new reorder bucket, a
    waiting event, a deadline list): behind a :class:`WriteBackStates` cache, a key so made and deleted before the
    next flush never reaches the store (no delete, no changelog tombstone)."""
    if type(state) is _CachedKeyState:
        state.create(key, value)
    else:
        state.set(key, value)


class WriteBackStates:
    """A write-back cache in front of a partition's state (``backing``, say a store transaction): every value is
    read from it at most once and written to it at most once per :meth:`flush`, however often the steps touch it,
    and a key known to be new (read as absent, or :func:`create` d) that is deleted before the flush never reaches
    it at all: at several partitions most of what the reorder buffers and the join's deadline lists hold lives
    less than a checkpoint.

    The steps see the very objects they stored, as over plain dicts (the backtest's state), so what they compute
    is the same; the owner must :meth:`flush` before the backing is committed (a checkpoint), and drop the cache
    with the backing when it is (a lost partition). Values must be what the backing can store (JSON).

    A flush forgets what it wrote, except the values ``keep(prefix, key, written)`` names: those are what the
    backing now holds, so they stay cached into the next transaction (:meth:`rebind`) for as long as the backing
    is this process's alone (its partition stays assigned). Keep small, hot values (a deadline list read when it
    falls due, the reorder buffer's buckets), not one per order. ``kept_prefixes``: the only prefixes ``keep``
    names anything under (None: any); a flush forgets the others without asking about each of their values (an
    order's entry, a rule group's key: hundreds a checkpoint).
    """

    __slots__ = ("_keep", "_kept_prefixes", "_prefixes", "backing", "dirty")

    def __init__(
        self, backing: PartitionStates, keep: Keep | None = None, kept_prefixes: Collection[Any] | None = None
    ) -> None:
        self.backing = backing
        self._keep = keep
        self._kept_prefixes = kept_prefixes
        self._prefixes: dict[Any, _CachedKeyState] = {}
        self.dirty: list[_CachedKeyState] = []

    def for_key(self, key: Any) -> KeyState:
        state = self._prefixes.get(key)
        if state is None:
            state = self._prefixes[key] = _CachedKeyState(self, key)
        return state

    def rebind(self, backing: PartitionStates) -> None:
        """Read from and flush to ``backing`` from now on (a new transaction: the previous one was flushed)."""
        self.backing = backing
        for state in self._prefixes.values():
            state._backing = None

    def flush(self) -> int:
        """Write every change since the last flush to the backing, then forget all but what ``keep`` names (it
        is all stored): how many values were written or deleted."""
        written = sum(state.flush() for state in self.dirty)
        self.dirty = []
        keep, kept = self._keep, self._kept_prefixes
        if keep is None:
            self._prefixes.clear()
        elif kept is None:
            self._prefixes = {prefix: state for prefix, state in self._prefixes.items() if state.retain(keep)}
        else:
            self._prefixes = {
                prefix: state for prefix in kept if (state := self._prefixes.get(prefix)) and state.retain(keep)
            }
        return written
