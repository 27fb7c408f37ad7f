"""The verdict written to ``sink``: one per order (valid against ``schemas/verdict.json``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fraudrules import __version__
from fraudrules.rules.scoring import Scored


def build_verdict(enriched: dict[str, Any], scored: Scored, ruleset: dict[str, Any]) -> dict[str, Any]:
    now_ms = time.time() * 1000
    event = enriched["event"]
    create_time = (enriched["payment"] or enriched["order"])["createTime"]
    return {
        "orderId": enriched["orderId"],
        "decision": scored.decision,
        "score": scored.score,
        "hits": scored.hits,
        "shadowHits": scored.shadow_hits,
        "errors": scored.errors,
        "join": {"status": event["joinStatus"]},
        "eventTime": create_time,
        "decidedAt": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "latencyMs": round(now_ms - enriched["inputTimestampMs"], 3),
        "payment": enriched["payment"],
        "order": enriched["order"],
        "provenance": enriched["provenance"],
        "ruleset": ruleset,
        "fraudrulesVersion": __version__,
    }
