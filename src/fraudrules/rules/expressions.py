"""Rules written as CEL expressions (``[expressions.NAME]``, ``fraudrules rules define``): no Python release.

An expression rule hits with its ``score`` and ``reason`` when its ``when`` expression is true for an event.
The language is CEL (Common Expression Language), evaluated by ``common-expression-language`` (Rust bindings;
CONTRIBUTING.md says why). Variables:

- ``event``: what the rules see (``rules/model.py``), ``payment`` and ``order``: the two records (an empty map
  for a missing side, so ``has(payment.payAmount)`` tells);
- ``lists.NAME``: list NAME (``rules/lists.py``), for ``event.merchantId in lists.vip``.

Numbers compare as numbers whatever their JSON form (``100`` and ``100.0``: integral numbers reach CEL as
ints, and CEL compares ints with doubles); CEL does no mixed arithmetic, so write ``double(event.payAmount) *
1.5``. A list in an expression is only ever asked about its members: it holds the event's own values (and the
expression's literals) that are on the list, so a lookup costs what a dict lookup does whatever the list's
size; ``size(lists.vip)`` or a membership test of a value computed inside the expression is not supported.

Compiled once, when a rule set is built: a syntax error is a :class:`ConfigError` naming the rule and the
position. An expression in CEL's common subset also becomes Python closures (``rules/cel_subset.py``), which
decide most events at a fraction of the package's cost and leave the others to it. The rest of a rule set's
expressions run as one CEL program per event, with only the fields they name converted to CEL values
(conversion is most of the cost). An expression that fails on an event (a missing field, a type error) is that
rule's error for that event, found by running it on its own in CEL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import cel
from pydantic import BaseModel, ConfigDict

from fraudrules.pipeline.join import ORDER_FIELDS, PAYMENT_FIELDS
from fraudrules.pipeline.model import Enriched
from fraudrules.rules.cel_subset import Closure, Missing, NotInSubset, Records, compile_subset
from fraudrules.rules.lists import Lists
from fraudrules.rules.model import Event, Hit, Rule, RuleState
from fraudrules.settings import ConfigError, ExpressionSettings

#: Where expression rules come from, in ``fraudrules rules`` and in logs (a plugin name for the others).
SOURCE = "expressions"
VARIABLES = ("event", "payment", "order")

_STRING = re.compile(r"""[rR]?(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""", re.S)
_FIELD = re.compile(r"\b(event|payment|order)\s*\.\s*([A-Za-z_]\w*)")
_LIST = re.compile(r"(?<![.\w])lists\s*\.\s*([A-Za-z_]\w*)")
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_POSITION = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")
_INT_LITERAL = re.compile(r"(?<![\w.])(-?\d+)(?![\w.])")


class ExpressionConfig(BaseModel):
    """An expression rule's config, as ``fraudrules rules`` shows it and the ruleset id hashes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    when: str
    score: float
    reason: str


class Compiled:
    """One expression, compiled, with what it reads."""

    __slots__ = ("fast", "fields", "flat", "lists", "literals", "name", "program", "text", "whole")

    def __init__(self, name: str, text: str, list_names: frozenset[str]) -> None:
        self.name, self.text = name, text
        try:
            checked = cel.compile(text)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ConfigError(f"expression {name!r} does not compile: {_where(str(exc))}") from None
        code = _STRING.sub('""', text)
        variables = set(checked.references()["variables"])
        unknown = variables - {*VARIABLES, "lists"} - set(_MACRO_VARIABLE.findall(code))
        if unknown:
            raise ConfigError(
                f"expression {name!r} uses {', '.join(sorted(unknown))}: its variables are event, payment, order "
                "and lists"
            )
        self.lists = frozenset(_LIST.findall(code))
        if len(re.findall(r"(?<![.\w])lists\b", code)) != len(_LIST.findall(code)):
            raise ConfigError(f"expression {name!r} uses lists other than as lists.NAME")
        missing = sorted(self.lists - list_names)
        if missing:
            raise ConfigError(f"expression {name!r} names lists that do not exist: {', '.join(missing)}")
        #: Per variable, the fields the expression names; a variable used otherwise (``size(event)``) is whole.
        self.fields: dict[str, set[str]] = {variable: set() for variable in VARIABLES}
        for variable, name_ in _FIELD.findall(code):
            self.fields[variable].add(name_)
        #: The expression as run: ``event.payAmount`` read as the variable ``event__payAmount`` (see _flatten).
        self.flat = flat = _flatten(text)
        self.whole = frozenset(variable for variable in VARIABLES if re.search(rf"(?<![.\w]){variable}\b", flat))
        literals: list[Any] = [match.group(0)[1:-1] for match in _STRING.finditer(text)]
        literals += [int(number) for number in _INT_LITERAL.findall(code)]
        self.literals = tuple(literals)
        self.program = cel.compile(flat)
        #: The expression as Python closures, when it is in CEL's common subset (``rules/cel_subset.py``).
        self.fast: Closure | None
        try:
            self.fast = compile_subset(text, list_names)
        except NotInSubset:
            self.fast = None


def _flatten(text: str) -> str:
    """``text`` with ``event.x``, ``has(event.x)`` and ``lists.x`` (outside string literals) as plain variables:
    CEL converts a plain value in about a third of the time a map's field costs, and only the fields the
    expressions name are converted."""
    parts, last = [], 0
    for literal in _STRING.finditer(text):
        parts += [_flatten_code(text[last : literal.start()]), literal.group(0)]
        last = literal.end()
    return "".join([*parts, _flatten_code(text[last:])])


def _flatten_code(code: str) -> str:
    code = _HAS.sub(lambda m: f"has__{m.group(1)}__{m.group(2)}", code)
    code = _SELECT.sub(lambda m: f"{m.group(1)}__{m.group(2)}", code)
    return _LIST.sub(lambda m: f"lists__{m.group(1)}", code)


_HAS = re.compile(r"(?<![.\w])has\s*\(\s*(event|payment|order)\s*\.\s*([A-Za-z_]\w*)\s*\)")
_SELECT = re.compile(r"(?<![.\w])(event|payment|order)\s*\.\s*([A-Za-z_]\w*)")
_UNDEFINED = re.compile(r"Undefined variable or function: '(event|payment|order)__(\w+)'")


def _where(message: str) -> str:
    """A CEL parse error as ``line L, column C: what`` with the caret lines CEL draws."""
    found = _POSITION.search(message)
    if found is None:
        return message
    line, column, what = found.groups()
    drawing = [row for row in message.splitlines() if row.startswith("| ")][:2]
    return f"line {line}, column {column}: {what}" + "".join("\n    " + row[2:] for row in drawing)


def _named(used: set[str]) -> set[tuple[str, str, str]]:
    """``event__payAmount`` as (name, record, field), of the names a program uses."""
    return {(name, *name.split("__", 1)) for name in used if not name.startswith(("has__", "lists__"))}  # type: ignore[misc]


def _number(value: Any) -> Any:
    return int(value) if type(value) is float and value.is_integer() else value


class Expressions:
    """Every expression rule of a rule set, run at most once per event. Those in CEL's common subset run as
    Python closures over the records (``rules/cel_subset.py``); the others as one CEL program on the plain
    variables they name (``event__payAmount``, ``has__order__category``, ``lists__vip``), and so does a closure
    that could not decide (an error, a value it leaves to CEL)."""

    def __init__(self, compiled: list[Compiled], lists: Lists) -> None:
        self.compiled = compiled
        self.lists = lists
        self.names = [c.name for c in compiled]
        self._fast = [c for c in compiled if c.fast is not None]
        self._slow = [c for c in compiled if c.fast is None]
        texts = [f"({c.flat})" for c in compiled]
        slow = [f"({c.flat})" for c in self._slow]
        self.program = (
            None if not slow else self._slow[0].program if len(slow) == 1 else cel.compile("[" + ", ".join(slow) + "]")
        )
        used = set(re.findall(r"\b(?:has__)?(?:event|payment|order)__\w+|\blists__\w+", " ".join(texts)))
        #: The variables the programs use: (name, record, field) for a field's value, and for whether it is there.
        self._values = sorted(_named(used))
        self._presence = sorted((name, *name[5:].split("__", 1)) for name in used if name.startswith("has__"))
        self._whole = sorted(set().union(*(c.whole for c in compiled)))
        self._lists = sorted(name[7:] for name in used if name.startswith("lists__"))
        #: Per list, the literals of the expressions that use it (``'m8' in lists.vip``).
        self._list_literals = {
            name: tuple(literal for c in compiled if name in c.lists for literal in c.literals) for name in self._lists
        }
        self._records: dict[str, Mapping[str, Any]] = {}
        self._closure_records: Records = ({}, {}, {}, self._listed)
        self._time_ms = 0
        self._results: dict[str, Any] | None = None
        self._activation: dict[str, Any] = {}

    def bind(self, enriched: Enriched) -> None:
        """The order the next calls are about (the rules' event alone lacks ``payment`` and ``order``)."""
        event = enriched["event"]
        payment, order = enriched["payment"] or {}, enriched["order"] or {}
        self._records = {"event": event, "payment": payment, "order": order}
        self._closure_records = (event, payment, order, self._listed)
        self._time_ms = event.get("eventTimeMs", 0)
        self._results = None

    def outcomes(self) -> dict[str, bool | Exception]:
        """Every expression's outcome for the bound order: true, false, or what it raised (computed once)."""
        if self._results is None:
            self._results = self._run()
        return self._results

    def result(self, name: str) -> bool:
        """Whether expression ``name`` is true for the bound order; raises what the expression raised on it."""
        result = self.outcomes()[name]
        if isinstance(result, Exception):
            raise result
        return bool(result)

    def read_by(self, name: str) -> dict[str, Any]:
        """The values expression ``name`` names in the bound order (``event.payAmount``: 60000, ...)."""
        compiled = self.compiled[self.names.index(name)]
        return {
            f"{variable}.{field}": _number(record[field])
            for variable, names in compiled.fields.items()
            for field in sorted(names)
            for record in (self._records[variable],)
            if field in record
        }

    def _variables(self) -> dict[str, Any]:
        """The bound order as the programs' variables: a missing field is left out (CEL then says which)."""
        records = self._records
        activation: dict[str, Any] = {}
        for name, variable, field in self._values:
            record = records[variable]
            if field in record:
                value = record[field]
                activation[name] = int(value) if type(value) is float and value.is_integer() else value
        for name, variable, field in self._presence:
            activation[name] = field in records[variable]
        for variable in self._whole:
            activation[variable] = {key: _number(value) for key, value in records[variable].items()}
        if self._lists:
            values = [value for value in activation.values() if type(value) is str or type(value) is int]
            for listed in self._lists:
                activation[f"lists__{listed}"] = self._members(listed, values)
        return activation

    def _members(self, name: str, values: list[Any]) -> dict[Any, bool]:
        """What ``lists.NAME`` holds for the bound order: of the values the expressions read and their literals,
        those on the list."""
        return self.lists.members(name, [*values, *self._list_literals[name]], self._time_ms)

    def _listed(self, name: str, value: Any) -> bool:
        """Whether ``value`` is on list ``name`` at the bound order's time (``x in lists.NAME`` in a closure)."""
        return self.lists.by_name[name].find(value, self._time_ms) is not None

    def _run(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        undecided: list[Compiled] = []
        records = self._closure_records
        absent: frozenset[str] | None = None
        for compiled in self._fast:
            try:
                value = compiled.fast(records)  # type: ignore[misc]
            except Missing as missing:
                # A field of the side an order lacks is false for it, as in ``_alone``; any other field, CEL's error.
                if absent is None:
                    absent = _ABSENT.get(str(records[0].get("joinStatus")), frozenset())
                if missing.field in absent:
                    results[compiled.name] = False
                else:
                    undecided.append(compiled)
                continue
            except Exception:  # an error, or a value the closures leave to CEL: CEL says which
                undecided.append(compiled)
                continue
            if value is True or value is False:
                results[compiled.name] = value
            else:
                undecided.append(compiled)
        if self.program is None and not undecided:
            return results
        self._activation = self._variables()
        if self.program is not None:
            try:
                result: Any = self.program.execute(self._activation)
                outcome = [result] if len(self._slow) == 1 else result
                if all(isinstance(value, bool) for value in outcome):
                    results.update(zip((c.name for c in self._slow), outcome, strict=True))
                else:
                    undecided += self._slow
            except Exception:
                undecided += self._slow
        if absent is None:
            absent = _ABSENT.get(str(records[0].get("joinStatus")), frozenset())
        for compiled in undecided:
            results[compiled.name] = self._alone(compiled, absent)
        return results

    def _alone(self, compiled: Compiled, absent: frozenset[str]) -> bool | Exception:
        try:
            value = compiled.program.execute(self._activation)
        except Exception as exc:  # CEL's evaluation errors: the rule's error for this event
            missing = _UNDEFINED.search(str(exc))
            if missing is not None:
                if missing.group(2) in absent:
                    return False
                return LookupError(f"the {missing.group(1)} has no field {missing.group(2)!r} (has() tells)")
            return type(exc)(str(exc).split(". ")[0])
        if not isinstance(value, bool):
            return TypeError(f"gave {type(value).__name__} {value!r}, not true or false")
        return value


#: The fields an order without one of its sides lacks: an expression that reads one is false for it, not an error.
_ABSENT = {"payment_only": ORDER_FIELDS - PAYMENT_FIELDS, "order_only": PAYMENT_FIELDS - ORDER_FIELDS}


def build(
    expressions: Mapping[str, ExpressionSettings], lists: Lists, taken: set[str]
) -> tuple[list[tuple[Rule[Any], ExpressionSettings]], Expressions | None]:
    """The enabled expression rules as rules, and the program that evaluates them. ``taken``: rule ids of plugins,
    which an expression may not reuse."""
    clash = sorted(set(expressions) & taken)
    if clash:
        raise ConfigError(f"expression names that a plugin rule already uses: {', '.join(clash)}")
    enabled = {name: settings for name, settings in sorted(expressions.items()) if settings.enabled}
    for name in enabled:
        if not name.isidentifier():
            raise ConfigError(f"expression name {name!r} is not an identifier (letters, digits, _)")
    compiled = [Compiled(name, settings.when, frozenset(lists.by_name)) for name, settings in enabled.items()]
    if not compiled:
        return [], None
    program = Expressions(compiled, lists)
    rules = []
    for name, settings in enabled.items():
        digest = hashlib.sha256(settings.when.encode()).hexdigest()[:8]
        rule: Rule[ExpressionConfig] = Rule(
            id=name,
            version=f"cel-{digest}",
            description=f"when {settings.when}",
            evaluate=_evaluator(program, name),
            config_model=ExpressionConfig,
        )
        rules.append((rule, settings))
    return rules, program


def config_of(settings: ExpressionSettings) -> ExpressionConfig:
    return ExpressionConfig(when=settings.when, score=settings.score, reason=settings.reason)


def _evaluator(program: Expressions, name: str) -> Any:
    def evaluate(event: Event, config: ExpressionConfig, state: RuleState | None) -> Hit | None:
        if not program.result(name):
            return None
        return Hit(config.score, config.reason or f"{name}: {config.when}", program.read_by(name))

    return evaluate
