from __future__ import annotations

import math
import random

from fraudrules.generate.data import GeneratorConfig
from fraudrules.rules.builtin import amount_spike
from fraudrules.rules.builtin.amount_spike import AmountSpikeConfig
from fraudrules.testing import MemoryState, event, run_rules
from tests.rules.builtin.driver import generated_events, hits

RULES = [amount_spike.RULE]


def uniform_history(merchant: int, n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [event(merchantId=merchant, payAmount=rng.uniform(0, 100000)) for _ in range(n)]


def lognormal_history(merchant: int, n: int, median: float, sigma: float, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [event(merchantId=merchant, payAmount=median * math.exp(rng.gauss(0, sigma))) for _ in range(n)]


def test_fires_on_a_payment_far_above_the_merchant_baseline() -> None:
    verdicts = run_rules([*uniform_history(7, 30), event(merchantId=7, payAmount=600000.0)], rules=RULES)

    [hit] = verdicts[-1]["hits"]
    assert hit["rule"] == "amount_spike"
    assert hit["version"] == "2.0.0"
    assert hit["values"]["history"] == 30
    assert "merchant 7" in hit["reason"]
    assert "600000.00" in hit["reason"]
    assert verdicts[-1]["decision"] == "review"


def test_the_line_follows_each_merchants_own_scale() -> None:
    small = lognormal_history(1, 60, median=20.0, sigma=0.4)
    large = lognormal_history(2, 60, median=5000.0, sigma=0.4)
    spikes = [event(merchantId=1, payAmount=600.0), event(merchantId=2, payAmount=600.0)]

    verdicts = run_rules([*small, *large, *spikes], rules=RULES)

    assert verdicts[-2]["hits"]
    assert not verdicts[-1]["hits"]


def test_no_hit_from_a_small_noisy_history() -> None:
    # A merchant with a wide spread (log-normal, sigma 0.8, median ~1,000) whose first payments happen to be
    # low, then an ordinary 2,000: 3x their mean, where 1.0.0 (max(mean + 4 std, 3 x mean)) fired.
    low = [400, 600, 500, 700, 650, 900, 550, 800, 450]
    nine = [event(merchantId=3, payAmount=float(a)) for a in low]
    ten = [*nine, event(merchantId=3, payAmount=1000.0)]

    assert run_rules([*nine, event(merchantId=3, payAmount=2000.0)], rules=RULES)[-1]["hits"] == []
    assert run_rules([*ten, event(merchantId=3, payAmount=2000.0)], rules=RULES)[-1]["hits"] == []
    assert run_rules([*ten, event(merchantId=3, payAmount=25000.0)], rules=RULES)[-1]["hits"]


def test_does_not_fire_before_the_minimum_history() -> None:
    verdicts = run_rules([*uniform_history(7, 9), event(merchantId=7, payAmount=10_000_000.0)], rules=RULES)

    assert verdicts[-1]["hits"] == []


def test_quiet_on_seed_profile_traffic() -> None:
    events, _ = generated_events(GeneratorConfig(profile="seed", count=20000, seed=11))

    flagged = list(hits(amount_spike.RULE, events))

    assert len(flagged) <= 0.001 * len(events)


def test_quiet_on_log_normal_merchants_with_a_wide_spread() -> None:
    events = [e for m in range(20) for e in lognormal_history(m, 200, median=50.0 * (m + 1), sigma=0.6, seed=m)]

    verdicts = run_rules(events, rules=RULES)

    assert sum(bool(v["hits"]) for v in verdicts) <= 0.003 * len(events)


def test_repeated_spikes_do_not_raise_the_line() -> None:
    spikes = [event(merchantId=7, payAmount=900000.0) for _ in range(5)]

    verdicts = run_rules([*uniform_history(7, 30), *spikes], rules=RULES)

    assert all(v["hits"] for v in verdicts[-5:])


def test_follows_a_slow_drift() -> None:
    rng = random.Random(4)
    drifting = [event(merchantId=9, payAmount=100 * (1 + i / 100) * math.exp(rng.gauss(0, 0.3))) for i in range(400)]

    verdicts = run_rules(drifting, rules=RULES)

    assert sum(bool(v["hits"]) for v in verdicts) == 0  # 100 -> 500 over 400 payments


def test_state_is_bounded_by_the_sample_size() -> None:
    state = MemoryState()
    config = AmountSpikeConfig(sample_size=50)
    for e in uniform_history(7, 2000):
        amount_spike.evaluate(e["event"], config, state)

    assert list(state.data) == ["recent"]
    assert len(state.data["recent"]) == 50
