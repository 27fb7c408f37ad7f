from __future__ import annotations

import pytest

from fraudrules import codec
from fraudrules.pipeline.decode import RecordDecoder
from tests.fixtures import ORDER, PAYMENT


def test_valid_payment_decodes_to_its_record() -> None:
    decoded = RecordDecoder("payment")(codec.dumps(PAYMENT))

    assert decoded.ok
    assert decoded.record == PAYMENT
    assert decoded.raw is None


def test_seed_bytes_with_spaces_after_separators_decode() -> None:
    raw = b'{"createTime": "2024-07-19 20:47:25.707", "orderId": 1721422046, ' + (
        b'"category": "kids_pets", "merchantId": 869}'
    )

    assert RecordDecoder("order")(raw).record == ORDER


@pytest.mark.parametrize(
    ("raw", "reason", "message"),
    [
        (None, "null_value", "no value"),
        (b"", "not_json", "empty"),
        (b"   ", "not_json", "empty"),
        (b"\xff\xfe{}", "not_utf8", "not UTF-8"),
        (b"{not json", "not_json", "not JSON"),
        (b'{"payAmount": NaN}', "not_json", "not JSON"),
        (b"[1, 2]", "not_object", "an array"),
        (b'"text"', "not_object", "a string"),
        (b"null", "not_object", "null"),
        (b"[" * 2000 + b"]" * 2000, "not_json", "not JSON"),
        (b'{"a": "' + b"x" * 1_100_000 + b'"}', "too_large", "above"),
    ],
)
def test_undecodable_values_get_a_reason_and_keep_their_bytes(raw: bytes | None, reason: str, message: str) -> None:
    decoded = RecordDecoder("payment")(raw)

    assert not decoded.ok
    assert decoded.reason == reason
    assert message in decoded.error
    assert decoded.raw == raw


def test_schema_failure_names_the_topic_kind_and_path() -> None:
    decoded = RecordDecoder("payment")(codec.dumps({**PAYMENT, "payAmount": -5}))

    assert decoded.reason == "schema"
    assert decoded.path == "$.payAmount"
    assert decoded.error.startswith("payment: $.payAmount: -5")


def test_an_order_on_the_payment_topic_is_a_schema_failure() -> None:
    decoded = RecordDecoder("payment")(codec.dumps(ORDER))

    assert decoded.reason == "schema"
    assert "required" in decoded.error
