from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fraudrules.pipeline.verdict import decided_at


@pytest.mark.parametrize(
    "now_ms",
    [
        1_733_400_000_123.0,
        1_733_400_000_999.9995,  # rounds up to the next second's first microsecond
        1_733_400_000_123.4995,
        1_733_400_000_000.0005,
        3_590_048_219_897.9995,
        0.0,
        -1_500.25,  # before 1970: datetime's own path
    ],
)
def test_decided_at_writes_what_isoformat_writes(now_ms: float) -> None:
    expected = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
    assert decided_at(now_ms) == expected


def test_decided_at_moves_to_the_next_second() -> None:
    assert decided_at(1_733_400_000_999.0) == "2024-12-05T12:00:00.999+00:00"
    assert decided_at(1_733_400_001_000.0) == "2024-12-05T12:00:01.000+00:00"
