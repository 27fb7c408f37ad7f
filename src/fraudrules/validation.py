"""Validation of records against the JSON Schemas shipped in ``fraudrules/schemas``.

The schema files are the single source of truth. The hot path uses a compiled validator
(``jsonschema-rs``, a couple of microseconds per record); only a record that fails is explained,
with the path and message of its first error, by the same compiled validator. ``jsonschema``
checks each schema file against its metaschema when its validator is compiled (start-up): an edited schema
with a mistake stops the app with :class:`SchemaError` naming the file and the problem, where a compiled
validator would accept or reject records for a reason nobody wrote down.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal

import jsonschema
import jsonschema_rs

from fraudrules import codec

SchemaName = Literal["payment", "order", "verdict", "deadletter"]
SCHEMA_NAMES: tuple[SchemaName, ...] = ("payment", "order", "verdict", "deadletter")

#: Custom format for createTime; the pattern in the schema gives the shape, this checks the calendar.
TIMESTAMP_FORMAT = "fraudrules-timestamp"


def is_real_timestamp(value: str) -> bool:
    """True for 'YYYY-MM-DD HH:MM:SS[.ffffff]' naming a real date and time (no Feb 30, no 25:00)."""
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def load_schema(name: SchemaName) -> dict[str, Any]:
    """The parsed schema file ``schemas/<name>.json`` from the installed package."""
    text = resources.files("fraudrules").joinpath("schemas", f"{name}.json").read_bytes()
    schema: dict[str, Any] = codec.loads(text)
    return schema


class SchemaError(Exception):
    """A schema file is not a valid JSON Schema; the message names the file and every problem."""


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """What is wrong with ``schema`` by its metaschema (``$schema``, else the latest draft): path and message."""
    cls = jsonschema.validators.validator_for(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in cls(cls.META_SCHEMA).iter_errors(schema)
    ]


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a record failed its schema: the JSON path of the failing field and the message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SchemaValidator:
    """A compiled validator for one schema file."""

    __slots__ = ("_is_valid", "_validator", "name")

    def __init__(self, name: SchemaName) -> None:
        self.name = name
        schema = load_schema(name)
        problems = schema_problems(schema)
        if problems:
            raise SchemaError(f"schemas/{name}.json is not a valid JSON Schema: {'; '.join(problems)}")
        self._validator = jsonschema_rs.validator_for(
            schema,
            formats={TIMESTAMP_FORMAT: is_real_timestamp},
            validate_formats=True,
        )
        self._is_valid = self._validator.is_valid

    def is_valid(self, instance: Any) -> bool:
        return bool(self._is_valid(instance))

    def explain(self, instance: Any) -> Invalid | None:
        """The first error of an invalid instance (None if it is valid)."""
        for error in self._validator.iter_errors(instance):
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
            return Invalid(path=path, message=_message(error))
        return None


def _message(error: Any) -> str:
    message = str(error.message)
    # Messages quote the offending value; a 1 MB string must not become a 1 MB message.
    return message if len(message) <= 300 else message[:300] + "…"


@functools.cache
def validator(name: SchemaName) -> SchemaValidator:
    """The shared compiled validator for ``name`` (compiled once per process)."""
    return SchemaValidator(name)


def check_schemas() -> dict[SchemaName, list[str]]:
    """Check every schema file against its metaschema with ``jsonschema``; returns problems per schema."""
    problems: dict[SchemaName, list[str]] = {}
    for name in SCHEMA_NAMES:
        schema = load_schema(name)
        cls = jsonschema.validators.validator_for(schema)
        problems[name] = [error.message for error in cls(cls.META_SCHEMA).iter_errors(schema)]
    return problems
