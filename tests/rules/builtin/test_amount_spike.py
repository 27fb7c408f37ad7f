from __future__ import annotations

import random

from fraudrules.rules.builtin import amount_spike
from fraudrules.rules.builtin.amount_spike import AmountSpikeConfig
from fraudrules.testing import MemoryState, event, run_rules

RULES = [amount_spike.RULE]


def normal_history(merchant: int, n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [event(merchantId=merchant, payAmount=rng.uniform(0, 100000)) for _ in range(n)]


def test_fires_on_a_payment_far_above_the_merchant_baseline() -> None:
    verdicts = run_rules([*normal_history(7, 20), event(merchantId=7, payAmount=600000.0)], rules=RULES)

    [hit] = verdicts[-1]["hits"]
    assert hit["rule"] == "amount_spike"
    assert hit["values"]["history"] == 20
    assert hit["values"]["payAmount"] == 600000.0
    assert "merchant 7" in hit["reason"]
    assert "600000.00" in hit["reason"]
    assert verdicts[-1]["decision"] == "review"


def test_stays_quiet_on_seed_like_traffic() -> None:
    rng = random.Random(3)
    events = [event(merchantId=rng.randint(0, 20), payAmount=rng.uniform(0, 100000)) for _ in range(3000)]

    verdicts = run_rules(events, rules=RULES)

    assert sum(bool(v["hits"]) for v in verdicts) == 0


def test_does_not_fire_before_the_minimum_history() -> None:
    verdicts = run_rules([*normal_history(7, 7), event(merchantId=7, payAmount=10_000_000.0)], rules=RULES)

    assert verdicts[-1]["hits"] == []


def test_baselines_are_per_merchant() -> None:
    verdicts = run_rules([*normal_history(1, 20), event(merchantId=2, payAmount=600000.0)], rules=RULES)

    assert verdicts[-1]["hits"] == []


def test_a_spike_does_not_raise_the_baseline() -> None:
    spikes = [event(merchantId=7, payAmount=900000.0) for _ in range(3)]

    verdicts = run_rules([*normal_history(7, 20), *spikes], rules=RULES)

    assert all(v["hits"] for v in verdicts[-3:])


def test_state_stays_three_numbers_however_long_the_history() -> None:
    state = MemoryState()
    config = AmountSpikeConfig(max_history=50)
    for e in normal_history(7, 2000):
        amount_spike.evaluate(e["event"], config, state)

    assert list(state.data) == ["stats"]
    n, mean, _var = state.data["stats"]
    assert n == 50
    assert 20000 < mean < 80000
