"""CEL's common subset compiled to Python closures: what most expression rules are, at a fraction of the cost.

The CEL package (``rules/expressions.py``) costs ~1-2 µs per expression and more to convert an event's fields
to CEL values. Most analysts' expressions are comparisons of an event's fields with literals, joined by ``&&``
and ``||``: this module compiles those into nested Python closures that read the records directly.

It is a fast path, not a second CEL. A closure returns a value only where CEL would return the same one; in any
other case it raises, and the caller asks the CEL package. So:

- An expression outside the subset does not compile here (:class:`NotInSubset`), and CEL runs it.
- Whatever CEL reports as an error raises here too: a missing field, a type mismatch, an overflow, and
  ``&&``/``||`` absorb an error as CEL does (``false && error`` and ``error && false`` are both false). CEL
  then says which error it is, and that message is what the rule reports.
- A value whose CEL behaviour this module does not reproduce raises :class:`Defer`. Examples: ``string()`` of
  a double, ``int()`` of a string, ``size()`` of a non-ASCII string (CEL counts its bytes), and an int beyond
  2**53 compared with a double (CEL compares them as doubles).

The subset:

- literals: int, double, single- or double-quoted string with simple escapes, ``true``, ``false``, ``null``,
  and lists of them;
- ``event.F``, ``payment.F`` and ``order.F``, and ``has()`` of them;
- ``! - * / % + - < <= > >= == != && || ?:``, and ``in`` a list literal or ``lists.NAME``;
- ``int()``, ``double()``, ``string()`` and ``size()``, and the ``startsWith``, ``endsWith``, ``contains`` and
  ``size`` methods.

``tests/rules/test_cel_subset.py`` checks the closures against the CEL package on generated expressions and
events.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: What a closure reads: the event, the payment and the order (an empty map for a missing side), and a
#: function telling whether a value is on list NAME at the event's time.
Records = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any], Callable[[str, Any], bool]]
Closure = Callable[[Records], Any]

_RECORDS = {"event": 0, "payment": 1, "order": 2}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_EXACT = 2**53


class NotInSubset(Exception):
    """The expression uses something this module does not compile: CEL runs it."""


class Defer(Exception):
    """A value whose CEL behaviour is not reproduced here: CEL evaluates the expression."""


class CelError(Exception):
    """What CEL reports as an error (its own message says which)."""


class Missing(KeyError):
    """``event.F`` (``payment.F``, ``order.F``) where the record has no field F: CEL's "undefined" error, raised
    where CEL raises it (``&&`` and ``||`` report their right side's error when both fail, as CEL does)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


# --- the tokens ------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<double>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
    | (?P<hex>0[xX][0-9a-fA-F]+)(?![uU\w])
    | (?P<int>\d+)(?![uU\w.])
    | (?P<string>'(?:\\[\\'"ntr]|[^'\\\n])*'|"(?:\\[\\'"ntr]|[^"\\\n])*")
    | (?P<name>[A-Za-z_]\w*)
    | (?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%?:.,()\[\]])
    )""",
    re.X,
)
_ESCAPES = {"\\\\": "\\", "\\'": "'", '\\"': '"', "\\n": "\n", "\\t": "\t", "\\r": "\r"}
_RESERVED = {"in", "true", "false", "null"}


def _tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise NotInSubset(f"at {position}: {text[position : position + 10]!r}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


# --- the parser: CEL's grammar, for the subset -----------------------------------------------------------


class _Parser:
    def __init__(self, text: str, list_names: frozenset[str]) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.list_names = list_names

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (value is not None and token[1] != value):
            raise NotInSubset(f"expected {value or 'more'}, found {token[1]!r}")
        self.at += 1
        return token

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] in ("op", "name"):
            self.at += 1
            return True
        return False

    def parse(self) -> Closure:
        closure = self.expression()
        if self.peek()[0] != "end":
            raise NotInSubset(f"unexpected {self.peek()[1]!r}")
        return closure

    def expression(self) -> Closure:
        condition = self.either()
        if not self.accept("?"):
            return condition
        then = self.either()
        self.take(":")
        return _conditional(condition, then, self.expression())

    def either(self) -> Closure:
        left = self.both()
        while self.accept("||"):
            left = _or(left, self.both())
        return left

    def both(self) -> Closure:
        left = self.relation()
        while self.accept("&&"):
            left = _and(left, self.relation())
        return left

    def relation(self) -> Closure:
        left = self.addition()
        while True:
            kind, value = self.peek()
            if kind == "op" and value in _RELATIONS:
                self.at += 1
                left = _RELATIONS[value](left, self.addition())
            elif kind == "name" and value == "in":
                self.at += 1
                left = self.membership(left)
            else:
                return left

    def membership(self, left: Closure) -> Closure:
        if self.peek() == ("name", "lists"):
            self.take()
            self.take(".")
            name = self.take()[1]
            if name not in self.list_names or self.peek()[1] in (".", "[", "("):
                raise NotInSubset(f"lists.{name}")
            # CEL sees a list as a map of the event's listed values (``Expressions``): a key, not a computed value.
            if getattr(left, "listable", False) is not True:
                raise NotInSubset("only a field or a literal can be looked up in a list")
            return _on_list(left, name)
        return _in_list(left, self.addition())

    def addition(self) -> Closure:
        left = self.product()
        while self.peek() in (("op", "+"), ("op", "-")):
            sign = self.take()[1]
            left = _arithmetic(_add if sign == "+" else _subtract, left, self.product())
        return left

    def product(self) -> Closure:
        left = self.unary()
        while self.peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            sign = self.take()[1]
            left = _arithmetic({"*": _multiply, "/": _divide, "%": _modulo}[sign], left, self.unary())
        return left

    def unary(self) -> Closure:
        if self.accept("!"):
            return _not(self.unary())
        if self.accept("-"):
            return _negate(self.unary())
        return self.member()

    def member(self) -> Closure:
        closure = self.primary()
        while self.accept("."):
            method = self.take()[1]
            self.take("(")
            arguments = self.arguments(")")
            closure = _method(method, closure, arguments)
        if self.peek()[1] == "[":
            raise NotInSubset("indexing")
        return closure

    def arguments(self, closing: str) -> list[Closure]:
        found: list[Closure] = []
        if self.accept(closing):
            return found
        while True:
            found.append(self.expression())
            if self.accept(closing):
                return found
            self.take(",")
            if self.accept(closing):
                return found

    def primary(self) -> Closure:
        kind, value = self.take()
        if kind == "int" or kind == "hex":
            number = int(value, 16 if kind == "hex" else 10)
            if number > _INT_MAX:
                raise NotInSubset("an int literal beyond int64")
            return _literal(number, listable=kind == "int")
        if kind == "double":
            return _literal(float(value))
        if kind == "string":
            text = re.sub(r"\\.", lambda m: _ESCAPES[m.group(0)], value[1:-1])
            return _literal(text, listable="\\" not in value)
        if kind == "op" and value == "(":
            closure = self.expression()
            self.take(")")
            return closure
        if kind == "op" and value == "[":
            return _list(self.arguments("]"))
        if kind != "name":
            raise NotInSubset(f"unexpected {value!r}")
        if value in ("true", "false", "null"):
            return _literal({"true": True, "false": False, "null": None}[value])
        if value in _RECORDS:
            self.take(".")
            field = self.take()
            if field[0] != "name" or field[1] in _RESERVED or self.peek()[1] in ("[", "("):
                raise NotInSubset("only a record's own fields")  # and ``member`` refuses ``event.a.b``
            return _select(_RECORDS[value], field[1])
        if value == "has" and self.accept("("):
            record = self.take()[1]
            if record not in _RECORDS:
                raise NotInSubset("has() of a nested field")
            self.take(".")
            present = self.take()[1]
            self.take(")")
            return _has(_RECORDS[record], present)
        if value in _FUNCTIONS and self.accept("("):
            arguments = self.arguments(")")
            if len(arguments) != 1:
                raise NotInSubset(f"{value}() with {len(arguments)} arguments")
            return _call(_FUNCTIONS[value], arguments[0])
        raise NotInSubset(f"{value!r}")


def compile_subset(text: str, list_names: frozenset[str]) -> Closure:
    """``text`` (which CEL already compiled) as a closure over :data:`Records`; raises :class:`NotInSubset`."""
    return _Parser(text, list_names).parse()


# --- values ----------------------------------------------------------------------------------------------


def _numeric(value: Any) -> bool:
    kind = type(value)
    return kind is int or kind is float


def _mixed_exact(left: Any, right: Any) -> None:
    """CEL compares an int with a double as doubles: beyond 2**53 that differs from Python's exact comparison."""
    if type(left) is not type(right):
        whole = left if type(left) is int else right
        if not -_EXACT <= whole <= _EXACT:
            raise Defer("an int beyond 2**53 against a double")


def _equal(left: Any, right: Any) -> bool:
    """CEL's ``==``: numbers by value whatever their type, other values of different types never equal."""
    kind = type(left)
    if kind is type(right):
        if kind is list or kind is dict:
            raise Defer("containers")
        return bool(left == right)
    if _numeric(left) and _numeric(right):
        _mixed_exact(left, right)
        return bool(left == right)
    if kind is list or kind is dict or type(right) is list or type(right) is dict:
        raise Defer("containers")
    return False


def _ordered(left: Any, right: Any) -> None:
    """Whether CEL orders these two values: the same kind (numbers of either type count as one)."""
    kind = type(left)
    if kind is type(right) and (kind is str or kind is bool or kind is int or kind is float):
        return
    if _numeric(left) and _numeric(right):
        _mixed_exact(left, right)
        return
    raise CelError("no such overload")


def _int64(value: int) -> int:
    if not _INT_MIN <= value <= _INT_MAX:
        raise CelError("integer overflow")
    return value


# --- the closures ----------------------------------------------------------------------------------------


def _literal(value: Any, listable: bool = False) -> Closure:
    def literal(records: Records) -> Any:
        return value

    # As ``Expressions`` finds a literal to look up in a list: a string without escapes, a decimal int.
    literal.listable = listable  # type: ignore[attr-defined]
    literal.constant = value  # type: ignore[attr-defined]
    return literal


def _select(index: int, field: str) -> Closure:
    def select(records: Records) -> Any:
        try:
            value = records[index][field]  # type: ignore[index]
        except KeyError:
            raise Missing(field) from None
        if type(value) is float and value.is_integer():
            value = int(value)  # as the CEL path converts it (``Expressions._variables``)
        if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
            raise Defer("an int beyond int64")  # how CEL takes it is not reproduced here
        return value

    select.listable = True  # type: ignore[attr-defined]
    return select


def _has(index: int, field: str) -> Closure:
    def has(records: Records) -> bool:
        return field in records[index]  # type: ignore[operator]

    return has


def _list(items: Sequence[Closure]) -> Closure:
    def listed(records: Records) -> list[Any]:
        return [item(records) for item in items]

    return listed


def _conditional(condition: Closure, then: Closure, otherwise: Closure) -> Closure:
    def conditional(records: Records) -> Any:
        chosen = condition(records)
        if chosen is True:
            return then(records)
        if chosen is False:
            return otherwise(records)
        raise CelError("no such overload")

    return conditional


def _absorbs(error: Exception, right: Closure, records: Records, absorbing: bool) -> bool:
    """Whether ``right``, after the left side of ``&&`` (``||``) raised ``error``, decides it (``absorbing``).
    When both sides fail CEL reports the right side's error, as this raises it; but a left side this module
    left to CEL (:class:`Defer`) may be a value for CEL, so then the right side's error is left to CEL too."""
    try:
        return right(records) is absorbing
    except Exception as second:
        if isinstance(error, Defer) and not isinstance(second, Defer):
            raise Defer("both sides failed, the left one left to CEL") from second
        raise


def _and(left: Closure, right: Closure) -> Closure:
    def both(records: Records) -> bool:
        try:
            first = left(records)
        except Exception as error:
            if _absorbs(error, right, records, False):  # CEL: an error && false is false
                return False
            raise
        if first is False:
            return False
        second = right(records)  # raises: so does CEL (true && error), or CEL absorbs it (non-bool && error)
        if second is False:
            return False
        if first is True and second is True:
            return True
        raise CelError("no such overload")

    return both


def _or(left: Closure, right: Closure) -> Closure:
    def either(records: Records) -> bool:
        try:
            first = left(records)
        except Exception as error:
            if _absorbs(error, right, records, True):  # CEL: an error || true is true
                return True
            raise
        if first is True:
            return True
        second = right(records)
        if second is True:
            return True
        if first is False and second is False:
            return False
        raise CelError("no such overload")

    return either


def _not(operand: Closure) -> Closure:
    def negation(records: Records) -> bool:
        value = operand(records)
        if value is True:
            return False
        if value is False:
            return True
        raise CelError("no such overload")

    return negation


def _negate(operand: Closure) -> Closure:
    def minus(records: Records) -> Any:
        value = operand(records)
        if type(value) is int:
            if value == _INT_MIN:
                raise Defer("CEL wraps -(int64 minimum)")
            return -value
        if type(value) is float:
            return -value
        raise CelError("no such overload")

    return minus


def _equals(left: Closure, right: Closure) -> Closure:
    def equals(records: Records) -> bool:
        return _equal(left(records), right(records))

    return equals


def _differs(left: Closure, right: Closure) -> Closure:
    def differs(records: Records) -> bool:
        return not _equal(left(records), right(records))

    return differs


def _comparison(test: Callable[[Any, Any], bool]) -> Callable[[Closure, Closure], Closure]:
    def build(left: Closure, right: Closure) -> Closure:
        constant = getattr(right, "constant", None)
        if type(constant) is float or (type(constant) is int and -_EXACT <= constant <= _EXACT):
            # The common shape, a field against a number: one check, no second call.
            def against_number(records: Records) -> bool:
                value = left(records)
                if _numeric(value):
                    _mixed_exact(value, constant)
                    return test(value, constant)
                raise CelError("no such overload")

            return against_number

        def compare(records: Records) -> bool:
            first, second = left(records), right(records)
            _ordered(first, second)
            return test(first, second)

        return compare

    return build


_RELATIONS: dict[str, Callable[[Closure, Closure], Closure]] = {
    "==": _equals,
    "!=": _differs,
    "<": _comparison(operator.lt),
    "<=": _comparison(operator.le),
    ">": _comparison(operator.gt),
    ">=": _comparison(operator.ge),
}


def _in_list(left: Closure, right: Closure) -> Closure:
    def contained(records: Records) -> bool:
        value, items = left(records), right(records)
        if type(items) is not list:
            raise Defer("in something other than a list")
        return any(_equal(value, item) for item in items)

    return contained


def _on_list(left: Closure, name: str) -> Closure:
    def listed(records: Records) -> bool:
        value = left(records)
        if type(value) is str or type(value) is int:
            return records[3](name, value)
        raise Defer("a list looked up with a value that is not a string or an int")

    return listed


def _add(left: Any, right: Any) -> Any:
    kind = type(left)
    if kind is type(right):
        if kind is int:
            return _int64(left + right)
        if kind is float or kind is str:
            return left + right
        if kind is list:
            raise Defer("list concatenation")
    raise CelError("no such overload")


def _numbers(operation: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``-`` and ``*``: two ints (int64, overflow an error) or two doubles, nothing mixed."""

    def on_numbers(left: Any, right: Any) -> Any:
        kind = type(left)
        if kind is type(right):
            if kind is int:
                return _int64(operation(left, right))
            if kind is float:
                return operation(left, right)
        raise CelError("no such overload")

    return on_numbers


_subtract, _multiply = _numbers(operator.sub), _numbers(operator.mul)


def _divide(left: Any, right: Any) -> Any:
    kind = type(left)
    if kind is type(right):
        if kind is int:
            if right == 0:
                raise CelError("division by zero")
            quotient = abs(left) // abs(right)  # CEL truncates toward zero
            return _int64(quotient if (left < 0) == (right < 0) else -quotient)
        if kind is float:
            if right == 0.0:
                raise Defer("a double divided by zero")
            return left / right
    raise CelError("no such overload")


def _modulo(left: Any, right: Any) -> Any:
    if type(left) is int and type(right) is int:
        if right == 0:
            raise CelError("modulo by zero")
        remainder = abs(left) % abs(right)  # CEL's remainder takes the dividend's sign
        return remainder if left >= 0 else -remainder
    raise CelError("no such overload")


def _arithmetic(operation: Callable[[Any, Any], Any], left: Closure, right: Closure) -> Closure:
    def arithmetic(records: Records) -> Any:
        return operation(left(records), right(records))

    return arithmetic


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is float:
        if not -9.223372036854775e18 <= value <= 9.223372036854775e18:  # NaN too: CEL says overflow
            raise Defer("int() at the edge of int64")
        return int(value)
    raise Defer(f"int() of {type(value).__name__}")


def _to_double(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise Defer(f"double() of {type(value).__name__}")


def _to_string(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise Defer(f"string() of {type(value).__name__}")


def _size(value: Any) -> int:
    if type(value) is str:
        if not value.isascii():
            raise Defer("size() of a non-ASCII string")  # CEL here counts bytes
        return len(value)
    if type(value) is list:
        return len(value)
    raise Defer(f"size() of {type(value).__name__}")


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int,
    "double": _to_double,
    "string": _to_string,
    "size": _size,
}


def _call(function: Callable[[Any], Any], argument: Closure) -> Closure:
    def call(records: Records) -> Any:
        return function(argument(records))

    return call


def _string_test(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def method(target: Any, argument: Any) -> bool:
        if type(target) is str and type(argument) is str:
            return test(target, argument)
        raise CelError("no such overload")

    return method


_METHODS: dict[str, Callable[[Any, Any], bool]] = {
    "startsWith": _string_test(str.startswith),
    "endsWith": _string_test(str.endswith),
    "contains": _string_test(str.__contains__),
}


def _method(name: str, target: Closure, arguments: list[Closure]) -> Closure:
    if name == "size" and not arguments:
        return _call(_size, target)
    if name not in _METHODS or len(arguments) != 1:
        raise NotInSubset(f".{name}()")
    method, (argument,) = _METHODS[name], arguments

    def call(records: Records) -> bool:
        given = argument(records)  # CEL evaluates a method's argument before its target
        return method(target(records), given)

    return call
