"""The ``realistic`` profile: traffic the built-in rules were not tuned on, with scenarios and controls.

Normal traffic, ~``1000 / interval_ms`` orders/s (10 by default) as a Poisson process (exponential gaps):

- merchants (0-1000) with long-tailed popularity (Zipf, exponent 1: the busiest merchant takes ~13 % of the
  orders, most take a handful); each has its own amount scale (median log-uniform in 5-5,000) and
  log-normal spread (sigma 0.2-0.6), and 1-3 usual categories used with skewed weights (1, 0.1-0.5,
  0.03-0.15);
- provinces 0-6 of very different sizes (35 % of the orders down to 1 %: ~3.5/s to ~0.1/s);
- payPlatform 0 with p 0.9, as the seed.

Scenarios (fraud, labelled ``{"orderId", "scenario"}``), at varied magnitudes:

- ``amount_spike``: 10-100x (log-uniform) the merchant's median, at a merchant with history;
- ``province_burst``: 25-60 extra payments 30-120 ms apart in one province chosen uniformly (busy and quiet
  alike), on top of the ongoing traffic (labelled with ``burst``: the burst's id);
- ``category_shift``: a merchant with history sells in a category it never used;
- ``orphan_payment``: a payment whose order never arrives;
- ``card_testing``: 5 tiny payments (< 5.00) at one merchant, 1-3 s apart (no built-in rule targets it).

Controls (legitimate look-alikes, labelled ``"fraud": false``, reported per control):

- ``amount_drift``: one of the busiest merchants whose amounts rise slowly, to 3x over 10 minutes;
- ``category_added``: a busy merchant that adds a category and keeps using it (30 % of its orders after);
- ``province_rise``: a mid-sized province whose rate rises gently to 2x over 4 minutes, holds for one
  and falls back over two (all its orders in that time are labelled).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fraudrules.generate.data import CATEGORIES, MERCHANTS, PROVINCES, Generator, GeneratorConfig, Label, format_time

PROVINCE_SHARES = (0.35, 0.25, 0.17, 0.11, 0.07, 0.04, 0.01)
CARD_TESTING_RUN = 5
#: The province-rise control: ramp up, hold, ramp down (seconds), and its peak (extra rate / base rate).
RISE_UP_S, RISE_HOLD_S, RISE_DOWN_S, RISE_PEAK = 240, 60, 120, 1.0
DRIFT_SECONDS, DRIFT_FACTOR = 600, 3.0


@dataclass(frozen=True, slots=True)
class Merchant:
    median: float
    sigma: float
    categories: tuple[str, ...]
    cumulative: tuple[float, ...]  # cumulative category weights


class RealisticGenerator(Generator):
    """Same interface as :class:`Generator` (``records()``, ``labels``); same config and seed, same output."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        rng = self.rng
        popularity = [1 / (rank + 1) for rank in range(MERCHANTS)]
        rng.shuffle(popularity)
        self.merchant_cumulative = list(itertools.accumulate(popularity))
        self.by_popularity = sorted(range(MERCHANTS), key=lambda m: -popularity[m])
        self.merchants = [self._merchant(rng) for _ in range(MERCHANTS)]
        shares = list(PROVINCE_SHARES)
        rng.shuffle(shares)
        self.province_shares = shares
        self.province_cumulative = list(itertools.accumulate(shares))
        self.used: list[set[str]] = [set() for _ in range(MERCHANTS)]
        self.rates = config.rates
        duration_ms = config.count * config.gap_ms
        # Controls: who and when (fixed shares of the stream, so every seed has them).
        self.drift_merchant = self.by_popularity[rng.randint(0, 4)]
        self.drift_start = config.start_ms + duration_ms // 4
        self.added_merchant = self.by_popularity[rng.randint(5, 30)]
        self.added_start = config.start_ms + duration_ms * 3 // 10
        usual = self.merchants[self.added_merchant].categories
        self.added_category = rng.choice([c for c in CATEGORIES if c not in usual])
        self.rise_province = sorted(range(PROVINCES), key=lambda p: -shares[p])[3]  # mid-sized
        self.rise_start = config.start_ms + duration_ms // 2
        self.rise_end = self.rise_start + (RISE_UP_S + RISE_HOLD_S + RISE_DOWN_S) * 1000

    @staticmethod
    def _merchant(rng: random.Random) -> Merchant:
        k = rng.choices((1, 2, 3), weights=(0.4, 0.35, 0.25))[0]
        categories = tuple(rng.sample(CATEGORIES, k))
        weights = [1.0, rng.uniform(0.1, 0.5), rng.uniform(0.03, 0.15)][:k]
        return Merchant(
            median=math.exp(rng.uniform(math.log(5), math.log(5000))),
            sigma=rng.uniform(0.2, 0.6),
            categories=categories,
            cumulative=tuple(itertools.accumulate(weights)),
        )

    def records(self) -> Iterator[Any]:
        config, rng = self.config, self.rng
        first_id = config.start_ms // 1000
        mean_gap = config.gap_ms / 1000
        base_rate = 1 / mean_gap
        rise_base = base_rate * self.province_shares[self.rise_province]
        next_normal = config.start_ms + rng.expovariate(base_rate) * 1000
        next_extra = config.start_ms + rng.expovariate(rise_base * RISE_PEAK) * 1000
        injected: list[tuple[float, int, str, dict[str, Any]]] = []  # (time, seq, scenario, fields)
        seq = itertools.count()
        end_estimate = config.start_ms + config.count * config.gap_ms
        i = 0
        while i < config.count:
            time_ms = min(next_normal, next_extra, injected[0][0] if injected else math.inf)
            fields: dict[str, Any] = {}
            scenario: str | None = None
            if injected and injected[0][0] == time_ms:
                _, _, scenario, fields = heapq.heappop(injected)
            elif next_extra == time_ms:
                next_extra += rng.expovariate(rise_base * RISE_PEAK) * 1000
                if rng.random() >= self._rise(time_ms):  # thinning: the extra rate follows the ramp
                    continue
                fields = {"provinceId": self.rise_province}
            else:
                next_normal += rng.expovariate(base_rate) * 1000
                if end_estimate - time_ms > config.quiet_tail_ms:
                    scenario = self._roll()
                if scenario in ("province_burst", "card_testing"):
                    self._schedule(scenario, time_ms, injected, seq)
                    scenario = None
            t = int(time_ms)
            order_id = first_id + i
            payment, order = self._pair(order_id, t, fields)
            if scenario is not None and not self._apply(scenario, payment, order):
                scenario = None
            if scenario is not None:
                label: Label | None = Label(order_id, scenario, burst=fields.get("burst"))
            else:
                label = self._control(order_id, t, payment, order)
            if label is not None:
                self.labels.append(label)
            yield from self._emit(payment, None if scenario == "orphan_payment" else order, t)
            self.history[order["merchantId"]] += 1
            self.used[order["merchantId"]].add(order["category"])
            self.orders += 1
            i += 1

    def _roll(self) -> str | None:
        roll = self.rng.random()
        for name, rate in self.rates.items():
            if roll < rate:
                return name
            roll -= rate
        return None

    def _schedule(
        self, scenario: str, time_ms: float, injected: list[tuple[float, int, str, dict[str, Any]]], seq: Any
    ) -> None:
        rng = self.rng
        if scenario == "province_burst":
            self._bursts += 1
            province, size, gap = rng.randrange(PROVINCES), rng.randint(25, 60), rng.uniform(30, 120)
            for k in range(size):
                fields = {"provinceId": province, "burst": self._bursts}
                heapq.heappush(injected, (time_ms + (k + 1) * gap, next(seq), scenario, fields))
        else:
            merchant = rng.randrange(MERCHANTS)
            t = time_ms
            for _ in range(CARD_TESTING_RUN):
                t += rng.uniform(1000, 3000)
                heapq.heappush(injected, (t, next(seq), scenario, {"merchantId": merchant}))

    def _pair(self, order_id: int, time_ms: int, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        rng = self.rng
        create_time = format_time(time_ms)
        merchant_id = fields.get("merchantId")
        if merchant_id is None:
            merchant_id = bisect.bisect(self.merchant_cumulative, rng.random() * self.merchant_cumulative[-1])
        merchant = self.merchants[merchant_id]
        province = fields.get("provinceId")
        if province is None:
            province = bisect.bisect(self.province_cumulative, rng.random() * self.province_cumulative[-1])
        category = merchant.categories[bisect.bisect(merchant.cumulative, rng.random() * merchant.cumulative[-1])]
        if merchant_id == self.added_merchant and time_ms >= self.added_start and rng.random() < 0.3:
            category = self.added_category
        scale = merchant.median
        if merchant_id == self.drift_merchant and time_ms >= self.drift_start:
            scale *= 1 + (DRIFT_FACTOR - 1) * min(1.0, (time_ms - self.drift_start) / (DRIFT_SECONDS * 1000))
        payment = {
            "createTime": create_time,
            "orderId": order_id,
            "payAmount": round(scale * math.exp(rng.gauss(0, merchant.sigma)), 2),
            "payPlatform": 0 if rng.random() < 0.9 else 1,
            "provinceId": province,
        }
        order = {"createTime": create_time, "orderId": order_id, "category": category, "merchantId": merchant_id}
        return payment, order

    def _apply(self, scenario: str, payment: dict[str, Any], order: dict[str, Any]) -> bool:
        """Turn a normal pair into the scenario; False if it cannot be (no merchant with history yet)."""
        rng = self.rng
        if scenario in ("amount_spike", "category_shift"):
            merchant = self._experienced_merchant()
            if merchant is None:
                return False  # no merchant has a history to deviate from yet
            order["merchantId"] = merchant
            usual = self.merchants[merchant]
            order["category"] = usual.categories[0]
            if scenario == "amount_spike":
                payment["payAmount"] = round(usual.median * math.exp(rng.uniform(math.log(10), math.log(100))), 2)
            else:
                unused = [c for c in CATEGORIES if c not in self.used[merchant] and c not in usual.categories]
                if not unused:
                    return False
                order["category"] = rng.choice(unused)
        elif scenario == "card_testing":
            payment["payAmount"] = round(rng.uniform(0.5, 5.0), 2)
        return True

    def _experienced_merchant(self) -> int | None:
        for _ in range(200):
            merchant = bisect.bisect(self.merchant_cumulative, self.rng.random() * self.merchant_cumulative[-1])
            if self.history[merchant] >= self.config.min_merchant_history and merchant not in (
                self.drift_merchant,
                self.added_merchant,
            ):
                return merchant
        return None

    def _rise(self, time_ms: float) -> float:
        """The province-rise control's extra rate at ``time_ms``, as a share of its peak."""
        s = (time_ms - self.rise_start) / 1000
        if s < 0 or time_ms >= self.rise_end:
            return 0.0
        if s < RISE_UP_S:
            return s / RISE_UP_S
        if s < RISE_UP_S + RISE_HOLD_S:
            return 1.0
        return 1 - (s - RISE_UP_S - RISE_HOLD_S) / RISE_DOWN_S

    def _control(self, order_id: int, time_ms: int, payment: dict[str, Any], order: dict[str, Any]) -> Label | None:
        if order["merchantId"] == self.drift_merchant and time_ms >= self.drift_start:
            return Label(order_id, "amount_drift", fraud=False)
        if order["merchantId"] == self.added_merchant and order["category"] == self.added_category:
            return Label(order_id, "category_added", fraud=False)
        if payment["provinceId"] == self.rise_province and self.rise_start <= time_ms < self.rise_end:
            return Label(order_id, "province_rise", fraud=False)
        return None
