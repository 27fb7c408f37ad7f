"""Where an order's time goes in the expression rules and lists of the bench's ``analyst`` row, one core, no
broker: ``.venv/bin/python benchmarks/expressions.py`` (BENCHMARKS.md, "Lists and expression rules").

Builds the rule set of ``analyst_settings`` (10 expression rules, 3 lists of 100,000 values) and times, per
order: the expressions as the Python closures of CEL's common subset (``rules/cel_subset.py``, how they run), and
as the CEL package runs them (the variables they name, one program over them, 10 separate programs), the
stateless rules with and without the expressions (the rules' bookkeeping), and the lists' lookups.
"""

from __future__ import annotations

import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cel
from run import analyst_settings

from fraudrules.rules.engine import RuleSet
from fraudrules.rules.registry import discover_configured
from fraudrules.settings import load_settings
from fraudrules.testing import event


def us(call: Any, number: int = 20_000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def main() -> None:
    settings = load_settings(analyst_settings(Path(tempfile.mkdtemp())))
    registered = discover_configured(settings.plugins).rules()
    ruleset = RuleSet.build(registered, settings)
    plain = RuleSet.build(registered, settings.model_copy(update={"expressions": {}, "lists": {}}))
    program = ruleset.expressions
    assert program is not None
    order = event(payAmount=123_456.5)
    program.bind(order)
    variables = program._variables()
    one_program = cel.compile("[" + ", ".join(f"({c.flat})" for c in program.compiled) + "]")
    records = program._closure_records
    closures = [c.fast for c in program.compiled if c.fast is not None]
    assert len(closures) == len(program.compiled), "every analyst expression is in CEL's common subset"
    assert [f(records) for f in closures] == one_program.execute(variables)

    def run_program() -> None:
        program.bind(order)
        program.result(program.names[0])

    figures = {
        "the 10 expressions as closures (CEL's common subset)": us(lambda: [f(records) for f in closures]),
        "the variables the expressions name, for the CEL package": us(program._variables),
        "the one CEL program over them": us(lambda: one_program.execute(variables)),
        "the 10 expressions as separate programs": us(
            lambda: [c.program.execute(variables) for c in program.compiled], 2_000
        ),
        "the expressions, end to end (as they run)": us(run_program),
        "the stateless rules, with the expressions": us(lambda: ruleset.evaluate_stateless(order)),
        "the stateless rules, without": us(lambda: plain.evaluate_stateless(order)),
        "the lists' lookups": us(lambda: ruleset.lists.match(order["event"])),
    }
    for name, micros in figures.items():
        print(f"{name:<55} {micros:7.1f} µs per order")


if __name__ == "__main__":
    main()
