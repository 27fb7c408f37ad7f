"""What the live topology tells an optional observer (metrics), record by record.

A protocol with no dependencies: the topology calls it only when one is given, the backtest never.
"""

from __future__ import annotations

from typing import Any, Protocol

from fraudrules.pipeline.model import DeadLetter, Side, Verdict


class PipelineObserver(Protocol):
    def admitted(self, topic: str, result: Side | DeadLetter) -> None:
        """An input record was decoded into a side or a dead letter."""

    def joined(self, outputs: list[Any]) -> None:
        """One side went through the join; ``outputs`` are what came out (events, dead letters)."""

    def verdict(self, verdict: Verdict) -> None:
        """A verdict is about to be written to ``sink``."""
