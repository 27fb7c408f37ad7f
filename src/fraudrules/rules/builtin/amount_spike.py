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

The tail line is ``q95 * r ** k`` with ``k = tail_multiple * w``, ``w = 1 + small_sample / sqrt(n)``: a
short, noisy history needs a larger excess (at ``n = 10`` about 1.24x the exponent, at the full sample of 64
about 1.1x). The tail ratio counts at most ``max_tail`` (1.6, a log-normal sigma of ~0.5): from 10 payments
it is the max over the 3rd largest, which varies wildly, and raised to the power k an unlucky draw put the
line out of reach of 8x spikes. With ``tail_multiple`` 3 a log-normal merchant's line is ~4.5-5 standard
deviations above its median (simulated false hits ~3e-4 of payments at sigma 0.4); on the seed's uniform
amounts it is ~200,000-250,000, above any normal payment.

That line extrapolates from the body of the amounts (q75 to q95), and where they spread widely it overshoots
the merchant's actual range: the capped ratio's power is 4.7-5.7, so the line sat at ~4-6x the largest
recent amount of a merchant whose amounts are spread evenly over two orders of magnitude (log-uniform), mix
small and large baskets, or are uniform from few payments (q95 is then the max itself), and spikes at
2-3x the top of such a range went through (rules 2.0.0: recall ~0.5 on them). So the line is at most
``range_multiple ** w`` (2.0: ~2.1-2.4x) the largest recent amount: beyond the range the merchant has
shown, whatever its spread (simulated, spikes at 2-5x the top of the range: recall 0.97-1.0 on log-uniform,
mixed-basket and log-normal merchants, 2.0.0 0.43-0.99). The price is at log-normal merchants, whose
amounts have no top: simulated false hits per payment (the 11th to the 100th) 0.23 % at sigma 0.6 (2.0.0:
0.13 %), 0.9 % at sigma 1 (0.4 %); for narrow merchants the tail line is the lower one and nothing changes.

The line is at least ``min_ratio`` times the median whatever the spread, so a merchant with near-constant
amounts is not flagged for an ordinary change; ``min_history`` 10 payments; ``sample_size`` 64 (bounded
state; the quantiles follow a drifting merchant within tens of payments).

A payment that hits, or that is ``min_ratio`` times anything in the sample (a spike a short history let
through), does not enter the sample, so repeated spikes at one merchant (a compromised account) cannot
raise the line; a slow rise is followed (see the ``amount_drift`` control in DETECTION.md). Such held-back
amounts are remembered, though: once ``recurring`` (5) of them came, each after an ordinary payment of the
merchant, within its last ``sample_size`` payments, they are a level of its own and join the sample. A
merchant that takes small and large baskets but whose first payments were all small would otherwise have
every large basket flagged, forever; the price: a compromised account whose spikes recur among ordinary
payments is flagged 5 times, not every time (a run of spikes in a row counts once).

State per merchantId, bounded: the last ``sample_size`` amounts and at most ``recurring - 1`` held-back
amounts with their place.
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
    #: ... but at most this multiple of the largest recent amount (the same widening for short histories:
    #: ``range_multiple ** (1 + small_sample / sqrt(n))``): beyond the merchant's range, whatever its spread.
    range_multiple: float = Field(default=2.0, gt=1)
    #: ... and at least this multiple of the median, whatever the spread.
    min_ratio: float = Field(default=3.0, ge=1)
    #: Held-back amounts (hits, let-through outliers) that came this many times, each after another
    #: ordinary payment, within the last ``sample_size`` payments join the sample (0: never).
    recurring: int = Field(default=5, ge=0)
    #: Recent amounts kept per merchant (bounds the state; how fast the baseline follows drift).
    sample_size: int = Field(default=64, ge=4)
    score: float = Field(default=70, ge=0, le=100)


def evaluate(event: Event, config: AmountSpikeConfig, state: RuleState | None) -> Hit | None:
    amount = event.get("payAmount")
    if amount is None or state is None:
        return None
    sample: list[float] = state.get("recent") or []
    n = len(sample)
    if n >= config.min_history:
        ordered = sorted(sample)
        hit = _judge(event, amount, ordered, config)
        if hit is not None or amount > config.min_ratio * ordered[-1]:
            # A spike, or a payment several times anything recent that the line let through (short history),
            # stays out of the sample, so a run of spikes cannot raise the line.
            _hold(state, sample, amount, config)
            return hit
    sample.append(amount)
    if n >= config.sample_size:
        del sample[: n + 1 - config.sample_size]
    state.set("recent", sample)
    return None


def _judge(event: Event, amount: float, ordered: list[float], config: AmountSpikeConfig) -> Hit | None:
    n = len(ordered)
    median = ordered[(n - 1) // 2]
    floor = config.min_ratio * median
    if amount <= floor or median <= 0:
        return None
    top = ordered[round(0.95 * (n - 1))]
    largest = ordered[-1]
    tail = min(top / ordered[round(0.75 * (n - 1))], config.max_tail)
    widen = 1 + config.small_sample / math.sqrt(n)
    beyond_tail = top * tail ** (config.tail_multiple * widen)
    beyond_range = largest * config.range_multiple**widen
    threshold = max(min(beyond_tail, beyond_range), floor)
    if amount <= threshold:
        return None
    return Hit(
        score=config.score,
        reason=(
            f"payAmount {amount:.2f} is {amount / median:.1f}x merchant {event.get('merchantId')}'s "
            f"median {median:.2f} and {amount / largest:.1f}x its largest recent {largest:.2f} "
            f"({n} payments, top {top:.2f}, tail ratio {tail:.2f}); threshold {threshold:.2f}"
        ),
        values={
            "payAmount": amount,
            "median": median,
            "q95": top,
            "largest": largest,
            "tailRatio": tail,
            "history": n,
            "threshold": threshold,
        },
    )


def _hold(state: RuleState, sample: list[float], amount: float, config: AmountSpikeConfig) -> None:
    """Keep a held-back amount aside; once ``recurring`` of them came at distinct points of the sample, they
    are a level of the merchant's own (big baskets) and enter it.

    Each held amount is stored with the last amount in the sample when it came, which marks its place: held
    amounts with the same mark came in a row (a run counts once), and one whose mark has left the sample is
    older than ``sample_size`` payments (forgotten)."""
    if config.recurring == 0:
        return
    mark = sample[-1]
    held: list[list[float]] = [h for h in state.get("held") or [] if h[1] in sample]
    if held and held[-1][1] == mark:
        return  # same run as the last held amount
    held.append([amount, mark])
    if len(held) < config.recurring:
        state.set("held", held)
        return
    sample.extend(h[0] for h in held)
    del sample[: max(0, len(sample) - config.sample_size)]
    state.set("recent", sample)
    state.delete("held")


RULE = Rule(
    id="amount_spike",
    version="2.1.0",
    description="Payment amount far above the top of the merchant's recent amounts (its tail, its range).",
    evaluate=evaluate,
    config_model=AmountSpikeConfig,
    key="merchantId",
)
