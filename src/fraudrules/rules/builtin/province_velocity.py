"""province_velocity: payments per province in a sliding event-time window far above that province's rate.

State per provinceId, bounded: the counts of the last ``window_seconds / bucket_seconds + late_buckets``
buckets of event time, and an exponentially weighted average of final buckets' counts (the baseline).
A payment's window is the ``window_seconds`` of event time ending at its own bucket, so payments read
out of event-time order (at several partitions) are counted where they belong. It fires when the
window's count is at least ``min_count`` and at least ``multiplier`` times the baseline's expectation
for a window, once ``min_history_buckets`` buckets have been final.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudrules.rules.model import Event, Hit, Rule, RuleState


class ProvinceVelocityConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_seconds: int = Field(default=30, ge=1)
    bucket_seconds: int = Field(default=5, ge=1)
    #: Fire when the window holds this many times the baseline's expected count ...
    multiplier: float = Field(default=3.0, gt=1)
    #: ... and at least this many payments (absolute floor).
    min_count: int = Field(default=15, ge=1)
    #: Completed buckets of history before the rule can fire (warm-up).
    min_history_buckets: int = Field(default=24, ge=1)
    #: Buckets kept beyond the window so that payments arriving out of event-time order (several partitions
    #: feeding one province) still count in the windows they belong to; a bucket joins the baseline once
    #: it is older than the window plus these.
    late_buckets: int = Field(default=6, ge=0)
    #: Weight of each completed bucket in the baseline average.
    baseline_weight: float = Field(default=0.02, gt=0, le=1)
    score: float = Field(default=40, ge=0, le=100)

    @model_validator(mode="after")
    def _whole_buckets(self) -> ProvinceVelocityConfig:
        if self.window_seconds % self.bucket_seconds:
            raise ValueError("window_seconds must be a multiple of bucket_seconds")
        return self


def evaluate(event: Event, config: ProvinceVelocityConfig, state: RuleState | None) -> Hit | None:
    event_time = event.get("eventTimeMs")
    if state is None or event_time is None or "payAmount" not in event:
        return None
    bucket = event_time // (config.bucket_seconds * 1000)
    span = config.window_seconds // config.bucket_seconds
    keep = span + config.late_buckets
    # ``newest``: the highest bucket seen; ``seen``: buckets folded into the baseline (warm-up).
    baseline, newest, seen = state.get("baseline") or (0.0, bucket, 0)
    counts: dict[int, int] = dict(state.get("buckets") or [])
    if bucket > newest:
        # Buckets leaving the kept range are final: fold them into the baseline, oldest first.
        gap = bucket - newest
        for final in range(newest - keep + 1, newest - keep + 1 + min(gap, keep)):
            seen += 1  # an exact running mean at first, then exponentially weighted
            baseline += max(config.baseline_weight, 1 / seen) * (counts.pop(final, 0) - baseline)
        if gap > keep:  # a stretch with no payments at all: the baseline decays in one step
            baseline *= (1 - config.baseline_weight) ** (gap - keep)
            seen += gap - keep
        newest = bucket
        oldest = newest - keep + 1
        counts = {b: c for b, c in counts.items() if b >= oldest}
    if bucket > newest - keep:  # later than that is too late to count
        counts[bucket] = counts.get(bucket, 0) + 1
    state.set("buckets", sorted(counts.items()))
    state.set("baseline", (baseline, newest, seen))
    # The window ends at this payment's own bucket, whatever arrived before or after it.
    count = sum(c for b, c in counts.items() if bucket - span < b <= bucket)
    expected = baseline * span
    threshold = max(float(config.min_count), config.multiplier * expected)
    if seen < config.min_history_buckets or count < threshold:
        return None
    return Hit(
        score=config.score,
        reason=(
            f"{count} payments in province {event.get('provinceId')} in the last {config.window_seconds}s "
            f"of event time, {count / expected if expected else float('inf'):.1f}x its usual {expected:.1f}; "
            f"threshold {threshold:.1f}"
        ),
        values={
            "count": count,
            "expected": expected,
            "threshold": threshold,
            "windowSeconds": config.window_seconds,
        },
    )


RULE = Rule(
    id="province_velocity",
    version="1.0.0",
    description="Payments per province in a sliding event-time window far above the province's usual rate.",
    evaluate=evaluate,
    config_model=ProvinceVelocityConfig,
    key="provinceId",
)
