"""The one JSON codec: compact bytes out, the seed's spacing on request, a ValueError for anything not JSON."""

from __future__ import annotations

import pytest

from fraudrules import codec


def test_dumps_is_compact_and_loads_reads_it_back() -> None:
    value = {"orderId": 1, "payAmount": 79901.88, "category": "kids_pets"}

    assert codec.dumps(value) == b'{"orderId":1,"payAmount":79901.88,"category":"kids_pets"}'
    assert codec.loads(codec.dumps(value)) == value
    assert codec.dumps_str(value) == codec.dumps(value).decode()


def test_dumps_spaced_writes_what_the_seed_generator_wrote() -> None:
    assert codec.dumps_spaced({"orderId": 1, "provinceId": 2}) == b'{"orderId": 1, "provinceId": 2}'


def test_non_string_keys_are_allowed() -> None:
    assert codec.loads(codec.dumps({1: "a"})) == {"1": "a"}


@pytest.mark.parametrize("text", [b"", b"{", b'{"a": 1,}', b"\xff"])
def test_anything_not_json_is_a_value_error(text: bytes) -> None:
    with pytest.raises(codec.JSONDecodeError):
        codec.loads(text)
