from __future__ import annotations

from fraudrules.rules.builtin import orphan_payment
from fraudrules.testing import event, run_rules


def test_fires_only_for_a_payment_whose_order_never_arrived() -> None:
    orphan, joined, lonely_order = run_rules(
        [event(missing="order", payAmount=10.0), event(), event(missing="payment")], rules=[orphan_payment.RULE]
    )

    assert orphan["hits"][0]["rule"] == "orphan_payment"
    assert orphan["join"]["status"] == "payment_only"
    assert orphan["decision"] == "review"
    assert joined["hits"] == []
    assert lonely_order["hits"] == []
