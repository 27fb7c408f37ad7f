"""Seed-compatible payment/order data in three profiles. Pure: no Kafka, no clock reads.

- ``seed``: exactly the seed demo's generator (a category drawn per order, so every merchant sells
  everything); no fraud, no labels.
- ``labelled`` (below): the seed's traffic with a home category per merchant and labelled scenarios.
- ``realistic`` (:mod:`fraudrules.generate.realistic`): heterogeneous merchants and provinces, scenarios at
  varied magnitudes and legitimate look-alikes labelled as controls.

``labelled`` normal traffic follows the seed's generator: orderId counts up from the start epoch second; createTime is
UTC '%Y-%m-%d %H:%M:%S.fff', 0.5 s apart; payAmount uniform in [0, 100000); payPlatform 0 with p=0.9,
else 1; provinceId 0-6; merchantId 0-1000; payment then order with the same orderId and createTime.
One deliberate difference: each merchant keeps a *home category* (drawn once per merchant from the
seed's categories) and its normal orders use it, so "a merchant selling in a new category" means
something. With the seed's per-order random category every merchant sells everything.

Scenarios are injected at configurable rates (per order) and labelled with (orderId, scenario):

- ``amount_spike``: a payment 5-20x the merchant's usual amounts, at a merchant with history;
- ``province_burst``: a burst of payments from one province, 0.1 s apart (all labelled, with the burst's id);
- ``category_shift``: a merchant with history sells in a category it never used;
- ``orphan_payment``: a payment whose order never arrives;
- ``card_testing``: a run of tiny payments (< 5.00) at one merchant — no built-in rule targets it, so
  its recall shows what the built-in rules miss.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fraudrules import codec

CATEGORIES = (
    "gas_transport",
    "grocery_pos",
    "home",
    "shopping_pos",
    "kids_pets",
    "personal_care",
    "health_fitness",
    "travel",
    "misc_pos",
    "food_dining",
    "entertainment",
)
SCENARIOS = ("amount_spike", "province_burst", "category_shift", "orphan_payment", "card_testing")
#: ``realistic`` only: spikes at its merchants with widely spread amounts (see :mod:`fraudrules.generate.realistic`).
REALISTIC_SCENARIOS = (*SCENARIOS, "amount_spike_wide")
MERCHANTS = 1001
PROVINCES = 7
BURST_SIZE = 40
BURST_SPACING_MS = 100
CARD_TESTING_RUN = 5

Topic = Literal["payment", "order"]
Profile = Literal["seed", "labelled", "realistic"]
PROFILES: tuple[Profile, ...] = ("seed", "labelled", "realistic")
DEFAULT_RATES = {
    "amount_spike": 0.004,
    "province_burst": 0.0004,
    "category_shift": 0.004,
    "orphan_payment": 0.004,
    "card_testing": 0.0008,
}
#: The ``realistic`` profile's defaults: rarer than ``labelled``'s, as fraud is rare in real traffic.
REALISTIC_RATES = {
    "amount_spike": 0.002,
    "province_burst": 0.0003,
    "category_shift": 0.002,
    "orphan_payment": 0.002,
    "card_testing": 0.0004,
    "amount_spike_wide": 0.0015,
}


@dataclass(frozen=True)
class GeneratorConfig:
    #: ``seed``: the seed's traffic, no scenarios; ``labelled``: with home categories and scenarios;
    #: ``realistic``: see :mod:`fraudrules.generate.realistic`.
    profile: Profile = "labelled"
    count: int = 20000
    seed: int | None = None
    #: createTime of the first order (ms since the epoch, UTC); the caller picks it from the clock.
    start_ms: int = 1_700_000_000_000
    #: Event time between consecutive orders (the seed sleeps 0.5 s); the mean gap for ``realistic``
    #: (100 ms: ~10 orders/s). None: the profile's.
    interval_ms: int | None = None
    #: Share of orders whose order record is sent before its payment.
    order_first_rate: float = 0.0
    #: Event-time delay of the second side after the first.
    side_delay_ms: int = 0
    duplicate_rate: float = 0.0
    malformed_rate: float = 0.0
    #: Per-order rate of each scenario (a burst or a card-testing run counts as one start); None: the
    #: profile's defaults (none for ``seed``).
    scenario_rates: dict[str, float] | None = None
    #: No scenario starts within this much event time of the end, so every orphan's join window can
    #: pass while normal traffic still flows (expiry follows stream time).
    quiet_tail_ms: int = 70_000
    #: Orders a merchant needs before it can host an amount spike or a category shift.
    min_merchant_history: int = 10

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        known = REALISTIC_SCENARIOS if self.profile == "realistic" else SCENARIOS
        unknown = set(self.rates) - set(known)
        if unknown:
            raise ValueError(
                f"unknown scenarios: {', '.join(sorted(unknown))}; known for {self.profile}: {', '.join(known)}"
            )
        for name, rate in {**self.rates, "duplicate": self.duplicate_rate}.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"rate of {name} must be within [0, 1], got {rate}")

    @property
    def rates(self) -> dict[str, float]:
        """The scenario rates in force."""
        if self.scenario_rates is not None:
            return self.scenario_rates
        return {"seed": {}, "labelled": DEFAULT_RATES, "realistic": REALISTIC_RATES}[self.profile]

    @property
    def gap_ms(self) -> int:
        """Event time between orders (the mean, for ``realistic``)."""
        if self.interval_ms is not None:
            return self.interval_ms
        return 100 if self.profile == "realistic" else 500


@dataclass(frozen=True, slots=True)
class Produced:
    """One record to write: topic, JSON bytes, Kafka timestamp (= createTime)."""

    topic: Topic
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one order: a fraud scenario, or (``fraud=False``) a legitimate look-alike (control)."""

    orderId: int  # the seed's field name
    scenario: str
    fraud: bool = True
    #: The burst an order of a ``province_burst`` belongs to ("bursts caught": >= 1 order of it flagged).
    burst: int | None = None

    def as_dict(self) -> dict[str, Any]:
        line: dict[str, Any] = {"orderId": self.orderId, "scenario": self.scenario}
        if not self.fraud:
            line["fraud"] = False
        if self.burst is not None:
            line["burst"] = self.burst
        return line


