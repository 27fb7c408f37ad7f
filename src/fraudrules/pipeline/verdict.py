"""The verdict written to ``sink``: one per order (valid against ``schemas/verdict.json``)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from fraudrules import __version__
from fraudrules.pipeline.model import Enriched, RulesetInfo, Verdict
from fraudrules.rules.scoring import Scored

#: The last second written out, and its text, in one value (so that a verdict formats only its milliseconds: most
#: share a second with the one before).
_second: tuple[int, str] = (-1, "")


def decided_at(now_ms: float) -> str:
    """Wall time ``now_ms`` as ISO 8601 in UTC to the millisecond: what ``datetime.isoformat`` writes for it
    (``2026-12-05T09:58:27.146+00:00``), for about half its cost (BENCHMARKS "Changes and gains")."""
    if now_ms < 0:
        return datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
    # as datetime.fromtimestamp does: the fraction of the second rounded (half to even) to the microsecond ...
    fraction, whole = math.modf(now_ms / 1000)
    second, micros = int(whole), round(fraction * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    millis = micros // 1000  # ... then cut to the millisecond, as isoformat does
    global _second
    known, text = _second
    if second != known:
        text = datetime.fromtimestamp(second, UTC).isoformat()[:19]
        _second = (second, text)
    return f"{text}.{millis:03d}+00:00"


def build_verdict(enriched: Enriched, scored: Scored, ruleset: RulesetInfo) -> Verdict:
    now_ms = time.time() * 1000
    present = enriched["payment"] or enriched["order"]
    assert present is not None
    verdict: Verdict = {
        "orderId": enriched["orderId"],
        "verdictId": enriched["verdictId"],
        "decision": scored.decision,
        "score": scored.score,
        "hits": scored.hits,
        "shadowHits": scored.shadow_hits,
        "errors": scored.errors,
        "join": {"status": enriched["event"]["joinStatus"]},
        "eventTime": present["createTime"],
        "decidedAt": decided_at(now_ms),
        "latencyMs": round(now_ms - enriched["inputTimestampMs"], 3),
        "payment": enriched["payment"],
        "order": enriched["order"],
        "provenance": enriched["provenance"],
        "ruleset": ruleset,
        "fraudrulesVersion": __version__,
    }
    traceparent = enriched.get("traceparent")
    if traceparent:
        verdict["traceparent"] = traceparent
    if scored.lists:
        verdict["lists"] = list(scored.lists)
    if enriched.get("late"):
        verdict["late"] = True
    reused = enriched.get("reusedOrderId")
    if reused is not None:
        verdict["reusedOrderId"] = reused
    return verdict
