from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import pytest

from fraudrules import codec
from fraudrules.generate import realistic
from fraudrules.generate.data import CATEGORIES, SCENARIOS, Generator, GeneratorConfig, Produced, format_time, generator
from fraudrules.validation import validator

NO_SCENARIOS: dict[str, float] = {}


def records(config: GeneratorConfig) -> tuple[list[Produced], Generator]:
    generator = Generator(config)
    return list(generator.records()), generator


def test_every_generated_record_is_valid_and_byte_compatible_with_the_seed() -> None:
    produced, _ = records(GeneratorConfig(count=2000, seed=1))

    for record in produced:
        value = codec.loads(record.value)
        assert validator(record.topic).is_valid(value)
        assert record.value.decode() == codec.dumps_spaced(value).decode()  # '{"createTime": "...", ...}'
        assert record.timestamp_ms // 1000 * 1000 <= record.timestamp_ms


def test_the_same_seed_gives_the_same_output_and_another_seed_does_not() -> None:
    first, g1 = records(GeneratorConfig(count=1000, seed=7))
    second, g2 = records(GeneratorConfig(count=1000, seed=7))
    other, _ = records(GeneratorConfig(count=1000, seed=8))

    assert first == second
    assert g1.labels == g2.labels
    assert first != other


def test_normal_traffic_follows_the_seed_distributions() -> None:
    config = GeneratorConfig(count=20000, seed=2, scenario_rates=NO_SCENARIOS)
    produced, _ = records(config)
    payments = [codec.loads(r.value) for r in produced if r.topic == "payment"]
    orders = [codec.loads(r.value) for r in produced if r.topic == "order"]

    assert len(payments) == len(orders) == 20000
    assert [p["orderId"] for p in payments] == list(range(config.start_ms // 1000, config.start_ms // 1000 + 20000))
    assert all(0 <= p["payAmount"] < 100000 for p in payments)
    assert statistics.mean(p["payAmount"] for p in payments) == pytest.approx(50000, rel=0.02)
    assert sum(p["payPlatform"] == 0 for p in payments) / 20000 == pytest.approx(0.9, abs=0.01)
    assert {p["provinceId"] for p in payments} == set(range(7))
    assert {o["category"] for o in orders} <= set(CATEGORIES)
    assert min(o["merchantId"] for o in orders) >= 0
    assert max(o["merchantId"] for o in orders) <= 1000
    assert payments[1]["createTime"] == format_time(config.start_ms + 500)
    assert payments[0]["createTime"] == orders[0]["createTime"]


def test_merchants_keep_their_home_category_in_normal_traffic() -> None:
    produced, _ = records(GeneratorConfig(count=5000, seed=3, scenario_rates=NO_SCENARIOS))
    categories: dict[int, set[str]] = {}
    for record in produced:
        if record.topic == "order":
            order = codec.loads(record.value)
            categories.setdefault(order["merchantId"], set()).add(order["category"])

    assert all(len(seen) == 1 for seen in categories.values())


def test_scenario_rates_are_met_within_tolerance() -> None:
    rates = {"amount_spike": 0.01, "category_shift": 0.01, "orphan_payment": 0.02, "province_burst": 0.0005}
    _, generator = records(GeneratorConfig(count=20000, seed=4, scenario_rates=rates))
    counts = Counter(label.scenario for label in generator.labels)

    assert counts["amount_spike"] / 20000 == pytest.approx(0.01, rel=0.25)
    assert counts["category_shift"] / 20000 == pytest.approx(0.01, rel=0.25)
    assert counts["orphan_payment"] / 20000 == pytest.approx(0.02, rel=0.2)
    assert counts["province_burst"] % 40 == 0
    assert counts["province_burst"] / 40 / 20000 == pytest.approx(0.0005, rel=0.6)
    assert counts["card_testing"] == 0


def test_scenarios_look_like_what_they_are_labelled() -> None:
    produced, generator = records(GeneratorConfig(count=20000, seed=5))
    payments: dict[int, dict[str, Any]] = {}
    orders: dict[int, dict[str, Any]] = {}
    for record in produced:
        value = codec.loads(record.value)
        (payments if record.topic == "payment" else orders)[value["orderId"]] = value
    by_scenario: dict[str, list[int]] = {}
    for label in generator.labels:
        by_scenario.setdefault(label.scenario, []).append(label.orderId)

    assert set(by_scenario) == set(SCENARIOS)
    assert all(payments[i]["payAmount"] >= 250000 for i in by_scenario["amount_spike"])
    assert all(i not in orders for i in by_scenario["orphan_payment"])
    assert all(payments[i]["payAmount"] < 5.01 for i in by_scenario["card_testing"])
    assert all(i in orders for i in by_scenario["category_shift"])
    assert len(set(payments) - set(orders)) == len(by_scenario["orphan_payment"])


def test_no_scenario_starts_in_the_quiet_tail() -> None:
    config = GeneratorConfig(count=2000, seed=6, scenario_rates={"orphan_payment": 0.2}, quiet_tail_ms=100_000)
    _, generator = records(config)

    last_labelled = max(label.orderId for label in generator.labels)
    assert last_labelled < config.start_ms // 1000 + 2000 - 200


def test_order_first_duplicates_and_malformed_records_on_request() -> None:
    config = GeneratorConfig(
        count=2000, seed=9, order_first_rate=1.0, duplicate_rate=0.1, malformed_rate=0.05, scenario_rates=NO_SCENARIOS
    )
    produced, _ = records(config)
    valid = [r for r in produced if validator(r.topic).is_valid(_loads_or_none(r.value))]

    assert produced[0].topic == "order"
    assert len(valid) - 4000 == pytest.approx(400, rel=0.25)  # duplicates
    assert len(produced) - len(valid) == pytest.approx(100, rel=0.35)  # malformed


def _loads_or_none(raw: bytes) -> object:
    try:
        return codec.loads(raw)
    except ValueError:
        return None


def test_unknown_scenarios_and_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenarios: fraud"):
        GeneratorConfig(scenario_rates={"fraud": 0.1})
    with pytest.raises(ValueError, match="unknown scenarios: amount_spike_wide"):
        GeneratorConfig(profile="labelled", scenario_rates={"amount_spike_wide": 0.01})
    assert GeneratorConfig(profile="realistic", scenario_rates={"amount_spike_wide": 0.01}).rates
    with pytest.raises(ValueError, match="within"):
        GeneratorConfig(duplicate_rate=2)


def test_seed_profile_is_the_seed_generator_a_category_per_order_and_no_labels() -> None:
    generator = Generator(GeneratorConfig(profile="seed", count=20000, seed=5))
    produced = list(generator.records())
    orders = [codec.loads(r.value) for r in produced if r.topic == "order"]
    payments = [codec.loads(r.value) for r in produced if r.topic == "payment"]
    categories: dict[int, set[str]] = {}
    for order in orders:
        categories.setdefault(order["merchantId"], set()).add(order["category"])

    assert generator.labels == []
    assert len(orders) == len(payments) == 20000
    assert statistics.mean(len(seen) for seen in categories.values()) > 7  # ~20 orders over 11 categories each
    assert statistics.mean(p["payAmount"] for p in payments) == pytest.approx(50000, rel=0.02)
    assert sum(p["payPlatform"] == 0 for p in payments) / 20000 == pytest.approx(0.9, abs=0.01)
    assert payments[1]["createTime"] == format_time(GeneratorConfig().start_ms + 500)


def test_burst_labels_carry_their_burst_id() -> None:
    _, generator = records(GeneratorConfig(count=20000, seed=4, scenario_rates={"province_burst": 0.0005}))
    bursts = Counter(label.burst for label in generator.labels)

    assert bursts
    assert all(size == 40 for size in bursts.values())
    assert generator.labels[0].as_dict() == {
        "orderId": generator.labels[0].orderId,
        "scenario": "province_burst",
        "burst": 1,
    }


def test_realistic_profile_is_heterogeneous_with_scenarios_and_controls() -> None:
    source = generator(GeneratorConfig(profile="realistic", count=20000, seed=3))
    produced = list(source.records())
    payments = [codec.loads(r.value) for r in produced if r.topic == "payment"]
    orders = {o["orderId"]: o for o in (codec.loads(r.value) for r in produced if r.topic == "order")}
    seconds = (payments[-1]["orderId"] - payments[0]["orderId"] + 1) / (
        (produced[-1].timestamp_ms - produced[0].timestamp_ms) / 1000
    )
    provinces = Counter(p["provinceId"] for p in payments)
    merchants = Counter(o["merchantId"] for o in orders.values())
    scenarios = Counter(label.scenario for label in source.labels if label.fraud)
    controls = Counter(label.scenario for label in source.labels if not label.fraud)

    assert 8 < seconds < 12  # ~10 orders/s
    assert max(provinces.values()) > 15 * min(provinces.values())
    assert merchants.most_common(1)[0][1] > 50 * statistics.median(merchants.values())
    assert set(scenarios) >= {"amount_spike", "amount_spike_wide", "category_shift", "orphan_payment", "province_burst"}
    assert set(controls) == {"amount_drift", "category_added", "province_rise", "wide_amounts"}
    assert all(validator("payment").is_valid(p) for p in payments)
    control = next(label for label in source.labels if not label.fraud)
    assert control.as_dict() == {"orderId": control.orderId, "scenario": control.scenario, "fraud": False}


def test_realistic_profile_is_reproducible() -> None:
    first = list(generator(GeneratorConfig(profile="realistic", count=2000, seed=8)).records())
    second = list(generator(GeneratorConfig(profile="realistic", count=2000, seed=8)).records())

    assert first == second


def realistic_pairs(config: GeneratorConfig) -> tuple[Any, dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    source = generator(config)
    payments: dict[int, dict[str, Any]] = {}
    orders: dict[int, dict[str, Any]] = {}
    for record in source.records():
        value = codec.loads(record.value)
        (payments if record.topic == "payment" else orders)[value["orderId"]] = value
    return source, payments, orders


def test_realistic_wide_spread_merchants_their_spikes_and_control() -> None:
    source, payments, orders = realistic_pairs(GeneratorConfig(profile="realistic", count=20000, seed=3))
    scenario = {label.orderId: label.scenario for label in source.labels}
    amounts: dict[int, list[float]] = {}
    spikes = 0
    for order_id, payment in payments.items():
        merchant: Any = orders[order_id]["merchantId"] if order_id in orders else None
        if scenario.get(order_id) == "amount_spike_wide":
            spikes += 1
            wide = source.wide[merchant]
            assert merchant not in source.wide_controls
            assert 2 * wide.ceiling <= payment["payAmount"] <= 5 * wide.ceiling
            assert payment["payAmount"] > 1.5 * max(amounts[merchant])  # well beyond what it took before
            assert len(amounts[merchant]) >= 10
        elif merchant in source.wide and scenario.get(order_id) in (None, "wide_amounts", "province_rise"):
            amounts.setdefault(merchant, []).append(payment["payAmount"])
            if scenario.get(order_id) != "province_rise":  # that control's label comes first
                assert (scenario.get(order_id) == "wide_amounts") == (merchant in source.wide_controls)

    assert spikes >= 15
    assert len(source.wide) == 40
    assert len(source.wide_controls) == 20
    assert {wide.kind for wide in source.wide.values()} == {"baskets", "range", "lognormal"}
    cut_points = [statistics.quantiles(a, n=20) for a in amounts.values() if len(a) >= 40]
    assert cut_points
    assert all(q[-1] / q[0] >= 10 for q in cut_points)  # q95 / q5: spread over an order of magnitude or more


def test_realistic_wide_spread_merchants_leave_other_traffic_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    config = GeneratorConfig(profile="realistic", count=5000, seed=4)
    source, payments, orders = realistic_pairs(config)
    monkeypatch.setattr(realistic, "WIDE_MERCHANTS", 0)
    _, plain_payments, plain_orders = realistic_pairs(config)
    scenario = {label.orderId: label.scenario for label in source.labels}
    same = [
        order_id
        for order_id, order in orders.items()
        if order["merchantId"] not in source.wide and scenario.get(order_id) != "amount_spike_wide"
    ]

    assert len(same) > 0.9 * len(orders)
    assert all(orders[i] == plain_orders[i] and payments[i] == plain_payments[i] for i in same)
