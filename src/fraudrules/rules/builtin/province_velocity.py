"""province_velocity: payments per province in a sliding event-time window far above that province's rate.

State per provinceId, bounded: the counts of the last ``window_seconds / bucket_seconds`` buckets of
event time, and an exponentially weighted average of completed buckets' counts (the baseline).
It fires when the window's count is at least ``min_count`` and at least ``multiplier`` times the
baseline's expectation for a window, once ``min_history_buckets`` buckets have been seen.
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
    baseline, last, seen = state.get("baseline") or (0.0, bucket, 0)
    buckets: list[list[int]] = state.get("buckets") or []
    if bucket > last:
        counts = dict((b, c) for b, c in buckets)
        gap = bucket - last
        for completed in range(last, last + min(gap, span)):
            seen += 1  # an exact running mean at first, then exponentially weighted
            baseline += max(config.baseline_weight, 1 / seen) * (counts.get(completed, 0) - baseline)
        if gap > span:  # buckets with no payments at all: the baseline decays in one step
            baseline *= (1 - config.baseline_weight) ** (gap - span)
            seen += gap - span
        last = bucket
    oldest = last - span + 1
    if bucket >= oldest:
        for entry in buckets:
            if entry[0] == bucket:
                entry[1] += 1
                break
        else:
            buckets.append([bucket, 1])
    buckets = [entry for entry in buckets if entry[0] >= oldest]
    state.set("buckets", buckets)
    state.set("baseline", (baseline, last, seen))
    count = sum(c for _, c in buckets)
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
