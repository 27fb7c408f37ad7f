"""The one state protocol: what the join and the rules read and write under one key.

In the live pipeline it is Quix Streams' RocksDB-backed state (changelogged to Kafka); in the backtest and
in tests it is a dict (:class:`fraudrules.testing.MemoryState`).
"""

from __future__ import annotations

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


class UnstorableValue(ValueError):
    """A value written to state that the store cannot keep (not JSON-serializable)."""


class _CachedKeyState:
    """One prefix's values as read or written since the last flush; ``_ABSENT`` marks a known absence."""

    __slots__ = ("_backing", "_owner", "_prefix", "dirty", "values")

    def __init__(self, owner: WriteBackStates, prefix: Any) -> None:
        self._owner = owner
        self._prefix = prefix
        self._backing: KeyState | None = None
        self.values: dict[Any, Any] = {}
        self.dirty: set[Any] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        values = self.values
        value = values.get(key, _ABSENT)
        if value is _ABSENT and key not in values:
            value = values[key] = self.backing().get(key, _ABSENT)
        return default if value is _ABSENT else value

    def set(self, key: Any, value: Any) -> None:
        self.values[key] = value
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
        backing, values = self.backing(), self.values
        for key in self.dirty:
            value = values[key]
            if value is _ABSENT:
                backing.delete(key)
                continue
            try:
                backing.set(key, value)
            except Exception as exc:  # the store's serializer: a plugin rule's value it cannot store
                raise UnstorableValue(f"state under {self._prefix!r}, {key!r} cannot be stored: {exc}") from exc
        return len(self.dirty)


class WriteBackStates:
    """A write-back cache in front of a partition's state (``backing``, say a store transaction): every value is
    read from it at most once and written to it at most once per :meth:`flush`, however often the steps touch it,
    and a value written and deleted between two flushes never reaches it at all.

    The steps see the very objects they stored, as over plain dicts (the backtest's state), so what they compute
    is the same; the owner must :meth:`flush` before the backing is committed (a checkpoint), and drop the cache
    with the backing when it is (a lost partition). Values must be what the backing can store (JSON).
    """

    __slots__ = ("_prefixes", "backing", "dirty")

    def __init__(self, backing: PartitionStates) -> None:
        self.backing = backing
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
        """Write every change since the last flush to the backing, then forget everything (it is all stored):
        how many values were written or deleted."""
        written = sum(state.flush() for state in self.dirty)
        self._prefixes.clear()
        self.dirty = []
        return written
