"""Test rules without Kafka, through the same code the pipeline uses.

For plugin authors::

    from fraudrules.testing import event, run_rules

    verdicts = run_rules([event(payAmount=5000.0), event(payAmount=12.5)], rules=[MY_RULE])
    assert verdicts[0]["hits"][0]["rule"] == "my_rule"

``run_rules`` builds the rule set as ``fraudrules run`` does (config, modes, isolation, scoring from
``settings``), evaluates each event's rule groups with the pipeline's :class:`Evaluator` — keyed state
held in memory per group value instead of in Kafka-backed RocksDB — and returns the verdicts the
pipeline would write to ``sink``, in input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import count
from typing import Any

from fraudrules.pipeline.decode import side_record
from fraudrules.pipeline.evaluate import Evaluator
from fraudrules.pipeline.join import enriched_event, event_time_ms
from fraudrules.pipeline.model import Enriched, Source, Verdict
from fraudrules.rules.engine import RuleSet
from fraudrules.rules.model import Rule
from fraudrules.rules.registry import RegisteredRule, discover_configured
from fraudrules.settings import Settings

__all__ = ["MemoryState", "event", "run_rules"]

_order_ids = count(1)

DEFAULT_PAYMENT = {"createTime": "2024-01-01 12:00:00.000", "payAmount": 100.0, "payPlatform": 0, "provinceId": 1}
DEFAULT_ORDER = {"createTime": "2024-01-01 12:00:00.000", "category": "grocery_pos", "merchantId": 1}
PAYMENT_FIELDS = frozenset(DEFAULT_PAYMENT) | {"orderId"}
ORDER_FIELDS = frozenset(DEFAULT_ORDER) | {"orderId"}


class MemoryState:
    """:class:`fraudrules.state.KeyState` (get/set/delete) over a dict: ``data``, or a new one."""

    def __init__(self, data: dict[Any, Any] | None = None) -> None:
        self.data: dict[Any, Any] = {} if data is None else data

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: Any) -> None:
        self.data.pop(key, None)


def event(*, missing: str | None = None, **fields: Any) -> Enriched:
    """An enriched event as the join builds it, from seed-format defaults overridden by ``fields``.

    ``missing="order"`` (or ``"payment"``) builds a one-sided event, as for an order that never arrived.
    Fields belong to the payment or the order by the seed's formats; unknown fields go to the payment.
    """
    order_id = fields.pop("orderId", None) or next(_order_ids)
    payment = {**DEFAULT_PAYMENT, "orderId": order_id}
    order = {**DEFAULT_ORDER, "orderId": order_id}
    for name, value in fields.items():
        if name in ORDER_FIELDS and name != "createTime":
            order[name] = value
        else:
            payment[name] = value
            if name == "createTime":
                order[name] = value
    payment_side = None if missing == "payment" else side_record(payment, "payment", _source("payment", order_id))
    order_side = None if missing == "order" else side_record(order, "order", _source("order", order_id))
    status = {"order": "payment_only", "payment": "order_only", None: "joined"}[missing]
    decided = event_time_ms(str(payment["createTime"]))
    return enriched_event(payment_side, order_side, status, decided)  # type: ignore[arg-type]


def _source(topic: str, order_id: int) -> Source:
    return {"topic": topic, "partition": 0, "offset": order_id, "timestamp": 0}


def run_rules(
    events: Iterable[Mapping[str, Any]],
    *,
    rules: Sequence[Rule[Any]] | None = None,
    settings: Settings | None = None,
) -> list[Verdict]:
    """The verdicts for ``events`` (from :func:`event`), evaluated one after the other with shared state.

    ``rules``: exactly these rules (as the plugin "test"); None: every installed plugin's rules.
    """
    settings = settings or Settings()
    if rules is None:
        plugins = settings.plugins
        registered = discover_configured(plugins).rules(strict=plugins.strict)
    else:
        registered = {rule.id: RegisteredRule(rule, "test") for rule in rules}
    evaluator = Evaluator(RuleSet.build(registered, settings), settings.scoring)
    states: dict[tuple[str, Any], MemoryState] = {}

    def state_of(field: str, key: Any) -> MemoryState:
        return states.setdefault((field, key), MemoryState())

    return [evaluator.evaluate(dict(enriched), state_of) for enriched in events]  # type: ignore[arg-type]
