"""``fraudrules top``: a live terminal view of a running pipeline, from its Prometheus endpoint.

Two scrapes ``interval`` seconds apart give rates; histograms give percentiles (interpolated within buckets,
as PromQL's ``histogram_quantile``) over the last interval, or since the start while nothing moved.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """One scrape: sample name -> labels -> value, and when it was taken (monotonic seconds)."""

    at: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)
    error: str | None = None

    def values(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})

    def by(self, name: str, label: str) -> dict[str, float]:
        """``name`` summed per value of ``label``."""
        out: dict[str, float] = defaultdict(float)
        for labels, value in self.values(name).items():
            out[dict(labels).get(label, "")] += value
        return dict(out)

    def total(self, name: str) -> float:
        return sum(self.values(name).values())


def parse(text: str, at: float) -> Scrape:
    scrape = Scrape(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            scrape.samples.setdefault(sample.name, {})[labels] = sample.value
    return scrape


def fetch(url: str, timeout: float = 5.0) -> Scrape:
    at = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse(response.read().decode(), at)
    except (OSError, ValueError) as exc:
        return Scrape(at, error=f"cannot scrape {url}: {exc}")


def quantile(buckets: Iterable[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of a histogram given as (upper bound, cumulative count) pairs; NaN when empty."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    target = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= target:
            if math.isinf(bound):
                return lower_bound
            share = (target - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _buckets(scrape: Scrape, name: str, where: dict[str, str]) -> dict[float, float]:
    """Cumulative counts per ``le`` of histogram ``name`` over the series matching ``where``."""
    out: dict[float, float] = defaultdict(float)
    for labels, value in scrape.values(name + "_bucket").items():
        found = dict(labels)
        if all(found.get(k) == v for k, v in where.items()):
            out[float(found["le"])] += value
    return dict(out)


def interval_buckets(now: Scrape, before: Scrape | None, name: str, **where: str) -> list[tuple[float, float]]:
    """The histogram's counts over the interval; since the start when nothing came in it."""
    current = _buckets(now, name, where)
    if before is not None:
        previous = _buckets(before, name, where)
        delta = {le: count - previous.get(le, 0.0) for le, count in current.items()}
        if delta and max(delta.values()) > 0:
            return list(delta.items())
    return list(current.items())


def _rate(now: Scrape, before: Scrape | None, name: str, label: str | None = None) -> dict[str, float]:
    if before is None or now.at <= before.at:
        return {}
    seconds = now.at - before.at
    if label is None:
        return {"": max(0.0, now.total(name) - before.total(name)) / seconds}
    old = before.by(name, label)
    return {key: max(0.0, value - old.get(key, 0.0)) / seconds for key, value in now.by(name, label).items()}


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.1f} ms"


def _us(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e6:,.1f} µs"


