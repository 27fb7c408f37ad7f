"""A plugin of badly behaved rules, loaded by module name (``plugins.modules``) in the reliability tests."""

from __future__ import annotations

import time
from typing import Any

from fraudrules.rules import Event, Hit, NoConfig, Rule, RuleState, hookimpl

#: How long ``slow_rule`` takes per event: over the default isolation.slow_ms (50 ms).
SLOW_S = 0.08


def always_raises(event: Event, config: NoConfig, state: RuleState | None) -> Hit | None:
    raise RuntimeError("always_raises is broken")


def sometimes_raises(event: Event, config: NoConfig, state: RuleState | None) -> Hit | None:
    if event["orderId"] % 10 == 0:
        raise ValueError(f"sometimes_raises cannot handle order {event['orderId']}")
    return Hit(score=5, reason="sometimes_raises saw this order", values={"orderId": event["orderId"]})


def slow_rule(event: Event, config: NoConfig, state: RuleState | None) -> Hit | None:
    time.sleep(SLOW_S)
    return None


@hookimpl
def fraudrules_rules() -> list[Rule[Any]]:
    return [
        Rule(id="always_raises", version="1.0.0", description="raises on every event", evaluate=always_raises),
        Rule(id="sometimes_raises", version="1.0.0", description="raises on 1 in 10", evaluate=sometimes_raises),
        Rule(id="slow_rule", version="1.0.0", description="takes 80 ms an event", evaluate=slow_rule),
    ]
