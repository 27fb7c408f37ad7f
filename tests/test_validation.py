from __future__ import annotations

import pytest

from fraudrules import validation
from fraudrules.validation import SchemaError, SchemaValidator, check_schemas, is_real_timestamp, validator
from tests.fixtures import ORDER, PAYMENT


def test_schema_files_are_valid_json_schemas() -> None:
    assert check_schemas() == {"payment": [], "order": [], "verdict": [], "deadletter": []}


def test_a_broken_schema_file_stops_start_up_with_the_file_and_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = {**validation.load_schema("payment"), "required": "orderId"}
    monkeypatch.setattr(validation, "load_schema", lambda name: broken)

    with pytest.raises(SchemaError, match=r"schemas/payment.json .*required: 'orderId' is not of type 'array'"):
        SchemaValidator("payment")


def test_seed_records_are_valid() -> None:
    assert validator("payment").is_valid(PAYMENT)
    assert validator("order").is_valid(ORDER)


@pytest.mark.parametrize(
    "create_time",
    ["2023-12-08 22:19:02", "2023-12-08 22:19:02.8", "2023-12-08 22:19:02.808", "2023-12-08 22:19:02.123456"],
)
def test_create_time_accepts_zero_to_six_fractional_digits(create_time: str) -> None:
    assert validator("payment").is_valid({**PAYMENT, "createTime": create_time})


@pytest.mark.parametrize(
    "create_time",
    [
        "2023-02-30 10:00:00",  # no such day
        "2023-12-08 25:00:00",  # no such hour
        "2023-12-08T22:19:02",  # ISO 'T' is not the seed's format
        "2023-12-08 22:19:02.1234567",  # seven fractional digits
        "2023-12-08 22:19:02Z",
        "08/12/2023 22:19:02",
        "",
    ],
)
def test_create_time_rejects_other_shapes_and_impossible_dates(create_time: str) -> None:
    invalid = validator("payment").explain({**PAYMENT, "createTime": create_time})

    assert invalid is not None
    assert invalid.path == "$.createTime"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("orderId", "1702074256"),
        ("orderId", True),
        ("orderId", 1.5),
        ("payAmount", -0.01),
        ("payAmount", "10"),
        ("payPlatform", None),
        ("provinceId", 1.5),
    ],
)
def test_payment_fields_are_strictly_typed(field: str, value: object) -> None:
    invalid = validator("payment").explain({**PAYMENT, field: value})

    assert invalid is not None
    assert invalid.path == f"$.{field}"


@pytest.mark.parametrize(("field", "value"), [("category", ""), ("category", 3), ("merchantId", "869")])
def test_order_fields_are_strictly_typed(field: str, value: object) -> None:
    invalid = validator("order").explain({**ORDER, field: value})

    assert invalid is not None
    assert invalid.path == f"$.{field}"


@pytest.mark.parametrize("missing", sorted(PAYMENT))
def test_every_payment_field_is_required(missing: str) -> None:
    record = {k: v for k, v in PAYMENT.items() if k != missing}

    invalid = validator("payment").explain(record)

    assert invalid is not None
    assert missing in invalid.message


def test_unknown_extra_fields_are_allowed() -> None:
    assert validator("payment").is_valid({**PAYMENT, "currency": "EUR"})
    assert validator("order").is_valid({**ORDER, "channel": "web"})


def test_is_real_timestamp_checks_the_calendar() -> None:
    assert is_real_timestamp("2024-02-29 00:00:00")
    assert not is_real_timestamp("2023-02-29 00:00:00")
