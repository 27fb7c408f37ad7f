"""amount_spike: a payment far above what its merchant usually takes, judged on robust statistics of the
merchant's own recent amounts.

Why these statistics: merchants differ in scale (a coffee shop, a travel agent) and in spread, and amounts
are skewed (log-normal-like in practice, uniform in the seed's generator). A mean and standard deviation are
pulled about by one large amount and, from a handful of payments, say little (the rule fired on a normal
payment of a merchant with 9 payments at 3x a low sample mean). So the rule keeps the merchant's last
``sample_size`` amounts and uses quantiles of them, which a few outliers do not move:

- ``q95``, the top of its usual range, and
- the tail ratio ``r = q95 / q75``: how fast its amounts thin out towards the top. For log-normal amounts
  ``ln r`` is ~1 standard deviation (in log space); for amounts with a hard ceiling, like the seed's uniform
  0-100,000, it is small (1.27), so the line sits just above the ceiling instead of many multiples of a
  spread that a symmetric statistic (std, MAD, q84/median) would take from the bulk of the distribution.

The threshold is ``q95 * r ** k`` with ``k = tail_multiple * (1 + small_sample / sqrt(n))``: a short, noisy
history needs a larger excess (at ``n = 10`` about 1.24x the exponent, at the full sample of 64 about
1.1x), and at least ``min_ratio`` times the median whatever the spread, so a merchant with near-constant
amounts is not flagged for an ordinary change. The tail ratio counts at most ``max_tail`` (1.6, a
log-normal sigma of ~0.5): from 10 payments it is the max over the 3rd largest, which varies wildly, and
raised to the power k an unlucky draw put the line out of reach of 8x spikes. With ``tail_multiple`` 3 a
log-normal merchant's line is ~4.5-5 standard deviations above its median (simulated false hits ~3e-4
of payments at sigma 0.4; merchants with wider spreads than the cap get more); on the seed's uniform
amounts it is ~200,000-250,000, above any normal payment, and a spike of 5x the mean (250,000) is mostly
caught; ``min_history`` 10 payments; ``sample_size`` 64 (bounded state; the quantiles follow a drifting
merchant within tens of payments).

A payment that hits, or that is ``min_ratio`` times anything in the sample (a spike a short history let
through), does not enter the sample, so repeated spikes at one merchant (a compromised account) cannot
raise the line; the price of that: a merchant whose prices jump several-fold at once keeps being flagged
(a slow rise is followed, see the ``amount_drift`` control in DETECTION.md).

State per merchantId, bounded: the last ``sample_size`` amounts.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from fraudrules.rules.model import Event, Hit, Rule, RuleState


class AmountSpikeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Payments the merchant needs before the rule can fire (warm-up).
    min_history: int = Field(default=10, ge=3)
    #: Tail ratios (q95 / q75) above q95, for a full sample.
    tail_multiple: float = Field(default=3.0, gt=0)
    #: Widens the threshold for short histories: k = tail_multiple * (1 + small_sample / sqrt(n)).
    small_sample: float = Field(default=0.75, ge=0)
    #: Tail ratios above this count as this (1.6: a log-normal sigma of ~0.5); from a short history the
    #: ratio is noisy (max / 3rd largest of 10) and, raised to the power k, would put the line out of reach.
    max_tail: float = Field(default=1.6, gt=1)
    #: ... and at least this multiple of the median, whatever the spread.
    min_ratio: float = Field(default=3.0, ge=1)
    #: Recent amounts kept per merchant (bounds the state; how fast the baseline follows drift).
    sample_size: int = Field(default=64, ge=4)
    score: float = Field(default=70, ge=0, le=100)


def evaluate(event: Event, config: AmountSpikeConfig, state: RuleState | None) -> Hit | None:
    amount = event.get("payAmount")
    if amount is None or state is None:
        return None
    sample: list[float] = state.get("recent") or []
    n = len(sample)
    hit = None
    if n >= config.min_history:
        ordered = sorted(sample)
        median = ordered[(n - 1) // 2]
        top = ordered[round(0.95 * (n - 1))]
        floor = config.min_ratio * median
        if amount > floor and median > 0:
            tail = min(top / ordered[round(0.75 * (n - 1))], config.max_tail)
            k = config.tail_multiple * (1 + config.small_sample / math.sqrt(n))
            threshold = max(top * tail**k, floor)
            if amount > threshold:
                hit = Hit(
                    score=config.score,
                    reason=(
                        f"payAmount {amount:.2f} is {amount / median:.1f}x merchant {event.get('merchantId')}'s "
                        f"median {median:.2f} ({n} payments, top {top:.2f}, tail ratio {tail:.2f}); "
                        f"threshold {threshold:.2f}"
                    ),
                    values={
                        "payAmount": amount,
                        "median": median,
                        "q95": top,
                        "tailRatio": tail,
                        "history": n,
                        "threshold": threshold,
                    },
                )
    if hit is not None or (n >= config.min_history and amount > config.min_ratio * max(sample)):
        # A spike, or a payment several times anything recent that the line let through (short history),
        # stays out of the sample, so a run of spikes cannot raise the line.
        return hit
    sample.append(amount)
    if n >= config.sample_size:
        del sample[: n + 1 - config.sample_size]
    state.set("recent", sample)
    return None


RULE = Rule(
    id="amount_spike",
    version="2.0.0",
    description="Payment amount far above the top of the merchant's recent amounts, scaled by its own tail.",
    evaluate=evaluate,
    config_model=AmountSpikeConfig,
    key="merchantId",
)
