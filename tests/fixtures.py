"""Records in the seed's exact formats, and an in-memory partition state for pure-logic tests."""

from __future__ import annotations

from typing import Any

from fraudrules.testing import MemoryState

PAYMENT = {
    "createTime": "2023-12-08 22:19:02.808",
    "orderId": 1702074256,
    "payAmount": 79901.88673289565,
    "payPlatform": 1,
    "provinceId": 1,
}
ORDER = {
    "createTime": "2024-07-19 20:47:25.707",
    "orderId": 1721422046,
    "category": "kids_pets",
    "merchantId": 869,
}


def payment(order_id: int, **fields: Any) -> dict[str, Any]:
    return {**PAYMENT, "orderId": order_id, **fields}


def order(order_id: int, **fields: Any) -> dict[str, Any]:
    return {**ORDER, "orderId": order_id, **fields}


class DictPartitionStates:
    """Partition state in memory: one dict per key prefix."""

    def __init__(self) -> None:
        self.by_key: dict[Any, dict[Any, Any]] = {}

    def for_key(self, key: Any) -> MemoryState:
        return MemoryState(self.by_key.setdefault(key, {}))

    def live_keys(self) -> set[Any]:
        return {key for key, data in self.by_key.items() if data}


class ReadCountingStates(DictPartitionStates):
    """Partition state that records what is read: ``read`` the key of every read, ``names`` its name too."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[Any] = []
        self.names: list[tuple[Any, Any]] = []

    def for_key(self, key: Any) -> Any:
        state, states = super().for_key(key), self

        class Counting:
            def get(self, name: Any, default: Any = None) -> Any:
                states.read.append(key)
                states.names.append((key, name))
                return state.get(name, default)

            def set(self, name: Any, value: Any) -> None:
                state.set(name, value)

            def delete(self, name: Any) -> None:
                state.delete(name)

        return Counting()


class FakeWallClock:
    """A wall clock the test moves by hand (``now``, seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
