"""province_velocity: a burst of payments in one province, judged against that province's own learned rate.

Why this shape. Provinces differ by orders of magnitude (a capital, a rural province), so a fixed multiple of
the usual count over one window cannot serve both: in a busy province a burst of a few dozen payments
within seconds hides in a 30 s window, in a quiet one a handful of payments is already a burst. So:

- **Learned rate, no warm-up bias.** Payments are counted in ``bucket_seconds`` buckets of event time. A bucket
  older than the longest window plus ``late_seconds`` is final and is folded into the province's rate (per
  bucket): an exact mean at first, then exponentially weighted (``baseline_weight``, ~5 minutes of memory,
  so the rate follows a gentle rise). Only buckets from the province's first payment on are folded; the
  empty time before it is not evidence of a low rate.
- **Several windows, Poisson thresholds.** For each window length in ``windows_seconds`` (2, 5, 10 and 30 s)
  the count of the window ending at the payment's own bucket is compared with the count a Poisson process
  at the learned rate would exceed with probability below ``alpha`` (1e-6: with four windows tested on every
  payment, well under one chance hit in a day of the seed's traffic). The short windows catch a burst of
  a few dozen payments within seconds in a busy province (2-3 payments/s), the long ones a slower one in a
  quiet province. A window must also hold ``min_count`` payments (8: a few payments close together are
  not a burst worth a review whatever the rate) and ``min_ratio`` times its expected count (2: real
  traffic varies more than a Poisson process, e.g. a province whose rate rises gently).
- **Stops when the burst stops.** A payment is flagged only if the shortest window is itself above the
  rate (Poisson tail below ``gate_alpha``, 1%): once a burst is over, the next ordinary payments see a
  normal short window and pass, even while the burst is still inside the longer windows.

The rule fires from ``warmup_seconds`` (30 s) after the province's first payment. Until
``min_history_seconds`` of final buckets are folded (60 s, plus the kept range before the first bucket is
final: ~2 minutes), the rate is all payments since the first over the time since, the current window
included: never biased low, cautious during a burst. Thresholds change only
when the rate does (once a bucket), so they are kept in the state and the per-payment cost is one pass over
the kept buckets.

State per provinceId, bounded: the counts of the last ``max(windows) + late_seconds`` seconds of buckets, the
rate with its bookkeeping, and one threshold per window. A payment's windows end at its own bucket, so
payments read out of event-time order (at several partitions) are counted where they belong.
"""

from __future__ import annotations

import math
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudrules.rules.model import Event, Hit, Rule, RuleState


class ProvinceVelocityConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Window lengths tested on every payment; the shortest one also gates (see ``gate_alpha``).
    windows_seconds: list[int] = Field(default_factory=lambda: [2, 5, 10, 30], min_length=1)
    bucket_seconds: int = Field(default=1, ge=1)
    #: A window fires when a Poisson process at the province's rate would reach its count with at most
    #: this probability ...
    alpha: float = Field(default=1e-6, gt=0, lt=1)
    #: ... it holds at least this many payments ...
    min_count: int = Field(default=8, ge=1)
    #: ... and at least this many times its expected count.
    min_ratio: float = Field(default=2.0, ge=1)
    #: The shortest window must be above the rate too (tail probability below this) for a payment to be
    #: flagged, so flagging stops soon after a burst ends.
    gate_alpha: float = Field(default=0.01, gt=0, lt=1)
    #: Seconds of event time from the province's first payment before the rule can fire.
    warmup_seconds: int = Field(default=30, ge=1)
    #: Seconds of final buckets before the learned rate is used; until then, the mean rate since the
    #: first payment.
    min_history_seconds: int = Field(default=60, ge=1)
    #: Seconds kept beyond the longest window so that payments arriving out of event-time order (several
    #: partitions feeding one province) still count in the windows they belong to.
    late_seconds: int = Field(default=20, ge=0)
    #: Weight of each final bucket in the rate (1/300 per second: ~5 minutes of memory).
    baseline_weight: float = Field(default=1 / 300, gt=0, le=1)
    score: float = Field(default=40, ge=0, le=100)

    @cached_property
    def shape(self) -> _Shape:
        """What this config fixes for every payment (worked out once per config, not per payment)."""
        return _Shape(self)

    @model_validator(mode="after")
    def _whole_buckets(self) -> ProvinceVelocityConfig:
        if any(w % self.bucket_seconds for w in self.windows_seconds):
            raise ValueError("windows_seconds must be multiples of bucket_seconds")
        if self.late_seconds % self.bucket_seconds:
            raise ValueError("late_seconds must be a multiple of bucket_seconds")
        return self


def poisson_limit(mean: float, alpha: float) -> int:
    """The smallest count k with P(X >= k) < alpha for X ~ Poisson(mean)."""
    if mean > 500:  # normal approximation; exp(-mean) would underflow
        z = _normal_quantile(1 - alpha)
        return math.ceil(mean + z * math.sqrt(mean) + 0.5)
    p = math.exp(-mean)
    cdf = p
    k = 0
    while 1 - cdf >= alpha:
        k += 1
        p *= mean / k
        cdf += p
        if p == 0.0 and k > mean:  # beyond double precision: the tail is smaller than anything we test
            break
    return k + 1


def _normal_quantile(q: float) -> float:
    low, high = 0.0, 40.0
    for _ in range(60):
        mid = (low + high) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > 1 - q:
            low = mid
        else:
            high = mid
    return high


