"""Bytes to a validated record, or the reason it is not one. Never raises.

Runs as the input topics' value deserializer, so it is the first step of the per-record hot path:
UTF-8 and JSON in one ``orjson.loads``, then the compiled schema check. Only a failing record pays for
an explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fraudrules import codec
from fraudrules.validation import SchemaName, validator

Reason = Literal["null_value", "not_utf8", "not_json", "not_object", "schema", "too_large"]

#: Values larger than this are not parsed at all (default of settings.max_record_bytes).
MAX_VALUE_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class Decoded:
    """A valid record (``record`` set) or a failure (``reason`` and ``error`` set, ``raw`` kept)."""

    record: dict[str, Any] | None
    reason: Reason | None = None
    error: str = ""
    path: str | None = None
    raw: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None


NULL_VALUE = Decoded(None, "null_value", "the record has no value (null)")


class RecordDecoder:
    """Decode and validate one topic's values against the schema ``kind``.

    Also usable as a Quix Streams value deserializer (it accepts and ignores ``ctx``).
    """

    split_values = False

    def __init__(self, kind: SchemaName, max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        self.kind = kind
        self.max_value_bytes = max_value_bytes
        self._validator = validator(kind)
        self._is_valid = self._validator.is_valid

    def __call__(self, value: bytes | None, ctx: object = None) -> Decoded:
        if value is None:
            return NULL_VALUE
        if len(value) > self.max_value_bytes:
            return Decoded(
                None,
                "too_large",
                f"value is {len(value)} bytes, above the {self.max_value_bytes} limit",
                raw=value,
            )
        try:
            record = codec.loads(value)
        except codec.JSONDecodeError as exc:
            return self._not_json(value, exc)
        if type(record) is not dict:
            return Decoded(None, "not_object", f"expected a JSON object, got {_json_type(record)}", raw=value)
        if self._is_valid(record):
            return Decoded(record)
        invalid = self._validator.explain(record)
        error = str(invalid) if invalid else "does not match the schema"
        return Decoded(None, "schema", f"{self.kind}: {error}", invalid.path if invalid else None, value)

    @staticmethod
    def _not_json(value: bytes, exc: Exception) -> Decoded:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as utf8_error:
            return Decoded(None, "not_utf8", f"value is not UTF-8: {utf8_error}", raw=value)
        if not value.strip():
            return Decoded(None, "not_json", "value is empty", raw=value)
        return Decoded(None, "not_json", f"value is not JSON: {exc}", raw=value)


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
