"""Bytes to a validated record, or the reason it is not one. Never raises.

Runs as the input topics' value deserializer, so it is the first step of the per-record hot path:
UTF-8 and JSON in one ``orjson.loads``, then the compiled schema check. Only a failing record pays for
an explanation.

Limits are checked here, where a record enters, not discovered later by a failing produce: a value above
``max_value_bytes`` is not parsed at all, and a record nested deeper than ``max_depth`` is refused
(orjson writes at most 254 levels and Quix Streams' per-record copy hits Python's recursion limit near
495, so a valid order with a 1,000-level extra field would otherwise stop the pipeline when its state is
saved). The depth walk runs only for a value with more brackets than the limit: seed records have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fraudrules import codec
from fraudrules.pipeline.model import DeadLetterReason, Side, SideName, Source
from fraudrules.validation import SchemaName, validator

#: Values larger than this are not parsed at all (default of settings.max_record_bytes).
MAX_VALUE_BYTES = 65_536
#: Records nested deeper than this are refused (default of settings.max_nesting_depth).
MAX_DEPTH = 64
#: A traceparent longer than this is not a W3C trace context (55 characters) and is not carried.
MAX_TRACEPARENT_BYTES = 256


@dataclass(frozen=True, slots=True)
class Decoded:
    """A valid record (``record`` set) or a failure (``reason`` and ``error`` set, ``raw`` kept)."""

    record: dict[str, Any] | None
    reason: DeadLetterReason | None = None
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

    def __init__(self, kind: SchemaName, max_value_bytes: int = MAX_VALUE_BYTES, max_depth: int = MAX_DEPTH) -> None:
        self.kind = kind
        self.max_value_bytes = max_value_bytes
        self.max_depth = max_depth
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
        if value.count(b"{") + value.count(b"[") > self.max_depth:
            depth = nesting_depth(record, self.max_depth)
            if depth > self.max_depth:
                return Decoded(
                    None,
                    "too_deep",
                    f"value is nested more than {self.max_depth} levels deep (settings.max_nesting_depth)",
                    raw=value,
                )
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
        # orjson refuses nesting beyond 1,024 levels with a message of its own: call it what it is.
        if "depth limit" in str(exc):
            return Decoded(None, "too_deep", f"value is nested too deeply to parse: {exc}", raw=value)
        return Decoded(None, "not_json", f"value is not JSON: {exc}", raw=value)


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests objects and arrays (a flat object is 1), counting at most to ``limit + 1``."""
    depth = 0
    level: list[Any] = [value]
    while level and depth <= limit:
        containers = [item for item in level if type(item) in (dict, list)]
        if not containers:
            break
        depth += 1
        level = [child for item in containers for child in (item.values() if type(item) is dict else item)]
    return depth


def side_record(record: dict[str, Any], kind: SideName, source: Source, traceparent: str | None = None) -> Side:
    """A validated record with its side and origin, re-keyed by ``orderId`` (normalised to int)."""
    return {
        "side": kind,
        "orderId": int(record["orderId"]),
        "record": record,
        "source": source,
        "traceparent": traceparent,
    }


def traceparent_of(headers: Any) -> str | None:
    """The W3C ``traceparent`` header of an input record (the only header fraudrules carries to its outputs)."""
    if not headers:
        return None
    for name, value in headers:
        if name.lower() == "traceparent" and value is not None and len(value) <= MAX_TRACEPARENT_BYTES:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            return text
    return None


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
