"""``fraudrules top``'s arithmetic and screen from two scrapes (no Kafka)."""

from __future__ import annotations

import math
from typing import cast

from prometheus_client import generate_latest
from rich.console import Console

from fraudrules.operations.metrics import Metrics
from fraudrules.operations.top import interval_buckets, parse, quantile, render
from fraudrules.pipeline.model import Verdict


def test_quantiles_interpolate_within_buckets_as_histogram_quantile_does() -> None:
    buckets = [(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (math.inf, 100.0)]
    assert quantile(buckets, 0.5) == 0.1
    assert abs(quantile(buckets, 0.25) - 0.055) < 1e-9
    assert abs(quantile(buckets, 0.99) - 0.982) < 1e-9
    assert quantile([(1.0, 0.0), (math.inf, 4.0)], 0.5) == 1.0  # beyond the last bound: its lower edge
    assert math.isnan(quantile([], 0.5))


def test_the_screen_shows_rates_decisions_rules_latency_and_lag_over_the_interval() -> None:
    metrics = Metrics()
    before = parse(generate_latest(metrics.registry).decode(), at=0.0)
    for _ in range(40):
        metrics.admitted("payment", {"side": "payment"})  # type: ignore[arg-type]
    for latency_ms, decision in [(20.0, "approve")] * 18 + [(400.0, "review")] * 2:
        metrics.verdict(
            cast(
                Verdict,
                {
                    "decision": decision,
                    "latencyMs": latency_ms,
                    "join": {"status": "joined"},
                    "hits": [{"rule": "amount_spike"}] if decision == "review" else [],
                    "shadowHits": [],
                    "errors": [],
                },
            )
        )
        metrics.rule_call("amount_spike", 8e-6)
    now = parse(generate_latest(metrics.registry).decode(), at=2.0)

    console = Console(record=True, width=120)
    console.print(render("http://x/metrics", now, before))
    screen = console.export_text()

    assert "in: payment" in screen
    assert "20.0" in screen
    assert "review" in screen
    assert "10.00%" in screen
    assert "amount_spike" in screen
    assert "p99" in screen
    latency = interval_buckets(now, before, "fraudrules_verdict_latency_seconds", join="joined")
    assert 0.01 < quantile(latency, 0.5) <= 0.025
    assert 0.25 < quantile(latency, 0.99) <= 0.5


def test_an_unreachable_endpoint_is_said_on_screen() -> None:
    from fraudrules.operations.top import fetch

    scrape = fetch("http://127.0.0.1:9/metrics", timeout=1)
    console = Console(record=True, width=100)
    console.print(render("http://127.0.0.1:9/metrics", scrape, None))
    assert "cannot scrape" in console.export_text()
