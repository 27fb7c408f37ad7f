from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

import pytest

from fraudrules.generate.data import GeneratorConfig
from fraudrules.pipeline.model import Enriched
from fraudrules.rules.builtin import amount_spike
from fraudrules.rules.builtin.amount_spike import AmountSpikeConfig
from fraudrules.testing import MemoryState, event, run_rules
from tests.rules.builtin.driver import generated_events, hits

RULES = [amount_spike.RULE]


def uniform_history(merchant: int, n: int, seed: int = 1) -> list[Enriched]:
    rng = random.Random(seed)
    return [event(merchantId=merchant, payAmount=rng.uniform(0, 100000)) for _ in range(n)]


def lognormal_history(merchant: int, n: int, median: float, sigma: float, seed: int = 1) -> list[Enriched]:
    rng = random.Random(seed)
    return [event(merchantId=merchant, payAmount=median * math.exp(rng.gauss(0, sigma))) for _ in range(n)]


def test_fires_on_a_payment_far_above_the_merchant_baseline() -> None:
    verdicts = run_rules([*uniform_history(7, 30), event(merchantId=7, payAmount=600000.0)], rules=RULES)

    [hit] = verdicts[-1]["hits"]
    assert hit["rule"] == "amount_spike"
    assert hit["version"] == "2.1.0"
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


def amount_of(e: Enriched) -> float:
    return float(e["event"]["payAmount"])


def log_uniform_history(merchant: int, n: int, low: float, width: float, seed: int = 1) -> list[Enriched]:
    rng = random.Random(seed)
    return [event(merchantId=merchant, payAmount=low * math.exp(rng.uniform(0, math.log(width)))) for _ in range(n)]


def test_catches_spikes_just_beyond_a_wide_range() -> None:
    # Merchants whose amounts spread evenly over 100x (10-1,000), 10-60 payments each; a spike of 2.5x the
    # range's top. Rules 2.0.0 extrapolated from q75-q95 with a capped ratio: ~4-6x the largest amount, above
    # 2.5x the largest for most of them.
    caught = []
    missed_by_the_tail_line = 0
    for m, n in enumerate(range(10, 61, 5)):
        history = log_uniform_history(m, n, low=10.0, width=100.0, seed=m)
        caught.append(bool(run_rules([*history, event(merchantId=m, payAmount=2500.0)], rules=RULES)[-1]["hits"]))
        largest = max(amount_of(e) for e in history)
        config = AmountSpikeConfig(range_multiple=1e9)  # the tail line alone, as in 2.0.0
        state = MemoryState()
        for e in history:
            amount_spike.evaluate(e["event"], config, state)
        spike = event(merchantId=m, payAmount=2.5 * largest)["event"]
        missed_by_the_tail_line += amount_spike.evaluate(spike, config, state) is None

    assert all(caught)
    assert missed_by_the_tail_line >= len(caught) / 2


def test_the_range_line_fires_only_well_beyond_the_largest_recent_amount() -> None:
    history = log_uniform_history(5, 64, low=10.0, width=100.0)
    largest = max(amount_of(e) for e in history)

    assert run_rules([*history, event(merchantId=5, payAmount=1.9 * largest)], rules=RULES)[-1]["hits"] == []
    [hit] = run_rules([*history, event(merchantId=5, payAmount=2.5 * largest)], rules=RULES)[-1]["hits"]
    assert hit["values"]["largest"] == largest
    assert hit["values"]["threshold"] == pytest.approx(largest * 2 ** (1 + 0.75 / 8))


def test_quiet_on_merchants_with_amounts_spread_over_a_wide_range() -> None:
    events = [e for m in range(20) for e in log_uniform_history(m, 200, low=1.0 + m, width=30.0 + 15 * m, seed=m)]

    verdicts = run_rules(events, rules=RULES)

    flagged = [i % 200 for i, v in enumerate(verdicts) if v["hits"]]
    assert len(flagged) <= 0.004 * len(events)
    # Only early: 10-30 payments may not have reached the top of the range yet.
    assert max(flagged) < 40


