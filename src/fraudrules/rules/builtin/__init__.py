"""The built-in rules, registered through the ``fraudrules`` entry point exactly like a third-party plugin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fraudrules.rules.builtin import (
    amount_spike,
    merchant_category,
    orphan_payment,
    province_velocity,
    reused_order_id,
)
from fraudrules.rules.hookspecs import hookimpl
from fraudrules.rules.model import Rule


@hookimpl
def fraudrules_rules() -> Iterable[Rule[Any]]:
    return [
        amount_spike.RULE,
        province_velocity.RULE,
        merchant_category.RULE,
        orphan_payment.RULE,
        reused_order_id.RULE,
    ]
