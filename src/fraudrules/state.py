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
