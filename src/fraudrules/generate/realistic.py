"""The ``realistic`` profile: traffic the built-in rules were not tuned on, with scenarios and controls.

Normal traffic, ~``1000 / interval_ms`` orders/s (10 by default) as a Poisson process (exponential gaps):

- merchants (0-1000) with long-tailed popularity (Zipf, exponent 1: the busiest merchant takes ~13 % of the
  orders, most take a handful); each has its own amount scale (median log-uniform in 5-5,000) and
  log-normal spread (sigma 0.2-0.6), and 1-3 usual categories used with skewed weights (1, 0.1-0.5,
  0.03-0.15);
- among them, 40 merchants (popularity ranks 8-300: ~5-290 orders each in 20,000, 7-10 % of the orders) whose
  ordinary amounts spread widely, a third of each kind: ``baskets``, small baskets (median 3-300, sigma
  0.25-0.5) and 15-40 % large ones (8-40x larger); ``range``, log-uniform over a range 30-300x wide;
  ``lognormal``, sigma 0.9-1.3. Their amounts are drawn from a generator of their own (seeded from the
  profile's seed), so everything else is the same traffic as without them;
- provinces 0-6 of very different sizes (35 % of the orders down to 1 %: ~3.5/s to ~0.1/s);
- payPlatform 0 with p 0.9, as the seed.

Scenarios (fraud, labelled ``{"orderId", "scenario"}``), at varied magnitudes:

- ``amount_spike``: 10-100x (log-uniform) the merchant's median, at a merchant with history;
- ``amount_spike_wide``: 2-5x (log-uniform) the top of a wide-spread merchant's ordinary range (the top of
  a ``range``, the 99.9th percentile of a ``lognormal`` or of the large ``baskets``), at one of the 20 that
  host spikes, any with history alike (an ``amount_spike`` that falls on a wide-spread merchant becomes one
  of these, or is dropped at a control merchant);
- ``province_burst``: 25-60 extra payments 30-120 ms apart in one province chosen uniformly (busy and quiet
  alike), on top of the ongoing traffic (labelled with ``burst``: the burst's id);
- ``category_shift``: a merchant with history sells in a category it never used;
- ``orphan_payment``: a payment whose order never arrives;
- ``card_testing``: 5 tiny payments (< 5.00) at one merchant, 1-3 s apart (no built-in rule targets it).

Controls (legitimate look-alikes, labelled ``"fraud": false``, reported per control):

- ``amount_drift``: one of the busiest merchants whose amounts rise slowly, to 3x over 10 minutes;
- ``category_added``: a busy merchant that adds a category and keeps using it (30 % of its orders after);
- ``province_rise``: a mid-sized province whose rate rises gently to 2x over 4 minutes, holds for one
  and falls back over two (all its orders in that time are labelled);
- ``wide_amounts``: the ordinary orders of the 20 wide-spread merchants that never host a spike (large
  but ordinary amounts).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from fraudrules.generate.data import CATEGORIES, MERCHANTS, PROVINCES, Generator, GeneratorConfig, Label, format_time

PROVINCE_SHARES = (0.35, 0.25, 0.17, 0.11, 0.07, 0.04, 0.01)
CARD_TESTING_RUN = 5
#: The province-rise control: ramp up, hold, ramp down (seconds), and its peak (extra rate / base rate).
RISE_UP_S, RISE_HOLD_S, RISE_DOWN_S, RISE_PEAK = 240, 60, 120, 1.0
DRIFT_SECONDS, DRIFT_FACTOR = 600, 3.0
#: Merchants with widely spread amounts: how many (half host spikes, half are the control), among which
#: popularity ranks; a spike's size relative to the top of the merchant's ordinary range.
WIDE_MERCHANTS, WIDE_RANKS, WIDE_SPIKE = 40, (8, 300), (2.0, 5.0)
WideKind = Literal["baskets", "range", "lognormal"]
WIDE_KINDS: tuple[WideKind, ...] = ("baskets", "range", "lognormal")
Z_999 = 3.09  # the standard normal's 99.9th percentile


@dataclass(frozen=True, slots=True)
class Merchant:
    median: float
    sigma: float
    categories: tuple[str, ...]
    cumulative: tuple[float, ...]  # cumulative category weights


@dataclass(frozen=True, slots=True)
class WideAmounts:
    """Ordinary amounts of a merchant whose amounts spread widely."""

    kind: WideKind
    #: Median of the (small) baskets or of the log-normal; the bottom of the range.
    median: float
    #: Log-space sigma of the baskets or of the log-normal; ln(top / bottom) of the range.
    sigma: float
    #: Large baskets: their median over the small ones', and their share.
    ratio: float = 1.0
    share: float = 0.0

    def draw(self, rng: random.Random) -> float:
        if self.kind == "range":
            return self.median * math.exp(rng.uniform(0, self.sigma))
        scale = self.median * self.ratio if rng.random() < self.share else self.median
        return scale * math.exp(rng.gauss(0, self.sigma))

    @property
    def ceiling(self) -> float:
        """The top of the ordinary range: a range's top, else the 99.9th percentile of the (large) baskets."""
        if self.kind == "range":
            return self.median * math.exp(self.sigma)
        return self.median * self.ratio * math.exp(Z_999 * self.sigma)


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
        # Wide-spread merchants: a generator of their own, so the rest of the traffic is drawn as without them.
        self.wide_rng = random.Random(None if config.seed is None else f"wide-amounts-{config.seed}")
        candidates = [
            m
            for m in self.by_popularity[WIDE_RANKS[0] : WIDE_RANKS[1]]
            if m not in (self.drift_merchant, self.added_merchant)
        ]
        picked = self.wide_rng.sample(candidates, WIDE_MERCHANTS)
        self.wide = {m: self._wide(self.wide_rng, WIDE_KINDS[i % len(WIDE_KINDS)]) for i, m in enumerate(picked)}
        self.wide_spiked = picked[: WIDE_MERCHANTS // 2]
        self.wide_controls = set(picked[WIDE_MERCHANTS // 2 :])

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

    @staticmethod
    def _wide(rng: random.Random, kind: WideKind) -> WideAmounts:
        if kind == "baskets":
            return WideAmounts(
                kind,
                median=math.exp(rng.uniform(math.log(3), math.log(300))),
                sigma=rng.uniform(0.25, 0.5),
                ratio=math.exp(rng.uniform(math.log(8), math.log(40))),
                share=rng.uniform(0.15, 0.4),
            )
        if kind == "range":
            return WideAmounts(
                kind,
                median=math.exp(rng.uniform(math.log(2), math.log(200))),
                sigma=rng.uniform(math.log(30), math.log(300)),
            )
        return WideAmounts(kind, median=math.exp(rng.uniform(math.log(5), math.log(2000))), sigma=rng.uniform(0.9, 1.3))

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
            if scenario is not None:
                scenario = self._apply(scenario, payment, order)
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
        amount = scale * math.exp(rng.gauss(0, merchant.sigma))
        wide = self.wide.get(merchant_id)
        if wide is not None:
            amount = wide.draw(self.wide_rng)
        payment = {
            "createTime": create_time,
            "orderId": order_id,
            "payAmount": round(amount, 2),
            "payPlatform": 0 if rng.random() < 0.9 else 1,
            "provinceId": province,
        }
        order = {"createTime": create_time, "orderId": order_id, "category": category, "merchantId": merchant_id}
        return payment, order

    def _apply(self, scenario: str, payment: dict[str, Any], order: dict[str, Any]) -> str | None:
        """Turn a normal pair into the scenario; the scenario it is (an ``amount_spike`` at a wide-spread
        merchant is ``amount_spike_wide``), or None if it cannot be (no merchant with history yet)."""
        rng = self.rng
        if scenario == "amount_spike_wide":
            return self._wide_spike(payment, order)
        if scenario in ("amount_spike", "category_shift"):
            merchant = self._experienced_merchant()
            if merchant is None:
                return None  # no merchant has a history to deviate from yet
            usual = self.merchants[merchant]
            if scenario == "amount_spike":
                factor = math.exp(rng.uniform(math.log(10), math.log(100)))
                if merchant in self.wide_controls:
                    return None  # the control merchants host no spike
                order["merchantId"], order["category"] = merchant, usual.categories[0]
                if merchant in self.wide:
                    payment["payAmount"] = self._beyond_range(self.wide[merchant])
                    return "amount_spike_wide"
                payment["payAmount"] = round(usual.median * factor, 2)
            else:
                order["merchantId"], order["category"] = merchant, usual.categories[0]
                unused = [c for c in CATEGORIES if c not in self.used[merchant] and c not in usual.categories]
                if not unused:
                    return None
                order["category"] = rng.choice(unused)
        elif scenario == "card_testing":
            payment["payAmount"] = round(rng.uniform(0.5, 5.0), 2)
        return scenario

    def _wide_spike(self, payment: dict[str, Any], order: dict[str, Any]) -> str | None:
        """A spike at one of the wide-spread merchants that host spikes and have a history (any alike)."""
        eligible = [m for m in self.wide_spiked if self.history[m] >= self.config.min_merchant_history]
        if not eligible:
            return None
        merchant = self.wide_rng.choice(eligible)
        order["merchantId"], order["category"] = merchant, self.merchants[merchant].categories[0]
        payment["payAmount"] = self._beyond_range(self.wide[merchant])
        return "amount_spike_wide"

    def _beyond_range(self, wide: WideAmounts) -> float:
        low, high = WIDE_SPIKE
        return round(wide.ceiling * math.exp(self.wide_rng.uniform(math.log(low), math.log(high))), 2)

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
        if order["merchantId"] in self.wide_controls:
            return Label(order_id, "wide_amounts", fraud=False)
        return None
