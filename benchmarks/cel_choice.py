"""Which CEL package evaluates expression rules: ``make bench-cel`` (CONTRIBUTING.md, "Expression rules").

Measures ``common-expression-language`` (Rust bindings, module ``cel``) and ``cel-python`` (pure Python, module
``celpy``) on the same expressions over the same event: µs per evaluation as each is best used (compiled once,
the event converted per call), and the message each gives for a broken expression. Run in a virtualenv of its
own (the Makefile target builds ``.venv-cel``): cel-python is not a dependency of fraudrules. Rewrites the block
between the cel markers in CONTRIBUTING.md.
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path
from typing import Any

import cel
import celpy

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "CONTRIBUTING.md"
START, END = "<!-- cel:start -->", "<!-- cel:end -->"

EVENT = {
    "orderId": 1796306844,
    "payAmount": 91595.64,
    "payPlatform": 1,
    "provinceId": 3,
    "category": "travel",
    "merchantId": 78,
    "joinStatus": "joined",
    "eventTimeMs": 1796306844690,
}
EXPRESSIONS = {
    "one comparison": "event.payAmount > 50000.0",
    "three conditions": "event.payAmount > 50000.0 && event.category == 'travel' && event.payPlatform == 1",
    "string function": "event.category.startsWith('tra') || event.provinceId in [1, 2, 3]",
}
BROKEN = ["event.payAmount > ", "event.category == 'travel", "event.payAmount >> 5"]


def rust(text: str) -> Any:
    program = cel.compile(text)
    return lambda: program.execute({"event": EVENT})


def python(text: str) -> Any:
    environment = celpy.Environment()
    program = environment.program(environment.compile(text))
    return lambda: program.evaluate({"event": celpy.json_to_cel(EVENT)})


def per_call_us(call: Any) -> float:
    number, took = 1, 0.0
    while took < 0.5:
        number *= 4
        took = timeit.timeit(call, number=number)
    return min(timeit.repeat(call, number=number, repeat=3)) / number * 1e6


def message(compile_: Any, text: str) -> str:
    try:
        compile_(text)
    except Exception as exc:  # whatever each package raises: what a user reads is the point
        return " / ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())[:160]
    return "(accepted)"


def main() -> None:
    rows = ["| expression | common-expression-language µs | cel-python µs |", "|---|---:|---:|"]
    for name, text in EXPRESSIONS.items():
        assert rust(text)() == bool(python(text)())
        shown = text.replace("|", "\\|")
        rows.append(f"| {name}: `{shown}` | {per_call_us(rust(text)):.1f} | {per_call_us(python(text)):.1f} |")
    rows += ["", "| broken expression | common-expression-language says | cel-python says |", "|---|---|---|"]
    environment = celpy.Environment()
    for text in BROKEN:
        said = [message(cel.compile, text), message(environment.compile, text)]
        cells = [m.replace("|", "\\|").replace("`", "'") for m in said]
        rows.append(f"| `{text}` | " + " | ".join(cells) + " |")
    versions = (
        f"common-expression-language {_version('common-expression-language')}, cel-python {_version('cel-python')}"
    )
    text = "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} with `make bench-cel` ({versions}, Python "
            f"{sys.version.split()[0]}; each compiled once, the event converted on every call):",
            "",
            *rows,
        ]
    )
    print(text)
    page = PAGE.read_text()
    head, rest = page.split(START)
    _, tail = rest.split(END)
    PAGE.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