def render(url: str, now: Scrape, before: Scrape | None, top_rules: int = 10) -> RenderableType:
    """One screen: rates, decisions, top rules, latency percentiles, lag."""
    if now.error is not None:
        return Panel(Text(now.error, style="bold red"), title="fraudrules top")
    info = next(iter(now.values("fraudrules_ruleset_info")), ())
    ruleset = dict(info)
    changes = now.by("fraudrules_ruleset_changes_total", "outcome")
    header = Text.assemble(
        ("fraudrules top", "bold"),
        f"  {url}   rule set ",
        (ruleset.get("id", "?"), "cyan"),
        f" v{ruleset['version']}" if ruleset.get("version") else " (settings)",
        f"   changes applied {changes.get('applied', 0):.0f} rejected {changes.get('rejected', 0):.0f}",
        f"   open orders {now.total('fraudrules_join_open_orders'):,.0f}",
    )

    flow = Table(title="throughput", expand=True)
    flow.add_column("stream")
    flow.add_column("total", justify="right")
    flow.add_column("per s", justify="right")
    rates_in = _rate(now, before, "fraudrules_records_in_total", "topic")
    for topic, total in sorted(now.by("fraudrules_records_in_total", "topic").items()):
        flow.add_row(f"in: {topic}", f"{total:,.0f}", f"{rates_in.get(topic, 0):,.1f}")
    verdict_rate = _rate(now, before, "fraudrules_verdicts_total").get("", 0.0)
    flow.add_row("verdicts", f"{now.total('fraudrules_verdicts_total'):,.0f}", f"{verdict_rate:,.1f}")
    dead_rate = _rate(now, before, "fraudrules_deadletters_total", "reason")
    for reason, total in sorted(now.by("fraudrules_deadletters_total", "reason").items()):
        flow.add_row(f"dead letters: {reason}", f"{total:,.0f}", f"{dead_rate.get(reason, 0):,.1f}")

    decisions = Table(title="decisions", expand=True)
    decisions.add_column("decision")
    decisions.add_column("total", justify="right")
    decisions.add_column("share", justify="right")
    decisions.add_column("per s", justify="right")
    by_decision = now.by("fraudrules_verdicts_total", "decision")
    all_verdicts = sum(by_decision.values()) or 1.0
    decision_rate = _rate(now, before, "fraudrules_verdicts_total", "decision")
    for decision in ("approve", "review", "decline"):
        total = by_decision.get(decision, 0.0)
        decisions.add_row(
            decision, f"{total:,.0f}", f"{100 * total / all_verdicts:.2f}%", f"{decision_rate.get(decision, 0):,.1f}"
        )

    latency = Table(title="latency (Kafka timestamp to verdict)", expand=True)
    latency.add_column("join")
    for column in ("p50", "p90", "p99"):
        latency.add_column(column, justify="right")
    for status in ("joined", "payment_only", "order_only"):
        buckets = interval_buckets(now, before, "fraudrules_verdict_latency_seconds", join=status)
        if buckets and max(count for _, count in buckets) > 0:
            latency.add_row(status, *(_ms(quantile(buckets, q)) for q in (0.5, 0.9, 0.99)))

    rules = Table(title="rules", expand=True)
    rules.add_column("rule", no_wrap=True, min_width=18)
    for column in ("hits", "hits/s", "shadow"):
        rules.add_column(column, justify="right")
    for column in ("errors", "suspended", "mean", "p99"):
        rules.add_column(column, justify="right")
    hits = now.values("fraudrules_rule_hits_total")
    enforced = {dict(k)["rule"]: v for k, v in hits.items() if dict(k).get("mode") == "enforce"}
    shadow = {dict(k)["rule"]: v for k, v in hits.items() if dict(k).get("mode") == "shadow"}
    hit_rate = _rate(now, before, "fraudrules_rule_hits_total", "rule")
    errors = now.by("fraudrules_rule_errors_total", "rule")
    suspended = now.by("fraudrules_rule_suspensions_total", "rule")
    sums = now.by("fraudrules_rule_evaluation_seconds_sum", "rule")
    counts = now.by("fraudrules_rule_evaluation_seconds_count", "rule")
    names = set(counts) | set(enforced) | set(shadow) | set(errors)
    ranked = sorted(names, key=lambda r: (-(enforced.get(r, 0) + shadow.get(r, 0)), r))[:top_rules]
    for rule in ranked:
        mean = sums.get(rule, 0.0) / counts[rule] if counts.get(rule) else math.nan
        p99 = quantile(interval_buckets(now, before, "fraudrules_rule_evaluation_seconds", rule=rule), 0.99)
        rules.add_row(
            rule,
            f"{enforced.get(rule, 0):,.0f}",
            f"{hit_rate.get(rule, 0):,.2f}",
            f"{shadow.get(rule, 0):,.0f}",
            f"{errors.get(rule, 0):,.0f}",
            f"{suspended.get(rule, 0):,.0f}",
            _us(mean),
            _us(p99),
        )

    lag = Table(title="consumer lag (committed)", expand=True)
    lag.add_column("topic")
    lag.add_column("partition", justify="right")
    lag.add_column("records", justify="right")
    lags = now.values("fraudrules_consumer_lag")
    for labels, value in sorted(lags.items()):
        found = dict(labels)
        lag.add_row(found.get("topic", ""), found.get("partition", ""), f"{value:,.0f}")
    if lags:
        lag.add_row("total", "", f"{sum(lags.values()):,.0f}")
    return Group(header, flow, decisions, latency, rules, lag)
