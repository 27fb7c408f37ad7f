"""What the join makes of records: the enriched event its rules see, its ``verdictId``, event time, the
rules' fields; whether a record is another read of one already used, what differs between two, and what an
order under a reused orderId reused (none of it touches state)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fraudrules.pipeline.model import Enriched, JoinStatus, ReusedOrderId, Side, Source
from fraudrules.validation import SchemaName, load_schema

SIDES = ("payment", "order")


def _schema_fields(name: SchemaName) -> tuple[frozenset[str], int]:
    """A schema's fields, and how many fields a valid record has when it has no other (-1: cannot be told,
    some field is optional)."""
    schema = load_schema(name)
    fields = frozenset(schema["properties"])
    return fields, len(fields) if fields <= set(schema.get("required", ())) else -1


PAYMENT_FIELDS, _PAYMENT_ONLY = _schema_fields("payment")
ORDER_FIELDS, _ORDER_ONLY = _schema_fields("order")
SCHEMA_FIELDS = PAYMENT_FIELDS | ORDER_FIELDS


def same_input(side: Side, used: Side) -> bool:
    """Whether ``side`` is the input record ``used`` read again (same topic, partition and offset)."""
    source, first = side["source"], used["source"]
    return (source["topic"], source["partition"], source["offset"]) == (
        first["topic"],
        first["partition"],
        first["offset"],
    )


def differing_fields(record: dict[str, Any], original: dict[str, Any]) -> list[str]:
    """The top-level fields whose values differ between two records, sorted."""
    return sorted(k for k in record.keys() | original.keys() if record.get(k) != original.get(k))


def reuse_of(entry: dict[str, Any]) -> ReusedOrderId | None:
    """What the order in ``entry``, being decided, reused (None for an order like any other), completed here,
    in ``entry`` too (to be stored as decided), with the fields in which its records differ from the previous
    order's records of the same side: the same whichever of its records came first."""
    reused: dict[str, Any] | None = entry.get("reused")
    if reused is None:
        return None
    differing: set[str] = set()
    previous = entry["earlier"][-1]
    for name in SIDES:
        if entry[name] is not None and previous[name] is not None:
            differing.update(differing_fields(entry[name]["record"], previous[name]["record"]))
    complete: ReusedOrderId = {
        "previousVerdictId": reused["previousVerdictId"],
        "previousDecisionTimeMs": reused["previousDecisionTimeMs"],
        "differingFields": sorted(differing),
    }
    entry["reused"] = complete
    return complete


def decided_event(entry: dict[str, Any] | None, wanted: str, decision_ms: int) -> Enriched | None:
    """The event of the decided order whose verdictId is ``wanted``, rebuilt from the join ``entry`` of its
    orderId (that order's, or a later order's under the same orderId that keeps it): None if it holds no such
    decided order (any more)."""
    if entry is None:
        return None
    for decided in (entry, *reversed(entry.get("earlier", ()))):
        if decided["done"] and wanted == verdict_id(decided["payment"], decided["order"]):
            payment, order = decided["payment"], decided["order"]
            return enriched_event(payment, order, decided["status"], decision_ms, decided.get("reused"))
    return None


def verdict_id(payment: Side | None, order: Side | None) -> str:
    """``topic/partition/offset`` of the payment (else of the order): unique per order, traceable to its input."""
    side = payment if payment is not None else order
    assert side is not None
    source: Source = side["source"]
    return f"{source['topic']}/{source['partition']}/{source['offset']}"


_EPOCH = datetime(1970, 1, 1)
_MILLISECOND = timedelta(milliseconds=1)


def event_time_ms(create_time: str) -> int:
    """createTime ('YYYY-MM-DD HH:MM:SS.fff', UTC) as milliseconds since the epoch (a fraction of a millisecond
    rounded down). Naive arithmetic on the time as written: exact, and cheaper than an aware datetime's float
    timestamp, which also lost a millisecond of some times (BENCHMARKS "Changes and gains")."""
    return (datetime.fromisoformat(create_time) - _EPOCH) // _MILLISECOND


def rule_fields(payment: dict[str, Any] | None, order: dict[str, Any] | None) -> dict[str, Any]:
    """The fields the rules see: each schema's fields from its own side, extra fields only under names no
    schema field uses. An extra ``"category": 5`` on a payment neither replaces the order's category nor
    becomes a category of a payment without its order, so whoever writes one topic cannot choose the state
    or the rules an order is judged by. A record with exactly its schema's fields (the usual one: the
    schemas require every field they name) is copied as it is."""
    fields: dict[str, Any] = {}
    sides = [
        (record, own, len(record) == only)
        for record, own, only in ((order, ORDER_FIELDS, _ORDER_ONLY), (payment, PAYMENT_FIELDS, _PAYMENT_ONLY))
        if record is not None
    ]
    for record, _, plain in sides:
        if not plain:  # extras first, so that no typed field is replaced by one
            fields.update({name: value for name, value in record.items() if name not in SCHEMA_FIELDS})
    for record, own, plain in sides:
        fields.update(record if plain else {name: record[name] for name in own if name in record})
    return fields


def enriched_event(
    payment: Side | None,
    order: Side | None,
    status: JoinStatus,
    decided_ms: int,
    reused: ReusedOrderId | None = None,
) -> Enriched:
    """What the rules see (``event``: the order's and payment's fields merged) plus provenance, and ``reused``:
    the order decided before under its orderId, if this one reuses it (the rules see ``reusedOrderId``)."""
    present = payment if payment is not None else order
    assert present is not None
    fields = rule_fields(None if payment is None else payment["record"], None if order is None else order["record"])
    fields["orderId"] = present["orderId"]
    fields["joinStatus"] = status
    fields["eventTimeMs"] = event_time_ms(present["record"]["createTime"])
    fields["reusedOrderId"] = reused is not None  # set either way: an extra field of that name decides nothing
    sources = [s["source"]["timestamp"] for s in (payment, order) if s is not None]
    traces = [s.get("traceparent") for s in (payment, order) if s is not None]
    event: Enriched = {
        "orderId": present["orderId"],
        "verdictId": verdict_id(payment, order),
        "event": fields,
        "payment": None if payment is None else payment["record"],
        "order": None if order is None else order["record"],
        "provenance": {
            "payment": None if payment is None else payment["source"],
            "order": None if order is None else order["source"],
        },
        "inputTimestampMs": max(sources),
        "decisionTimeMs": decided_ms,
        "traceparent": next((t for t in traces if t), None),
    }
    if reused is not None:
        event["reusedOrderId"] = reused
    return event