def baskets(merchant: int, pattern: str, seed: int = 1) -> list[Enriched]:
    """'s' a small basket (~20), 'L' a large one (~600)."""
    rng = random.Random(seed)
    return [
        event(merchantId=merchant, payAmount=(600.0 if kind == "L" else 20.0) * math.exp(rng.gauss(0, 0.3)))
        for kind in pattern
    ]


def test_a_level_of_large_baskets_is_learned_after_recurring_hits() -> None:
    # The first 12 payments happen to be small baskets; large ones (30x) then come every third payment.
    orders = baskets(4, "s" * 12 + "ssL" * 20)

    verdicts = run_rules(orders, rules=RULES)

    flagged = [i for i, v in enumerate(verdicts) if v["hits"]]
    assert flagged == [14, 17, 20, 23, 26]  # 5 (``recurring``), then the level is the merchant's own
    assert not any(v["hits"] for v in verdicts[27:])


def test_never_learned_without_recurring() -> None:
    orders = baskets(4, "s" * 12 + "ssL" * 20)

    config = AmountSpikeConfig(recurring=0)
    state = MemoryState()
    flagged = sum(amount_spike.evaluate(e["event"], config, state) is not None for e in orders)

    assert flagged == 20


def test_a_run_of_spikes_in_a_row_counts_once() -> None:
    spikes = [event(merchantId=7, payAmount=900000.0) for _ in range(12)]

    verdicts = run_rules([*uniform_history(7, 30), *spikes], rules=RULES)

    assert all(v["hits"] for v in verdicts[-12:])


def test_held_amounts_older_than_the_sample_are_forgotten() -> None:
    # Four spikes among ordinary payments, then 64 ordinary ones: the four leave with the sample, so four
    # more do not make the five that would join it.
    rng = random.Random(3)
    ordinary: Callable[[], Enriched] = lambda: event(merchantId=8, payAmount=rng.uniform(0, 100000))  # noqa: E731
    spike = event(merchantId=8, payAmount=900000.0)
    first = [e for _ in range(4) for e in (ordinary(), spike)]
    later = [e for _ in range(4) for e in (ordinary(), spike)]

    verdicts = run_rules(
        [*[ordinary() for _ in range(30)], *first, *[ordinary() for _ in range(64)], *later, ordinary(), spike],
        rules=RULES,
    )

    assert all(v["hits"] for v in verdicts[31:38:2])
    assert all(v["hits"] for v in verdicts[-9::2])
    assert not any(v["hits"] for v in verdicts[-10::2])


def test_state_is_json_and_bounded() -> None:
    config = AmountSpikeConfig()
    state = MemoryState()
    rng = random.Random(5)
    direct = MemoryState()
    results = []
    for i in range(3000):
        amount = 20 * math.exp(rng.gauss(0, 0.3)) * (30 if i > 12 and rng.random() < 0.2 else 1)
        e = event(merchantId=4, payAmount=amount)["event"]
        state.data = json.loads(json.dumps(state.data))  # as the state store keeps it
        results.append(amount_spike.evaluate(e, config, state) is not None)
        assert (amount_spike.evaluate(e, config, direct) is not None) == results[-1]
        assert len(state.data["recent"]) <= config.sample_size
        assert len(state.data.get("held", [])) < config.recurring

    flagged = [i for i, hit in enumerate(results) if hit]
    assert set(state.data) <= {"recent", "held"}
    assert len(flagged) >= config.recurring
    assert max(flagged) < 50  # the large baskets' level learned


def test_realistic_profile_spikes_beyond_a_wide_range_caught_its_control_quiet() -> None:
    events, labels = generated_events(GeneratorConfig(profile="realistic", count=20000, seed=5))
    scenario = {label.orderId: label.scenario for label in labels}
    flagged = {e["orderId"] for e, _ in hits(amount_spike.RULE, events)}
    spikes = [order for order, name in scenario.items() if name == "amount_spike_wide"]
    control = [order for order, name in scenario.items() if name == "wide_amounts"]

    assert len(spikes) >= 15
    assert sum(order in flagged for order in spikes) >= 0.9 * len(spikes)
    assert len(control) >= 300
    assert sum(order in flagged for order in control) <= 0.02 * len(control)
