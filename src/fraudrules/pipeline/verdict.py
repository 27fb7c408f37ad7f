"""The verdict written to ``sink``: one per order (valid against ``schemas/verdict.json``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fraudrules import __version__
from fraudrules.pipeline.model import Enriched, RulesetInfo, Verdict
from fraudrules.rules.scoring import Scored


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
        "decidedAt": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds"),
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
