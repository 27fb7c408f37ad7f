"""Backtest: replay recorded traffic through the exact pipeline code, offline, and judge the verdicts.

From Python (a notebook, a CI job)::

    from pathlib import Path
    from fraudrules import backtest

    result = backtest.run(Path("data/payment.jsonl"), Path("data/order.jsonl"), Path("data/labels.jsonl"))
    print(result.summary["scenarios"])          # recall per labelled scenario
    for verdict in result.verdicts:              # exactly as the pipeline would write them to ``sink``
        ...

``compare`` replays the same records under two rule configurations in one pass and says which orders
change decision, by rule and by scenario. The command line is ``fraudrules backtest``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudrules import collector
from fraudrules.backtest.compare import Comparison, compare_verdicts
from fraudrules.backtest.replay import EVERY, Replay, replay
from fraudrules.backtest.report import Tally, render
from fraudrules.backtest.sources import InputRecord, read_files, read_labels, read_topics
from fraudrules.pipeline.model import DeadLetter, Verdict, is_deadletter
from fraudrules.rules.engine import RuleSet
from fraudrules.settings import Settings

__all__ = [
    "BacktestResult",
    "Comparison",
    "InputRecord",
    "compare",
    "read_files",
    "read_labels",
    "read_topics",
    "render",
    "run",
    "run_records",
]


@dataclass
class BacktestResult:
    """The figures (``summary``, as ``--json`` writes them), every verdict and every dead letter."""

    summary: dict[str, Any]
    verdicts: list[Verdict]
    deadletters: list[DeadLetter] = field(default_factory=list)
    tally: Tally | None = None


def _ruleset(settings: Settings) -> RuleSet:
    from fraudrules.app import load_ruleset

    return load_ruleset(settings)


def run(
    payments: Path,
    orders: Path,
    labels: Path | None = None,
    settings: Settings | None = None,
    ruleset: RuleSet | None = None,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Backtest the JSON-lines files ``payments`` and ``orders`` (labels optional) with ``settings``' rules."""
    return run_records(
        read_files(payments, orders), read_labels(labels) if labels else None, settings, ruleset, progress
    )


def run_records(
    records: Iterable[InputRecord],
    labels: dict[int, dict[str, Any]] | None = None,
    settings: Settings | None = None,
    ruleset: RuleSet | None = None,
    progress: Callable[[int], None] | None = None,
    partitions: dict[str, int] | None = None,
) -> BacktestResult:
    """Backtest any records (files, topics, or made in code)."""
    [result] = _run_many(records, labels, [(settings or Settings(), ruleset)], progress, partitions)
    return result


def compare(
    records: Iterable[InputRecord],
    labels: dict[int, dict[str, Any]] | None,
    base: Settings,
    other: Settings,
    progress: Callable[[int], None] | None = None,
    partitions: dict[str, int] | None = None,
) -> tuple[BacktestResult, BacktestResult, Comparison]:
    """Both configurations over the same records in one pass; the second's changes against the first."""
    first, second = _run_many(records, labels, [(base, None), (other, None)], progress, partitions)
    return first, second, compare_verdicts(first.verdicts, second.verdicts, labels or {})


def _run_many(
    records: Iterable[InputRecord],
    labels: dict[int, dict[str, Any]] | None,
    configs: list[tuple[Settings, RuleSet | None]],
    progress: Callable[[int], None] | None,
    partitions: dict[str, int] | None,
) -> list[BacktestResult]:
    replays = [Replay(s, rs if rs is not None else _ruleset(s), partitions) for s, rs in configs]
    tallies = [Tally(labels or {}) for _ in replays]
    verdicts: list[list[Verdict]] = [[] for _ in replays]
    letters: list[list[DeadLetter]] = [[] for _ in replays]
    started = time.perf_counter()
    with collector.processing(collector.rarer_middle_generation()):
        for index, output in replay(replays, records, progress):
            if is_deadletter(output):
                targets = range(len(replays)) if index == EVERY else [index]
                for target in targets:
                    letters[target].append(output)
                    tallies[target].add_deadletter(output)
            else:
                verdicts[index].append(output)
                tallies[index].add(output)
    seconds = time.perf_counter() - started
    return [
        BacktestResult(tally.summary(seconds / len(replays), labels is not None), v, dl, tally)
        for tally, v, dl in zip(tallies, verdicts, letters, strict=True)
    ]
