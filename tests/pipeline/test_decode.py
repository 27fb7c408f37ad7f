from __future__ import annotations

import pytest

from fraudrules import codec
from fraudrules.pipeline.decode import RecordDecoder, nesting_depth, traceparent_of
from tests.fixtures import ORDER, PAYMENT, payment


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
        (b"[" * 2000 + b"]" * 2000, "too_deep", "nested too deeply"),
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


def nested(levels: int) -> object:
    value: object = "x"
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("levels", [300, 1_000])
def test_a_valid_record_with_a_deeply_nested_extra_field_is_refused_as_too_deep(levels: int) -> None:
    # orjson cannot write this deep: the bytes are built by hand, as a producer elsewhere might
    raw = codec.dumps(payment(1))[:-1] + b',"extra":' + b'{"a":' * levels + b'"x"' + b"}" * levels + b"}"

    decoded = RecordDecoder("payment")(raw)

    assert (decoded.ok, decoded.reason) == (False, "too_deep")
    assert "64 levels" in decoded.error
    assert decoded.raw == raw


def test_nesting_within_the_limit_is_accepted_and_kept() -> None:
    record = {**payment(1), "extra": nested(60), "list": [[1, 2], {"b": [3]}]}

    decoded = RecordDecoder("payment", max_depth=64)(codec.dumps(record))

    assert decoded.ok
    assert decoded.record == record


def test_nesting_depth_counts_objects_and_arrays_and_stops_past_the_limit() -> None:
    assert nesting_depth({"a": 1}, 10) == 1
    assert nesting_depth({"a": [{"b": []}]}, 10) == 4
    assert nesting_depth(nested(500), 10) == 11


def test_only_a_short_traceparent_header_is_carried() -> None:
    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    assert traceparent_of([("other", b"1"), ("traceparent", trace)]) == trace.decode()
    assert traceparent_of([("Traceparent", b"x" * 10_000)]) is None
    assert traceparent_of([("authorization", b"Bearer secret")]) is None
    assert traceparent_of(None) is None
