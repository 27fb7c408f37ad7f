from __future__ import annotations

import base64
import hashlib
from typing import cast

from fraudrules.pipeline.deadletter import deadletter_record
from fraudrules.pipeline.decode import RecordDecoder
from fraudrules.validation import validator


def test_deadletter_record_is_valid_and_locates_the_source() -> None:
    decoded = RecordDecoder("order")(b"{oops")

    record = deadletter_record(
        decoded, topic="order", partition=2, offset=41, timestamp=1700000000000, key=b"k1", max_raw_bytes=1024
    )

    assert validator("deadletter").is_valid(record)
    assert record["reason"] == "not_json"
    assert record["source"] == {
        "topic": "order",
        "partition": 2,
        "offset": 41,
        "timestamp": 1700000000000,
        "key": base64.b64encode(b"k1").decode(),
    }
    assert base64.b64decode(cast(str, record["raw"])) == b"{oops"
    assert record["rawTruncated"] is False


def test_large_raw_values_are_cut_but_hashed_whole() -> None:
    raw = b"\xff" * 5000
    decoded = RecordDecoder("payment")(raw)

    record = deadletter_record(
        decoded, topic="payment", partition=0, offset=0, timestamp=0, key=None, max_raw_bytes=100
    )

    assert validator("deadletter").is_valid(record)
    assert len(base64.b64decode(cast(str, record["raw"]))) == 100
    assert record["rawSize"] == 5000
    assert record["rawTruncated"] is True
    assert record["rawSha256"] == hashlib.sha256(raw).hexdigest()
