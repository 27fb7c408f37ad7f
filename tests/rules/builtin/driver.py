"""A tiny pure driver: generated records joined by orderId and fed in order to one rule, state per key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fraudrules import codec
from fraudrules.generate.data import GeneratorConfig, Label, generator
from fraudrules.rules.model import Hit, Rule
from fraudrules.testing import MemoryState


def time_ms(create_time: str) -> int:
    return int(datetime.strptime(create_time, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp() * 1000)


def generated_events(config: GeneratorConfig) -> tuple[list[dict[str, Any]], list[Label]]:
    """Joined events (payment fields win) in send order, and the labels."""
    source = generator(config)
    payments: dict[int, dict[str, Any]] = {}
    orders: dict[int, dict[str, Any]] = {}
    for record in source.records():
        value = codec.loads(record.value)
        (payments if record.topic == "payment" else orders)[value["orderId"]] = value
    events = []
    for order_id, payment in payments.items():
        order = orders.get(order_id)
        event = {**(order or {}), **payment, "eventTimeMs": time_ms(payment["createTime"])}
        event["joinStatus"] = "joined" if order else "payment_only"
        events.append(event)
    return events, source.labels


def hits(rule: Rule[Any], events: list[dict[str, Any]], config: Any = None) -> Iterator[tuple[dict[str, Any], Hit]]:
    """(event, hit) for every event the rule hits, evaluating all events in order."""
    config = config or rule.config_model()
    states: dict[Any, MemoryState] = {}
    for event in events:
        state = _state(states, event.get(rule.key)) if rule.key else None
        hit = rule.evaluate(event, config, state)
        if hit is not None:
            yield event, hit


def _state(states: dict[Any, MemoryState], key: Any) -> MemoryState:
    if key not in states:
        states[key] = MemoryState()
    return states[key]
