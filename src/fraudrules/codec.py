"""The one JSON codec of fraudrules (orjson): records in, verdicts and dead-letter records out."""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes | bytearray | str) -> Any:
    """Parse JSON text; raises :class:`JSONDecodeError` (a ``ValueError``) on anything that is not JSON."""
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Serialize to compact UTF-8 JSON bytes; non-string dict keys are allowed."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


#: As Quix Streams' state store serialises (``quixstreams.utils.json``): string keys only, no datetimes.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps_strict(value: Any) -> bytes:
    """JSON as a state store or a topic can carry it, else :class:`TypeError` (``orjson.JSONEncodeError``):
    what a rule stores or returns is checked with this before it goes anywhere."""
    return orjson.dumps(value, option=_STRICT)


def dumps_spaced(value: Any) -> bytes:
    """JSON with a space after ',' and ':', byte for byte what the seed's Python generator wrote."""
    return json.dumps(value).encode()


def dumps_str(value: Any) -> str:
    return dumps(value).decode()
