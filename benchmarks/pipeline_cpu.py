"""CPU per order of fraudrules' own per-order code, one core, no broker: ``.venv/bin/python
benchmarks/pipeline_cpu.py`` (BENCHMARKS.md, "Changes and gains").

The backtest runs the one-partition pipeline's chain (decoding and validation, the join, the reorder buffer, every
rule, the verdict) over generated files, with its state in dicts; this times it with the process's CPU clock,
best of ``--rounds``. A drain through Kafka varies by a fifth from run to run on two shared cores; this varies by
a few per cent, so a change of our code shows here first. For an A/B pair of commits, alternate
``PYTHONPATH=<checkout>/src .venv/bin/python benchmarks/pipeline_cpu.py`` between a checkout of each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from fraudrules import backtest
from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.generate.output import write_files


def timed_backtests(orders: int, rounds: int, seed: int = 10) -> list[tuple[float, dict[str, Any]]]:
    """``rounds`` backtests of ``orders`` orders of the generator's default (labelled) traffic, from files: each
    one's CPU seconds (the process's clock) and its summary. ``make bench``'s backtest row uses it too."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="fraudrules-pipeline-cpu-") as folder:
        directory = Path(folder)
        write_files(Generator(GeneratorConfig(count=orders, seed=seed)), directory)
        for _ in range(rounds):
            started = time.process_time()
            result = backtest.run(directory / "payment.jsonl", directory / "order.jsonl", directory / "labels.jsonl")
            runs.append((time.process_time() - started, result.summary))
    return runs


def cpu_per_order(orders: int, rounds: int, seed: int = 10) -> dict[str, float]:
    """The backtest's CPU µs per order over ``orders`` orders, best and median of ``rounds``."""
    times = sorted(cpu for cpu, _ in timed_backtests(orders, rounds, seed))
    return {
        "orders": orders,
        "rounds": rounds,
        "best_us_per_order": round(times[0] / orders * 1e6, 1),
        "median_us_per_order": round(times[len(times) // 2] / orders * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"pipeline_cpu": cpu_per_order(args.orders, args.rounds)}))


if __name__ == "__main__":
    main()