def format_time(ms: int) -> str:
    """The seed's createTime: '%Y-%m-%d %H:%M:%S.fff' in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def generator(config: GeneratorConfig) -> Generator:
    """The generator of ``config.profile``."""
    if config.profile == "realistic":
        from fraudrules.generate.realistic import RealisticGenerator

        return RealisticGenerator(config)
    return Generator(config)


class Generator:
    """The ``seed`` and ``labelled`` profiles: yields records (in send order) and collects labels; same config
    and seed, same output."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.home = [self.rng.choice(CATEGORIES) for _ in range(MERCHANTS)]
        self._seed_profile = config.profile == "seed"
        self._bursts = 0
        self.history = [0] * MERCHANTS
        self.labels: list[Label] = []
        self.orders = 0
        self._burst_province = 0
        self._testing_merchant = 0

    def records(self) -> Iterator[Produced]:
        config = self.config
        first_id = config.start_ms // 1000
        time_ms = config.start_ms
        pending: list[list[Any]] = []  # [scenario, orders left] of a burst or run in progress
        i = 0
        while i < config.count:
            order_id = first_id + i
            scenario, starts = self._scenario((config.count - i) * config.gap_ms, pending)
            payment, order = self._normal(order_id, time_ms)
            spacing = config.gap_ms
            if scenario in ("amount_spike", "category_shift"):
                merchant = self._experienced_merchant()
                if merchant is None:
                    scenario = None  # no merchant has a history to deviate from yet
                else:
                    order["merchantId"] = merchant
                    order["category"] = self.home[merchant]
            if scenario is not None:
                spacing = self._inject(scenario, starts, payment, order, pending)
                burst = self._bursts if scenario == "province_burst" else None
                self.labels.append(Label(order_id, scenario, burst=burst))
            yield from self._emit(payment, order if scenario != "orphan_payment" else None, time_ms)
            self.history[order["merchantId"]] += 1
            self.orders += 1
            time_ms += spacing
            i += 1

    def _scenario(self, remaining_ms: int, pending: list[list[Any]]) -> tuple[str | None, bool]:
        """The scenario of the next order, and whether it starts a new burst or run."""
        if pending:
            name: str = pending[0][0]
            pending[0][1] -= 1
            if pending[0][1] == 0:
                pending.clear()
            return name, False
        if remaining_ms < self.config.quiet_tail_ms:
            return None, False
        rates = self.config.rates
        if not rates:
            return None, False
        roll = self.rng.random()
        for name in SCENARIOS:
            rate = rates.get(name, 0.0)
            if roll < rate:
                return name, True
            roll -= rate
        return None, False

    def _normal(self, order_id: int, time_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        rng = self.rng
        create_time = format_time(time_ms)
        merchant = rng.randint(0, MERCHANTS - 1)
        payment = {
            "createTime": create_time,
            "orderId": order_id,
            "payAmount": rng.uniform(0, 100000),
            "payPlatform": 0 if rng.random() < 0.9 else 1,
            "provinceId": rng.randint(0, PROVINCES - 1),
        }
        order = {
            "createTime": create_time,
            "orderId": order_id,
            # The seed draws a category for every order; ``labelled`` keeps the merchant's home category.
            "category": rng.choice(CATEGORIES) if self._seed_profile else self.home[merchant],
            "merchantId": merchant,
        }
        return payment, order

    def _experienced_merchant(self) -> int | None:
        """A random merchant with enough orders behind it, or None this early in the stream."""
        for _ in range(200):
            merchant = self.rng.randint(0, MERCHANTS - 1)
            if self.history[merchant] >= self.config.min_merchant_history:
                return merchant
        best = max(range(MERCHANTS), key=self.history.__getitem__)
        return best if self.history[best] >= self.config.min_merchant_history else None

    def _inject(
        self, scenario: str, starts: bool, payment: dict[str, Any], order: dict[str, Any], pending: list[list[Any]]
    ) -> int:
        """Turn a normal pair into the scenario; returns the event-time spacing to the next order."""
        rng, spacing = self.rng, self.config.gap_ms
        if scenario == "amount_spike":
            payment["payAmount"] = rng.uniform(5, 20) * 50000
        elif scenario == "category_shift":
            home = self.home[order["merchantId"]]
            order["category"] = rng.choice([c for c in CATEGORIES if c != home])
        elif scenario == "province_burst":
            if starts:
                pending.append(["province_burst", BURST_SIZE - 1])
                self._burst_province = rng.randint(0, PROVINCES - 1)
                self._bursts += 1
            payment["provinceId"] = self._burst_province
            spacing = BURST_SPACING_MS
        elif scenario == "card_testing":
            if starts:
                pending.append(["card_testing", CARD_TESTING_RUN - 1])
                self._testing_merchant = rng.randint(0, MERCHANTS - 1)
            order["merchantId"] = self._testing_merchant
            order["category"] = self.home[self._testing_merchant]
            payment["payAmount"] = round(rng.uniform(0.5, 5.0), 2)
        return spacing

    def _emit(self, payment: dict[str, Any], order: dict[str, Any] | None, time_ms: int) -> Iterator[Produced]:
        config, rng = self.config, self.rng
        sides: list[tuple[Topic, dict[str, Any]]] = [("payment", payment)]
        if order is not None:
            sides.append(("order", order))
            if rng.random() < config.order_first_rate:
                sides.reverse()
        for position, (topic, record) in enumerate(sides):
            produced = Produced(topic, codec.dumps_spaced(record), time_ms + position * config.side_delay_ms)
            yield produced
            if config.duplicate_rate and rng.random() < config.duplicate_rate:
                yield produced
        if config.malformed_rate and rng.random() < config.malformed_rate:
            yield Produced(rng.choice(("payment", "order")), self._malformed(payment), time_ms)

    def _malformed(self, payment: dict[str, Any]) -> bytes:
        kind = self.rng.randrange(4)
        if kind == 0:
            return codec.dumps_spaced(payment)[:-7]  # cut short: not JSON
        if kind == 1:
            return codec.dumps_spaced({**payment, "payAmount": -abs(payment["payAmount"])})
        if kind == 2:
            return codec.dumps_spaced({k: v for k, v in payment.items() if k != "orderId"})
        return b"\xff\xfe" + codec.dumps_spaced(payment)
