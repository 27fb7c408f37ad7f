"""Dead-letter records: why a record was refused, its raw bytes and where it came from.

Every dead letter is bounded whatever its input: the raw value is cut at ``max_raw_bytes`` and the key at
``max_key_bytes`` (each with its full size and SHA-256), messages are short, and input headers are never
copied, so a dead letter always fits the producer's message limit even when its input did not.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from fraudrules import __version__, codec
from fraudrules.pipeline.decode import Decoded
from fraudrules.pipeline.model import DeadLetter, DeadLetterReason, DeadLetterSource, Side, Source

#: Keys longer than this are cut in dead letters (default of settings.deadletter_max_key_bytes).
MAX_KEY_BYTES = 1024


def deadletter_record(
    decoded: Decoded,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    key: bytes | None,
    max_raw_bytes: int,
    max_key_bytes: int = MAX_KEY_BYTES,
) -> DeadLetter:
    """The dead-letter value for a record the decoder refused (valid against ``schemas/deadletter.json``)."""
    assert decoded.reason is not None
    source: DeadLetterSource = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        **_key_fields(key, max_key_bytes),  # type: ignore[typeddict-item]
    }
    return _letter(decoded.reason, decoded.error, decoded.path, source, decoded.raw, max_raw_bytes)


def side_deadletter(
    reason: DeadLetterReason,
    error: str,
    side: Side,
    *,
    original: Source,
    max_raw_bytes: int,
    differing: list[str] | None = None,
) -> DeadLetter:
    """A valid side the join cannot use (a repeat, a conflicting record, a side after its order's verdict).

    ``raw`` is the record re-encoded as compact JSON (the join keeps parsed records, not their bytes).
    """
    src = side["source"]
    source: DeadLetterSource = {**src, "key": None}  # type: ignore[typeddict-item]
    letter = _letter(reason, error, None, source, codec.dumps(side["record"]), max_raw_bytes)
    letter["orderId"] = side["orderId"]
    letter["original"] = original
    if differing is not None:
        letter["differingFields"] = differing
    return letter


def deadletter_key(letter: DeadLetter) -> bytes | None:
    """The dead letter's Kafka key: the input's key when it was short enough to keep whole, else none (its
    size and hash are in the value)."""
    source = letter["source"]
    encoded = source.get("key")
    return None if encoded is None or "keySize" in source else base64.b64decode(encoded)


def _key_fields(key: bytes | None, max_key_bytes: int) -> dict[str, object]:
    if key is None:
        return {"key": None}
    if len(key) <= max_key_bytes:
        return {"key": base64.b64encode(key).decode("ascii")}
    return {
        "key": base64.b64encode(key[:max_key_bytes]).decode("ascii"),
        "keySize": len(key),
        "keySha256": hashlib.sha256(key).hexdigest(),
    }


def _letter(
    reason: DeadLetterReason,
    error: str,
    path: str | None,
    source: DeadLetterSource,
    raw: bytes | None,
    max_raw_bytes: int,
) -> DeadLetter:
    return {
        "reason": reason,
        "error": error,
        "path": path,
        "source": source,
        "raw": None if raw is None else base64.b64encode(raw[:max_raw_bytes]).decode("ascii"),
        "rawSize": 0 if raw is None else len(raw),
        "rawTruncated": raw is not None and len(raw) > max_raw_bytes,
        "rawSha256": None if raw is None else hashlib.sha256(raw).hexdigest(),
        "seenAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "fraudrulesVersion": __version__,
    }
