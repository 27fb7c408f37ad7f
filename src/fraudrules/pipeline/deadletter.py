"""Dead-letter records: why a record was refused, its raw bytes and where it came from."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from fraudrules import __version__
from fraudrules.pipeline.decode import Decoded


def deadletter_record(
    decoded: Decoded,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    key: bytes | None,
    max_raw_bytes: int,
) -> dict[str, Any]:
    """The dead-letter value for a refused record (valid against ``schemas/deadletter.json``)."""
    raw = decoded.raw
    return {
        "reason": decoded.reason,
        "error": decoded.error,
        "path": decoded.path,
        "source": {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp": timestamp,
            "key": None if key is None else base64.b64encode(key).decode("ascii"),
        },
        "raw": None if raw is None else base64.b64encode(raw[:max_raw_bytes]).decode("ascii"),
        "rawSize": 0 if raw is None else len(raw),
        "rawTruncated": raw is not None and len(raw) > max_raw_bytes,
        "rawSha256": None if raw is None else hashlib.sha256(raw).hexdigest(),
        "seenAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "fraudrulesVersion": __version__,
    }
