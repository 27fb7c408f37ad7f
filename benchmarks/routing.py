"""What routing an item to its partition costs at several partitions (BENCHMARKS.md, "Changes and gains").

    python benchmarks/routing.py

Every side and every event a packer sends to an internal topic is routed by Kafka's murmur2 of its key
(``pipeline/nodes/routing.py``, ``pipeline/nodes/packets.py``): two sides by orderId and one event per rule group
per order. Prints µs per call of ``murmur2`` on orderId-like keys and of a packer's ``partition_by`` for orderIds
(new keys, each seen twice) and for a rule group's keys (a few hundred merchants, seen again and again).
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

from fraudrules import codec
from fraudrules.pipeline.nodes.packets import partition_by
from fraudrules.pipeline.nodes.routing import murmur2

ORDERS = 20_000
MERCHANTS = 500
REPEAT = 5


def per_call_us(calls: Callable[[], Any], count: int) -> float:
    """The fastest of ``REPEAT`` runs of ``calls`` (``count`` calls each), in µs per call."""
    return min(timeit.repeat(calls, number=1, repeat=REPEAT)) / count * 1e6


def main() -> None:
    keys = [str(order_id).encode() for order_id in range(1_000_000, 1_000_000 + ORDERS)]
    print(f"murmur2, orderId keys: {per_call_us(lambda: [murmur2(k) for k in keys], ORDERS):.2f} µs")

    # a new packer for each run: an orderId is new to it, then seen once more (its other side)
    sides = [{"orderId": str(order_id)} for order_id in range(1_000_000, 1_000_000 + ORDERS // 2) for _ in "po"]

    def route_sides() -> None:
        by_order = partition_by(lambda side: side["orderId"], 4, str.encode)
        for side in sides:
            by_order(side)

    print(f"partition_by, orderIds (each twice): {per_call_us(route_sides, ORDERS):.2f} µs")

    events = [{"event": {"merchantId": n % MERCHANTS}} for n in range(ORDERS)]

    def route_events() -> None:
        by_merchant = partition_by(lambda event: event["event"]["merchantId"], 4, codec.dumps_strict)
        for event in events:
            by_merchant(event)

    print(f"partition_by, {MERCHANTS} merchants: {per_call_us(route_events, ORDERS):.2f} µs")


if __name__ == "__main__":
    main()
