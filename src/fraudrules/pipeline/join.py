"""The payment/order join by orderId: a small state machine over partition state, any arrival order.

Per orderId the state holds the sides seen so far. The first side waits up to the join window; the second
completes the join and emits one enriched event at once. A repeated side, or any side after the decision,
is ignored for ``dedup_retention`` (one verdict per order). A side whose partner has not arrived when the
partition's stream time (the highest Kafka timestamp seen) passes its deadline is emitted alone, with a
join status naming the missing side.

Deadlines live in an index of one-second buckets under a partition-wide prefix, so expiry costs one state
read per record and a bucket scan once per second of stream time. Like Kafka Streams' stream-time
punctuation, expiry advances only when records arrive on the partition.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, Protocol

JoinStatus = Literal["joined", "payment_only", "order_only"]
SIDES = ("payment", "order")

#: State prefix of the partition-wide deadline index (orderIds are ints, so they never collide with it).
INDEX_PREFIX = b"fraudrules:join-deadlines"
_CLOCK = "clock"
_ENTRY = "join"


class StateLike(Protocol):
    def get(self, key: Any, default: Any = None) -> Any: ...
    def set(self, key: Any, value: Any) -> None: ...
    def delete(self, key: Any) -> None: ...


class PartitionStates(Protocol):
    """State of one partition, addressable under any key (orderId, or the index prefix)."""

    def for_key(self, key: Any) -> StateLike: ...


class OrderJoin:
    """Join payment and order sides by orderId. ``process`` returns the enriched events it completes."""

    def __init__(self, window_ms: int, retention_ms: int) -> None:
        self.window_ms = window_ms
        self.retention_ms = max(retention_ms, window_ms)
        self._horizon_buckets = self.retention_ms // 1000 + 2
        self.duplicates = 0
        self.expired = 0
        self.joined = 0

    def process(self, side: dict[str, Any], timestamp: int, states: PartitionStates) -> list[dict[str, Any]]:
        """Handle one side record (see :func:`side_record`) seen at Kafka ``timestamp`` (ms)."""
        out, checked = self._advance(timestamp, states)
        order_id = side["orderId"]
        state = states.for_key(order_id)
        entry = state.get(_ENTRY)
        name = side["side"]
        if entry is None:
            deadline = timestamp + self.window_ms
            state.set(_ENTRY, {"payment": None, "order": None, name: side, "deadline": deadline, "done": False})
            self._schedule(states, deadline, order_id, checked)
            return out
        if entry["done"] or entry[name] is not None:
            self.duplicates += 1
            return out
        entry[name] = side
        out.append(enriched_event(entry["payment"], entry["order"], "joined"))
        self.joined += 1
        self._decide(state, states, order_id, timestamp, checked)
        return out

    def _decide(self, state: StateLike, states: PartitionStates, order_id: int, now: int, checked: int) -> None:
        forget_at = now + self.retention_ms
        state.set(_ENTRY, {"payment": None, "order": None, "done": True, "forgetAt": forget_at})
        self._schedule(states, forget_at, order_id, checked)

    def _schedule(self, states: PartitionStates, deadline: int, order_id: int, checked: int) -> None:
        index = states.for_key(INDEX_PREFIX)
        # Due once stream time reaches the next bucket; never in a bucket already scanned (late records).
        bucket = max(deadline // 1000 + 1, checked + 1)
        ids = index.get(bucket)
        index.set(bucket, [order_id] if ids is None else [*ids, order_id])

    def _advance(self, timestamp: int, states: PartitionStates) -> tuple[list[dict[str, Any]], int]:
        """Emit and forget what is due at ``timestamp``; cheap unless stream time entered a new second."""
        bucket = timestamp // 1000
        index = states.for_key(INDEX_PREFIX)
        clock = index.get(_CLOCK)
        if clock is None:
            index.set(_CLOCK, [bucket, bucket])
            return [], bucket
        checked, highest = clock
        if bucket <= checked:
            return [], checked
        out: list[dict[str, Any]] = []
        # Deadlines are at most `horizon` past the highest timestamp seen before, so a jump in stream
        # time never scans more buckets than that.
        for due in range(checked + 1, min(bucket, highest + self._horizon_buckets) + 1):
            ids = index.get(due)
            if ids is None:
                continue
            index.delete(due)
            for order_id in ids:
                out.extend(self._expire(states, order_id, timestamp, bucket))
        index.set(_CLOCK, [bucket, max(bucket, highest)])
        return out, bucket

    def _expire(self, states: PartitionStates, order_id: int, now: int, checked: int) -> list[dict[str, Any]]:
        state = states.for_key(order_id)
        entry = state.get(_ENTRY)
        if entry is None:
            return []
        if entry["done"]:
            if entry["forgetAt"] <= now:
                state.delete(_ENTRY)
            return []
        if entry["deadline"] > now:
            return []
        status: JoinStatus = "payment_only" if entry["payment"] is not None else "order_only"
        self.expired += 1
        self._decide(state, states, order_id, now, checked)
        return [enriched_event(entry["payment"], entry["order"], status)]


def side_record(
    record: dict[str, Any], side: str, topic: str, partition: int, offset: int, timestamp: int
) -> dict[str, Any]:
    """A validated record with its side and origin, re-keyed by ``orderId`` (normalised to int)."""
    order_id = int(record["orderId"])
    return {
        "side": side,
        "orderId": order_id,
        "record": record,
        "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp},
    }


def event_time_ms(create_time: str) -> int:
    """createTime ('YYYY-MM-DD HH:MM:SS.fff', UTC) as milliseconds since the epoch."""
    return int(datetime.fromisoformat(create_time).replace(tzinfo=UTC).timestamp() * 1000)


def enriched_event(payment: dict[str, Any] | None, order: dict[str, Any] | None, status: JoinStatus) -> dict[str, Any]:
    """What the rules see (``event``: the order's and payment's fields merged) plus provenance."""
    present = payment if payment is not None else order
    assert present is not None
    fields: dict[str, Any] = {}
    if order is not None:
        fields.update(order["record"])
    if payment is not None:
        fields.update(payment["record"])
    fields["orderId"] = present["orderId"]
    fields["joinStatus"] = status
    fields["eventTimeMs"] = event_time_ms(present["record"]["createTime"])
    sources = [s["source"]["timestamp"] for s in (payment, order) if s is not None]
    return {
        "orderId": present["orderId"],
        "event": fields,
        "payment": None if payment is None else payment["record"],
        "order": None if order is None else order["record"],
        "provenance": {
            "payment": None if payment is None else payment["source"],
            "order": None if order is None else order["source"],
        },
        "inputTimestampMs": max(sources),
    }
