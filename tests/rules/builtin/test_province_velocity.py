from __future__ import annotations

import random

from fraudrules.generate.data import format_time
from fraudrules.rules.builtin import province_velocity
from fraudrules.rules.builtin.province_velocity import ProvinceVelocityConfig
from fraudrules.testing import MemoryState, event, run_rules

RULES = [province_velocity.RULE]
T0 = 1_700_000_000_000


def seed_traffic(seconds: int, start_ms: int = T0, seed: int = 1) -> list[dict]:
    """Two orders a second over seven provinces, as the seed generator sends them."""
    rng = random.Random(seed)
    return [event(provinceId=rng.randint(0, 6), createTime=format_time(start_ms + i * 500)) for i in range(seconds * 2)]


def burst(province: int, n: int, start_ms: int) -> list[dict]:
    return [event(provinceId=province, createTime=format_time(start_ms + i * 100)) for i in range(n)]


def test_fires_on_a_burst_far_above_the_province_rate() -> None:
    warm = seed_traffic(600)
    verdicts = run_rules([*warm, *burst(3, 40, T0 + 600_000)], rules=RULES)

    burst_hits = [v["hits"] for v in verdicts[len(warm) :]]
    assert burst_hits[-1][0]["rule"] == "province_velocity"
    assert burst_hits[-1][0]["values"]["count"] >= 40
    assert "province 3" in burst_hits[-1][0]["reason"]
    assert burst_hits[0] == []  # the first payments of a burst are normal


def test_stays_quiet_on_seed_like_traffic() -> None:
    verdicts = run_rules(seed_traffic(3600), rules=RULES)

    assert sum(bool(v["hits"]) for v in verdicts) == 0


def test_does_not_fire_during_warm_up() -> None:
    verdicts = run_rules(burst(3, 60, T0), rules=RULES)

    assert all(v["hits"] == [] for v in verdicts)


def test_orders_without_payment_are_not_counted() -> None:
    config = ProvinceVelocityConfig()
    state = MemoryState()

    result = province_velocity.evaluate(event(missing="payment")["event"], config, state)

    assert result is None
    assert state.data == {}


def test_state_is_bounded_by_the_window() -> None:
    config = ProvinceVelocityConfig(window_seconds=30, bucket_seconds=5)
    state = MemoryState()
    for e in seed_traffic(3600):
        province_velocity.evaluate(e["event"], config, state)

    assert len(state.data["buckets"]) <= 30 // 5 + config.late_buckets


def test_a_burst_read_out_of_event_time_order_hits_the_same_payments() -> None:
    warm = seed_traffic(600)
    spike = burst(3, 40, T0 + 600_000)
    tail = seed_traffic(20, start_ms=T0 + 604_000, seed=2)
    in_order = sorted([*spike, *tail], key=lambda e: e["event"]["eventTimeMs"])
    shuffled = in_order[:]
    random.Random(3).shuffle(shuffled)  # within ~24 s of event time: less than late_buckets x bucket_seconds

    def hit_provinces(events: list[dict]) -> list[int]:
        verdicts = run_rules([*warm, *events], rules=RULES)
        return [e["event"]["provinceId"] for e, v in zip(events, verdicts[len(warm) :], strict=True) if v["hits"]]

    # Which payments see the count cross the floor depends on arrival order; that the burst is caught does not.
    assert len(hit_provinces(in_order)) >= 20
    assert len(hit_provinces(shuffled)) >= 20
    assert set(hit_provinces(in_order)) == set(hit_provinces(shuffled)) == {3}