def _fold(rate: float, seen: int, counts: list[int], zeros: int, weight: float) -> tuple[float, int]:
    """The rate after the final buckets ``counts`` and then ``zeros`` empty ones."""
    for count in counts:
        seen += 1
        rate += max(weight, 1 / seen) * (count - rate)
    exact = min(zeros, max(0, math.ceil(1 / weight) - seen))
    if exact:  # empty buckets within the exact-mean phase
        rate *= seen / (seen + exact)
        seen += exact
    if zeros > exact:
        rate *= (1 - weight) ** (zeros - exact)
        seen += zeros - exact
    return rate, seen


class _Shape:
    """What a config fixes for every payment: the windows in buckets, the buckets kept, the shortest window."""

    __slots__ = ("bucket_ms", "keep", "shortest", "spans")

    def __init__(self, config: ProvinceVelocityConfig) -> None:
        self.bucket_ms = config.bucket_seconds * 1000
        self.spans = [w // config.bucket_seconds for w in config.windows_seconds]
        self.keep = max(self.spans) + config.late_seconds // config.bucket_seconds
        self.shortest = min(range(len(self.spans)), key=self.spans.__getitem__)


def _limits(rate: float, config: ProvinceVelocityConfig, spans: list[int]) -> list[float]:
    """Per window (``spans``: its length in buckets): the count that fires; then the shortest window's gate."""
    rate = max(rate, 1e-9)
    limits = [
        max(config.min_count, poisson_limit(rate * n, config.alpha), math.ceil(config.min_ratio * rate * n))
        for n in spans
    ]
    return [*limits, poisson_limit(rate * min(spans), config.gate_alpha)]


def evaluate(event: Event, config: ProvinceVelocityConfig, state: RuleState | None) -> Hit | None:
    event_time = event.get("eventTimeMs")
    if state is None or event_time is None or "payAmount" not in event:
        return None
    shape = config.shape
    bucket = event_time // shape.bucket_ms
    spans, keep = shape.spans, shape.keep
    # rate: payments per bucket; newest: the highest bucket seen; unfolded: the next bucket to fold;
    # seen: buckets folded so far; counts: the last ``keep`` buckets' counts, ending at ``newest``;
    # limits: the thresholds per window, the gate, and the rate they were computed for.
    # first: the bucket of the province's first payment; total: payments since (for the warm-up rate).
    rate, newest, unfolded, seen, first, total = state.get("rate") or (0.0, bucket, bucket, 0, bucket, 0)
    total += 1
    counts: list[int] = state.get("counts") or [0] * keep  # changed in place, and stored again below
    limits: list[float] | None = state.get("limits")
    if len(counts) != keep:  # the config changed: start the counts afresh
        counts = [0] * keep
    if bucket > newest:
        shift = bucket - newest
        final = bucket - keep  # buckets up to here can no longer change
        if final >= unfolded:
            leaving = counts[: min(shift, keep)]
            stored = leaving[len(leaving) - min(len(leaving), final - unfolded + 1) :]
            rate, seen = _fold(rate, seen, stored, final - unfolded + 1 - len(stored), config.baseline_weight)
            unfolded = final + 1
        if shift < keep:
            del counts[:shift]
            counts += [0] * shift
        else:
            counts = [0] * keep
        newest = bucket
    index = bucket - newest + keep - 1  # position of the payment's bucket; < 0: too late to count
    if index >= 0:
        counts[index] += 1
    state.set("counts", counts)
    state.set("rate", (rate, newest, unfolded, seen, first, total))
    elapsed = (newest - first + 1) * config.bucket_seconds
    if elapsed < config.warmup_seconds or index < 0:
        return None
    if seen * config.bucket_seconds < config.min_history_seconds:
        # Until the learned rate has enough final buckets: all payments since the first over the time
        # since, the current window included (a burst raises its own baseline: cautious, never too low).
        rate = total / (newest - first + 1)
    # The thresholds follow the rate; recomputed when it has moved by 1 % (every few seconds at most).
    if limits is None or len(limits) != len(spans) + 2 or abs(rate - limits[-1]) > 0.01 * limits[-1]:
        limits = [*_limits(rate, config, spans), rate]
        state.set("limits", limits)
    # The windows end at this payment's own bucket, whatever arrived before or after it. The shortest one
    # gates: the others are counted only for a payment it lets through (a few in a burst).
    shortest = shape.shortest
    if sum(counts[max(0, index - spans[shortest] + 1) : index + 1]) < limits[-2]:
        return None
    windowed = [sum(counts[max(0, index - span + 1) : index + 1]) for span in spans]
    fired = [i for i in range(len(spans)) if windowed[i] >= limits[i]]
    if not fired:
        return None
    # Report the window that is furthest above its threshold, relative to its expectation.
    i = max(fired, key=lambda j: windowed[j] / max(rate * spans[j], 1e-9))
    seconds = config.windows_seconds[i]
    expected = rate * spans[i]
    return Hit(
        score=config.score,
        reason=(
            f"{windowed[i]} payments in province {event.get('provinceId')} in the last {seconds}s of event time, "
            f"{windowed[i] / expected if expected else math.inf:.1f}x its usual {expected:.1f}; "
            f"threshold {limits[i]} (Poisson tail < {config.alpha:g})"
        ),
        values={
            "count": windowed[i],
            "expected": expected,
            "threshold": limits[i],
            "windowSeconds": seconds,
            "ratePerSecond": rate / config.bucket_seconds,
        },
    )


RULE = Rule(
    id="province_velocity",
    version="2.0.0",
    description="A burst of payments in a province, against Poisson thresholds on its own learned rate.",
    evaluate=evaluate,
    config_model=ProvinceVelocityConfig,
    key="provinceId",
)
